// The NN, convolution and attention kernel families under the emulator (device `emu`), reached through
// the public ops and the backend's wiring, against the CPU backend (tests/support/ops_wired_cases.h).
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(vb::DeviceType::EMU); }
}  // namespace

#include "tests/support/ops_wired_cases.h"
#endif
