// Benchmark of the kernel emulator itself: raw fiber switches per second for each switch backend,
// then a 256-thread block crossing 64 __syncthreads and 64 warp shuffles, and a 64-block grid of
// the same on 1 and 2 workers. Prints a table.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#if !defined(VB_HAVE_EMU)
// Without CUDA's headers the build has no emulator (cmake/cuda.cmake): nothing to measure.
int main() {
  std::printf("bench_emu_fibers: this build has no kernel emulator (CUDA's headers were not found)\n");
  return 77;
}
#else
#include "kernels/emu/emu.h"
#include "kernels/emu/fiber.h"
#include "kernels/launch.h"

namespace bench {

using Clock = std::chrono::steady_clock;
using vb::emulator::Fibers;
namespace detail = vb::emulator::detail;

// Ping-pong between this thread's context and one fiber: two switches per round.
thread_local detail::Context main_context, fiber_context;
thread_local Fibers backend;

void ping_pong() {
  detail::fiber_started();
  for (;;) detail::switch_context(fiber_context, main_context, backend);
}

double switches_per_second(Fibers fibers) {
  backend = fibers;
  detail::StackPool pool;
  detail::make_thread_context(main_context);
  detail::make_context(fiber_context, fibers, pool.get(1, 64 * 1024)[0], &ping_pong);
  constexpr int rounds = 200000;
  const auto start = Clock::now();
  for (int i = 0; i < rounds; ++i) detail::switch_context(main_context, fiber_context, fibers);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return 2.0 * rounds / seconds;
}

// Each thread crosses 64 barriers and 64 shuffles: 128 synchronisation points per thread.
__global__ void barriers_and_shuffles(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int i = 0; i < 64; ++i) {
    v += __shfl_xor_sync(0xffffffffu, v, i & 31);
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Median wall time in milliseconds of launching `blocks` blocks of 256 threads.
double launch_ms(Fibers fibers, int workers, unsigned blocks) {
  vb::emulator::Options options = vb::emulator::current_options();
  options.fibers = fibers;
  options.workers = workers;
  vb::emulator::ScopedOptions scoped(options);
  std::vector<float> out(blocks * 256);
  std::vector<double> times;
  for (int repeat = 0; repeat < 7; ++repeat) {
    const auto start = Clock::now();
    vb::launch(barriers_and_shuffles, {blocks, 256}, out.data());
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace bench

int main() {
  using bench::Fibers;
  std::printf("kernel emulator benchmark (switches: 256 threads x 128 sync points = 32768 per block)\n\n");
  std::printf("%-10s %16s %18s %16s %20s %20s\n", "fibers", "switches/s", "ns/switch", "1 block (ms)",
              "64 blocks, 1 wkr (ms)", "64 blocks, 2 wkr (ms)");
  for (Fibers fibers : {Fibers::ucontext, Fibers::fast}) {
    if (fibers == Fibers::fast && !vb::emulator::detail::fast_fibers_available()) continue;
    const double rate = bench::switches_per_second(fibers);
    std::printf("%-10s %16.3g %18.1f %16.2f %20.1f %20.1f\n", fibers == Fibers::fast ? "fast" : "ucontext", rate,
                1e9 / rate, bench::launch_ms(fibers, 1, 1), bench::launch_ms(fibers, 1, 64),
                bench::launch_ms(fibers, 2, 64));
  }
}
#endif  // VB_HAVE_EMU
