// The attention kernels (kernels/cuda/attention.cu, attention_mma.cu) under the emulator: the cases of
// tests/support/attention_cases.h (forward and backward against the CPU backend in float32, the
// FlashAttention criterion against float64 for bfloat16/float16), every case under three fiber/block
// orders with bit-identical results.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include <vector>

#include "kernels/cuda/attention.h"
#include "tests/support/emu_launchers.h"  // rt, kern

namespace {
// In order on one worker; reversed (strict cp.async) and shuffled on two.
template <class Run>
auto repeat_bit_identical(Run run) {
  std::vector<vb::emulator::Options> orders = {vb::emu_test::options(vb::emulator::Order::in_order, 1),
                                               vb::emu_test::options(vb::emulator::Order::reversed, 2),
                                               vb::emu_test::options(vb::emulator::Order::shuffled, 2)};
  orders[2].seed = 17;
  return vb::emulator::run_under_orders(run, orders);
}
}  // namespace

#include "tests/support/attention_cases.h"

#endif  // VB_HAVE_EMU
