// Mixed precision on the CPU (bfloat16 autocast; its products on AMX tiles where the machine has them):
// tests/support/autocast_cases.h.
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(); }
}  // namespace

#include "tests/support/autocast_cases.h"
