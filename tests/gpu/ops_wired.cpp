// The NN, convolution and attention kernel families on a real GPU (device `cuda`) through the public ops
// and the backend's wiring: the cases of tests/emu/ops_wired.cpp (tests/support/ops_wired_cases.h).
// Exits 77 (skipped) without a GPU or without the CUDA build.
#include <cstdlib>

#include "tensor/device.h"

namespace {
const bool gpu_present = [] {
  if (!vb::has_runtime(vb::DeviceType::CUDA)) std::exit(77);
  return true;
}();
vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }
}  // namespace

#if defined(VB_HAVE_CUDA)
#include "tests/support/ops_wired_cases.h"
#endif
