// Reductions: sum, mean, amax, amin, argmax and var. Dims may be negative; an empty list means all dims.
// Backwards broadcast the gradient back over the reduced dims (expand of the keepdim-shaped gradient).
#include "autograd/op_utils.h"

namespace vb {

namespace {

struct Reduced {
  Tensor keep;  // the kernel's output: x's shape with the reduced dims set to 1
  Tensor out;   // keep, or keep without the reduced dims
  std::vector<int> dims;
  int64_t count = 1;  // elements reduced into each output element
};

Reduced reduce_raw(ReduceOp op, const char* name, const Tensor& x, const std::vector<int>& dims, bool keepdim,
                   DType out_dtype) {
  detail::check_defined(name, x);
  Reduced r;
  r.dims = detail::normalize_dims(x, dims, name);
  Shape keep_shape = x.shape();
  for (int d : r.dims) {
    r.count *= x.size(d);
    keep_shape[size_t(d)] = 1;
  }
  r.keep = Tensor::empty(keep_shape, out_dtype, x.device());
  backend(x.device()).reduce(op, x, r.dims, r.keep);
  if (keepdim) {
    r.out = r.keep;
  } else {
    const Shape s = detail::reduced_shape(x.shape(), r.dims, false);
    r.out = r.keep.as_strided(s, contiguous_strides(s), r.keep.offset());
  }
  return r;
}

}  // namespace

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  detail::check_defined("sum", x);
  // Integer and bool sums are int64, as in PyTorch.
  Reduced r = reduce_raw(ReduceOp::Sum, "sum", x, dims, keepdim, is_floating(x.dtype()) ? x.dtype() : DType::Int64);
  const Shape keep_shape = r.keep.shape(), in_shape = x.shape();
  return record(r.out, "sum", {x}, [keep_shape, in_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {expand(reshape(g, keep_shape), in_shape)};
  });
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  detail::check_floating("mean", x);
  Reduced r = reduce_raw(ReduceOp::Mean, "mean", x, dims, keepdim, x.dtype());
  const Shape keep_shape = r.keep.shape(), in_shape = x.shape();
  const double scale = 1.0 / double(r.count);
  return record(r.out, "mean", {x}, [keep_shape, in_shape, scale](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {expand(mul(reshape(g, keep_shape), scale), in_shape)};
  });
}

namespace {
// amax/amin: the gradient is shared evenly among the elements equal to the result (as in PyTorch).
Tensor extremum(ReduceOp op, const char* name, const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  detail::check_defined(name, x);
  Reduced r = reduce_raw(op, name, x, dims, keepdim, x.dtype());
  const Tensor y = detach(r.keep);  // (…, 1, …): broadcasts against x
  const std::vector<int> reduced = r.dims;
  const Shape keep_shape = r.keep.shape();
  return record(r.out, name, {x}, [x, y, reduced, keep_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor ties = to(eq(x, y), g.dtype());                     // (x's shape) 1 where x attains the extremum
    Tensor share = div(reshape(g, keep_shape), sum(ties, reduced, true));  // (keep shape) g / #ties
    return {mul(ties, share)};
  });
}
}  // namespace

Tensor amax(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return extremum(ReduceOp::Amax, "amax", x, dims, keepdim);
}
Tensor amin(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return extremum(ReduceOp::Amin, "amin", x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int dim, bool keepdim) {
  detail::check_defined("argmax", x);
  const int d = x.wrap_dim(dim, "argmax");
  VB_CHECK(x.size(d) > 0, "argmax: dim {} of input {} is empty", d, detail::describe(x));
  return reduce_raw(ReduceOp::Argmax, "argmax", x, {d}, keepdim, DType::Int64).out;
}

Tensor var(const Tensor& x, const std::vector<int>& dims, bool unbiased, bool keepdim) {
  detail::check_floating("var", x);
  const std::vector<int> nd = detail::normalize_dims(x, dims, "var");
  int64_t n = 1;
  for (int d : nd) n *= x.size(d);
  // Σ (x − mean)² / (N − 1) or / N; N − 1 = 0 gives NaN as in PyTorch.
  Tensor centred = sub(x, mean(x, nd, true));
  return mul(sum(mul(centred, centred), nd, keepdim), 1.0 / double(unbiased ? n - 1 : n));
}

}  // namespace vb
