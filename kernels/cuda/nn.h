// The NN kernels of the CUDA backend (kernels/cuda/nn_*.cu): softmax, layer_norm, cross_entropy,
// embedding and the index ops, dropout and AdamW, as launchers on raw device pointers. Each exists
// twice: vb::cuda (run on a GPU) and vb::emu (run by the kernel emulator); pointers come from
// vb::rt::<same namespace>::malloc. The semantics are kernels/backend.h's, and the CPU backend
// (kernels/cpu/) is the reference every kernel is tested against.
//
// Conventions: tensors are contiguous row-major unless a launcher says otherwise; `dtype` is the
// storage type of the float data (float32, bfloat16 or float16; arithmetic runs in float32); every
// launcher is ordered on `stream`. Launchers that check indices (embedding, the index ops,
// cross_entropy's targets) synchronise the stream to read the check back and throw vb::Error naming
// the bad index, as the CPU backend does.
#pragma once

// tensor/dtype.h brings fmt, which turns its constexpr support off when it sees __NVCC__; g++ then
// rejects fmt's own constexpr functions in nvcc's host pass. The host compilers we use support it.
#if defined(__NVCC__) && !defined(FMT_USE_CONSTEXPR)
#define FMT_USE_CONSTEXPR 1
#endif

#include <cstddef>
#include <cstdint>

#include "kernels/runtime.h"
#include "tensor/dtype.h"

namespace vb::nn_kernels {

// One tensor of a fused AdamW update. param and grad have dtype; m and v are float32; all numel long.
struct AdamWTensor {
  void* param;
  const void* grad;
  float* m;
  float* v;
  int64_t numel;
  DType dtype;
  bool decay;  // decoupled weight decay applies to this tensor
};

// One AdamW step (train/optim.h's formula):
//   p ← p·(1 − lr·λ) (decay tensors);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / c1) · m / (√v / √c2 + ε),   c1 = 1 − β1ᵗ, c2 = 1 − β2ᵗ (the bias corrections).
struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  double bias_correction1, bias_correction2;  // c1, c2
  double grad_scale = 1;                      // g ← g·s first, rounded to g's dtype (clipping's factor)
};

// The geometry of gather / scatter_add along `dim` (at most 8 dims). idx is contiguous int64 of
// shape index_shape. gather: out (index_shape, contiguous)[p] = x[p with dim ← idx[p]], x read
// through `strides`, size = x.size(dim). scatter_add: out[p with dim ← idx[p]] += src[p], out read
// and written through `strides` (size = out.size(dim)), src read through src_strides.
struct IndexGeometry {
  static constexpr int kMaxDims = 8;
  int ndim = 0;
  int dim = 0;
  int64_t size = 0;
  int64_t index_shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  int64_t src_strides[kMaxDims] = {};
};

}  // namespace vb::nn_kernels

namespace vb::emu {
using nn_kernels::AdamWHyper;
using nn_kernels::AdamWTensor;
using nn_kernels::IndexGeometry;
#include "kernels/cuda/nn.inc"
}  // namespace vb::emu

namespace vb::cuda {
using nn_kernels::AdamWHyper;
using nn_kernels::AdamWTensor;
using nn_kernels::IndexGeometry;
#include "kernels/cuda/nn.inc"
}  // namespace vb::cuda
