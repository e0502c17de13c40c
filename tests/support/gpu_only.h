// Included first by every tests/gpu/ file: exits with 77 (ctest's "skipped") at start-up when the build has
// no CUDA backend or the machine has no GPU, so that GPU tests skip rather than fail on CPU-only machines.
#pragma once
#include <cstdlib>

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

}  // namespace vb::test
