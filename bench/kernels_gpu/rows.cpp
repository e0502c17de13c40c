// bench_kernels_gpu's row-wise cases (per run; s = bytes per element of the case's dtype):
//   layer_norm fwd / bwd, 8192×768 (BERT-base's hidden states, 16 × 512 tokens)    memory-bound
//       Bytes fwd 2·N·C·s (x read, y written) + 2·C·s (w, b) + 8·N (mean, rstd); bwd 3·N·C·s (gy, x read,
//       gx written) + 8·N + 3·C·s (w read, gw, gb written). FLOPs ≈ 8·N·C fwd, 14·N·C bwd. f32, bf16.
//   softmax fwd / bwd, 16384×1024 (attention-probability rows)                     memory-bound
//       Bytes fwd 2·N·C·s, bwd 3·N·C·s (y, gy read; gx written). FLOPs ≈ 5·N·C, 4·N·C.
//   cross_entropy fwd / bwd, 4096×30522 (BERT's MLM logits), reduction none        memory-bound
//       Bytes fwd N·C·s + 8·N (targets) + N·s (loss) + 4·N (lse); bwd 2·N·C·s (logits read, glogits
//       written) + 8·N + 4·N + N·s (targets, lse, gloss). FLOPs ≈ 5·N·C fwd and bwd.
//   Layer_norm, softmax and cross_entropy's baselines are PyTorch's functional ops (torch_kernels_gpu.py).
#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

void add_row_cases(std::vector<Case>& cases, bool smoke) {
  for (DType t : {DType::Float32, DType::BFloat16}) {
    const double s = elem(t);
    {
      const int64_t n = smoke ? 7 : 8192, c = 768;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      const double eps = 1e-12;  // BERT's
      auto forward_set = [=](Device d) {
        Set set{input({n, c}, t, d, 41), input({c}, t, d, 42),           input({c}, t, d, 43),
                output({n, c}, t, d),    output({n}, DType::Float32, d), output({n}, DType::Float32, d)};
        return set;
      };
      Case f;
      f.name = "layer_norm fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 8.0 * double(n * c);
      f.bytes = 2.0 * double(n * c) * s + 2.0 * double(c) * s + 8.0 * double(n);
      f.make = forward_set;
      f.run = [eps](Set& x) { backend_of(x).layer_norm(x[0], x[1], x[2], eps, x[3], x[4], x[5]); };
      f.outputs = {3, 4, 5};
      cases.push_back(std::move(f));
      Case b;
      b.name = "layer_norm bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 14.0 * double(n * c);
      b.bytes = 3.0 * double(n * c) * s + 8.0 * double(n) + 3.0 * double(c) * s;
      b.make = [=](Device d) {
        Set x = forward_set(d);
        backend(d).layer_norm(x[0], x[1], x[2], eps, x[3], x[4], x[5]);
        x.push_back(input({n, c}, t, d, 44));  // gy
        x.push_back(output({n, c}, t, d));     // gx
        x.push_back(output({c}, t, d));        // gw
        x.push_back(output({c}, t, d));        // gb
        return x;
      };
      b.run = [](Set& x) { backend_of(x).layer_norm_backward(x[6], x[0], x[1], x[4], x[5], x[7], x[8], x[9]); };
      b.outputs = {7, 8, 9};
      cases.push_back(std::move(b));
    }
    {
      const int64_t n = smoke ? 9 : 16384, c = 1024;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      Case f;
      f.name = "softmax fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 5.0 * double(n * c);
      f.bytes = 2.0 * double(n * c) * s;
      f.make = [=](Device d) { return Set{input({n, c}, t, d, 51, 3.0), output({n, c}, t, d)}; };
      f.run = [](Set& x) { backend_of(x).softmax(x[0], x[1], false); };
      f.outputs = {1};
      cases.push_back(std::move(f));
      Case b;
      b.name = "softmax bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 4.0 * double(n * c);
      b.bytes = 3.0 * double(n * c) * s;
      b.make = [=](Device d) {
        Set x{output({n, c}, t, d), input({n, c}, t, d, 52), output({n, c}, t, d)};  // y, gy, gx
        backend(d).softmax(input({n, c}, t, d, 51, 3.0), x[0], false);
        return x;
      };
      b.run = [](Set& x) { backend_of(x).softmax_backward(x[0], x[1], x[2], false); };
      b.outputs = {2};
      cases.push_back(std::move(b));
    }
    {
      const int64_t n = smoke ? 3 : 4096, c = 30522;
      const std::string shape = fmt::format("{}x{} {}", n, c, short_name(t));
      auto forward_set = [=](Device d) {
        Generator g{62, 0};
        return Set{input({n, c}, t, d, 61, 2.0), randint(0, c, {n}, &g, DType::Int64, d), output({n}, t, d),
                   output({n}, DType::Float32, d)};
      };
      Case f;
      f.name = "cross_entropy fwd " + shape;
      f.dtype = t;
      f.compute_bound = false;
      f.flops = 5.0 * double(n * c);
      f.bytes = double(n * c) * s + 8.0 * double(n) + double(n) * s + 4.0 * double(n);
      f.make = forward_set;
      f.run = [](Set& x) { backend_of(x).cross_entropy(x[0], x[1], -100, 0.0, x[2], x[3]); };
      f.outputs = {2, 3};
      cases.push_back(std::move(f));
      Case b;
      b.name = "cross_entropy bwd " + shape;
      b.dtype = t;
      b.compute_bound = false;
      b.flops = 5.0 * double(n * c);
      b.bytes = 2.0 * double(n * c) * s + 8.0 * double(n) + 4.0 * double(n) + double(n) * s;
      b.make = [=](Device d) {
        Set x = forward_set(d);
        backend(d).cross_entropy(x[0], x[1], -100, 0.0, x[2], x[3]);
        x.push_back(input({n}, t, d, 63));  // gloss
        x.push_back(output({n, c}, t, d));  // glogits
        return x;
      };
      b.run = [](Set& x) { backend_of(x).cross_entropy_backward(x[0], x[1], x[3], x[4], -100, 0.0, x[5]); };
      b.outputs = {5};
      cases.push_back(std::move(b));
    }
  }
}

}  // namespace vb::bench::kernels_gpu
