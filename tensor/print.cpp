// PyTorch-like printing: nested brackets, at most 6 values per dimension shown (first 3 … last 3),
// then shape, dtype and device.
#include <cmath>
#include <sstream>

#include "tensor/tensor.h"

namespace vb {

namespace {

void print_values(std::ostringstream& os, const Tensor& t, const std::vector<double>& v, int d, int64_t base,
                  int indent) {
  const int64_t n = t.size(d);
  const int64_t inner = shape_numel(Shape(t.shape().begin() + d + 1, t.shape().end()));
  const bool abbreviate = n > 6;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (abbreviate && i == 3) {
      os << (d + 1 == t.dim() ? "..., " : "...,\n" + std::string(size_t(indent + 1), ' '));
      i = n - 3;
    }
    if (d + 1 == t.dim()) {
      double x = v[size_t(base + i)];
      if (is_floating(t.dtype())) os << fmt::format("{:.4f}", x);
      else if (t.dtype() == DType::Bool) os << (x != 0 ? "True" : "False");
      else os << int64_t(x);
    } else {
      print_values(os, t, v, d + 1, base + i * inner, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == t.dim() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  std::vector<double> v = to_vector();
  if (dim() == 0) {
    if (is_floating(dtype())) os << fmt::format("{:.4f}", v[0]);
    else os << int64_t(v[0]);
  } else if (numel() == 0) {
    os << "[]";
  } else {
    print_values(os, *this, v, 0, 0, 7);
  }
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad=True";
  os << ')';
  return os.str();
}

}  // namespace vb
