// The convolution ladder: y = conv(x, w), channels-last, one group, in three rungs
// (kernels/cuda/conv_ladder.h lists them; docs/KERNELS.md reads them with the emulator's counts).
//
//   y[n, oh, ow, o] = Σ_{kh, kw, c} x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, c] · w[o, kh, kw, c]
//
//   rung  a warp computes                       its operands come from
//   1     32 output channels of one pixel         global memory, every tap: x a broadcast, w 32 sectors
//   2     a share of a 64×64 tile of the GEMM     shared memory tiles gathered from x and w (conv.cu)
//   3     a 32×32 block on the tensor cores       ldmatrix fragments of the same tiles (conv_mma.cu)
//
// Rung 1 here is the definition run as it reads — one thread per output element, the sum over the
// KH·KW·C taps in a loop, x and w read from global memory for every multiply-add: 2 loads per 2 FLOPs, no
// reuse but what the caches give. Rungs 2 and 3 call the framework's kernels (kernels/cuda/conv.cu,
// conv_mma.cu: their headers give their tiling, launch shapes and costs) without a bias.
#include "kernels/cuda/conv_ladder.h"

#include <stdexcept>
#include <string>

#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {
namespace {

// ---------------------------------------------------------------- rung 1: direct loops
// Thread (n, oh, ow, o), o fastest: a warp's 32 lanes share the pixel, so each x element is one broadcast
// request, and read 32 filters at the same tap, KH·KW·C floats apart: 32 sectors per request.
__global__ void conv_direct(const float* x, const float* w, float* y, ConvShape s) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= s.N * s.OH * s.OW * s.O) return;
  const int64_t o = idx % s.O, ow = idx / s.O % s.OW, oh = idx / (s.O * s.OW) % s.OH, n = idx / (s.O * s.OW * s.OH);
  const float* wo = w + o * s.KH * s.KW * s.C;
  float acc = 0.0f;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
      if (iw < 0 || iw >= s.W) continue;
      const float* xp = x + ((n * s.H + ih) * s.W + iw) * s.C;
      const float* wp = wo + (kh * s.KW + kw) * s.C;
      for (int64_t c = 0; c < s.C; ++c) acc += xp[c] * wp[c];
    }
  }
  y[idx] = acc;
}

void check(int rung, int first, int last, const ConvShape& s) {
  if (rung < first || rung > last)
    throw std::invalid_argument("conv ladder: no " + std::string(first == 3 ? "bf16" : "float32") + " rung " +
                                std::to_string(rung) + " (rungs " + std::to_string(first) + " … " +
                                std::to_string(last) + ")");
  if (const std::string need = ladder::conv_shape_requirement(rung, s); !need.empty())
    throw std::invalid_argument("conv ladder: " + need);
  if (s.N * s.OH * s.OW * s.O >= (int64_t(1) << 40))
    throw std::invalid_argument("conv ladder: the output has 2^40 elements or more");
}

}  // namespace

void conv_ladder(int rung, const float* x, const float* w, float* y, const ConvShape& s, rt::Stream stream) {
  check(rung, 1, 2, s);
  if (s.N * s.OH * s.OW * s.O == 0) return;
  if (rung == 2) return conv2d<float>(x, w, nullptr, y, s, stream);
  launch(conv_direct, {dim3(blocks_for(s.N * s.OH * s.OW * s.O, 256)), dim3(256), 0, stream}, x, w, y, s);
}

void conv_ladder_bf16(int rung, const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, const ConvShape& s,
                      rt::Stream stream) {
  check(rung, 3, 3, s);
  if (s.N * s.OH * s.OW * s.O == 0) return;
  conv2d<__nv_bfloat16>(x, w, nullptr, y, s, stream);
}

}  // namespace vb::VB_KERNEL_NS
