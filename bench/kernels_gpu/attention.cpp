// bench_kernels_gpu's attention cases (per run; s = bytes per element of the case's dtype):
//   attention fwd / bwd, B×H×T×D, no mask, scale 1/√D                            compute-bound
//       FLOPs fwd 4·B·H·T²·D (q·kᵀ and P·v); bwd 10·B·H·T²·D (2.5× the forward: S, dP, dV, dK, dQ).
//       Bytes fwd (q, k, v, out)·s + lse 4·B·H·T; bwd (q, k, v, out, dout read; dq, dk, dv written)·s
//       + lse. Shapes: B 32, H 12, D 64 at T 128 and 512 (the targets), and B 8 at T 512. f32,
//       bf16 (forward and backward on the tensor cores, kernels/cuda/attention_mma.cu; f32 runs the
//       float32-arithmetic kernels of attention.cu). Baseline: PyTorch's scaled_dot_product_attention
//       (torch_kernels_gpu.py). cuDNN's fused attention needs the cuDNN frontend's graph API, which this
//       build does not carry: not measured.
#include <cmath>

#include "bench/kernels_gpu/cases.h"

namespace vb::bench::kernels_gpu {

void add_attention_cases(std::vector<Case>& cases, bool smoke) {
  struct Shape4 {
    int64_t b, h, t, d;
  };
  const std::vector<Shape4> shapes = smoke
                                         ? std::vector<Shape4>{{2, 2, 37, 64}}
                                         : std::vector<Shape4>{{32, 12, 128, 64}, {32, 12, 512, 64}, {8, 12, 512, 64}};
  for (DType t : {DType::Float32, DType::BFloat16}) {
    for (const Shape4& a : shapes) {
      const std::string shape = fmt::format("B{} H{} T{} D{} {}", a.b, a.h, a.t, a.d, short_name(t));
      const Shape qs = {a.b, a.h, a.t, a.d}, ls = {a.b, a.h, a.t};
      const double scale = 1.0 / std::sqrt(double(a.d));
      const double qkvo = elem(t) * double(a.b * a.h * a.t * a.d), lse = 4.0 * double(a.b * a.h * a.t);
      const double fwd_flops = 4.0 * double(a.b * a.h) * double(a.t * a.t) * double(a.d);
      // q, k, v, and the forward's out and lse (computed by the set's own device).
      auto forward_set = [=](Device d) {
        Set s{input(qs, t, d, 31), input(qs, t, d, 32), input(qs, t, d, 33), output(qs, t, d),
              output(ls, DType::Float32, d)};
        backend(d).attention(s[0], s[1], s[2], Tensor(), scale, 0.0, 0, 0, s[3], s[4]);
        return s;
      };
      {
        Case c;
        c.name = "attention fwd " + shape;
        c.dtype = t;
        c.flops = fwd_flops;
        c.bytes = 4 * qkvo + lse;
        c.make = [=](Device d) {
          return Set{input(qs, t, d, 31), input(qs, t, d, 32), input(qs, t, d, 33), output(qs, t, d),
                     output(ls, DType::Float32, d)};
        };
        c.run = [scale](Set& s) { backend_of(s).attention(s[0], s[1], s[2], Tensor(), scale, 0.0, 0, 0, s[3], s[4]); };
        c.outputs = {3, 4};
        cases.push_back(std::move(c));
      }
      {
        Case c;
        c.name = "attention bwd " + shape;
        c.dtype = t;
        c.flops = 2.5 * fwd_flops;
        c.bytes = 8 * qkvo + lse;
        c.make = [=](Device d) {
          Set s = forward_set(d);
          s.push_back(input(qs, t, d, 34));  // dout
          for (int i = 0; i < 3; ++i) s.push_back(output(qs, t, d));
          return s;
        };
        c.run = [scale](Set& s) {
          backend_of(s).attention_backward(s[0], s[1], s[2], Tensor(), s[3], s[5], s[4], scale, 0.0, 0, 0, s[6], s[7],
                                           s[8]);
        };
        c.outputs = {6, 7, 8};
        cases.push_back(std::move(c));
      }
    }
  }
}

}  // namespace vb::bench::kernels_gpu
