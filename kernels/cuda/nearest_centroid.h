// The nearest-centroid kernel (kernels/cuda/nearest_centroid.cu): k-means' assignment step. The launcher
// exists twice, vb::emu (run by the kernel emulator, tests/emu) and vb::cuda (run on a GPU, tests/gpu);
// pointers are contiguous device pointers from vb::rt::<same namespace>::malloc. The semantics are
// Backend::nearest_centroid's (kernels/backend.h), whose CPU implementation gives the same bits.
//
// T is float, __nv_bfloat16 or __half (loaded into float32); a template rather than a DType argument, as
// in kernels/cuda/conv.h, because tensor/dtype.h pulls in fmt, which nvcc 13 cannot compile.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/runtime.h"

// x (n, d), centroids (k ≥ 1, d) → index (n) int64, distance (n) float32:
//   distance[i] = min_c Σ_j (x[i, j] − centroids[c, j])²,  index[i] = the smallest c attaining it.
#define VB_NEAREST_CENTROID_LAUNCHER                                                                    \
  template <class T>                                                                                    \
  void nearest_centroid(const T* x, const T* centroids, int64_t n, int64_t k, int64_t d, int64_t* index, \
                        float* distance, rt::Stream stream = {});

namespace vb::emu {
VB_NEAREST_CENTROID_LAUNCHER
}  // namespace vb::emu

namespace vb::cuda {
VB_NEAREST_CENTROID_LAUNCHER
}  // namespace vb::cuda

#undef VB_NEAREST_CENTROID_LAUNCHER
