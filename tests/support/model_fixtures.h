// What the model tests against PyTorch fixtures (tests/cpu/models_bert.cpp, models_resnet.cpp) share: the
// fixtures' paths, closeness scaled to each fixture tensor, and whether a device can run the model.
//
// Tolerance (float32, against PyTorch's float32): |ours − torch| ≤ 1e-4·scale + 1e-3·|torch|, where scale is
// the largest |value| of that tensor in the fixture, so gradients of every size are held to the same
// relative standard.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/backend.h"
#include "tests/support/check.h"

namespace vb::model_test {

// tests/golden/<name>.
inline std::string golden(const std::string& name) { return std::string(VB_SOURCE_DIR) + "/tests/golden/" + name; }

// The largest |value| of t.
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// actual (on any device) against a fixture tensor, with the tolerance above.
inline void check_scaled(const Tensor& actual, const Tensor& expected, const std::string& what) {
  test::check_close(to(actual, Device()), expected, 1e-4 * std::max(max_abs(expected), 1e-6), 1e-3, what);
}

// Whether tensors can live on `d` and kernels run there in this build; when not, says the test is skipped.
inline bool device_ready(Device d) {
  if (d.is_cpu()) return true;
  if (has_runtime(d.type)) {
    try {
      backend(d);
      return true;
    } catch (const Error&) {
    }
  }
  MESSAGE("skipped: no ", d.str(), " kernels in this build");
  return false;
}

}  // namespace vb::model_test
