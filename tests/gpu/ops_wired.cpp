// The NN, convolution and attention kernel families on a real GPU (device `cuda`) through the public ops
// and the backend's wiring: the cases of tests/emu/ops_wired.cpp (tests/support/ops_wired_cases.h).
// Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }
}  // namespace

#include "tests/support/ops_wired_cases.h"
#endif
