// The emulator's memory-access insight (kernels/emu/insight.h) on planted access patterns whose costs are
// known: unit-stride float loads (4 sectors per request), a stride of 32 floats (32), float4 loads (16),
// a broadcast (1 sector; 1 shared wavefront), a 32 × 32 tile read down its columns (32-way bank
// conflicts) and the same tile padded to 33 columns (none), 8-byte shared accesses (2 wavefronts, the
// ideal for 256 bytes), dynamic shared memory, and divergent branches (odd and even lanes apart; a branch
// on the block index is not divergent). This file is compiled with -fsanitize=thread and
// VB_EMU_INSIGHT (CMakeLists.txt), which is what instruments its kernels.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU) && !defined(VB_EMU_INSIGHT)
#include <cstdlib>
// Built without instrumentation (an AddressSanitizer build cannot add ThreadSanitizer's): skipped.
[[maybe_unused]] static const bool skipped = [] {
  std::exit(77);
  return true;
}();
#endif

#if defined(VB_HAVE_EMU) && defined(VB_EMU_INSIGHT)

#include "kernels/emu/emu.h"
#include "kernels/emu/insight.h"
#include "kernels/launch.h"
#include "kernels/runtime.h"

namespace planted_access {

__global__ void copy_unit(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i];
}

__global__ void copy_strided(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i * 32];
}

__global__ void copy_float4(const float4* in, float4* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i];
}

__global__ void broadcast(const float* in, float* out) {
  __shared__ float one[32];
  if (threadIdx.x == 0) one[0] = in[0];
  __syncthreads();
  out[threadIdx.x] = one[0];
}

// The classic transpose of a 32 × 32 tile with 32 × 8 threads: rows written across a warp, then read
// down the columns. Without padding a column lies in one bank.
template <int Pitch>
__global__ void transpose(const float* in, float* out) {
  __shared__ float tile[32][Pitch];
  for (unsigned j = 0; j < 32; j += 8) tile[threadIdx.y + j][threadIdx.x] = in[(threadIdx.y + j) * 32 + threadIdx.x];
  __syncthreads();
  for (unsigned j = 0; j < 32; j += 8) out[(threadIdx.y + j) * 32 + threadIdx.x] = tile[threadIdx.x][threadIdx.y + j];
}

__global__ void shared_float2(const float2* in, float2* out) {
  VB_DYNAMIC_SHARED(float2, buffer);
  buffer[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = buffer[threadIdx.x];
}

// Odd and even lanes take different sides of a branch: one divergent branch per warp. (A load on one
// side keeps it a branch: g++, like nvcc, turns a branch between two constants into a select.)
__global__ void odd_even(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (threadIdx.x % 2) out[i] = in[i];
  else out[i] = 2.0f;
}

// A branch on the block index: every lane of a warp goes the same way.
__global__ void uniform(float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (blockIdx.x == 0) out[i] = 1.0f;
  else out[i] = 2.0f;
}

}  // namespace planted_access

using namespace vb;
using namespace vb::emulator::insight;

namespace {

struct DeviceBuffer {
  explicit DeviceBuffer(std::size_t bytes) : p(rt::emu::malloc(bytes)) { rt::emu::memset(p, 0, bytes); }
  ~DeviceBuffer() { rt::emu::free(p); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
  void* p;
};

const KernelStats& kernel(const Report& r, const std::string& name) {
  const KernelStats* k = r.find(name);
  REQUIRE_MESSAGE(k != nullptr, "no kernel named ", name, " in\n", format_report(r));
  return *k;
}

double per_request(int64_t sectors, int64_t requests) { return requests ? double(sectors) / double(requests) : 0; }

}  // namespace

TEST_CASE("global requests: 4 sectors per request at unit stride, 32 at a stride of 32 floats, 16 for float4") {
  DeviceBuffer in(32 * 1024 * sizeof(float)), out(1024 * sizeof(float4));
  Report r;
  {
    Recorder rec;
    launch(planted_access::copy_unit, {dim3(4), dim3(256)}, in.as<const float>(), out.as<float>());
    launch(planted_access::copy_strided, {dim3(4), dim3(256)}, in.as<const float>(), out.as<float>());
    launch(planted_access::copy_float4, {dim3(2), dim3(128)}, in.as<const float4>(), out.as<float4>());
    r = rec.report();
  }
  MESSAGE(format_report(r));
  const KernelStats& unit = kernel(r, "copy_unit");
  CHECK(unit.blocks == 4);
  CHECK(unit.total.global_loads == 32);  // 1024 threads = 32 warps, one load each
  CHECK(unit.total.global_stores == 32);
  CHECK(per_request(unit.total.global_load_sectors, unit.total.global_loads) == 4.0);
  CHECK(per_request(unit.total.global_store_sectors, unit.total.global_stores) == 4.0);
  CHECK(unit.total.global_load_bytes == 4096);

  const KernelStats& strided = kernel(r, "copy_strided");
  CHECK(strided.total.global_loads == 32);
  CHECK(per_request(strided.total.global_load_sectors, strided.total.global_loads) == 32.0);
  CHECK(per_request(strided.total.global_store_sectors, strided.total.global_stores) == 4.0);

  const KernelStats& vec = kernel(r, "copy_float4");
  CHECK(vec.total.global_loads == 8);
  CHECK(per_request(vec.total.global_load_sectors, vec.total.global_loads) == 16.0);  // 512 B per warp
  CHECK(vec.total.shared_loads + vec.total.shared_stores == 0);

  // The counts land on this file's lines (debug information through addr2line).
  bool named = false;
  for (const LineStats& l : unit.lines) named |= l.location.find("insight.cpp:") != std::string::npos;
  CHECK_MESSAGE(named, format_report(r));
}

TEST_CASE("shared requests: a transposed tile has 32-way conflicts, padded to 33 columns none; a broadcast is free") {
  DeviceBuffer in(32 * 32 * sizeof(float)), out(32 * 32 * sizeof(float));
  Report r;
  {
    Recorder rec;
    launch(planted_access::transpose<32>, {dim3(1), dim3(32, 8)}, in.as<const float>(), out.as<float>());
    launch(planted_access::transpose<33>, {dim3(1), dim3(32, 8)}, in.as<const float>(), out.as<float>());
    launch(planted_access::broadcast, {dim3(1), dim3(64)}, in.as<const float>(), out.as<float>());
    r = rec.report();
  }
  MESSAGE(format_report(r));
  const KernelStats& plain = kernel(r, "transpose<32>");
  // 8 warps × 4 row writes and 4 column reads: 64 shared requests.
  CHECK(plain.total.shared_stores == 32);
  CHECK(plain.total.shared_loads == 32);
  CHECK(plain.total.max_ways == 32);
  CHECK(plain.total.shared_wavefronts == 32 * 1 + 32 * 32);  // writes conflict-free, reads 32-way
  CHECK(plain.total.shared_ideal_wavefronts == 64);
  CHECK(plain.barriers == 1);

  const KernelStats& padded = kernel(r, "transpose<33>");
  CHECK(padded.total.max_ways == 1);
  CHECK(padded.total.shared_wavefronts == 64);

  const KernelStats& bc = kernel(r, "broadcast");
  CHECK(bc.total.shared_loads == 2);  // two warps read one[0]
  CHECK(bc.total.shared_stores == 1);  // lane 0 alone writes it
  CHECK(bc.total.max_ways == 1);
  CHECK(bc.total.global_loads == 1);
  CHECK(bc.total.global_load_sectors == 1);
}

TEST_CASE("8-byte shared accesses take two wavefronts (two half-warps), dynamic shared memory is shared memory") {
  DeviceBuffer in(64 * sizeof(float2)), out(64 * sizeof(float2));
  Report r;
  {
    Recorder rec;
    launch(planted_access::shared_float2, {dim3(1), dim3(64), 64 * sizeof(float2)}, in.as<const float2>(),
           out.as<float2>());
    r = rec.report();
  }
  const KernelStats& k = kernel(r, "shared_float2");
  CHECK(k.dynamic_shared_bytes == 64 * sizeof(float2));
  CHECK(k.total.shared_stores == 2);
  CHECK(k.total.shared_loads == 2);
  CHECK(k.total.shared_wavefronts == 8);  // 4 requests × 2 half-warp phases, no conflict
  CHECK(k.total.shared_ideal_wavefronts == 8);
  CHECK(k.total.max_ways == 1);
  CHECK(k.total.global_loads == 2);
  CHECK(per_request(k.total.global_load_sectors, k.total.global_loads) == 8.0);  // 256 B per warp
}

TEST_CASE("divergent branches: lanes on both sides of a branch, against a branch on the block index") {
  DeviceBuffer in(256 * sizeof(float)), out(256 * sizeof(float));
  Report r;
  {
    Recorder rec;
    launch(planted_access::odd_even, {dim3(2), dim3(128)}, in.as<const float>(), out.as<float>());
    launch(planted_access::uniform, {dim3(2), dim3(128)}, out.as<float>());
    r = rec.report();
  }
  MESSAGE(format_report(r));
  CHECK(kernel(r, "odd_even").total.divergent_branches == 8);  // one per warp: 2 blocks × 4 warps
  CHECK(kernel(r, "uniform").total.divergent_branches == 0);
  CHECK(kernel(r, "uniform").total.global_stores == 8);
}

TEST_CASE("the cost functions on hand-made requests") {
  std::vector<uintptr_t> a;
  std::vector<int> lanes;
  for (int l = 0; l < 32; ++l) {
    a.push_back(4096 + uintptr_t(l) * 4 * 2);  // stride 2 floats: two lanes per bank pair… 2-way
    lanes.push_back(l);
  }
  SharedCost c = shared_request_cost(a, lanes, 4);
  CHECK(c.ways == 2);
  CHECK(c.wavefronts == 2);
  CHECK(c.ideal == 1);
  CHECK(global_request_sectors(a, 4) == 8);  // 256 B span
  // 16-byte accesses, unit stride: four quarter-warp phases of 128 B, no conflict.
  for (int l = 0; l < 32; ++l) a[size_t(l)] = 4096 + uintptr_t(l) * 16;
  c = shared_request_cost(a, lanes, 16);
  CHECK(c.wavefronts == 4);
  CHECK(c.ideal == 4);
  CHECK(c.ways == 1);
  // A misaligned float access straddles two sectors.
  CHECK(global_request_sectors({30}, 4) == 2);
  // Only one Recorder at a time.
  Recorder first;
  CHECK_THROWS_AS(Recorder(), vb::emulator::Error);
}

#endif
