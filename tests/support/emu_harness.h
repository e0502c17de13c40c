// The one way a device test shares its cases between the emulator and a GPU: tests/emu/<name>.cpp includes
// this file, tests/gpu/<name>.cpp includes tests/support/gpu_harness.h, and both then include the same
// tests/support/<name>_cases.h, which uses only these names:
//   device_under_test()        the device the cases run on (emu here);
//   rt, kern                   the runtime (vb::rt::emu) and the kernel launchers (vb::emu) of that device;
//   repeat_bit_identical(run)  runs `run` (launches, returns a vector of trivially copyable results) under
//                              four fiber orders — in order, reversed with strict cp.async, a shuffle, in
//                              order on two workers — throws unless every run gives the same bits (a race or
//                              an order-dependent sum otherwise), and returns the first run's results;
//   run_orders(run)            the same, for a `run` returning bytes.
// Without the emulator in the build, the test exits 77 (skipped) at start-up (tests/emu/emu_test.h).
#pragma once

#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/cuda/allocator.h"
#include "kernels/emu/emulator.h"
#include "kernels/runtime.h"
#include "tensor/device.h"

namespace vb::emu {}  // the launchers, declared by the kernels' own headers

namespace {
namespace rt = vb::rt::emu;
namespace kern = vb::emu;

// Device allocations are poisoned (0xFF bytes: NaN in every float type), so an output element no kernel
// writes fails the comparison that reads it.
inline const bool poisoned = [] {
  vb::set_poison_allocations(true);
  return true;
}();

[[maybe_unused]] vb::Device device_under_test() { return vb::Device(vb::DeviceType::EMU); }

template <class Run>
auto repeat_bit_identical(Run run) {
  using vb::emulator::Order;
  std::vector<vb::emulator::Options> orders = {vb::emu_test::options(Order::in_order, 1),
                                               vb::emu_test::options(Order::reversed, 1),
                                               vb::emu_test::options(Order::shuffled, 1),
                                               vb::emu_test::options(Order::in_order, 2)};
  orders[2].seed = 7;
  return vb::emulator::run_under_orders(run, orders);
}

[[maybe_unused]] std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return repeat_bit_identical(run);
}
}  // namespace
#endif
