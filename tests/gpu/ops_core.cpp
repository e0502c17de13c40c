// The CUDA backend's core kernels on a real GPU (device `cuda`) against the CPU backend: the same cases as
// tests/emu/ops_core.cpp (tests/support/ops_core_cases.h), each run twice and required bit-identical.
// Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }
}  // namespace

#include "tests/support/ops_core_cases.h"
#endif
