// What the attention kernel files (kernels/cuda/attention.cu: the float32 tiled kernels and the
// backward; kernels/cuda/attention_mma.cu: the tensor-core forward for bfloat16/float16) share: the
// problem as the kernels see it (scores with scale and mask, the dropout factor of one element), its
// validation, and the opt-in to more than 48 KiB of dynamic shared memory. Included only by kernel
// sources, after kernels/launch.h, so that everything lands in vb::VB_KERNEL_NS (cuda or emu).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "tensor/philox.h"

namespace vb::VB_KERNEL_NS::attention_detail {

// What every kernel of one call needs besides its pointers, in the form the kernels use.
template <class T, class M>
struct Problem {
  const T *q, *k, *v;  // (B, H, Tq|Tk, D)
  const M* mask;       // additive, strided, or nullptr
  int64_t mask_stride[4];
  int H, Tq, Tk, D;
  float scale;
  bool dropout;
  float drop_threshold, keep_scale;  // keep when u ≥ drop_threshold; kept values scale by keep_scale
  uint64_t seed, offset;

  // S_ij = scale·(q_i·k_j) + mask_ij for the pair bh = b·H + h.
  __device__ float score(int64_t bh, int i, int j, float dot) const {
    float s = scale * dot;
    if (mask) {
      const int64_t b = bh / H, h = bh % H;
      s += load(mask[b * mask_stride[0] + h * mask_stride[1] + i * mask_stride[2] + j * mask_stride[3]]);
    }
    return s;
  }

  // Z_ij: keep_scale or 0 (1 without dropout).
  __device__ float dropout_factor(int64_t bh, int i, int j) const {
    if (!dropout) return 1.0f;
    const uint64_t index = (uint64_t(bh) * uint64_t(Tq) + uint64_t(i)) * uint64_t(Tk) + uint64_t(j);
    return philox_uniform(seed, offset + index) >= drop_threshold ? keep_scale : 0.0f;
  }
};

// Launcher arguments the kernels cannot take: std::invalid_argument (fmt, behind vb::Error, does not
// compile under nvcc; the backend checks tensors with vb::Error before it gets here).
template <class T, class M>
Problem<T, M> make_problem(const char* op, const AttentionInputs<T, M>& in) {
  const AttentionShape& s = in.shape;
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(op) + ": " + what + " (B=" + std::to_string(s.B) + " H=" +
                                std::to_string(s.H) + " Tq=" + std::to_string(s.Tq) + " Tk=" + std::to_string(s.Tk) +
                                " D=" + std::to_string(s.D) + " p=" + std::to_string(in.dropout_p) + ")");
  };
  if (s.B < 0 || s.H < 0 || s.Tq < 0 || s.Tk < 0) fail("expected sizes B, H, Tq, Tk >= 0");
  if (s.D < 1 || s.D > attention_max_head_dim)
    fail("expected head dim D in [1, " + std::to_string(attention_max_head_dim) + "]");
  if (s.Tq >= (int64_t(1) << 30) || s.Tk >= (int64_t(1) << 30) || s.B * s.H > 65535)
    fail("sizes too large for this kernel: at most 2^30 queries and keys and 65535 (batch, head) pairs");
  if (!(in.dropout_p >= 0 && in.dropout_p <= 1)) fail("dropout probability must be in [0, 1]");
  Problem<T, M> pr{};
  pr.q = in.q;
  pr.k = in.k;
  pr.v = in.v;
  pr.mask = in.mask;
  for (int d = 0; d < 4; ++d) pr.mask_stride[d] = in.mask_stride[d];
  pr.H = int(s.H);
  pr.Tq = int(s.Tq);
  pr.Tk = int(s.Tk);
  pr.D = int(s.D);
  pr.scale = float(in.scale);
  pr.dropout = in.dropout_p > 0;
  pr.drop_threshold = float(in.dropout_p);
  pr.keep_scale = in.dropout_p >= 1 ? 0.0f : float(1.0 / (1.0 - in.dropout_p));  // as the CPU backend
  pr.seed = in.seed;
  pr.offset = in.offset;
  return pr;
}

// Kernels that need more than the default 48 KiB of dynamic shared memory must say so on a GPU.
template <class Kernel>
inline void allow_shared(Kernel kernel, std::size_t bytes) {
#if defined(__CUDACC__)
  if (bytes > 48 * 1024)
    rt::cuda::check(static_cast<int>(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                          static_cast<int>(bytes))),
                    "cudaFuncSetAttribute(attention, max dynamic shared memory)");
#else
  (void)kernel;
  (void)bytes;
#endif
}

// The forward and backward on the tensor cores (kernels/cuda/attention_mma.cu), for T = __nv_bfloat16
// or __half and any head dim D ≤ 128; attention_forward and attention_backward send low-precision
// problems there (the backward after attention.cu's Δ kernel has filled `delta`).
template <class T, class M>
void attention_forward_mma(const Problem<T, M>& pr, int64_t pairs, T* out, float* lse, rt::Stream stream);
template <class T, class M>
void attention_backward_mma(const Problem<T, M>& pr, int64_t pairs, const T* gout, const float* lse,
                            const float* delta, T* gq, T* gk, T* gv, rt::Stream stream);

}  // namespace vb::VB_KERNEL_NS::attention_detail
