// Scaled dot-product attention on the GPU (kernels/cuda/attention.cu for float32,
// kernels/cuda/attention_mma.cu on the tensor cores for bfloat16/float16): FlashAttention-style forward
// and backward. The launchers exist three times: vb::emu (run by the kernel emulator, tests/emu), vb::cuda
// (run on a GPU, tests/gpu) and vb::emu_insight (the emulator observing every access: the attention ladder's
// rungs 2 and 3, kernels/cuda/attention_ladder.h). Every pointer is a device pointer from
// vb::rt::<same namespace>::malloc; q, k, v, out, gout, gq, gk, gv are contiguous.
//
// Element types T: float, __nv_bfloat16, __half (accumulated in float32; for the 16-bit types P' and dS
// are rounded to T before their products, as FlashAttention does). The mask's element type M is float
// or T. The semantics are those of Backend::attention / attention_backward (kernels/backend.h):
// S = scale·q·kᵀ + mask, P = softmax(S), P' = dropout(P) with mask element ((b·H + h)·Tq + i)·Tk + j,
// out = P'·v, lse = logsumexp(S) in float32; a fully masked row gives out = 0, lse = −inf and zero
// gradients, as on the CPU. Arguments the kernels cannot take (D outside [1, 128], p outside [0, 1],
// negative or too large sizes) throw std::invalid_argument: the backend validates tensors before.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/runtime.h"

namespace vb {

struct AttentionShape {
  int64_t B = 0, H = 0, Tq = 0, Tk = 0, D = 0;  // D ≤ attention_max_head_dim
};

inline constexpr int64_t attention_max_head_dim = 128;

template <class T, class M = T>
struct AttentionInputs {
  AttentionShape shape;
  const T* q = nullptr;  // (B, H, Tq, D)
  const T* k = nullptr;  // (B, H, Tk, D)
  const T* v = nullptr;  // (B, H, Tk, D)
  // Additive mask, element (b, h, i, j) at mask[b·s0 + h·s1 + i·s2 + j·s3]; strides in elements, 0 for
  // a broadcast dimension (a (B, 1, 1, Tk) padding mask expanded to (B, H, Tq, Tk)). nullptr: none.
  const M* mask = nullptr;
  int64_t mask_stride[4] = {0, 0, 0, 0};
  double scale = 1.0;
  double dropout_p = 0.0;  // element kept when philox_uniform(seed, offset + index) ≥ float(p)
  uint64_t seed = 0, offset = 0;
};

// Floats of workspace attention_backward needs for Δ (one per query row).
inline std::size_t attention_backward_workspace(const AttentionShape& s) { return std::size_t(s.B * s.H * s.Tq); }

}  // namespace vb

// The launchers, declared for both namespaces. Instantiated for (T, M) = (float, float),
// (__nv_bfloat16, __nv_bfloat16), (__nv_bfloat16, float), (__half, __half), (__half, float).
//   attention_forward:  out (B, H, Tq, D), lse (B, H, Tq) float32.
//   attention_backward: out, gout (B, H, Tq, D), lse from the forward; delta: attention_backward_workspace
//                       floats of scratch; writes gq (B, H, Tq, D), gk and gv (B, H, Tk, D).
#define VB_ATTENTION_LAUNCHERS                                                                             \
  template <class T, class M>                                                                              \
  void attention_forward(const AttentionInputs<T, M>& in, T* out, float* lse, rt::Stream stream = {});     \
  template <class T, class M>                                                                              \
  void attention_backward(const AttentionInputs<T, M>& in, const T* out, const T* gout, const float* lse, \
                          float* delta, T* gq, T* gk, T* gv, rt::Stream stream = {});

namespace vb::emu {
VB_ATTENTION_LAUNCHERS
}  // namespace vb::emu

namespace vb::emu_insight {
VB_ATTENTION_LAUNCHERS
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_ATTENTION_LAUNCHERS
}  // namespace vb::cuda

#undef VB_ATTENTION_LAUNCHERS
