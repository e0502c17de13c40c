// The CUDA backend's core kernels on raw device pointers: copy (any strides, any dtype conversion),
// fill, arange, Philox random draws, unary and binary maps, where, and row reductions. Their launchers
// exist twice, in vb::emu (run by the emulator) and vb::cuda (on a GPU); kernels/cuda/backend.inc calls
// them after validating tensors. dtypes are float32, bfloat16, float16, int32, int64 and bool (never
// float64: the backend rejects it first).
#pragma once

// kernels/backend.h brings fmt, which turns its constexpr support off when it sees __NVCC__; g++ then
// rejects fmt's own constexpr functions in nvcc's host pass. The host compilers we use support it.
#if defined(__NVCC__) && !defined(FMT_USE_CONSTEXPR)
#define FMT_USE_CONSTEXPR 1
#endif

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/runtime.h"

namespace vb {

inline constexpr int kMaxLayoutDims = 8;
inline constexpr int kMaxLayoutOperands = 4;

// An N-d iteration space and each operand's element strides in it (operand 0 is the output), passed to
// kernels by value. Built by the backend with size-1 dims dropped and mergeable dims coalesced, so a
// contiguous operation has ndim = 1 (or 0 for one element).
struct StridedLayout {
  int ndim = 0;
  int64_t sizes[kMaxLayoutDims] = {};
  int64_t strides[kMaxLayoutOperands][kMaxLayoutDims] = {};
};

}  // namespace vb

namespace vb::emu {
#include "kernels/cuda/core.inc"
}  // namespace vb::emu

namespace vb::cuda {
#include "kernels/cuda/core.inc"
}  // namespace vb::cuda
