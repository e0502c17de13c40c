// Cases of the convolution, pooling and batch-norm methods (kernels/cuda/conv.cu, conv_mma.cu, pool.cu,
// batch_norm.cu), channels-last, at shapes odd against the kernels' tiles. The backward passes take the
// CPU's forward results (indices, saved statistics), so each compares one kernel. The kernels' own edge
// cases (every tile remainder, the launchers' checks) are tests/support/conv_kernel_cases.h.
#pragma once

namespace vb::backend_cases {

inline void add_conv_cases(std::vector<Case>& cases) {
  // ---- conv2d and its two gradients ----
  struct Conv {
    const char* name;
    Shape x, w;  // (N, H, W, C), (O, KH, KW, C/groups)
    Conv2dParams p;
  };
  const std::vector<Conv> convs = {
      {"3x3 stride (2, 1) pad 1", {2, 7, 6, 5}, {4, 3, 3, 5}, {2, 1, 1, 1, 1, 1, 1}},
      {"1x1", {2, 5, 3, 8}, {6, 1, 1, 8}, {1, 1, 0, 0, 1, 1, 1}},
      {"3x2 dilation 2, 2 groups", {1, 8, 7, 6}, {4, 3, 2, 3}, {1, 2, 1, 0, 2, 2, 2}},
  };
  auto out_size = [](int64_t in, int64_t k, int s, int pad, int dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / s + 1;
  };
  for (DType t : kFloats)
    for (const Conv& c : convs) {
      const int64_t oh = out_size(c.x[1], c.w[1], c.p.stride_h, c.p.pad_h, c.p.dilation_h);
      const int64_t ow = out_size(c.x[2], c.w[2], c.p.stride_w, c.p.pad_w, c.p.dilation_w);
      const Shape y_shape = {c.x[0], oh, ow, c.w[0]};
      // Sums of up to 45 products in another order (tiles, tensor cores): 1e-4 for float32.
      auto result = [t](const char* name, Tensor v) {
        return t == DType::Float32 ? Output{name, std::move(v), 1e-4, 1e-4} : close(name, std::move(v), 2);
      };
      const std::string what = fmt::format("{} {}", c.name, dtype_str(t));
      cases.push_back({"conv2d", "conv2d " + what, [=](Device d) {
                         Tensor y = out(y_shape, t, d);
                         backend(d).conv2d(on(values(c.x, 35, t), d), on(values(c.w, 36, t, -1, 1), d),
                                           on(values({c.w[0]}, 37, t), d), c.p, y);
                         return Outputs{result("y", y)};
                       }});
      cases.push_back({"conv2d_backward_input", "conv2d backward input " + what, [=](Device d) {
                         Tensor gx = out(c.x, t, d);
                         backend(d).conv2d_backward_input(on(values(y_shape, 38, t), d),
                                                          on(values(c.w, 36, t, -1, 1), d), c.p, gx);
                         return Outputs{result("gx", gx)};
                       }});
      cases.push_back({"conv2d_backward_weight", "conv2d backward weight " + what, [=](Device d) {
                         Tensor gw = out(c.w, t, d);
                         backend(d).conv2d_backward_weight(on(values(y_shape, 38, t), d), on(values(c.x, 35, t), d),
                                                           c.p, gw);
                         return Outputs{result("gw", gw)};
                       }});
    }

  // ---- pooling: 3x3 windows, stride 2, pad 1 over (2, 7, 6, 5) → (2, 4, 3, 5) ----
  Pool2dParams pool;
  pool.kernel_h = pool.kernel_w = 3;
  pool.stride_h = pool.stride_w = 2;
  pool.pad_h = pool.pad_w = 1;
  const Shape px = {2, 7, 6, 5}, py = {2, 4, 3, 5};
  for (DType t : kFloats) {
    const std::string dt = dtype_str(t);
    cases.push_back({"max_pool2d", "max_pool2d " + dt, [=](Device d) {
                       Tensor y = out(py, t, d), idx = out(py, DType::Int64, d);
                       backend(d).max_pool2d(on(values(px, 40, t), d), pool, y, idx);
                       return Outputs{exact("y", y), exact("indices", idx)};
                     }});
    cases.push_back({"max_pool2d_backward", "max_pool2d backward " + dt, [=](Device d) {
                       Tensor y = Tensor::empty(py, t), idx = Tensor::empty(py, DType::Int64);
                       cpu_backend().max_pool2d(values(px, 40, t), pool, y, idx);
                       Tensor gx = out(px, t, d);
                       backend(d).max_pool2d_backward(on(values(py, 41, t), d), on(idx, d), gx);
                       return Outputs{close("gx", gx)};
                     }});
    for (bool include_pad : {true, false}) {
      Pool2dParams avg = pool;
      avg.count_include_pad = include_pad;
      const std::string variant = include_pad ? " counting the padding " : " ";
      cases.push_back({"avg_pool2d", "avg_pool2d" + variant + dt, [=](Device d) {
                         Tensor y = out(py, t, d);
                         backend(d).avg_pool2d(on(values(px, 42, t), d), avg, y);
                         return Outputs{close("y", y)};
                       }});
      cases.push_back({"avg_pool2d_backward", "avg_pool2d backward" + variant + dt, [=](Device d) {
                         Tensor gx = out(px, t, d);
                         backend(d).avg_pool2d_backward(on(values(py, 43, t), d), avg, gx);
                         return Outputs{close("gx", gx)};
                       }});
    }
    // (2, 7, 6, 5) → (2, 3, 4, 5): windows of unequal sizes that overlap.
    cases.push_back({"adaptive_avg_pool2d", "adaptive_avg_pool2d " + dt, [=](Device d) {
                       Tensor y = out({2, 3, 4, 5}, t, d);
                       backend(d).adaptive_avg_pool2d(on(values(px, 44, t), d), y);
                       return Outputs{close("y", y)};
                     }});
    cases.push_back({"adaptive_avg_pool2d_backward", "adaptive_avg_pool2d backward " + dt, [=](Device d) {
                       Tensor gx = out(px, t, d);
                       backend(d).adaptive_avg_pool2d_backward(on(values({2, 3, 4, 5}, 45, t), d), gx);
                       return Outputs{close("gx", gx)};
                     }});
  }

  // ---- batch_norm over x (84, 5) (an NHWC tensor flattened); parameters and statistics float32 ----
  for (DType t : kFloats)
    for (bool training : {true, false}) {
      const std::string what = fmt::format("{} {}", training ? "training" : "eval", dtype_str(t));
      cases.push_back(
          {"batch_norm", "batch_norm " + what, [=](Device d) {
             Tensor rm = on(values({5}, 50, DType::Float32, -0.5, 0.5), d);
             Tensor rv = on(values({5}, 51, DType::Float32, 0.5, 2), d);
             Tensor y = out({84, 5}, t, d), sm = out({5}, DType::Float32, d), si = out({5}, DType::Float32, d);
             backend(d).batch_norm(on(values({84, 5}, 52, t, -3, 5), d), on(values({5}, 53, DType::Float32), d),
                                   on(values({5}, 54, DType::Float32), d), rm, rv, training, 0.1, 1e-5, y, sm, si);
             Outputs o{close("y", y, 4), {"running_mean", rm, 1e-6, 1e-5}, {"running_var", rv, 1e-6, 1e-5}};
             if (training) o.insert(o.end(), {{"save_mean", sm, 1e-6, 1e-5}, {"save_invstd", si, 1e-6, 1e-5}});
             return o;
           }});
      if (!training) continue;
      cases.push_back(
          {"batch_norm_backward", "batch_norm backward " + what, [=](Device d) {
             const Tensor x = values({84, 5}, 52, t, -3, 5), w = values({5}, 53, DType::Float32);
             Tensor rm = values({5}, 50, DType::Float32), rv = values({5}, 51, DType::Float32, 0.5, 2);
             Tensor y = Tensor::empty({84, 5}, t), sm = Tensor::empty({5}), si = Tensor::empty({5});
             cpu_backend().batch_norm(x, w, values({5}, 54, DType::Float32), rm, rv, true, 0.1, 1e-5, y, sm, si);
             Tensor gx = out({84, 5}, t, d), gw = out({5}, DType::Float32, d), gb = out({5}, DType::Float32, d);
             backend(d).batch_norm_backward(on(values({84, 5}, 55, t), d), on(x, d), on(w, d), on(sm, d), on(si, d),
                                            true, gx, gw, gb);
             // gw, gb sum over 84 rows.
             return Outputs{close("gx", gx, 8), {"gw", gw, 1e-4, 1e-4}, {"gb", gb, 1e-4, 1e-4}};
           }});
    }
}

}  // namespace vb::backend_cases
