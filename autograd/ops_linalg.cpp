// Linear algebra: matmul with PyTorch's rules (1-d promotion, broadcast batch dims) and linear (with a
// bias: one product whose epilogue adds it, Backend::matmul_bias).
// Every product is reshaped to the kernel's (Bt, M, K)·(Bt, K, N) form; the reshapes and expands are
// differentiable views, so only the batched product itself needs a gradient formula. nearest_centroid
// (k-means' assignment step, Backend::nearest_centroid) records no gradient.
#include "autograd/autocast.h"
#include "autograd/op_utils.h"

namespace vb {

using detail::describe;

namespace {

Tensor bmm(const Tensor& a, const Tensor& b, std::optional<DType> low = std::nullopt);

// A (Bt, R, C) operand stored column-major: a transposed view, as a linear layer's weight (out, in) is read as
// (in, out).
bool column_major(const Tensor& t) { return t.stride(1) == 1 && t.stride(2) != 1 && t.size(1) > 1; }

// The gradients of a·b for incoming g (Bt, M, N): ga = g·bᵀ (M, K), gb = aᵀ·g (K, N). Each is computed in
// the layout of the operand it belongs to: for a column-major operand the product runs transposed
// (gbᵀ = gᵀ·a) and its transpose, a view, is returned. A weight's gradient then reaches the weight in the
// weight's own (out, in) layout, without the transposing copy that a row-major (in, out) result needs
// (that copy took a quarter of an MLP's backward: bench/results/cpu-ops-2026-12-07.md).
// `product` is bmm, or mixed_product (below) for the CPU's mixed precision.
//   When the sum of the operand's other gradients is waiting (Node::into; `sum` is then that sum as the product
// writes it: transposed for a column-major operand, see product_sum), the product is added into it instead
// (Backend::matmul_add) and the result is undefined: a weight used by several passes, or a tensor read by
// several layers, takes its later gradients without a gradient tensor and an addition per use.
Tensor grad_a(const Tensor& g, const Tensor& b, bool a_column_major, const auto& product, Tensor sum = {}) {
  if (sum.defined()) {
    if (a_column_major)
      backend(g.device()).matmul_add(b, transpose(g, 1, 2), sum);
    else
      backend(g.device()).matmul_add(g, transpose(b, 1, 2), sum);
    return {};
  }
  return a_column_major ? transpose(product(b, transpose(g, 1, 2)), 1, 2) : product(g, transpose(b, 1, 2));
}
Tensor grad_b(const Tensor& a, const Tensor& g, bool b_column_major, const auto& product, Tensor sum = {}) {
  if (sum.defined()) {
    if (b_column_major)
      backend(g.device()).matmul_add(transpose(g, 1, 2), a, sum);
    else
      backend(g.device()).matmul_add(transpose(a, 1, 2), g, sum);
    return {};
  }
  return b_column_major ? transpose(product(transpose(g, 1, 2), a), 1, 2) : product(transpose(a, 1, 2), g);
}

// The sum waiting for operand i (Node::into) as grad_a / grad_b add into it: the sum itself for a row-major
// operand, its transpose for a column-major one; undefined unless that is contiguous, of `dtype` and the
// operand's shape.
Tensor product_sum(const Node& self, size_t i, DType dtype, const Shape& shape, bool column_major) {
  if (!column_major) return detail::sum_into(self, i, dtype, shape);
  const Tensor s = detail::into_matching(self, i, dtype, shape);
  const Tensor t = s.defined() ? transpose(s, 1, 2) : Tensor();
  return t.defined() && t.is_contiguous() ? t : Tensor();
}

// Mixed precision on the CPU (autograd/autocast.h): the float32 operands are cast to `low` here, outside the
// graph, and the products of the low operands come back in float32 straight from the GEMM (kernels/cpu/
// gemm_bf16.cpp) — no low-precision result to convert back, which the cast-in / cast-out form of the GPU
// path costs: on the CPU those conversions took more time than the products (half a base training step on
// the dev VM). The gradients of the float32 operands arrive in float32 the same way: the incoming gradient is
// cast to `low` and multiplied by the saved low operands.
//
// t cast to `low`, keeping a column-major operand column-major (the cast of a transposed view is the
// transposed view of its cast: a linear layer's weight is converted in its own layout).
Tensor low_copy(const Tensor& t, DType low) {
  const Tensor d = detach(t);
  return column_major(d) ? transpose(to(transpose(d, 1, 2), low), 1, 2) : to(d, low);
}
// x (Bt, M, K)·y (Bt, K, N) of low operands into float32, recording nothing: the mixed path's backward.
Tensor mixed_product(const Tensor& x, const Tensor& y) {
  Tensor out = Tensor::empty({x.size(0), x.size(1), y.size(2)}, DType::Float32, x.device());
  backend(x.device()).matmul(x, y, out);
  return out;
}

// The backward of a·b (+ bias), the operands kept as `keep_a`, `keep_b` (the low copies under mixed precision).
std::vector<Tensor> product_grads(const Node& self, const Tensor& g, const Tensor& keep_a, const Tensor& keep_b,
                                  bool a_col, bool b_col, std::optional<DType> low, bool with_bias) {
  Tensor ga, gb, gbias;
  const auto recorded = [](const Tensor& x, const Tensor& y) { return bmm(x, y); };
  // The gradients' dtype: float32 under the CPU's mixed precision, else the incoming gradient's.
  const DType dtype = low ? DType::Float32 : g.dtype();
  const int64_t bt = g.size(0), m = g.size(1), n = g.size(2);
  const Tensor sum_a = self.needs(0) ? product_sum(self, 0, dtype, {bt, m, keep_b.size(1)}, a_col) : Tensor();
  const Tensor sum_b = self.needs(1) ? product_sum(self, 1, dtype, {bt, keep_a.size(2), n}, b_col) : Tensor();
  if (low) {
    const Tensor gk = to(g, *low);
    if (self.needs(0)) ga = grad_a(gk, keep_b, a_col, mixed_product, sum_a);
    if (self.needs(1)) gb = grad_b(keep_a, gk, b_col, mixed_product, sum_b);
  } else {
    if (self.needs(0)) ga = grad_a(g, keep_b, a_col, recorded, sum_a);
    if (self.needs(1)) gb = grad_b(keep_a, g, b_col, recorded, sum_b);
  }
  if (!with_bias) return {ga, gb};
  if (self.needs(2)) gbias = sum(g, {0, 1});
  return {ga, gb, gbias};
}

// a (Bt, M, K) · b (Bt, K, N) → (Bt, M, N); with `low`, the CPU's mixed precision (above).
Tensor bmm(const Tensor& a, const Tensor& b, std::optional<DType> low) {
  const Tensor ak = low ? low_copy(a, *low) : a, bk = low ? low_copy(b, *low) : b;
  Tensor out = Tensor::empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  backend(a.device()).matmul(ak, bk, out);
  // ga = g·bᵀ needs b; gb = aᵀ·g needs a.
  const Tensor keep_a = b.requires_grad() ? ak : Tensor(), keep_b = a.requires_grad() ? bk : Tensor();
  const bool a_col = column_major(a), b_col = column_major(b);
  return record(out, "matmul", {a, b}, [keep_a, keep_b, a_col, b_col, low](const Node& self, const Tensor& g) {
    return product_grads(self, g, keep_a, keep_b, a_col, b_col, low, false);
  });
}

// a (Bt, M, K) · b (Bt, K, N) + bias (N) on every row, in one product (Backend::matmul_bias: cuBLASLt's
// bias epilogue on a GPU). gbias = Σ over batch and rows of g. With `low`, the CPU's mixed precision (above;
// the bias stays float32).
Tensor bmm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, std::optional<DType> low = std::nullopt,
                const Tensor& b_low = {}) {  // b_low: b's low copy, when the caller has it (autocast_weight)
  const Tensor ak = low ? low_copy(a, *low) : a, bk = low ? (b_low.defined() ? b_low : low_copy(b, *low)) : b;
  Tensor out = Tensor::empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  backend(a.device()).matmul_bias(ak, bk, bias, out);
  const Tensor keep_a = b.requires_grad() ? ak : Tensor(), keep_b = a.requires_grad() ? bk : Tensor();
  const bool a_col = column_major(a), b_col = column_major(b);
  return record(out, "linear", {a, b, bias}, [keep_a, keep_b, a_col, b_col, low](const Node& self, const Tensor& g) {
    return product_grads(self, g, keep_a, keep_b, a_col, b_col, low, true);
  });
}

Shape concat(Shape s, std::initializer_list<int64_t> tail) {
  s.insert(s.end(), tail);
  return s;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  // Autocast: on a GPU, cast in and out; on the CPU, the mixed product of bmm.
  const std::optional<DType> low = autocast_dtype({&a, &b});
  if (low && !a.device().is_cpu()) return to(matmul(to(a, *low), to(b, *low)), DType::Float32);
  detail::check_floating("matmul", a, "first input");
  detail::check_floating("matmul", b, "second input");
  detail::check_same_device("matmul", {a, b});
  detail::check_same_dtype("matmul", {a, b});
  VB_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both inputs need at least one dim, got {} and {}", describe(a),
           describe(b));
  // 1-d operands become a row (1, K) on the left and a column (K, 1) on the right; the added dim is removed.
  const Tensor a2 = a.dim() == 1 ? unsqueeze(a, 0) : a;
  const Tensor b2 = b.dim() == 1 ? unsqueeze(b, 1) : b;
  const int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  VB_CHECK(b2.size(-2) == k, "matmul: shapes {} and {} cannot be multiplied (inner sizes {} and {} differ)",
           shape_str(a.shape()), shape_str(b.shape()), k, b2.size(-2));
  const Shape batch_a(a2.shape().begin(), a2.shape().end() - 2), batch_b(b2.shape().begin(), b2.shape().end() - 2);

  Shape batch;
  Tensor out;  // (batch…, M, N)
  if (batch_b.empty()) {
    // (…, M, K)·(K, N): fold a's batch into M — one large GEMM (linear layers take this path).
    batch = batch_a;
    const int64_t rows = shape_numel(batch_a) * m;
    out = reshape(bmm(reshape(a2, {1, rows, k}), reshape(b2, {1, k, n}), low), concat(batch, {m, n}));
  } else {
    batch = broadcast_shapes(batch_a, batch_b, "matmul");
    const int64_t bt = shape_numel(batch);
    Tensor a3 = reshape(expand(a2, concat(batch, {m, k})), {bt, m, k});
    Tensor b3 = reshape(expand(b2, concat(batch, {k, n})), {bt, k, n});
    out = reshape(bmm(a3, b3, low), concat(batch, {m, n}));
  }
  Shape final_shape = batch;
  if (a.dim() > 1) final_shape.push_back(m);
  if (b.dim() > 1) final_shape.push_back(n);
  return reshape(out, final_shape);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  detail::check_floating("linear", x, "input");
  detail::check_floating("linear", w, "weight");
  detail::check_same_device("linear", {x, w, b});
  detail::check_same_dtype("linear", {x, w, b});
  VB_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1),
           "linear: input {} and weight {}: expected weight (out, in) with in = the input's last dim", describe(x),
           describe(w));
  VB_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "linear: bias {} must be ({}) for weight {}",
           describe(b), w.size(0), describe(w));
  if (!b.defined()) return matmul(x, transpose(w, 0, 1));  // (…, in)·(in, out)
  // Under autocast on a GPU the bias is cast too, and added before the product's one rounding (as PyTorch's
  // autocast linear does); on the CPU it stays float32, added to the float32 product (bmm_bias).
  const std::optional<DType> low = autocast_dtype({&x, &w, &b});
  if (low && !x.device().is_cpu()) return to(linear(to(x, *low), to(w, *low), to(b, *low)), DType::Float32);
  // (…, in) folded into rows: one product (1, rows, in)·(1, in, out) + b, unfolded to (…, out).
  const int64_t in = w.size(1), out = w.size(0);
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));  // 1 for a 1-d x
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const Tensor x3 = reshape(x, {1, rows, in});
  // Under the CPU's autocast the weight's bfloat16 copy comes from the guard's cache (autocast_weight), read
  // through the same transposed view: the bytes and the layout of casting the view itself.
  const Tensor w_low = low ? unsqueeze(transpose(autocast_weight(w, *low), 0, 1), 0) : Tensor();
  return reshape(bmm_bias(x3, unsqueeze(transpose(w, 0, 1), 0), b, low, w_low), out_shape);
}

NearestCentroid nearest_centroid(const Tensor& x, const Tensor& centroids) {
  detail::check_floating("nearest_centroid", x, "x");
  detail::check_floating("nearest_centroid", centroids, "centroids");
  detail::check_same_device("nearest_centroid", {x, centroids});
  detail::check_same_dtype("nearest_centroid", {x, centroids});
  VB_CHECK(x.dim() == 2 && centroids.dim() == 2 && x.size(1) == centroids.size(1),
           "nearest_centroid: x {} and centroids {} (expected (N, D) and (K, D) with the same D)", describe(x),
           describe(centroids));
  VB_CHECK(centroids.size(0) >= 1, "nearest_centroid: centroids {} (expected at least one centroid)",
           describe(centroids));
  const DType distance_dtype = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  NearestCentroid out{Tensor::empty({x.size(0)}, DType::Int64, x.device()),
                      Tensor::empty({x.size(0)}, distance_dtype, x.device())};
  backend(x.device()).nearest_centroid(x, centroids, out.index, out.distance);
  return out;
}

}  // namespace vb
