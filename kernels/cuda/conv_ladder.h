// The convolution ladder (kernels/cuda/conv_ladder.cu): the forward pass of a 2-d convolution, channels-last,
// y = conv(x, w) with x (N, H, W, C), w (O, KH, KW, C), y (N, OH, OW, O), one group, in three rungs that each
// add one idea, for reading in order (docs/KERNELS.md). Rung 1 is written out here, the direct loops; rungs
// 2 and 3 are the framework's own kernels (kernels/cuda/conv.cu in float32, kernels/cuda/conv_mma.cu on the
// tensor cores), which also have the data and weight gradients and groups. Each rung is checked against the
// CPU backend (tests/emu/kernel_lab.cpp, and on a GPU bench_kernels_gpu --smoke); tests/emu/conv_ladder.cpp
// pins what the emulator's insight counts for each.
//
//   y[n, oh, ow, o] = Σ_{kh, kw, c} x[n, oh·s − p + kh, ow·s − p + kw, c] · w[o, kh, kw, c]   (outside: 0)
//   2·N·OH·OW·O·KH·KW·C FLOPs; at least x, w and y cross memory once (N·H·W·C + O·KH·KW·C + N·OH·OW·O
//   elements).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/cuda/conv.h"         // ConvShape
#include "kernels/cuda/gemm_ladder.h"  // ladder::Rung
#include "kernels/runtime.h"

namespace vb::ladder {

inline constexpr int kConvRungs = 3;
inline constexpr Rung kConvRungTable[kConvRungs] = {
    {1, "direct", "one thread per output element looping over its KH·KW·C taps, x and w read from global "
                  "memory; a warp is 32 output channels of one pixel: x a broadcast, w 32 filters "
                  "KH·KW·C floats apart"},
    {2, "implicit GEMM", "the framework's float32 kernel (conv.cu): the convolution as a GEMM (N·OH·OW × "
                         "O × KH·KW·C) whose A tiles are gathered from x into shared memory on the fly, no "
                         "im2col buffer; 64×64 output tiles, a 4×4 register tile per thread"},
    {3, "tensor cores", "the framework's tensor-core kernel (conv_mma.cu): rung 2's gathered tiles staged "
                        "k-contiguous with padded rows, read by ldmatrix into mma.sync m16n8k16 fragments, "
                        "float32 accumulation",
     "bf16"},
};

// What the rung needs of the shape that it does not have, or "" (one group, the sizes of ConvShape).
inline const char* conv_shape_requirement(int, const ConvShape& s) {
  if (s.OH < 1 || s.OW < 1) return "the kernel must fit the padded image (OH, OW ≥ 1)";
  if (s.groups != 1) return "the ladder runs one group";
  return "";
}

}  // namespace vb::ladder

#define VB_CONV_LADDER_LAUNCHER                                                                               \
  /* Runs float32 rung `rung` (1, 2): y = conv(x, w). An std::invalid_argument for a bad rung or shape. */    \
  void conv_ladder(int rung, const float* x, const float* w, float* y, const ConvShape& s,                    \
                   rt::Stream stream = {});                                                                   \
  /* Runs bf16 rung `rung` (3): bf16 x, w and y, float32 accumulation. */                                     \
  void conv_ladder_bf16(int rung, const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y,           \
                        const ConvShape& s, rt::Stream stream = {});

namespace vb::emu {
VB_CONV_LADDER_LAUNCHER
}  // namespace vb::emu

namespace vb::emu_insight {
VB_CONV_LADDER_LAUNCHER
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_CONV_LADDER_LAUNCHER
}  // namespace vb::cuda

#undef VB_CONV_LADDER_LAUNCHER
