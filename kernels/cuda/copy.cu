// Copies, conversions, fills, ranges and random draws on the device.
//
// Math: copy dst[i] = convert(src[i]) (float → integer truncates, → bool is != 0, half types round to
// nearest even); fill dst[i] = v; arange dst[i] = start + i·step; random dst[i] = a + (b − a)·u or
// a + b·z or randint with u, z, bits from Philox4x32-10 of (seed, offset + i) — the same stream as the
// CPU backend (tensor/philox.h is host and device code), computed in float64 like the CPU's.
// Cost: no FLOPs; copy reads and writes every element once (bytes = n·(size(src) + size(dst))), the
// others write n·size(dst). Philox is ~10 rounds of two 32×32→64-bit multiplies per element.
// Launch: grid-stride loops of 256 threads per block (core::grid_for); copy computes each element's
// source and destination offsets from the layout's sizes and strides (an N-d index, divisions only).
// A same-dtype contiguous copy is not a kernel: the backend calls the runtime's copy.
#include "kernels/launch.h"
#include "kernels/cuda/core_device.h"
#include "tensor/philox.h"

namespace vb::VB_KERNEL_NS {
namespace {

using namespace core;

template <class S, class D>
__global__ void copy_kernel(const S* src, D* dst, StridedLayout layout, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t offset[2];
    layout_offsets<2>(layout, i, offset);
    dst[offset[0]] = convert<D>(src[offset[1]]);
  }
}

template <class T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) dst[i] = value;
}

template <class T>
__global__ void arange_kernel(T* dst, double start, double step_value, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
      dst[i] = T(int64_t(start) + i * int64_t(step_value));
    else
      dst[i] = convert<T>(static_cast<float>(start + double(i) * step_value));
  }
}

// The draw converted as the CPU converts a double: through float32 for every non-integer type.
template <class T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return T(v);
  else if constexpr (std::is_same_v<T, bool>) return v != 0.0;
  else return convert<T>(static_cast<float>(v));
}

template <class T>
__global__ void random_kernel(T* dst, int kind, double a, double b, uint64_t seed, uint64_t offset, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const uint64_t counter = offset + uint64_t(i);
    switch (static_cast<RandomKind>(kind)) {
      case RandomKind::Randint: {
        const int64_t r = philox_randint(seed, counter, int64_t(a), int64_t(b));
        if constexpr (std::is_integral_v<T>) dst[i] = T(r);
        else dst[i] = convert<T>(static_cast<float>(r));
        break;
      }
      case RandomKind::Uniform: dst[i] = from_double<T>(a + (b - a) * double(philox_uniform(seed, counter))); break;
      case RandomKind::Normal: dst[i] = from_double<T>(a + b * double(philox_normal(seed, counter))); break;
    }
  }
}

// A double → T as the CPU's scalar_cast<T>(double) (half types through float32).
template <class T>
T host_value(double v) {
  if constexpr (std::is_same_v<T, bool>) return v != 0.0;
  else if constexpr (std::is_integral_v<T>) return T(v);
  else return convert<T>(static_cast<float>(v));
}

}  // namespace

void copy_strided(const void* src, DType src_dtype, void* dst, DType dst_dtype, const StridedLayout& layout,
                  int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(src_dtype, {
    using S = T;
    VB_CORE_DISPATCH(dst_dtype, {
      launch(copy_kernel<S, T>, {grid_for(n), kThreads, 0, stream}, static_cast<const S*>(src), static_cast<T*>(dst),
             layout, n);
    });
  });
}

void fill_contiguous(void* dst, DType dtype, double value, int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, {
    launch(fill_kernel<T>, {grid_for(n), kThreads, 0, stream}, static_cast<T*>(dst), host_value<T>(value), n);
  });
}

void arange_contiguous(void* dst, DType dtype, double start, double step, int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, {
    launch(arange_kernel<T>, {grid_for(n), kThreads, 0, stream}, static_cast<T*>(dst), start, step, n);
  });
}

void random_contiguous(void* dst, DType dtype, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset,
                       int64_t n, rt::Stream stream) {
  if (n == 0) return;
  VB_CORE_DISPATCH(dtype, {
    launch(random_kernel<T>, {grid_for(n), kThreads, 0, stream}, static_cast<T*>(dst), static_cast<int>(kind), a, b,
           seed, offset, n);
  });
}

}  // namespace vb::VB_KERNEL_NS
