// bench_kernels_gpu's GEMM cases (per run; s = bytes per element of the case's dtype):
//   gemm MxKxN, linear MxK->N   (cuBLASLt; in the emulated build the CPU GEMM)         compute-bound
//       out (M, N) = a (M, K)·b (K, N); "linear" reads b as the transposed view of a row-major
//       weight (N, K), as nn::Linear does. FLOPs 2·M·N·K; bytes (M·K + K·N + M·N)·s.
//       Baseline: cuBLASLt with the same layouts, descriptors made once and the fastest of its top 8
//       heuristic algorithms (ours builds descriptors and asks the heuristic on every call; cublaslt.cpp);
//       PyTorch's matmul in torch_kernels_gpu.py.
//       Shapes: 4096³; BERT-base projections for 4096 tokens (qkv 768->2304, out 768->768, ffn
//       768->3072 and 3072->768). f32, bf16, f16.
#include <cmath>

#include "bench/kernels_gpu/baselines.h"
#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

std::string gemm_name(const GemmShape& g, DType t) {
  return g.linear ? fmt::format("linear {}x{}->{} {}", g.m, g.k, g.n, short_name(t))
                  : fmt::format("gemm {}x{}x{} {}", g.m, g.k, g.n, short_name(t));
}

Set gemm_set(const GemmShape& g, DType t, Device d) {
  const double scale = 1.0 / std::sqrt(double(g.k));  // outputs of order 1
  Tensor a = input({1, g.m, g.k}, t, d, 11);
  Tensor b = g.linear ? transpose(input({1, g.n, g.k}, t, d, 12, scale), 1, 2) : input({1, g.k, g.n}, t, d, 12, scale);
  return {a, b, output({1, g.m, g.n}, t, d)};
}

void add_gemm_cases(std::vector<Case>& cases, bool smoke) {
  const std::vector<GemmShape> shapes = smoke ? std::vector<GemmShape>{{33, 17, 65, false}, {40, 24, 72, true}}
                                              : std::vector<GemmShape>{{4096, 4096, 4096, false},
                                                                       {4096, 768, 2304, true},
                                                                       {4096, 768, 768, true},
                                                                       {4096, 768, 3072, true},
                                                                       {4096, 3072, 768, true}};
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16}) {
    for (const GemmShape& g : shapes) {
      Case c;
      c.name = gemm_name(g, t);
      c.dtype = t;
      c.flops = 2.0 * g.m * g.n * g.k;
      c.bytes = elem(t) * double(g.m * g.k + g.k * g.n + g.m * g.n);
      c.make = [g, t](Device d) { return gemm_set(g, t, d); };
      c.run = [](Set& s) { backend_of(s).matmul(s[0], s[1], s[2]); };
      c.outputs = {2};
#if defined(VB_HAVE_CUDA)
      c.baseline = [g, t](const std::vector<Set>& sets) { return make_lt_gemm(g, t, sets); };
#endif
      cases.push_back(std::move(c));
    }
  }
}

}  // namespace vb::bench::kernels_gpu
