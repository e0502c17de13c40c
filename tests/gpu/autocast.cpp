// Mixed precision on a real GPU (device `cuda`): the cases of tests/emu/autocast.cpp
// (tests/support/autocast_cases.h). Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }
}  // namespace

#include "tests/support/autocast_cases.h"
#endif
