// The kernel profiler's call counts (kernels/profiler.h) of what `f` runs, by row name ("matmul float32",
// "copy float32 → bfloat16"): for tests that check which kernels an op sequence ran, not just its values.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "kernels/profiler.h"

namespace vb::test {

inline std::map<std::string, int64_t> kernel_calls(const std::function<void()>& f) {
  kernel_profile_start();
  f();
  std::map<std::string, int64_t> calls;
  for (const KernelTime& r : kernel_profile_stop()) calls[r.kernel] = r.calls;
  return calls;
}

}  // namespace vb::test
