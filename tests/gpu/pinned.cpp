// Pinned host memory and asynchronous copies on a real GPU (device `cuda`): the cases of
// tests/emu/pinned.cpp (tests/support/pinned_cases.h). Exits 77 (skipped) without a GPU or CUDA build.
#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }
}  // namespace

#include "tests/support/pinned_cases.h"
#endif
