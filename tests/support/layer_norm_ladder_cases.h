// The layer-norm ladder (kernels/cuda/layer_norm_ladder.cu) on a device against the CPU backend, written
// once: tests/emu/layer_norm_ladder.cpp and tests/gpu/layer_norm_ladder.cpp include this after their device
// harness (tests/support/emu_harness.h, gpu_harness.h), whose device_under_test(), kern (the launcher
// kern::layer_norm_ladder) and run_orders it uses.
//
// Tolerance: the rungs and the CPU backend add the C terms of μ and σ² in different orders, in float32:
// each sum's relative error is at most about C·2⁻²⁴, and y, μ and rstd are of order 1 here (x standard
// normal, w and b near 1 and 0), so |ours − cpu| ≤ 4·C·2⁻²⁴·(1 + |cpu|) per element. Allocations are
// poisoned (NaN): an element a rung leaves unwritten fails.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/backend.h"
#include "kernels/cuda/layer_norm_ladder.h"
#include "tests/support/check.h"

namespace layer_norm_ladder_test {

using namespace vb;

using vb::test::bytes_of;

inline void check_rung(int rung, int64_t n, int64_t c, uint64_t seed) {
  CAPTURE(rung);
  CAPTURE(n);
  CAPTURE(c);
  Generator g{seed, 0};
  const Tensor x = randn({n, c}, &g), w = add(mul(randn({c}, &g), 0.1), 1.0), b = mul(randn({c}, &g), 0.1);
  const float eps = 1e-5f;
  const Device d = device_under_test();
  const std::vector<uint8_t> bytes = run_orders([&] {
    const Tensor dx = contiguous(to(x, d)), dw = contiguous(to(w, d)), db = contiguous(to(b, d));
    Tensor y = empty({n, c}, DType::Float32, d), mean = empty({n}, DType::Float32, d), rstd = empty({n}, DType::Float32, d);
    kern::layer_norm_ladder(rung, static_cast<const float*>(dx.data_ptr()), static_cast<const float*>(dw.data_ptr()),
                  static_cast<const float*>(db.data_ptr()), eps, static_cast<float*>(y.data_ptr()),
                  static_cast<float*>(mean.data_ptr()), static_cast<float*>(rstd.data_ptr()), n, c);
    return bytes_of({y, mean, rstd});
  });
  Tensor y = empty({n, c}), mean = empty({n}), rstd = empty({n});
  backend(Device()).layer_norm(x, w, b, eps, y, mean, rstd);
  std::vector<float> got(bytes.size() / sizeof(float));
  if (!got.empty()) std::memcpy(got.data(), bytes.data(), bytes.size());
  std::vector<double> want = y.to_vector();
  for (double v : mean.to_vector()) want.push_back(v);
  for (double v : rstd.to_vector()) want.push_back(v);
  REQUIRE(got.size() == want.size());
  const double tol = 4.0 * double(c) * std::ldexp(1.0, -24);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(double(got[i]) - want[i]) <= tol * (1.0 + std::abs(want[i])))) {
      if (bad++ == 0) first = i;
    }
  CHECK_MESSAGE(bad == 0, "rung ", rung, ": ", bad, " values off, the first at ", first, ": ", got.empty() ? 0.0f : got[first],
                " against the CPU's ", want.empty() ? 0.0 : want[first]);
}

}  // namespace layer_norm_ladder_test

TEST_CASE("every rung of the layer-norm ladder against the CPU backend") {
  using layer_norm_ladder_test::check_rung;
  struct Shape2 {
    int64_t n, c;
  };
  const std::vector<Shape2> any = {{1, 1}, {7, 33}, {3, 1000}, {0, 5}, {2, 1500}};
  const std::vector<Shape2> multiples_of_4 = {{5, 768}, {3, 1024}, {9, 36}, {2, 4}, {6, 100}};
  uint64_t seed = 1;
  for (int rung = 1; rung <= vb::ladder::kLayerNormRungs; ++rung) {
    for (const Shape2& s : multiples_of_4) check_rung(rung, s.n, s.c, seed++);
    for (const Shape2& s : any)
      if (std::string(vb::ladder::layer_norm_shape_requirement(rung, s.n, s.c)).empty()) check_rung(rung, s.n, s.c, seed++);
  }
}

TEST_CASE("the layer-norm ladder refuses a rung that does not exist and rows a rung cannot take") {
  const vb::Device d = device_under_test();
  vb::Tensor t = vb::zeros({4, 4}, vb::DType::Float32, d);
  auto* p = static_cast<float*>(t.data_ptr());
  auto message = [&](int rung, int64_t n, int64_t c) -> std::string {
    try {
      kern::layer_norm_ladder(rung, p, p, p, 1e-5f, p, p, p, n, c);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message(0, 2, 4).find("no rung 0") != std::string::npos);
  CHECK(message(2, 2, 2048).find("C ≤ 1024") != std::string::npos);
  CHECK(message(3, 2, 6).find("multiple of 4") != std::string::npos);
  CHECK(message(1, 2, 0).find("shape") != std::string::npos);
}
