// The CUDA backend's core kernels under the emulator (device `emu`) against the CPU backend: copy, fill,
// arange, random, unary, binary, where, reductions and matmul, forward and backward, every dtype, under
// two fiber orders (tests/support/ops_core_cases.h).
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::EMU); }
}  // namespace

#include "tests/support/ops_core_cases.h"
#endif
