// Checks and small helpers shared by the ops_*.cpp files.
#pragma once
#include <initializer_list>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace vb::detail {

// Every defined tensor on one device; the Error names the op and each tensor's device.
void check_same_device(const char* op, std::initializer_list<Tensor> tensors);
// Every defined tensor of one dtype.
void check_same_dtype(const char* op, std::initializer_list<Tensor> tensors);
void check_floating(const char* op, const Tensor& t, const char* what = "input");
void check_defined(const char* op, const Tensor& t, const char* what = "input");
// Describes a tensor for messages: "(2, 3) float32 cpu".
std::string describe(const Tensor& t);

// Sorted unique non-negative dims; an empty list means all dims.
std::vector<int> normalize_dims(const Tensor& x, const std::vector<int>& dims, const char* op);
// x's shape with the dims in `dims` removed (or set to 1 when keepdim).
Shape reduced_shape(const Shape& shape, const std::vector<int>& dims, bool keepdim);

// The sum waiting for input i of a node in backward (Node::into) when it has `dtype` and `shape`, whatever its
// layout. Undefined otherwise.
inline Tensor into_matching(const Node& self, size_t i, DType dtype, const Shape& shape) {
  if (i >= self.into.size()) return {};
  const Tensor& s = self.into[i];
  return s.defined() && s.dtype() == dtype && s.shape() == shape ? s : Tensor();
}

// The waiting sum when a gradient of `dtype` and `shape` can be added into it in place: also contiguous.
inline Tensor sum_into(const Node& self, size_t i, DType dtype, const Shape& shape) {
  const Tensor s = into_matching(self, i, dtype, shape);
  return s.defined() && s.is_contiguous() ? s : Tensor();
}

}  // namespace vb::detail
