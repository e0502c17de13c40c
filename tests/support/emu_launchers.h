// What the emulator tests that call kernel launchers directly (tests/emu/conv_kernels.cpp,
// attention_kernels.cpp) name before including their cases (tests/support/conv_kernel_cases.h,
// attention_cases.h): the runtime rt (vb::rt::emu) and the launchers kern (vb::emu). Each test then
// defines repeat_bit_identical(run) with the fiber orders it runs `run` under
// (vb::emulator::run_under_orders); tests/support/gpu_launchers.h is the GPU's counterpart.
// Included after the kernels' own header (kernels/cuda/conv.h, attention.h), which declares vb::emu.
#pragma once

#include "kernels/emu/emulator.h"
#include "kernels/runtime.h"

namespace {
namespace rt = vb::rt::emu;
namespace kern = vb::emu;
}  // namespace
