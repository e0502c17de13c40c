// The attention ladder (kernels/cuda/attention_ladder.cu): the forward pass of scaled dot-product attention,
// out = softmax(scale·Q·Kᵀ)·V per (batch, head), in three rungs that each add one idea, for reading in order
// (docs/KERNELS.md). Rung 1 is written out here, the textbook form; rungs 2 and 3 are the framework's own
// kernels (kernels/cuda/attention.cu in float32, kernels/cuda/attention_mma.cu on the tensor cores), which
// also have the backward pass, masks and dropout. Each rung is checked against the CPU backend
// (tests/emu/kernel_lab.cpp, and on a GPU bench_kernels_gpu --smoke); tests/emu/attention_ladder.cpp pins
// what the emulator's insight counts for each.
//
//   q (B·H, T, D), k and v (B·H, T, D) contiguous → out (B·H, T, D), lse (B·H, T) = log Σ_j exp(S_ij)
//   4·B·H·T²·D FLOPs in the two products + ≈ 5·B·H·T² for the softmax; at least 4·B·H·T·D elements move
//   (q, k, v read, out written) — and rung 1 also writes and reads the B·H·T² scores, three times over.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/cuda/gemm_ladder.h"  // ladder::Rung
#include "kernels/runtime.h"

namespace vb::ladder {

inline constexpr int kAttentionRungs = 3;
inline constexpr Rung kAttentionRungTable[kAttentionRungs] = {
    {1, "materialised", "three kernels: S = scale·Q·Kᵀ written to global memory (one thread per score), a "
                        "softmax over each row of S in place (one thread per row), out = P·V (one thread per "
                        "output element): T² floats of scratch per head, S crossing memory three times"},
    {2, "online softmax", "the framework's float32 kernel (attention.cu): one block per 32 query rows streams "
                          "32-row tiles of K and V through shared memory, rescaling a running max and sum "
                          "(online softmax), so S never leaves the chip"},
    {3, "tensor cores", "the framework's FlashAttention-2 kernel (attention_mma.cu): rung 2's streaming with "
                        "64-row tiles copied by cp.async, both products on mma.sync m16n8k16 from ldmatrix "
                        "fragments, P kept in registers as the next product's A operand",
     "bf16"},
};

// What the rung needs of the shape that it does not have, or "" (every rung: head dims up to 128, the
// framework kernels' limit; rung 1's scratch holds B·H·T² floats).
inline const char* attention_shape_requirement(int, int64_t bh, int64_t t, int64_t d) {
  if (d < 1 || d > 128) return "every rung takes head dims D from 1 to 128";
  if (bh * t * t >= (int64_t(1) << 31)) return "rung 1 keeps B·H·T² scores: fewer than 2^31";
  return "";
}

// Floats of scratch rung 1 needs (the scores); the other rungs need none.
inline int64_t attention_ladder_workspace(int rung, int64_t bh, int64_t t) { return rung == 1 ? bh * t * t : 0; }

}  // namespace vb::ladder

#define VB_ATTENTION_LADDER_LAUNCHER                                                                          \
  /* Runs float32 rung `rung` (1, 2): q, k, v (bh, t, d) → out (bh, t, d), lse (bh, t); `scores`:           \
     attention_ladder_workspace floats. An std::invalid_argument for a bad rung or shape. */                  \
  void attention_ladder(int rung, const float* q, const float* k, const float* v, float* out, float* lse,     \
                        float* scores, int64_t bh, int64_t t, int64_t d, float scale, rt::Stream stream = {});  \
  /* Runs bf16 rung `rung` (3): bf16 q, k, v and out, lse float32. */                                           \
  void attention_ladder_bf16(int rung, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, \
                             __nv_bfloat16* out, float* lse, int64_t bh, int64_t t, int64_t d, float scale,     \
                             rt::Stream stream = {});

namespace vb::emu {
VB_ATTENTION_LADDER_LAUNCHER
}  // namespace vb::emu

namespace vb::emu_insight {
VB_ATTENTION_LADDER_LAUNCHER
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_ATTENTION_LADDER_LAUNCHER
}  // namespace vb::cuda

#undef VB_ATTENTION_LADDER_LAUNCHER
