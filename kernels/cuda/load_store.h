// Loads and stores of a tensor's float storage type through float32, for the kernel sources
// (kernels/cuda/*.cu): every kernel computes in float32 and reads and writes the tensor's own type —
// float, __nv_bfloat16 or __half; stores round to nearest even. Included by kernel sources only, after
// kernels/launch.h, so that these land in vb::VB_KERNEL_NS (cuda or emu) and the two compiled copies
// never meet.
#pragma once

#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {

__device__ __forceinline__ float load(float x) { return x; }
__device__ __forceinline__ float load(__half x) { return __half2float(x); }
__device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T store(float x) {
  if constexpr (std::is_same_v<T, __half>) return __float2half_rn(x);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(x);
  else return x;
}

}  // namespace vb::VB_KERNEL_NS
