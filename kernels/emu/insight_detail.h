// What the emulator's scheduler and runtime tell the insight recorder (kernels/emu/insight.h): calls made
// only while a Recorder lives (active()), on the thread that runs the launch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <vector_types.h>

namespace vb::emulator::insight::detail {

bool active();
// allocations: the emulated device's live allocations, [begin, end) (global memory).
void launch_begin(const char* kernel, const void* kernel_address, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
                  const std::vector<std::pair<uintptr_t, uintptr_t>>& allocations);
void block_begin(const void* dynamic_shared, std::size_t bytes);
// The block's threads run (true) or the scheduler does (false): only what threads do is recorded, not
// what the scheduler runs for them (the warp-wide operations' resolution, which reads every lane's part).
void threads_running(bool on);
void barrier();    // a __syncthreads released
void block_end();  // the block's threads have all exited
void launch_end();
// Addresses inside the modules that hold instrumented code (register_module).
std::vector<uintptr_t>& module_markers();

}  // namespace vb::emulator::insight::detail

namespace vb::rt::emu {
// The live allocations of the emulated device, [begin, end) (kernels/emu/runtime.cpp).
std::vector<std::pair<uintptr_t, uintptr_t>> allocation_ranges();
}  // namespace vb::rt::emu
