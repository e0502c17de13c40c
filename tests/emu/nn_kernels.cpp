// The NN kernels (kernels/cuda/nn_*.cu) under the emulator against the CPU backend: every case runs
// under four fiber orders (in order, reversed, a shuffle on one worker; in order on two workers) and
// must give bit-identical bytes. The cases are tests/support/nn_kernels_cases.h.
#include <doctest/doctest.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/emu/emulator.h"

namespace {

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return vb::emu_test::run_four_orders(run);
}

}  // namespace

#define NN_KERNELS_NS emu
#include "tests/support/nn_kernels_cases.h"

#endif
