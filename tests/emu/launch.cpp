// Launching under the emulator: indices, static and dynamic shared memory, argument conversion,
// fiber orders and the emulated runtime.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/cuda/emu_selftest.h"
#include "kernels/emu/emu.h"
#include "kernels/launch.h"
#include "kernels/runtime.h"

namespace launch_test {  // named, so that the emulator's errors can name the kernels

// out[linear thread of the grid] = its (threadIdx, blockIdx, blockDim, gridDim) packed in an int.
__global__ void indices_kernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  out[block * threads + thread] = static_cast<int>(threadIdx.x | threadIdx.y << 4 | threadIdx.z << 8 |
                                                   blockIdx.x << 12 | blockIdx.y << 16 | blockIdx.z << 20);
}

// Copies the block's dynamic shared memory, as the block found it, to out.
__global__ void read_fresh_dynamic_shared(float* out) {
  VB_DYNAMIC_SHARED(float, fresh);
  out[blockIdx.x * blockDim.x + threadIdx.x] = fresh[threadIdx.x];
  fresh[threadIdx.x] = 1.0f;  // must not leak into the next block
}

// Each thread writes its index to a per-block __shared__ array, then reads its neighbour's.
__global__ void shared_neighbour(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x + 100 * blockIdx.x);
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 1) % 64];
}

// Block-wide votes through the barrier variants, and a warp-wide __syncwarp: out (4, threads).
__global__ void barrier_votes(int* out) {
  const unsigned t = threadIdx.x, n = blockDim.x;
  out[0 * n + t] = __syncthreads_count(t % 3 == 0);
  out[1 * n + t] = __syncthreads_and(t < n);
  out[2 * n + t] = __syncthreads_or(t == 7);
  __syncwarp();
  out[3 * n + t] = static_cast<int>(__activemask());
}

// Throws from one thread, as a kernel calling a throwing function would.
__global__ void throwing_kernel(int* out) {
  if (threadIdx.x == 3) throw std::runtime_error("bad input");
  out[threadIdx.x] = 1;
}

}  // namespace launch_test

using namespace launch_test;

TEST_CASE("every thread of a 3-D grid of 3-D blocks sees its own indices") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  std::vector<int> out(3 * 2 * 2 * 4 * 3 * 2, -1);
  vb::launch(indices_kernel, {grid, block}, out.data());
  int i = 0;
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx)
              REQUIRE(out[i++] == static_cast<int>(tx | ty << 4 | tz << 8 | bx << 12 | by << 16 | bz << 20));
}

TEST_CASE("block sums through static and dynamic shared memory") {
  constexpr int blocks = 5;
  std::vector<float> in(blocks * 256);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 17);  // exact sums
  std::vector<float> expected(blocks, 0.0f);
  for (std::size_t i = 0; i < in.size(); ++i) expected[i / 256] += in[i];

  for (int workers : {1, 2}) {
    vb::emulator::ScopedOptions scoped(vb::emu_test::options(vb::emulator::Order::in_order, workers));
    std::vector<float> out(blocks);
    vb::emu::selftest::block_sum_static(in.data(), out.data(), blocks);
    CHECK(out == expected);
    std::fill(out.begin(), out.end(), 0.0f);
    vb::emu::selftest::block_sum_dynamic(in.data(), out.data(), blocks, 256);
    CHECK(out == expected);
  }
  const auto orders = vb::emulator::run_under_orders([&] {
    std::vector<float> out(blocks);
    vb::emu::selftest::block_sum_dynamic(in.data(), out.data(), blocks, 256);
    return out;
  });
  CHECK(orders == expected);
}

TEST_CASE("__shared__ arrays hold one copy per block") {
  for (int workers : {1, 2}) {
    vb::emulator::ScopedOptions scoped(vb::emu_test::options(vb::emulator::Order::reversed, workers));
    std::vector<int> out(4 * 64);
    vb::launch(shared_neighbour, {4, 64}, out.data());
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 64; ++t) REQUIRE(out[b * 64 + t] == (t + 1) % 64 + 100 * b);
  }
}

TEST_CASE("__syncthreads_count, _and and _or vote over the block") {
  std::vector<int> out(4 * 96);
  vb::launch(barrier_votes, {1, 96}, out.data());
  for (int t = 0; t < 96; ++t) {
    CHECK(out[t] == 32);
    CHECK(out[96 + t] == 1);
    CHECK(out[192 + t] == 1);
    CHECK(static_cast<unsigned>(out[288 + t]) == 0xffffffffu);
  }
}

TEST_CASE("dynamic shared memory starts every block as NaN") {
  std::vector<float> out(3 * 32, 0.0f);
  vb::emulator::ScopedOptions scoped(vb::emu_test::options(vb::emulator::Order::in_order, 1));
  vb::launch(read_fresh_dynamic_shared, {3, 32, 32 * sizeof(float)}, out.data());
  for (float v : out) REQUIRE(std::isnan(v));
}

TEST_CASE("arguments convert to the kernel's parameter types") {
  std::vector<float> out(64, -1.0f);
  vb::emu::selftest::argument_conversion(out.data(), 3, std::size_t{40});  // int -> float, size_t -> int
  for (int i = 0; i < 64; ++i) CHECK(out[i] == (i < 40 ? 3.0f * static_cast<float>(i) : -1.0f));
}

TEST_CASE("a kernel's exception comes out of the launch, naming the thread") {
  std::vector<int> out(32);
  const std::string error = vb::emu_test::error_of([&] { vb::launch(throwing_kernel, {1, 32}, out.data()); });
  CHECK(error.find("throwing_kernel") != std::string::npos);
  CHECK(error.find("thread 3 threw: bad input") != std::string::npos);
}

TEST_CASE("launch configurations CUDA rejects are errors") {
  std::vector<int> out(4096);
  const std::string error = vb::emu_test::error_of([&] { vb::launch(indices_kernel, {1, 2048}, out.data()); });
  CHECK(error.find("at most 1024 threads") != std::string::npos);
  CHECK(error.find("launch.cpp:") != std::string::npos);
}

TEST_CASE("the emulated runtime: memory starts as NaN, copies, events, bad frees") {
  namespace rt = vb::rt::emu;
  CHECK(rt::device_count() == 1);
  auto* device = static_cast<float*>(rt::malloc(16 * sizeof(float)));
  CHECK(std::isnan(device[7]));
  std::vector<float> host(16), back(16);
  std::iota(host.begin(), host.end(), 0.0f);
  const vb::rt::Stream stream = rt::stream_create();
  const vb::rt::Event start = rt::event_create(), stop = rt::event_create();
  rt::event_record(start, stream);
  rt::copy_async(device, host.data(), 16 * sizeof(float), stream);
  rt::memset_async(device, 0, 4 * sizeof(float), stream);
  rt::event_record(stop, stream);
  rt::stream_synchronize(stream);
  rt::copy(back.data(), device, 16 * sizeof(float));
  CHECK(back[3] == 0.0f);
  CHECK(back[4] == 4.0f);
  CHECK(rt::elapsed_ms(start, stop) >= 0.0f);
  rt::event_destroy(start);
  rt::event_destroy(stop);
  rt::stream_destroy(stream);
  rt::free(device);
  CHECK_THROWS_WITH_AS(rt::free(device), doctest::Contains("launch.cpp:"), vb::rt::Error);
}

#if defined(VB_HAVE_CUDA)
TEST_CASE("without a GPU, the real runtime's errors carry the caller's file:line and CUDA's error") {
  if (vb::rt::cuda::device_count() > 0) return;  // covered by tests/gpu where a GPU exists
  const std::string expected = "launch.cpp:" + std::to_string(__LINE__ + 1) + ": cudaMalloc of 64 bytes: cudaError";
  CHECK_THROWS_WITH_AS(vb::rt::cuda::malloc(64), doctest::Contains(expected.c_str()), vb::rt::Error);
}
#endif

#endif  // VB_HAVE_EMU
