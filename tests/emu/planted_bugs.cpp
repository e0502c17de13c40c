// Bugs planted in small kernels that the emulator must catch: a missing __syncthreads, divergent
// barriers, a thread exiting before a barrier, bad shuffle masks, a deadlock between a barrier
// and a shuffle, an out-of-bounds dynamic shared memory write and a local array read past its end
// after a barrier (AddressSanitizer build only), and a missing cp.async wait (strict mode).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/emu/emu.h"
#include "kernels/launch.h"
#include "kernels/ptx.h"

using vb::emu_test::error_of;

namespace planted {  // named, so that the emulator's errors can name the kernels

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Sums 64 values through shared memory, but thread 0 reads the others' slots without waiting for
// them to be written: BUG, no __syncthreads between the writes and the reads.
__global__ void sum_without_barrier(const float* in, float* out) {
  __shared__ float slots[64];
  slots[threadIdx.x] = in[threadIdx.x];
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int i = 0; i < 64; ++i) sum += slots[i];
    *out = sum;
  }
}

int divergent_lines[2];

// BUG: the two halves of the block wait at different __syncthreads.
__global__ void divergent_barrier(int* out) {
  if (threadIdx.x < 16) {
    divergent_lines[0] = __LINE__; __syncthreads();
  } else {
    divergent_lines[1] = __LINE__; __syncthreads();
  }
  out[threadIdx.x] = 1;
}

int exit_line;

// BUG: thread 5 returns early; the others wait for it at the barrier.
__global__ void exit_before_barrier(int* out) {
  if (threadIdx.x == 5) return;
  exit_line = __LINE__; __syncthreads();
  out[threadIdx.x] = 1;
}

// BUG: all 32 lanes shuffle, but the mask leaves out lane 31.
__global__ void mask_omits_lane(int* out) {
  out[threadIdx.x] = __shfl_sync(0x7fffffffu, static_cast<int>(threadIdx.x), 0);
}

// BUG: a shuffle width that is not a power of two.
__global__ void shuffle_width_three(int* out) {
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0, 3);
}

// BUG: the full mask names lanes 16-31, which have exited.
__global__ void mask_names_exited_lanes(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

// BUG: half the warp waits at a barrier while the other half waits for it in a shuffle.
__global__ void barrier_against_shuffle(int* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

#if defined(__SANITIZE_ADDRESS__)
// BUG: writes one float past the end of the block's dynamic shared memory.
__global__ void dynamic_shared_overflow(float* out) {
  VB_DYNAMIC_SHARED(float, buffer);
  buffer[threadIdx.x + 1] = 1.0f;  // thread 31 writes buffer[32] of 32
  __syncthreads();
  out[threadIdx.x] = buffer[threadIdx.x];
}

// Not inlined, so that the index is opaque to UndefinedBehaviorSanitizer's bounds check and the read
// is left to AddressSanitizer's stack redzones.
__device__ __attribute__((noinline)) float element(const float* values, int i) { return values[i]; }

// BUG: reads one past the end of a local array that stayed live across a __syncthreads (the fiber
// was suspended and resumed in between).
__global__ void local_overflow_after_barrier(float* out, int n) {
  float values[8];
  for (int i = 0; i < 8; ++i) values[i] = float(threadIdx.x + i);
  __syncthreads();
  out[threadIdx.x] = element(values, n);  // n = 8
}
#endif

// BUG: reads what cp.async brought to shared memory without cp.async.wait_group.
__global__ void cp_async_without_wait(const float* in, float* out) {
  __shared__ __align__(16) float buffer[32 * 4];
  vb::ptx::cp_async<16>(&buffer[threadIdx.x * 4], in + threadIdx.x * 4);
  vb::ptx::cp_async_commit();
  __syncthreads();
  for (int i = 0; i < 4; ++i) out[threadIdx.x * 4 + i] = buffer[threadIdx.x * 4 + i];
}

}  // namespace planted

using namespace planted;

TEST_CASE("a missing __syncthreads shows as results that differ between fiber orders") {
  std::vector<float> in(64);
  for (int i = 0; i < 64; ++i) in[i] = static_cast<float>(i);
  const std::string error = error_of([&] {
    vb::emulator::run_under_orders([&] {
      std::vector<float> out(1);
      vb::launch(sum_without_barrier, {1, 64}, in.data(), out.data());
      return out;
    });
  });
  CHECK(contains(error, "results differ between fiber orders"));
}

TEST_CASE("a divergent __syncthreads is an error naming both source lines") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(divergent_barrier, {1, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, "divergent __syncthreads"));
  CHECK(contains(error, "divergent_barrier"));
  CHECK(contains(error, "block (0,0,0)"));
  CHECK(contains(error, "threads 0-15 wait at __syncthreads at emu/planted_bugs.cpp:" + std::to_string(divergent_lines[0])));
  CHECK(contains(error, "threads 16-31 wait at __syncthreads at emu/planted_bugs.cpp:" + std::to_string(divergent_lines[1])));
}

TEST_CASE("a thread that exits before a barrier the others wait at is an error") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(exit_before_barrier, {2, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, "thread 5 exited while threads 0-4, 6-31 wait at __syncthreads at emu/planted_bugs.cpp:" +
                            std::to_string(exit_line)));
}

TEST_CASE("a shuffle whose mask omits a participating lane is an error") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(mask_omits_lane, {1, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, "thread 31: __shfl_sync at emu/planted_bugs.cpp:"));
  CHECK(contains(error, "with mask 0x7fffffff, which does not name the calling lane 31"));
}

TEST_CASE("a shuffle width that is not a power of two is an error") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(shuffle_width_three, {1, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, ": __shfl_sync at emu/planted_bugs.cpp:"));
  CHECK(contains(error, "width 3 is not a power of two in 1..32"));
}

TEST_CASE("a shuffle whose mask names exited lanes is an error") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(mask_names_exited_lanes, {1, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, "__shfl_down_sync at emu/planted_bugs.cpp:"));
  CHECK(contains(error, "cannot complete: thread 16 (lane 16) has exited; threads 0-15 wait there"));
}

TEST_CASE("a barrier and a shuffle waiting for each other are a deadlock, not a hang") {
  std::vector<int> out(32);
  const std::string error = error_of([&] { vb::launch(barrier_against_shuffle, {1, 32}, out.data()); });
  INFO(error);
  CHECK(contains(error, "cannot complete: thread 0 (lane 0) waits at __syncthreads at emu/planted_bugs.cpp:"));
}

TEST_CASE("the planted bugs are caught with the fast fibers too") {
  vb::emulator::Options options = vb::emu_test::options();
  options.fibers = vb::emulator::Fibers::fast;
  vb::emulator::ScopedOptions scoped(options);
  std::vector<int> out(32);
  CHECK(contains(error_of([&] { vb::launch(divergent_barrier, {1, 32}, out.data()); }), "divergent __syncthreads"));
  CHECK(contains(error_of([&] { vb::launch(mask_omits_lane, {1, 32}, out.data()); }), "does not name"));
}

TEST_CASE("a missing cp.async wait reads poison in strict mode") {
  std::vector<float> in(32 * 4, 2.0f), out(32 * 4);
  vb::emulator::Options options = vb::emu_test::options();
  options.strict_async = false;
  {
    vb::emulator::ScopedOptions scoped(options);
    vb::launch(cp_async_without_wait, {1, 32}, in.data(), out.data());
    CHECK(out[0] == 2.0f);  // by default cp.async completes at once and hides the bug
  }
  options.strict_async = true;
  vb::emulator::ScopedOptions scoped(options);
  vb::launch(cp_async_without_wait, {1, 32}, in.data(), out.data());
  for (float v : out) REQUIRE(std::isnan(v));
}

#if defined(__SANITIZE_ADDRESS__)
// A death test: a child process runs `run` and must die; returns what it wrote to stderr
// (AddressSanitizer's report).
std::string report_of_dying_child(const std::function<void()>& run) {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    dup2(pipe_fds[1], STDERR_FILENO);
    run();
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string report;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) report.append(buffer, static_cast<std::size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  INFO(report);
  CHECK_FALSE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  return report;
}

TEST_CASE("an out-of-bounds write to dynamic shared memory is caught by AddressSanitizer") {
  const std::string report = report_of_dying_child([] {
    vb::emulator::ScopedOptions scoped(vb::emu_test::options());
    std::vector<float> out(32);
    vb::launch(dynamic_shared_overflow, {1, 32, 32 * sizeof(float)}, out.data());
  });
  CHECK(contains(report, "heap-buffer-overflow"));
  CHECK(contains(report, "dynamic_shared_overflow"));
}

TEST_CASE("an overflow of a local array live across __syncthreads is caught, with either fiber switch") {
  // ASan's swapcontext interceptor used to unpoison a resumed ucontext fiber's whole stack, erasing
  // the redzones around `values`: this read went unreported with Fibers::ucontext.
  std::vector<vb::emulator::Fibers> backends = {vb::emulator::Fibers::ucontext};
#if defined(__x86_64__)
  backends.push_back(vb::emulator::Fibers::fast);
#endif
  for (const vb::emulator::Fibers fibers : backends) {
    INFO("fibers: ", std::string(fibers == vb::emulator::Fibers::fast ? "fast" : "ucontext"));
    const std::string report = report_of_dying_child([fibers] {
      vb::emulator::Options options = vb::emu_test::options();
      options.fibers = fibers;
      vb::emulator::ScopedOptions scoped(options);
      std::vector<float> out(32);
      vb::launch(local_overflow_after_barrier, {1, 32}, out.data(), 8);
    });
    CHECK(contains(report, "stack-buffer-overflow"));
    CHECK(contains(report, "local_overflow_after_barrier"));
  }
}
#else
TEST_CASE("an out-of-bounds write to dynamic shared memory is caught by AddressSanitizer" * doctest::skip()) {}
TEST_CASE("an overflow of a local array live across __syncthreads is caught, with either fiber switch" *
          doctest::skip()) {}
#endif

#endif  // VB_HAVE_EMU
