// Cases of the NN methods (kernels/cuda/nn_*.cu): softmax, layer norm, embedding, the index ops, cross
// entropy and dropout, forward and backward, at shapes that reach each kernel's forms (rows of 1, rows
// wider than a block, columns that take the 16-byte path and columns that do not), with non-contiguous
// inputs the backend makes contiguous, and the errors a bad index raises on every backend.
#pragma once

namespace vb::backend_cases {

inline void add_nn_cases(std::vector<Case>& cases) {
  // ---- softmax and log_softmax; the backward from the CPU's y, so both sides see the same input ----
  const std::vector<std::pair<int64_t, int64_t>> softmax_shapes = {{7, 33}, {5, 1}, {3, 1000}, {3, 1029}, {2, 2051}};
  for (DType t : kFloats)
    for (auto [rows, cols] : softmax_shapes)
      for (bool log : {false, true}) {
        const char* fn = log ? "log_softmax" : "softmax";
        cases.push_back({"softmax", fmt::format("{} {} ({}, {})", fn, dtype_str(t), rows, cols), [=](Device d) {
                           Tensor y = out({rows, cols}, t, d);
                           backend(d).softmax(on(values({rows, cols}, 11 + rows + cols, t, -6, 6), d), y, log);
                           return Outputs{close("y", y)};
                         }});
        cases.push_back(
            {"softmax_backward", fmt::format("{} backward {} ({}, {})", fn, dtype_str(t), rows, cols), [=](Device d) {
               const Tensor x = values({rows, cols}, 11 + rows + cols, t, -6, 6);
               Tensor y = Tensor::empty({rows, cols}, t);
               cpu_backend().softmax(x, y, log);
               Tensor gx = out({rows, cols}, t, d);
               backend(d).softmax_backward(on(y, d), on(values({rows, cols}, 12 + rows, t), d), gx, log);
               return Outputs{close("gx", gx, 4)};
             }});
      }
  cases.push_back({"softmax", "softmax of a transpose (made contiguous) float32", [](Device d) {
                     const Tensor x = transpose(on(values({33, 7}, 30, DType::Float32, -6, 6), d), 0, 1);
                     Tensor y = out({7, 33}, DType::Float32, d);
                     backend(d).softmax(x, y, false);
                     return Outputs{close("y", y)};
                   }});

  // ---- layer_norm: 96, 768 and 1024 columns take the forward's 16-byte form, 33 and 1029 the element
  //      forms; with and without w, b; the backward from the CPU's mean and rstd ----
  const std::vector<std::pair<int64_t, int64_t>> ln_shapes = {{7, 33},   {1, 1},    {37, 96}, {5, 768},
                                                              {3, 1024}, {3, 1029}, {2, 4500}};
  for (DType t : kFloats)
    for (auto [rows, cols] : ln_shapes)
      for (bool affine : {true, false}) {
        const std::string shape = fmt::format("{} ({}, {}){}", dtype_str(t), rows, cols, affine ? "" : " no w, b");
        auto inputs = [=] {
          struct {
            Tensor x, w, b;
          } in{values({rows, cols}, 21 + rows + cols, t, -3, 5),
               affine ? values({cols}, 22 + cols, t, 0.5, 1.5) : Tensor(),
               affine ? values({cols}, 23 + cols, t) : Tensor()};
          return in;
        };
        cases.push_back({"layer_norm", "layer_norm " + shape, [=](Device d) {
                           const auto in = inputs();
                           Tensor y = out({rows, cols}, t, d), mean = out({rows}, DType::Float32, d),
                                  rstd = out({rows}, DType::Float32, d);
                           backend(d).layer_norm(on(in.x, d), on(in.w, d), on(in.b, d), 1e-5, y, mean, rstd);
                           return Outputs{close("y", y, 4), {"mean", mean, 1e-6, 1e-5}, {"rstd", rstd, 1e-6, 1e-5}};
                         }});
        cases.push_back(
            {"layer_norm_backward", "layer_norm backward " + shape, [=](Device d) {
               const auto in = inputs();
               Tensor y = Tensor::empty({rows, cols}, t), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
               cpu_backend().layer_norm(in.x, in.w, in.b, 1e-5, y, mean, rstd);
               Tensor gx = out({rows, cols}, t, d), gw = affine ? out({cols}, t, d) : Tensor(),
                      gb = affine ? out({cols}, t, d) : Tensor();
               backend(d).layer_norm_backward(on(values({rows, cols}, 24 + rows, t), d), on(in.x, d), on(in.w, d),
                                              on(mean, d), on(rstd, d), gx, gw, gb);
               // gw, gb sum over rows: their error grows with the row count.
               const double rows_scale = 4 * std::sqrt(double(rows));
               const Tolerance tol = tolerance(t);
               return Outputs{{"gx", gx, tol.atol * 8, tol.rtol * 2},
                              {"gw", gw, tol.atol * rows_scale, tol.rtol},
                              {"gb", gb, tol.atol * rows_scale, tol.rtol}};
             }});
      }

  // ---- cross_entropy: ignore_index and label smoothing; the backward from the CPU's lse ----
  const std::vector<std::pair<int64_t, int64_t>> ce_shapes = {{7, 33}, {9, 2}, {4, 1000}, {3, 1029}};
  for (DType t : kFloats)
    for (auto [rows, cols] : ce_shapes)
      for (double smoothing : {0.0, 0.1}) {
        const std::string shape = fmt::format("{} ({}, {}) smoothing {}", dtype_str(t), rows, cols, smoothing);
        auto target = [=] {
          Tensor tg = contiguous(indices({rows}, 0, cols, 32 + rows));
          tg.data<int64_t>()[1] = -100;  // ignored
          return tg;
        };
        cases.push_back({"cross_entropy", "cross_entropy " + shape, [=](Device d) {
                           Tensor loss = out({rows}, t, d), lse = out({rows}, DType::Float32, d);
                           backend(d).cross_entropy(on(values({rows, cols}, 31 + rows + cols, t, -5, 5), d),
                                                    on(target(), d), -100, smoothing, loss, lse);
                           return Outputs{close("loss", loss, 4), {"lse", lse, 1e-5, 1e-5}};
                         }});
        cases.push_back({"cross_entropy_backward", "cross_entropy backward " + shape, [=](Device d) {
                           const Tensor logits = values({rows, cols}, 31 + rows + cols, t, -5, 5);
                           Tensor loss = Tensor::empty({rows}, t), lse = Tensor::empty({rows});
                           cpu_backend().cross_entropy(logits, target(), -100, smoothing, loss, lse);
                           Tensor glogits = out({rows, cols}, t, d);
                           backend(d).cross_entropy_backward(on(logits, d), on(target(), d), on(lse, d),
                                                             on(values({rows}, 33, t, 0.5, 2), d), -100, smoothing,
                                                             glogits);
                           return Outputs{close("glogits", glogits)};
                         }});
      }
  cases.push_back(
      {"cross_entropy_backward", "cross_entropy backward of a mean (gradient stride 0) float32", [](Device d) {
         const Tensor logits = values({5, 17}, 41, DType::Float32), target = indices({5}, 0, 17, 42);
         Tensor loss = Tensor::empty({5}), lse = Tensor::empty({5});
         cpu_backend().cross_entropy(logits, target, -100, 0.0, loss, lse);
         const Tensor g = on(Tensor::from_vector(std::vector<float>{0.2f}, {1}), d);
         Tensor glogits = out({5, 17}, DType::Float32, d);
         backend(d).cross_entropy_backward(on(logits, d), on(target, d), on(lse, d), g.as_strided({5}, {0}, 0), -100,
                                           0.0, glogits);
         return Outputs{close("glogits", glogits)};
       }});
  cases.push_back(
      {"cross_entropy", "cross_entropy: a target out of range (error)",
       [](Device d) {
         Tensor target = contiguous(indices({5}, 0, 17, 42));
         target.data<int64_t>()[3] = 17;
         Tensor loss = out({5}, DType::Float32, d), lse = out({5}, DType::Float32, d);
         backend(d).cross_entropy(on(values({5, 17}, 41, DType::Float32), d), on(target, d), -100, 0.0, loss, lse);
         return Outputs{};
       },
       "target 17 of row 3"});

  // ---- embedding: int32 and int64 ids with repeats; the backward sums in index order (bit for bit) ----
  for (DType t : kFloats)
    for (DType id_dtype : {DType::Int64, DType::Int32}) {
      const std::string what = fmt::format("{} ids {}", dtype_str(t), dtype_str(id_dtype));
      cases.push_back(
          {"embedding", "embedding " + what, [=](Device d) {
             Tensor o = out({61, 37}, t, d);
             backend(d).embedding(on(values({23, 37}, 51, t), d), on(indices({61}, 0, 23, 52, id_dtype), d), o);
             return Outputs{exact("out", o)};
           }});
      for (int64_t padding_idx : {int64_t(-1), int64_t(4)})
        cases.push_back(
            {"embedding_backward", fmt::format("embedding backward {} padding {}", what, padding_idx), [=](Device d) {
               Tensor gw = out({23, 37}, t, d);
               backend(d).embedding_backward(on(values({61, 37}, 53, t), d), on(indices({61}, 0, 23, 52, id_dtype), d),
                                             padding_idx, gw);
               return Outputs{exact("gweight", gw)};
             }});
    }
  const Tensor bad_ids = Tensor::from_vector(std::vector<int64_t>{1, 4, 7, 0}, {4});
  cases.push_back({"embedding", "embedding: an id out of range (error)",
                   [bad_ids](Device d) {
                     Tensor o = out({4, 3}, DType::Float32, d);
                     backend(d).embedding(on(values({5, 3}, 61, DType::Float32), d), on(bad_ids, d), o);
                     return Outputs{};
                   },
                   "id 7 (at position 2) is out of range [0, 5)"});
  cases.push_back({"embedding_backward", "embedding backward: an id out of range (error)",
                   [bad_ids](Device d) {
                     Tensor gw = out({5, 3}, DType::Float32, d);
                     backend(d).embedding_backward(on(values({4, 3}, 62, DType::Float32), d), on(bad_ids, d), -1, gw);
                     return Outputs{};
                   },
                   "id 7 (at position 2)"});

  cases.push_back({"embedding", "embedding: float ids (error)",
                   [](Device d) {
                     Tensor o = out({4, 3}, DType::Float32, d);
                     backend(d).embedding(on(values({5, 3}, 61, DType::Float32), d),
                                          on(values({4}, 63, DType::Float32, 0, 4), d), o);
                     return Outputs{};
                   },
                   "indices must be int32 or int64, got float32"});

  // ---- index_select, index_add, gather, scatter_add: x (3, 7, 5), indices with repeats; copies move
  //      bytes and the sums add in index order with one rounding: bit for bit ----
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int64}) {
    auto vals = [t](const Shape& s, uint64_t seed) {
      return t == DType::Int64 ? indices(s, -50, 50, seed) : values(s, seed, t);
    };
    cases.push_back({"index_select", "index_select " + dtype_str(t), [=](Device d) {
                       Tensor o = out({3, 9, 5}, t, d);
                       backend(d).index_select(on(vals({3, 7, 5}, 71), d), 1, on(indices({9}, 0, 7, 72), d), o);
                       return Outputs{exact("out", o)};
                     }});
    cases.push_back(
        {"index_select", "index_select of a transpose " + dtype_str(t), [=](Device d) {
           Tensor o = out({5, 9, 3}, t, d);
           backend(d).index_select(transpose(on(vals({3, 7, 5}, 71), d), 0, 2), 1, on(indices({9}, 0, 7, 72), d), o);
           return Outputs{exact("out", o)};
         }});
    cases.push_back({"index_add", "index_add " + dtype_str(t), [=](Device d) {
                       Tensor o = on(vals({3, 7, 5}, 71), d);
                       backend(d).index_add(o, 1, on(indices({9}, 0, 7, 72), d), on(vals({3, 9, 5}, 73), d));
                       return Outputs{exact("out", o)};
                     }});
    cases.push_back({"gather", "gather " + dtype_str(t), [=](Device d) {
                       Tensor o = out({3, 4, 6}, t, d);
                       backend(d).gather(on(vals({3, 7, 5}, 71), d), 2, on(indices({3, 4, 6}, 0, 5, 74), d), o);
                       return Outputs{exact("out", o)};
                     }});
    cases.push_back({"scatter_add", "scatter_add " + dtype_str(t), [=](Device d) {
                       Tensor o = on(vals({3, 7, 5}, 71), d);
                       backend(d).scatter_add(o, 2, on(indices({3, 4, 6}, 0, 5, 74), d), on(vals({3, 4, 6}, 75), d));
                       return Outputs{exact("out", o)};
                     }});
  }
  const Tensor bad_index = Tensor::from_vector(std::vector<int64_t>{0, 3, -1}, {3});
  cases.push_back({"index_select", "index_select: an index out of range (error)",
                   [bad_index](Device d) {
                     Tensor o = out({3, 3}, DType::Float32, d);
                     backend(d).index_select(on(values({4, 3}, 81, DType::Float32), d), 0, on(bad_index, d), o);
                     return Outputs{};
                   },
                   "index -1 (at position 2) is out of range [0, 4)"});
  cases.push_back({"index_add", "index_add: an index out of range (error)",
                   [bad_index](Device d) {
                     Tensor o = on(values({4, 3}, 81, DType::Float32), d);
                     backend(d).index_add(o, 0, on(bad_index, d), on(values({3, 3}, 82, DType::Float32), d));
                     return Outputs{};
                   },
                   "out of range"});

  // ---- dropout: the CPU's mask, bit for bit (inputs never 0, so the mask shows) ----
  for (DType t : kFloats)
    for (double p : {0.1, 0.5, 1.0})
      cases.push_back({"dropout", fmt::format("dropout p={} {}", p, dtype_str(t)), [=](Device d) {
                         Tensor o = out({4099}, t, d);
                         backend(d).dropout(on(values({4099}, 91, t, 0.5, 2), d), p, 1234, 777, o);
                         return Outputs{exact("out", o)};
                       }});
}

}  // namespace vb::backend_cases
