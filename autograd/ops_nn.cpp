// Neural-network functions: softmax, layer norm, embedding, losses, dropout, index ops, attention.
// Each op runs its backend kernel on raw (detached) tensors and records a backward that calls the
// matching backward kernel; binary_cross_entropy_with_logits is a composite of elementwise ops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/op_utils.h"

namespace vb {

using detail::describe;

namespace {

// A contiguous tensor with t's values that records nothing (the kernels' input; the op records itself).
Tensor raw_contiguous(const Tensor& t) { return contiguous(detach(t)); }

// An uninitialised tensor of t's shape whose memory runs through t's dims in the order of t's strides, largest
// first (ties in dim order), like PyTorch's empty_like with preserve_format: for split_heads' (B, H, T, D) view
// of (B, T, H·D) rows, a (B, T, H, D) block viewed as (B, H, T, D).
Tensor empty_in_layout(const Tensor& t, DType dtype) {
  const int n = t.dim();
  std::vector<int> order(size_t(n), 0);
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return t.stride(a) > t.stride(b); });
  Shape memory_shape, strides(size_t(n), 0);
  for (int i : order) memory_shape.push_back(t.size(i));
  int64_t step = 1;
  for (int j = n - 1; j >= 0; --j) {
    strides[size_t(order[size_t(j)])] = step;
    step *= t.size(order[size_t(j)]);
  }
  const Tensor memory = Tensor::empty(memory_shape, dtype, t.device());
  return memory.as_strided(t.shape(), strides, memory.offset());
}

// t's contiguous data viewed as `shape`, recording nothing.
Tensor raw_view(const Tensor& t, const Shape& shape) {
  Tensor c = raw_contiguous(t);
  return c.as_strided(shape, contiguous_strides(shape), c.offset());
}

// Statistics (mean, rstd, lse) are float64 for float64 data and float32 otherwise.
DType stat_dtype(DType t) { return t == DType::Float64 ? DType::Float64 : DType::Float32; }

// softmax or log_softmax over the last dim of x.
Tensor softmax_last(const Tensor& x, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor y = Tensor::empty({rows, cols}, x.dtype(), x.device());
  backend(x.device()).softmax(raw_view(x, {rows, cols}), y, log);
  const Tensor saved = detach(y);  // the output; a detached handle avoids a cycle through the node
  Tensor out = y.as_strided(x.shape(), contiguous_strides(x.shape()), 0);
  return record(out, name, {x}, [saved, rows, cols, log](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty({rows, cols}, g.dtype(), g.device());
    backend(g.device()).softmax_backward(saved, raw_view(g, {rows, cols}), gx, log);
    return {gx.as_strided(g.shape(), contiguous_strides(g.shape()), 0)};
  });
}

Tensor softmax_dim(const Tensor& x, int dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_floating(name, x);
  if (x.dim() == 0) return softmax_last(x, log);
  const int d = x.wrap_dim(dim, name);
  if (d == x.dim() - 1) return softmax_last(x, log);
  // Move dim last (the kernel reduces contiguous rows), then move it back.
  return transpose(softmax_last(transpose(x, d, -1), log), d, -1);
}

// The number of elements of target that are not ignore_index (read on the host).
int64_t count_not_ignored(const Tensor& target, int64_t ignore_index) {
  const Tensor t = contiguous(to(target, Device()));
  const int64_t* p = t.data<int64_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += p[i] != ignore_index;
  return n;
}

Tensor reduce_loss(const Tensor& loss, Reduction reduction, double count) {
  switch (reduction) {
    case Reduction::None: return loss;
    case Reduction::Sum: return sum(loss);
    case Reduction::Mean: return mul(sum(loss), 1.0 / count);
  }
  return loss;
}

}  // namespace

// ---------------------------------------------------------------- softmax

Tensor softmax(const Tensor& x, int dim) { return softmax_dim(x, dim, false); }
Tensor log_softmax(const Tensor& x, int dim) { return softmax_dim(x, dim, true); }

// ---------------------------------------------------------------- layer norm

Tensor layer_norm(const Tensor& x, int normalized_dims, const Tensor& w, const Tensor& b, double eps) {
  detail::check_floating("layer_norm", x);
  detail::check_same_device("layer_norm", {x, w, b});
  detail::check_same_dtype("layer_norm", {x, w, b});
  VB_CHECK(normalized_dims >= 1 && normalized_dims <= x.dim(),
           "layer_norm: normalized_dims must be in [1, {}] for input {}, got {}", x.dim(), describe(x),
           normalized_dims);
  const Shape norm_shape(x.shape().end() - normalized_dims, x.shape().end());
  for (const Tensor* p : {&w, &b}) {
    VB_CHECK(!p->defined() || p->shape() == norm_shape, "layer_norm: {} has shape {}, expected {} (the last {} dims "
             "of input {})", p == &w ? "weight" : "bias", shape_str(p->shape()), shape_str(norm_shape),
             normalized_dims, describe(x));
  }
  const int64_t cols = shape_numel(norm_shape);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const DType sd = stat_dtype(x.dtype());
  Tensor y = Tensor::empty({rows, cols}, x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, sd, x.device()), rstd = Tensor::empty({rows}, sd, x.device());
  const Tensor xr = raw_view(x, {rows, cols});
  const Tensor wr = w.defined() ? raw_view(w, {cols}) : Tensor(), br = b.defined() ? raw_view(b, {cols}) : Tensor();
  backend(x.device()).layer_norm(xr, wr, br, eps, y, mean, rstd);
  Tensor out = y.as_strided(x.shape(), contiguous_strides(x.shape()), 0);
  const Shape x_shape = x.shape();
  return record(out, "layer_norm", {x, w, b},
                [=](const Node& self, const Tensor& g) -> std::vector<Tensor> {
                  Tensor gx = Tensor::empty({rows, cols}, g.dtype(), g.device());
                  Tensor gw = self.needs(1) ? Tensor::empty({cols}, g.dtype(), g.device()) : Tensor();
                  Tensor gb = self.needs(2) ? Tensor::empty({cols}, g.dtype(), g.device()) : Tensor();
                  backend(g.device()).layer_norm_backward(raw_view(g, {rows, cols}), xr, wr, mean, rstd, gx, gw, gb);
                  return {gx.as_strided(x_shape, contiguous_strides(x_shape), 0),
                          gw.defined() ? gw.as_strided(norm_shape, contiguous_strides(norm_shape), 0) : Tensor(),
                          gb.defined() ? gb.as_strided(norm_shape, contiguous_strides(norm_shape), 0) : Tensor()};
                });
}

// ---------------------------------------------------------------- embedding

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
  detail::check_floating("embedding", weight, "weight");
  detail::check_defined("embedding", ids, "ids");
  detail::check_same_device("embedding", {weight, ids});
  VB_CHECK(weight.dim() == 2, "embedding: weight must be (V, H), got {}", describe(weight));
  VB_CHECK(ids.dtype() == DType::Int64 || ids.dtype() == DType::Int32,
           "embedding: ids must be int32 or int64, got {}", describe(ids));
  const int64_t vocab = weight.size(0), hidden = weight.size(1);
  VB_CHECK(padding_idx == -1 || (padding_idx >= 0 && padding_idx < vocab),
           "embedding: padding_idx {} is out of range [0, {}) (V = {}); -1 means none", padding_idx, vocab, vocab);
  const int64_t n = ids.numel();
  Tensor out = Tensor::empty({n, hidden}, weight.dtype(), weight.device());
  const Tensor flat_ids = raw_view(ids, {n});
  backend(weight.device()).embedding(detach(weight), flat_ids, out);
  Shape out_shape = ids.shape();
  out_shape.push_back(hidden);
  out = out.as_strided(out_shape, contiguous_strides(out_shape), 0);
  return record(out, "embedding", {weight}, [=](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    // A weight that several passes look up (the text encoder's, once per objective): the later passes add
    // their rows into the gradient sum (Node::into), in index order, instead of each writing a dense (V, H)
    // gradient to be added.
    if (Tensor sum = detail::sum_into(self, 0, g.dtype(), {vocab, hidden}); sum.defined()) {
      const Tensor ids64 = flat_ids.dtype() == DType::Int64 ? flat_ids : to(flat_ids, DType::Int64);
      Tensor rows = raw_contiguous(raw_view(g, {n, hidden}));
      if (padding_idx >= 0) rows = masked_fill(rows, unsqueeze(eq(ids64, double(padding_idx)), 1), 0.0);
      backend(g.device()).index_add(sum, 0, ids64, rows);
      return {Tensor()};
    }
    Tensor gw = Tensor::empty({vocab, hidden}, g.dtype(), g.device());
    backend(g.device()).embedding_backward(raw_view(g, {n, hidden}), flat_ids, padding_idx, gw);
    return {gw};
  });
}

// ---------------------------------------------------------------- losses

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     Reduction reduction) {
  detail::check_floating("cross_entropy", logits, "logits");
  detail::check_defined("cross_entropy", target, "target");
  detail::check_same_device("cross_entropy", {logits, target});
  VB_CHECK(logits.dim() >= 1, "cross_entropy: logits must be (…, C), got a scalar");
  VB_CHECK(target.dtype() == DType::Int64, "cross_entropy: target must hold int64 class indices, got {}",
           describe(target));
  const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  VB_CHECK(target.shape() == lead, "cross_entropy: target has shape {}, expected {} (logits {} without the class "
           "dim)", shape_str(target.shape()), shape_str(lead), shape_str(logits.shape()));
  VB_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], got {}",
           label_smoothing);
  const int64_t classes = logits.size(-1);
  VB_CHECK(classes >= 1, "cross_entropy: logits {} have no classes", shape_str(logits.shape()));
  const int64_t rows = shape_numel(lead);
  const Tensor x = raw_view(logits, {rows, classes}), t = raw_view(target, {rows});
  Tensor loss = Tensor::empty({rows}, logits.dtype(), logits.device());
  Tensor lse = Tensor::empty({rows}, stat_dtype(logits.dtype()), logits.device());
  backend(logits.device()).cross_entropy(x, t, ignore_index, label_smoothing, loss, lse);
  const Shape logits_shape = logits.shape();
  Tensor per_row = record(loss, "cross_entropy", {logits},
                          [=](const Node&, const Tensor& g) -> std::vector<Tensor> {
                            Tensor gx = Tensor::empty({rows, classes}, g.dtype(), g.device());
                            backend(g.device()).cross_entropy_backward(x, t, lse, g, ignore_index, label_smoothing,
                                                                       gx);
                            return {gx.as_strided(logits_shape, contiguous_strides(logits_shape), 0)};
                          });
  if (reduction == Reduction::None) return reshape(per_row, lead);
  // Mean divides by the number of non-ignored targets; when every target is ignored that is 0/0 = NaN,
  // as in PyTorch.
  const double count = reduction == Reduction::Mean ? double(count_not_ignored(target, ignore_index)) : 1.0;
  if (reduction == Reduction::Mean && count == 0)
    return mul(sum(per_row), std::numeric_limits<double>::quiet_NaN());
  return reduce_loss(per_row, reduction, count);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction,
                                        const Tensor& pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  detail::check_floating(op, logits, "logits");
  detail::check_floating(op, target, "target");
  detail::check_same_device(op, {logits, target, pos_weight});
  detail::check_same_dtype(op, {logits, target, pos_weight});
  VB_CHECK(target.shape() == logits.shape(), "{}: target has shape {}, expected the logits' shape {}", op,
           shape_str(target.shape()), shape_str(logits.shape()));
  // log(1 + exp(−|x|)) + max(−x, 0) = log(1 + exp(−x)), computed without overflow.
  const Tensor log1p_exp = log1p(exp(neg(abs(logits))));
  Tensor loss;
  if (pos_weight.defined()) {
    broadcast_shapes(pos_weight.shape(), logits.shape(), op);
    // PyTorch: (1 − y)·x + (1 + (pw − 1)·y)·(log(1 + exp(−|x|)) + max(−x, 0))
    const Tensor weight = add(mul(add(pos_weight, -1.0), target), 1.0);
    loss = add(mul(rsub(target, 1.0), logits), mul(weight, add(log1p_exp, relu(neg(logits)))));
  } else {
    // max(x, 0) − x·y + log(1 + exp(−|x|))
    loss = add(sub(relu(logits), mul(logits, target)), log1p_exp);
  }
  switch (reduction) {
    case Reduction::None: return loss;
    case Reduction::Sum: return sum(loss);
    case Reduction::Mean: return mean(loss);
  }
  return loss;
}

// ---------------------------------------------------------------- dropout

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  detail::check_floating("dropout", x);
  VB_CHECK(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got {}", p);
  if (!training || p == 0) return x;
  Generator& g = gen ? *gen : default_generator();
  // Rows of a batch (the leading dim): the draw each row would get if one process held the whole batch.
  const uint64_t seed = g.seed, offset = g.advance_rows(uint64_t(x.numel()));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend(x.device()).dropout(detach(x), p, seed, offset, out);
  // The backward is the same mask and scale applied to the gradient: the same call with the same counters.
  return record(out, "dropout", {x}, [=](const Node&, const Tensor& grad) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty(grad.shape(), grad.dtype(), grad.device());
    backend(grad.device()).dropout(grad, p, seed, offset, gx);
    return {gx};
  });
}

// ---------------------------------------------------------------- index ops

Tensor index_select(const Tensor& x, int dim, const Tensor& index) {
  detail::check_defined("index_select", x);
  detail::check_defined("index_select", index, "index");
  detail::check_same_device("index_select", {x, index});
  VB_CHECK(x.dim() >= 1, "index_select: input must have at least one dim, got {}", describe(x));
  VB_CHECK(index.dim() == 1 && index.dtype() == DType::Int64, "index_select: index must be 1-d int64, got {}",
           describe(index));
  const int d = x.wrap_dim(dim, "index_select");
  Shape shape = x.shape();
  shape[size_t(d)] = index.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const Tensor idx = raw_contiguous(index);
  backend(x.device()).index_select(detach(x), d, idx, out);
  const Shape x_shape = x.shape();
  return record(out, "index_select", {x}, [=](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    // As the embedding's: into the sum of x's other gradients when there is one (Node::into).
    if (Tensor sum = detail::sum_into(self, 0, g.dtype(), x_shape); sum.defined()) {
      backend(g.device()).index_add(sum, d, idx, raw_contiguous(g));
      return {Tensor()};
    }
    Tensor gx = zeros(x_shape, g.dtype(), g.device());
    backend(g.device()).index_add(gx, d, idx, raw_contiguous(g));
    return {gx};
  });
}

Tensor gather(const Tensor& x, int dim, const Tensor& index) {
  detail::check_defined("gather", x);
  detail::check_defined("gather", index, "index");
  detail::check_same_device("gather", {x, index});
  VB_CHECK(index.dtype() == DType::Int64, "gather: index must be int64, got {}", describe(index));
  VB_CHECK(x.dim() >= 1 && index.dim() == x.dim(), "gather: index {} must have as many dims as input {}",
           describe(index), describe(x));
  const int d = x.wrap_dim(dim, "gather");
  for (int k = 0; k < x.dim(); ++k) {
    VB_CHECK(k == d || index.size(k) <= x.size(k), "gather: index {} is larger than input {} in dim {} (only dim {} "
             "may be larger)", shape_str(index.shape()), shape_str(x.shape()), k, d);
  }
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  const Tensor idx = raw_contiguous(index);
  backend(x.device()).gather(detach(x), d, idx, out);
  const Shape x_shape = x.shape();
  return record(out, "gather", {x}, [=](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = zeros(x_shape, g.dtype(), g.device());
    backend(g.device()).scatter_add(gx, d, idx, g);
    return {gx};
  });
}

// ---------------------------------------------------------------- attention

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    double dropout_p, std::optional<double> scale, Generator* gen) {
  // Autocast on a GPU only: the CPU's attention kernel computes in float32 whatever its inputs' dtype, so
  // casting its inputs would add conversions and rounding and save nothing.
  if (auto low = autocast_dtype({&q, &k, &v}); low && !q.device().is_cpu()) {
    const Tensor m = mask.defined() && is_floating(mask.dtype()) ? to(mask, *low) : mask;
    return to(scaled_dot_product_attention(to(q, *low), to(k, *low), to(v, *low), m, dropout_p, scale, gen),
              DType::Float32);
  }
  const char* op = "scaled_dot_product_attention";
  detail::check_floating(op, q, "q");
  detail::check_floating(op, k, "k");
  detail::check_floating(op, v, "v");
  detail::check_same_device(op, {q, k, v, mask});
  detail::check_same_dtype(op, {q, k, v});
  VB_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.shape() == v.shape() && q.size(0) == k.size(0) &&
               q.size(1) == k.size(1) && q.size(3) == k.size(3),
           "{}: expected q (B, H, Tq, D), k and v (B, H, Tk, D), got q {}, k {}, v {}", op, shape_str(q.shape()),
           shape_str(k.shape()), shape_str(v.shape()));
  VB_CHECK(dropout_p >= 0 && dropout_p <= 1, "{}: dropout_p must be in [0, 1], got {}", op, dropout_p);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const Shape scores_shape = {B, H, Tq, Tk};
  // The mask, as an additive float tensor of q's dtype expanded (stride 0) to (B, H, Tq, Tk).
  Tensor additive;
  if (mask.defined()) {
    const Shape s = broadcast_shapes(mask.shape(), scores_shape, op);
    VB_CHECK(s == scores_shape, "{}: mask {} does not broadcast to the scores' shape {}", op,
             shape_str(mask.shape()), shape_str(scores_shape));
    const Tensor m = detach(mask);
    if (m.dtype() == DType::Bool) {
      additive = where(m, full({}, 0.0, q.dtype(), q.device()),
                       full({}, -std::numeric_limits<double>::infinity(), q.dtype(), q.device()));
    } else {
      VB_CHECK(is_floating(m.dtype()), "{}: mask must be bool or floating, got {}", op, describe(m));
      additive = to(m, q.dtype());
    }
    additive = detach(expand(additive, scores_shape));
  }
  const double sc = scale.value_or(1.0 / std::sqrt(double(D)));
  uint64_t seed = 0, offset = 0;
  if (dropout_p > 0) {
    Generator& g = gen ? *gen : default_generator();
    seed = g.seed;
    offset = g.advance_rows(uint64_t(B * H * Tq * Tk));  // B outermost: per-row draws, as dropout
  }
  // The CPU kernel reads q, k, v and the output gradient in any layout whose D values are contiguous, and
  // writes strided outputs (kernels/cpu/attention.cpp): split_heads' (B, H, T, D) views of (B, T, H·D) rows go
  // in without copies, and out and the gradients come back in their inputs' layouts, which merge_heads and
  // split_heads' backward read as rows without copies. The GPU kernels take contiguous tensors.
  const bool strided = q.device().is_cpu();
  const auto input = [&](const Tensor& t) { return strided ? detach(t) : raw_contiguous(t); };
  const auto output_like = [strided](const Tensor& t, DType dtype) {
    return strided ? empty_in_layout(t, dtype) : Tensor::empty(t.shape(), dtype, t.device());
  };
  const Tensor qc = input(q), kc = input(k), vc = input(v);
  Tensor out = output_like(qc, q.dtype());
  Tensor lse = Tensor::empty({B, H, Tq}, stat_dtype(q.dtype()), q.device());
  backend(q.device()).attention(qc, kc, vc, additive, sc, dropout_p, seed, offset, out, lse);
  const Tensor saved_out = detach(out);
  return record(out, op, {q, k, v}, [=](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gq = output_like(qc, g.dtype()), gk = output_like(kc, g.dtype()), gv = output_like(vc, g.dtype());
    backend(g.device()).attention_backward(qc, kc, vc, additive, saved_out, strided ? g : raw_contiguous(g), lse, sc,
                                           dropout_p, seed, offset, gq, gk, gv);
    return {gq, gk, gv};
  });
}

}  // namespace vb
