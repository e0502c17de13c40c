#include "autograd/op_utils.h"

#include <algorithm>

namespace vb::detail {

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return fmt::format("{} {} {}", shape_str(t.shape()), t.dtype(), t.device());
}

void check_defined(const char* op, const Tensor& t, const char* what) {
  VB_CHECK(t.defined(), "{}: {} is an undefined tensor", op, what);
}

void check_same_device(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) first = &t;
    else if (!(t.device() == first->device())) {
      std::vector<std::string> parts;
      for (const Tensor& u : tensors) parts.push_back(describe(u));
      fail("{}: tensors are on different devices: {}; move them to one device with to()", op, fmt::join(parts, ", "));
    }
  }
}

void check_same_dtype(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) first = &t;
    else if (t.dtype() != first->dtype()) {
      std::vector<std::string> parts;
      for (const Tensor& u : tensors) parts.push_back(describe(u));
      fail("{}: expected one dtype, got {}; convert with to()", op, fmt::join(parts, ", "));
    }
  }
}

void check_floating(const char* op, const Tensor& t, const char* what) {
  check_defined(op, t, what);
  VB_CHECK(is_floating(t.dtype()), "{}: {} must be float32, bfloat16 or float16, got {}", op, what, describe(t));
}

std::vector<int> normalize_dims(const Tensor& x, const std::vector<int>& dims, const char* op) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int d = 0; d < x.dim(); ++d) out.push_back(d);
    return out;
  }
  for (int d : dims) out.push_back(x.wrap_dim(d, op));
  std::sort(out.begin(), out.end());
  VB_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "{}: dim listed twice in [{}]", op,
           fmt::join(dims, ", "));
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int>& dims, bool keepdim) {
  Shape out;
  for (int d = 0; d < int(shape.size()); ++d) {
    bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) out.push_back(shape[size_t(d)]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

}  // namespace vb::detail
