// Helpers shared by the NN kernel files (kernels/cuda/nn_*.cu): storage-type loads and stores through
// float32 (kernels/cuda/load_store.h, named here nnk::load and nnk::store), warp and row reductions, the
// float dtype dispatch of the launchers, and the device-side error record the range-checking kernels
// fill. Included only by kernel sources, after kernels/launch.h, so that everything here lands in
// vb::VB_KERNEL_NS (cuda or emu) and the two compiled copies never meet.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "kernels/runtime.h"
#include "tensor/dtype.h"

// Unrolls a loop over a register array (so that the array stays in registers).
#if defined(__CUDACC__)
#define VB_NN_UNROLL _Pragma("unroll")
#else
#define VB_NN_UNROLL _Pragma("GCC unroll 32")
#endif

namespace vb::VB_KERNEL_NS::nnk {

constexpr unsigned kFullMask = 0xffffffffu;

// ---- storage types: every kernel computes in float32 and loads/stores the tensor's own type ----
using ::vb::VB_KERNEL_NS::load;
using ::vb::VB_KERNEL_NS::store;

// ---- reductions: fixed butterfly trees, so every order of the threads gives the same bits ----
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// A running softmax denominator: s = Σ exp(x − m) over the values seen, m their maximum.
struct MaxSum {
  float m = -INFINITY;
  float s = 0.0f;
};

// Adds one value x to (m, s), rescaling s when x raises the maximum. −inf adds nothing.
__device__ __forceinline__ void online_add(MaxSum& a, float x) {
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f;  // exp(−inf) = 0 for the first value
    a.m = x;
  } else if (x != -INFINITY) {
    a.s += expf(x - a.m);
  }
}

// Merges two running (m, s) pairs; empty ones (m = −inf) contribute nothing.
__device__ __forceinline__ MaxSum online_merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return a;
  return {m, (a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m)) + (b.m == -INFINITY ? 0.0f : b.s * expf(b.m - m))};
}

__device__ __forceinline__ MaxSum warp_merge(MaxSum a) {
  for (int o = 16; o > 0; o /= 2) {
    const MaxSum b{__shfl_xor_sync(kFullMask, a.m, o), __shfl_xor_sync(kFullMask, a.s, o)};
    a = online_merge(a, b);
  }
  return a;
}

// Row reductions over the kThreads threads that own a row: one warp (kThreads = 32, no block
// barrier, so warps may leave early) or the whole block (kThreads = blockDim.x, every thread must
// call). The block form combines the warps' results through shared memory, every thread reading all
// of them in warp order (the same tree for every thread).
template <int kThreads>
__device__ __forceinline__ float row_sum(float v) {
  v = warp_sum(v);
  if constexpr (kThreads > 32) {
    __shared__ float partial[kThreads / 32];
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    __syncthreads();  // a previous call's readers are done with partial
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < kThreads / 32 ? partial[lane] : 0.0f;
    v = warp_sum(v);
  }
  return v;
}

template <int kThreads>
__device__ __forceinline__ MaxSum row_merge(MaxSum a) {
  a = warp_merge(a);
  if constexpr (kThreads > 32) {
    __shared__ float partial_m[kThreads / 32], partial_s[kThreads / 32];
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    __syncthreads();
    if (lane == 0) {
      partial_m[warp] = a.m;
      partial_s[warp] = a.s;
    }
    __syncthreads();
    a = lane < kThreads / 32 ? MaxSum{partial_m[lane], partial_s[lane]} : MaxSum{};
    a = warp_merge(a);
  }
  return a;
}

// ---- errors: vb::fail with a runtime format string (nvcc cannot evaluate fmt's consteval check) ----
template <class... Args>
[[noreturn]] void raise(const char* format, Args&&... args) {
  fail(fmt::runtime(format), std::forward<Args>(args)...);
}

template <class... Args>
void check(bool ok, const char* format, Args&&... args) {
  if (!ok) raise(format, std::forward<Args>(args)...);
}

// ---- the launchers' dtype dispatch: f(T{}) with T the storage type of dtype ----
template <class F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); break;
    case DType::BFloat16: f(__nv_bfloat16{}); break;
    case DType::Float16: f(__half{}); break;
    default: raise("{}: expected float32, bfloat16 or float16 data, got {}", op, dtype);
  }
}

// The unsigned integer of an element's size, for kernels that move elements without arithmetic.
template <class F>
void dispatch_bytes(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 1: f(std::uint8_t{}); break;
    case 2: f(std::uint16_t{}); break;
    case 4: f(std::uint32_t{}); break;
    default: f(std::uint64_t{}); break;
  }
}

// Reads an int32 or int64 index.
__device__ __forceinline__ int64_t load_index(const void* ids, int64_t i, bool int64) {
  return int64 ? static_cast<const int64_t*>(ids)[i] : static_cast<const int32_t*>(ids)[i];
}

// The first bad position a kernel found, in device memory: a kernel that meets a bad index calls
// report(position) and leaves that element alone; the launcher then reads the record back (one
// 8-byte copy and a stream synchronisation) and throws vb::Error naming the index. One record per
// host thread, allocated on first use and kept for the process's life.
class ErrorRecord {
 public:
  static constexpr unsigned long long kNone = std::numeric_limits<unsigned long long>::max();

  // Clears the record (ordered on `stream`) and returns its device address for the kernel.
  static unsigned long long* arm(rt::Stream stream) {
    unsigned long long* record = address();
    rt::VB_KERNEL_NS::memset_async(record, 0xff, sizeof(unsigned long long), stream);  // kNone
    return record;
  }
  // The first bad position reported since arm(), or kNone; waits for the stream.
  static unsigned long long first_bad(rt::Stream stream) {
    unsigned long long host = kNone;
    rt::VB_KERNEL_NS::copy_async(&host, address(), sizeof host, stream);
    rt::VB_KERNEL_NS::stream_synchronize(stream);
    return host;
  }

 private:
  static unsigned long long* address() {
    thread_local unsigned long long* record =
        static_cast<unsigned long long*>(rt::VB_KERNEL_NS::malloc(sizeof(unsigned long long)));
    return record;
  }
};

__device__ __forceinline__ void report(unsigned long long* record, int64_t position) {
  atomicMin(record, static_cast<unsigned long long>(position));  // the lowest position wins: deterministic
}

// Reads index `position` of a device int32/int64 array back to the host (for an error message).
inline int64_t read_index(const void* ids, int64_t position, bool int64) {
  if (int64) {
    int64_t v = 0;
    rt::VB_KERNEL_NS::copy(&v, static_cast<const int64_t*>(ids) + position, sizeof v);
    return v;
  }
  int32_t v = 0;
  rt::VB_KERNEL_NS::copy(&v, static_cast<const int32_t*>(ids) + position, sizeof v);
  return v;
}

}  // namespace vb::VB_KERNEL_NS::nnk
