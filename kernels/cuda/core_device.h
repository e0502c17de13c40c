// Device-side helpers shared by the core kernels (copy.cu, elementwise.cu, reduce.cu): the C++ type of
// each DType on the device, conversions with PyTorch's rules, strided offsets, launch sizes and a
// dtype dispatch. Included by .cu files only (after kernels/launch.h).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/core.h"

namespace vb::VB_KERNEL_NS::core {

using bfloat16 = __nv_bfloat16;
using half = __half;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

// The type arithmetic runs in: float32 for the half types, the type itself otherwise.
template <class T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;

template <class T>
__host__ __device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, half>) return __half2float(v);
  else if constexpr (std::is_same_v<T, bfloat16>) return __bfloat162float(v);
  else return static_cast<float>(v);
}

// D from S as the CPU backend's scalar_cast: float → integer truncates, anything → bool is != 0, half
// types round to nearest even through float32.
template <class D, class S>
__host__ __device__ __forceinline__ D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (is_half_v<S>) return to_float(s) != 0.0f;
    else return s != S(0);
  } else if constexpr (std::is_same_v<D, half>) {
    return __float2half_rn(to_float(s));
  } else if constexpr (std::is_same_v<D, bfloat16>) {
    return __float2bfloat16_rn(to_float(s));
  } else if constexpr (is_half_v<S>) {
    return static_cast<D>(to_float(s));
  } else {
    return static_cast<D>(s);
  }
}

// Offsets (in elements) of linear index i of the layout's iteration space, for its first N operands.
template <int N>
__host__ __device__ __forceinline__ void layout_offsets(const StridedLayout& layout, int64_t i, int64_t (&offset)[N]) {
  for (int k = 0; k < N; ++k) offset[k] = 0;
  for (int d = layout.ndim - 1; d >= 0; --d) {
    const int64_t size = layout.sizes[d];
    const int64_t index = i % size;
    i /= size;
    for (int k = 0; k < N; ++k) offset[k] += index * layout.strides[k][d];
  }
}

// V elements loaded or stored as one aligned access (16 bytes when sizeof(T)·V = 16).
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

inline constexpr unsigned kThreads = 256;

// Blocks for a grid-stride loop over `work` items of kThreads threads. Under the emulator the grid is
// capped at 16 blocks: every thread is a fiber, so fewer threads doing more iterations run faster,
// and the tests then exercise the grid-stride loop.
inline unsigned grid_for(int64_t work) {
#if defined(VB_EMULATOR)
  constexpr int64_t max_blocks = 16;
#else
  constexpr int64_t max_blocks = 65535;
#endif
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

}  // namespace vb::VB_KERNEL_NS::core

// VB_CORE_DISPATCH(dtype, T, body): body with T the device type of a (non-float64) dtype.
#define VB_CORE_DISPATCH_CASE(enumv, type, ...) \
  case ::vb::DType::enumv: {                    \
    using T = type;                             \
    __VA_ARGS__;                                \
    break;                                      \
  }
#define VB_CORE_DISPATCH(dtype, ...)                                                \
  switch (dtype) {                                                                  \
    VB_CORE_DISPATCH_CASE(Float32, float, __VA_ARGS__)                              \
    VB_CORE_DISPATCH_CASE(BFloat16, ::vb::VB_KERNEL_NS::core::bfloat16, __VA_ARGS__) \
    VB_CORE_DISPATCH_CASE(Float16, ::vb::VB_KERNEL_NS::core::half, __VA_ARGS__)     \
    VB_CORE_DISPATCH_CASE(Int32, int32_t, __VA_ARGS__)                              \
    VB_CORE_DISPATCH_CASE(Int64, int64_t, __VA_ARGS__)                              \
    VB_CORE_DISPATCH_CASE(Bool, bool, __VA_ARGS__)                                  \
    default: throw std::invalid_argument("core kernels: unsupported dtype");        \
  }
