// Included first by every tests/gpu/ file: exits with 77 (ctest's "skipped") at start-up when the build has
// no CUDA backend or the machine has no GPU, so that GPU tests skip rather than fail on CPU-only machines.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <vector>

#if defined(VB_HAVE_CUDA)
#include "kernels/runtime.h"
#endif

namespace vb::test {

inline const bool gpu_present = [] {
#if defined(VB_HAVE_CUDA)
  if (vb::rt::cuda::device_count() == 0) std::exit(77);
  return true;
#else
  std::exit(77);
  return false;
#endif
}();

// Runs `run` (launches that return their results' bytes) twice and requires the same bytes (a race
// otherwise); returns them: the GPU kernel tests' counterpart of the emulator's four fiber orders.
inline std::vector<uint8_t> run_twice_same(const std::function<std::vector<uint8_t>()>& run) {
  std::vector<uint8_t> first = run();
  if (run() != first) throw std::runtime_error("two runs on the GPU gave different bytes: a race");
  return first;
}

}  // namespace vb::test
