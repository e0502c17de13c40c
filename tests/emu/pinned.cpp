// Pinned host memory under the emulator (device `emu`): tests/support/pinned_cases.h.
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::EMU); }
}  // namespace

#include "tests/support/pinned_cases.h"
#endif
