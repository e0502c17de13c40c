// Cases of the attention methods (kernels/cuda/attention.cu for float32, attention_mma.cu for the half
// types), forward and backward against the CPU backend: a padding mask broadcast with stride-0 dims, an
// additive mask with a fully masked row, dropout (the CPU's mask), sizes odd against the tiles. The half
// types are held to the CPU (float32 arithmetic on the rounded inputs) within a few roundings of the
// probabilities; the FlashAttention error criterion against float64, and the kernels' own edges, are
// tests/support/attention_cases.h.
#pragma once

namespace vb::backend_cases {

inline void add_attention_cases(std::vector<Case>& cases) {
  struct Shape4 {
    int64_t B, H, Tq, Tk, D;
    int mask;  // 0 none, 1 padding (B, 1, 1, Tk) broadcast, 2 additive (B, H, Tq, Tk) with a masked row
    double dropout;
  };
  const std::vector<Shape4> shapes = {
      {2, 2, 7, 13, 16, 1, 0.0}, {1, 2, 37, 45, 24, 2, 0.0}, {1, 2, 33, 40, 40, 0, 0.2}};
  for (DType t : kFloats)
    for (const Shape4& s : shapes) {
      const std::string what = fmt::format("{} B{} H{} Tq{} Tk{} D{}{}{}", dtype_str(t), s.B, s.H, s.Tq, s.Tk, s.D,
                                           s.mask == 1   ? " padding mask"
                                           : s.mask == 2 ? " additive mask"
                                                         : "",
                                           s.dropout > 0 ? " dropout" : "");
      // The inputs, on the CPU: q, k, v in t; the mask float32 (expanded when it is a padding mask).
      auto inputs = [=](Device d) {
        std::vector<Tensor> in = {on(values({s.B, s.H, s.Tq, s.D}, 60, t), d),
                                  on(values({s.B, s.H, s.Tk, s.D}, 61, t), d),
                                  on(values({s.B, s.H, s.Tk, s.D}, 62, t), d), Tensor()};
        if (s.mask == 1) {
          std::vector<float> m(size_t(s.B * s.Tk), 0.0f);
          m[size_t(s.B * s.Tk - 1)] = m[size_t(s.B * s.Tk - 2)] = -1e9f;  // the last sequence: two padded keys
          in[3] = expand(on(Tensor::from_vector(m, {s.B, 1, 1, s.Tk}), d), {s.B, s.H, s.Tq, s.Tk});
        } else if (s.mask == 2) {
          Tensor m = contiguous(values({s.B, s.H, s.Tq, s.Tk}, 63, DType::Float32, -3, 1));
          float* p = m.data<float>();
          for (int64_t j = 0; j < s.Tk; ++j) p[3 * s.Tk + j] = -INFINITY;  // row 3 of the first head: all masked
          in[3] = on(m, d);
        }
        return in;
      };
      const double scale = 1.0 / std::sqrt(double(s.D));
      const Tolerance half = tolerance(t);
      // float32: the kernel's online softmax against the CPU's, a few ulp; halves: probabilities rounded
      // to the low dtype before P·V.
      const Tolerance o = t == DType::Float32 ? Tolerance{1e-5, 1e-5} : Tolerance{4 * half.atol, 4 * half.rtol};
      const Tolerance g = t == DType::Float32 ? Tolerance{1e-5, 1e-4} : Tolerance{8 * half.atol, 8 * half.rtol};
      cases.push_back({"attention", "attention " + what, [=](Device d) {
                         const std::vector<Tensor> in = inputs(d);
                         Tensor y = out({s.B, s.H, s.Tq, s.D}, t, d), lse = out({s.B, s.H, s.Tq}, DType::Float32, d);
                         backend(d).attention(in[0], in[1], in[2], in[3], scale, s.dropout, 1234, 99, y, lse);
                         return Outputs{{"out", y, o.atol, o.rtol}, {"lse", lse, 1e-4, 1e-5}};
                       }});
      cases.push_back(
          {"attention_backward", "attention backward " + what, [=](Device d) {
             // out and lse from the CPU, so that both backward passes see the same inputs.
             const std::vector<Tensor> in = inputs(Device());
             Tensor y = Tensor::empty({s.B, s.H, s.Tq, s.D}, t), lse = Tensor::empty({s.B, s.H, s.Tq});
             cpu_backend().attention(in[0], in[1], in[2], in[3], scale, s.dropout, 1234, 99, y, lse);
             Tensor gq = out(in[0].shape(), t, d), gk = out(in[1].shape(), t, d), gv = out(in[2].shape(), t, d);
             backend(d).attention_backward(on(in[0], d), on(in[1], d), on(in[2], d), on(in[3], d), on(y, d),
                                           on(values(y.shape(), 64, t), d), on(lse, d), scale, s.dropout, 1234, 99, gq,
                                           gk, gv);
             return Outputs{{"gq", gq, g.atol, g.rtol}, {"gk", gk, g.atol, g.rtol}, {"gv", gv, g.atol, g.rtol}};
           }});
    }
}

}  // namespace vb::backend_cases
