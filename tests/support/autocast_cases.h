// Mixed precision (autograd/autocast.h) on a device: under an AutocastGuard the matrix ops compute in
// bfloat16 / float16 (the CPU: bfloat16 only) and return float32, and the float32 leaves get float32 gradients. The
// reference is float64 on the CPU from the same inputs rounded to the low dtype, so the only differences
// left are the kernels' float32 accumulation and one rounding of each low-precision result: the bound is
// a few units of the low dtype's epsilon (2⁻⁸ for bfloat16, 2⁻¹¹ for float16) times the values' scale.
// Included by tests/cpu/autocast.cpp, which defines device_under_test(), and by tests/emu/autocast.cpp and
// tests/gpu/autocast.cpp after their device harness (tests/support/emu_harness.h, gpu_harness.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/support/check.h"

namespace vb::autocast_test {

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// The low dtypes the device under test computes in: the CPU takes bfloat16 only.
inline std::vector<DType> low_dtypes() {
  if (device_under_test().is_cpu()) return {DType::BFloat16};
  return {DType::BFloat16, DType::Float16};
}

inline double bound(DType low) { return low == DType::BFloat16 ? 3e-2 : 4e-3; }

// f64 → the low dtype → f64: the values the autocast kernels see.
inline Tensor rounded(const Tensor& t64, DType low) { return to(to(t64, low), DType::Float64); }

// A float32 leaf on the device under test, requiring grad.
inline Tensor leaf(const Tensor& t64) {
  Tensor t = to(to(t64, DType::Float32), device_under_test());
  t.set_requires_grad();
  return t;
}

// Runs op on device leaves made from `inputs` under autocast(low) with upstream gradient g; compares the
// output and every input's gradient with the float64 reference on the rounded inputs.
inline void check_autocast(const std::string& what, DType low, const std::vector<Tensor>& inputs64, const Tensor& g64,
                           const std::function<Tensor(const std::vector<Tensor>&)>& op) {
  INFO(what << " in " << low);
  std::vector<Tensor> dev;
  for (const Tensor& t : inputs64) dev.push_back(leaf(t));
  Tensor y;
  {
    AutocastGuard autocast(low);
    y = op(dev);
  }
  CHECK(y.dtype() == DType::Float32);
  backward(y, to(to(g64, DType::Float32), device_under_test()));

  std::vector<Tensor> ref_in;
  for (const Tensor& t : inputs64) {
    Tensor r = rounded(t, low);
    r.set_requires_grad();
    ref_in.push_back(r);
  }
  Tensor ref = op(ref_in);
  backward(ref, rounded(g64, low));
  const double tol = bound(low);
  test::check_close(to(y, Device()), ref, tol, tol, what + " output");
  for (size_t i = 0; i < dev.size(); ++i) {
    REQUIRE(dev[i].grad().defined());
    CHECK(dev[i].grad().dtype() == DType::Float32);  // the master weights' gradients stay float32
    test::check_close(to(dev[i].grad(), Device()), ref_in[i].grad(), tol, tol, what + " gradient " + std::to_string(i));
  }
  // Without the guard the same op runs in float32 and differs (by the low dtype's rounding): autocast did act.
  std::vector<Tensor> plain;
  for (const Tensor& t : dev) plain.push_back(detach(t));
  CHECK(max_abs_diff(to(op(plain), Device()), to(detach(y), Device())) > 0);
}

TEST_CASE("autocast: linear, batched matmul, conv2d and attention compute in the low dtype and return float32") {
  for (DType low : low_dtypes()) {
    check_autocast("linear", low, {test::uniform({6, 64}, 1), test::uniform({24, 64}, 2), test::uniform({24}, 3)},
                   test::uniform({6, 24}, 4), [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); });
    check_autocast("matmul", low, {test::uniform({2, 5, 32}, 5), test::uniform({2, 32, 7}, 6)}, test::uniform({2, 5, 7}, 7),
                   [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
    check_autocast("conv2d", low, {test::uniform({2, 6, 6, 8}, 8), test::uniform({4, 3, 3, 8}, 9), test::uniform({4}, 10)},
                   test::uniform({2, 6, 6, 4}, 11), [](const std::vector<Tensor>& in) {
                     Conv2dParams p;
                     p.pad_h = p.pad_w = 1;
                     return conv2d(in[0], in[1], in[2], p);
                   });
    if (!device_under_test().is_cpu())  // (the CPU's attention stays float32: the next case)
      check_autocast("attention", low, {test::uniform({1, 2, 5, 16}, 12), test::uniform({1, 2, 7, 16}, 13), test::uniform({1, 2, 7, 16}, 14)},
                     test::uniform({1, 2, 5, 16}, 15),
                     [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); });
  }
}

TEST_CASE("autocast leaves other ops and other dtypes alone (and the CPU under a float16 guard)") {
  // c·d on the CPU in float32, without a guard, for the float16-guard check below.
  const Tensor c = to(test::uniform({4, 8}, 24), DType::Float32), d = to(test::uniform({8, 3}, 25), DType::Float32);
  const Tensor plain = matmul(c, d);
  AutocastGuard autocast(DType::BFloat16);
  Tensor a = to(to(test::uniform({4, 8}, 21), DType::Float32), device_under_test());
  CHECK(softmax(a, -1).dtype() == DType::Float32);
  CHECK(layer_norm(a, 1, {}, {}).dtype() == DType::Float32);
  // Inputs that are not float32 are the caller's choice: float16 under a bfloat16 guard stays float16.
  Tensor h1 = to(to(test::uniform({4, 8}, 22), DType::Float16), device_under_test());
  Tensor h2 = to(to(test::uniform({8, 3}, 23), DType::Float16), device_under_test());
  CHECK(matmul(h1, h2).dtype() == DType::Float16);
  // The CPU computes in bfloat16 under a bfloat16 guard, and runs float32 under a float16 one: bit-identical to
  // no guard.
  CHECK(max_abs_diff(matmul(c, d), plain) > 0);
  {
    AutocastGuard inner(DType::Float16);  // nesting replaces the dtype and restores it after
    CHECK(autocast_dtype({&a}) == (device_under_test().is_cpu() ? std::nullopt : std::optional(DType::Float16)));
    const Tensor with = matmul(c, d);
    CHECK(with.dtype() == DType::Float32);
    CHECK(max_abs_diff(with, plain) == 0);
  }
  CHECK(autocast_dtype({&a}) == DType::BFloat16);
  // The CPU's attention computes in float32 whatever its inputs: under the guard it is left alone, bit for bit.
  const Tensor q = to(test::uniform({1, 2, 5, 16}, 26), DType::Float32), k = to(test::uniform({1, 2, 7, 16}, 27), DType::Float32);
  CHECK(max_abs_diff(scaled_dot_product_attention(q, k, k), [&] {
          AutocastGuard off(DType::Float16);  // (float16: the CPU runs float32, as with no guard)
          return scaled_dot_product_attention(q, k, k);
        }()) == 0);
  CHECK_THROWS_WITH_AS(AutocastGuard(DType::Float32), doctest::Contains("bfloat16 or float16"), Error);
}

}  // namespace vb::autocast_test
