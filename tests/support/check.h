// Test helpers: closeness with a stated tolerance, float64 gradient checks against central differences, and
// the message of an expected error.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace vb::test {

// The bytes of tensors, copied to the CPU and made contiguous, one after another: what "bit-identical"
// compares.
inline std::vector<uint8_t> bytes_of(const std::vector<Tensor>& ts) {
  std::vector<uint8_t> b;
  for (const Tensor& t : ts) {
    const Tensor c = contiguous(to(detach(t), Device()));
    const size_t at = b.size(), n = size_t(c.numel() * c.element_size());
    b.resize(at + n);
    if (n) std::memcpy(b.data() + at, c.data_ptr(), n);
  }
  return b;
}
inline std::vector<uint8_t> bytes_of(const Tensor& t) { return bytes_of(std::vector<Tensor>{t}); }

// |actual − expected| ≤ atol + rtol·|expected| elementwise (NaNs must match; equal infinities pass); reports
// the worst element.
inline void check_close(const Tensor& actual, const Tensor& expected, double atol, double rtol,
                        const std::string& what = "") {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs expected ",
                  shape_str(expected.shape()));
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  double worst = 0;
  size_t worst_i = 0;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if ((std::isnan(e[i]) && std::isnan(a[i])) || a[i] == e[i]) continue;
    const double excess = std::abs(a[i] - e[i]) - (atol + rtol * std::abs(e[i]));
    if (!(excess <= 0)) {
      ++bad;
      if (!(excess <= worst)) {
        worst = std::isnan(excess) ? INFINITY : excess;
        worst_i = i;
      }
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", a.size(), " elements outside atol=", atol, " rtol=", rtol,
                "; worst at ", worst_i, ": ", (a.empty() ? 0 : a[worst_i]), " vs ", (e.empty() ? 0 : e[worst_i]));
}

// Compares autograd's gradients of f at `inputs` (float64 CPU leaves) with central differences in float64.
// The output is reduced with random weights, so every output element's gradient path is checked.
inline void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                      const std::string& what, double eps = 1e-6, double atol = 1e-6, double rtol = 1e-5) {
  for (Tensor& x : inputs) {
    REQUIRE_MESSAGE(x.dtype() == DType::Float64, what, ": gradcheck inputs must be float64");
    x = contiguous(detach(x));
    x.set_requires_grad(true);
  }
  Tensor y = f(inputs);
  Generator gen{12345, 0};
  Tensor w = randn(y.shape(), &gen, DType::Float64);
  backward(y, w);
  const std::vector<double> weights = w.to_vector();
  auto objective = [&]() {
    NoGradGuard guard;
    const std::vector<double> v = f(inputs).to_vector();
    double s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i] * weights[i];
    return s;
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    double* p = static_cast<double*>(x.data_ptr());
    std::vector<double> numeric(size_t(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double keep = p[i];
      p[i] = keep + eps;
      const double plus = objective();
      p[i] = keep - eps;
      const double minus = objective();
      p[i] = keep;
      numeric[size_t(i)] = (plus - minus) / (2 * eps);
    }
    Tensor analytic = x.grad();
    if (!analytic.defined()) analytic = zeros(x.shape(), DType::Float64);
    check_close(analytic, Tensor::from_vector(numeric, x.shape(), DType::Float64), atol, rtol,
                what + ": gradient of input " + std::to_string(k));
  }
}

// The message of the vb::Error that f() throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A float64 CPU tensor of the given shape with values in [lo, hi), from a fixed seed.
inline Tensor uniform(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                      DType dtype = DType::Float64) {
  Generator g{seed, 0};
  return add(mul(rand(shape, &g, dtype), hi - lo), lo);
}

}  // namespace vb::test
