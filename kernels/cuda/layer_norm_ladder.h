// The layer-norm ladder (kernels/cuda/layer_norm_ladder.cu): the forward pass of layer normalisation over
// the last dim of a contiguous (N, C) float32 input, in three rungs that each add one idea, for reading
// in order (docs/KERNELS.md). The framework's own kernel, kernels/cuda/nn_layer_norm.cu, is rung 3's ideas
// plus bf16/f16 storage and a block-per-row form for rows longer than 1024; these are for learning and
// measuring, each checked against the CPU backend (tests/emu/layer_norm_ladder.cpp).
//
//   μ = Σ_j x_j / C,  σ² = Σ_j (x_j − μ)² / C,  rstd = 1/√(σ² + eps),  y_j = (x_j − μ)·rstd·w_j + b_j
//
// ≈ 8·N·C FLOPs; at least 8·N·C bytes move (x read, y written) plus 8·C (w, b) and 8·N (mean, rstd).
#pragma once

#include <cstdint>

#include "kernels/cuda/gemm_ladder.h"  // ladder::Rung
#include "kernels/runtime.h"

namespace vb::ladder {

inline constexpr int kLayerNormRungs = 3;
inline constexpr Rung kLayerNormRungTable[kLayerNormRungs] = {
    {1, "three passes", "three kernels: the mean and then the variance with one thread per row, then one thread "
                        "per element to normalise; a warp's loads are C floats apart"},
    {2, "warp per row", "one warp per row, its 32 lanes reading consecutive columns (coalesced), the row held in "
                        "registers for both passes, sums by warp shuffles: x read once"},
    {3, "vectorised", "rung 2 with 16-byte loads and stores of x, w, b and y: a quarter of the requests"},
};

// What the rung needs of the shape that it does not have, or "" (rungs 2 and 3 hold a row in a warp's
// registers: C ≤ 1024; rung 3 loads 16-byte words: C a multiple of 4).
inline const char* layer_norm_shape_requirement(int rung, int64_t, int64_t c) {
  if (rung >= 2 && c > 1024) return "rungs 2 and 3 hold a row in one warp's registers: C ≤ 1024";
  if (rung == 3 && c % 4 != 0) return "rung 3 needs C a multiple of 4 (16-byte loads)";
  return "";
}

}  // namespace vb::ladder

#define VB_LAYER_NORM_LADDER_LAUNCHER                                                                         \
  /* x (n, c), w, b (c) → y (n, c), mean, rstd (n); an std::invalid_argument for a bad rung or shape. */     \
  void layer_norm_ladder(int rung, const float* x, const float* w, const float* b, float eps, float* y,       \
                         float* mean, float* rstd, int64_t n, int64_t c, rt::Stream stream = {});

namespace vb::emu {
VB_LAYER_NORM_LADDER_LAUNCHER
}  // namespace vb::emu

namespace vb::emu_insight {
VB_LAYER_NORM_LADDER_LAUNCHER
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_LAYER_NORM_LADDER_LAUNCHER
}  // namespace vb::cuda

#undef VB_LAYER_NORM_LADDER_LAUNCHER
