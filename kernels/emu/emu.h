// The kernel emulator's view of CUDA C++: included before a .cu file that g++ compiles (the build
// generates that wrapper), it makes the file's kernels run as fibers on the CPU.
#pragma once

#ifndef VB_EMULATOR
#define VB_EMULATOR 1
#endif

#include "kernels/emu/device.h"
#include "kernels/emu/emulator.h"

// Under g++, CUDA's host_defines.h turns __shared__ into nothing, which would give every thread
// its own array. thread_local (static at block scope) gives one copy per worker OS thread; a
// worker runs one block at a time and a block never leaves its worker, so that is one per block.
#undef __shared__
#define __shared__ thread_local
#if defined(VB_EMU_INSIGHT)
// A translation unit compiled for insight (kernels/emu/insight.h, -fsanitize=thread) registers its module:
// the recorder then takes the module's thread-local storage, where its __shared__ arrays live, for shared
// memory.
#include "kernels/emu/insight.h"
namespace {
[[maybe_unused]] const bool vb_insight_module_registered = [] {
  static const char marker = 0;
  ::vb::emulator::insight::register_module(&marker);
  return true;
}();
}  // namespace
#endif
#define __launch_bounds__(...)

