// The nearest-centroid kernel (kernels/cuda/nearest_centroid.cu) under the emulator, through the op and
// the backend's wiring, against the CPU backend: bit-identical results, every case run under four fiber
// orders (in order, reversed, a shuffle on one worker; in order on two workers) with identical bytes. The
// cases are tests/support/nearest_centroid_cases.h, shared with the GPU test.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/emu/emulator.h"
#include "tensor/device.h"

namespace {

vb::Device device_under_test() { return vb::Device(vb::DeviceType::EMU); }

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return vb::emu_test::run_four_orders(run);
}

}  // namespace

#include "tests/support/nearest_centroid_cases.h"

#endif
