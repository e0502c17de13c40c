// bench_kernels_gpu's nearest-centroid cases (per run; s = bytes per element of the case's dtype):
//   nearest_centroid N×D kK, k-means' assignment step (kernels/cuda/nearest_centroid.cu)
//       index, distance (N) of the nearest of K centroids (K, D), by direct differences on the CUDA cores.
//       FLOPs 3·N·K·D (a subtract and an fma per row, centroid and dim); bytes N·D·s + K·D·s + 12·N (x and
//       the centroids read once, int64 index and float32 distance written; x is really read once per 16
//       centroids). K = 12 (one node of the paper's hierarchy, 2^20 frame features of 512 dims):
//       memory-bound, GB/s against the copy ceiling. K = 1024 (a flat vocabulary): compute-bound, against
//       the GEMM ceiling of its dtype — the cost of not using a GEMM (the kernel's comment says why). f32,
//       bf16. No baseline in this program.
#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

void add_nearest_centroid_cases(std::vector<Case>& cases, bool smoke) {
  struct Size {
    int64_t n, k, d;
  };
  // Smoke: N, K, D odd against the kernel's 128-row blocks, 16-centroid chunks and 32-dim slices.
  const std::vector<Size> sizes = smoke ? std::vector<Size>{{131, 12, 37}, {70, 33, 64}}
                                        : std::vector<Size>{{int64_t(1) << 20, 12, 512}, {65536, 1024, 512}};
  for (const Size& z : sizes) {
    for (DType t : {DType::Float32, DType::BFloat16}) {
      Case c;
      c.name = fmt::format("nearest_centroid {}x{} k{} {}", z.n, z.d, z.k, short_name(t));
      c.dtype = t;
      c.compute_bound = z.k > 16;
      c.flops = 3.0 * double(z.n) * double(z.k) * double(z.d);
      c.bytes = double(z.n * z.d + z.k * z.d) * elem(t) + 12.0 * double(z.n);
      c.make = [z, t](Device d) {
        return Set{input({z.n, z.d}, t, d, 81), input({z.k, z.d}, t, d, 82), output({z.n}, DType::Int64, d),
                   output({z.n}, DType::Float32, d)};
      };
      c.run = [](Set& x) { backend_of(x).nearest_centroid(x[0], x[1], x[2], x[3]); };
      c.outputs = {2, 3};
      cases.push_back(std::move(c));
    }
  }
}

}  // namespace vb::bench::kernels_gpu
