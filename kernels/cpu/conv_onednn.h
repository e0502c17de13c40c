// The CPU convolutions through oneDNN (Debian's libdnnl), where the build has it and it is faster.
//
// kernels/cpu/conv.cpp is the readable reference: an implicit-im2col product through the hand-written GEMM,
// exact for every dtype and geometry, and its bits never depend on the thread count. oneDNN's direct
// convolutions (brgconv/jit on AVX-512 and AMX) read the channels-last input in place, without the im2col rows,
// and ran 1.1–1.4x faster than it on the ResNet-50 shapes (docs/CPU.md has the measurements), so the forward
// pass and the input gradient go to oneDNN when all of these hold:
//   - the build found oneDNN (CMake's VIDEOBERT_ONEDNN) and it is switched on (default; VB_CPU_CONV=ours or
//     conv_onednn(false) switches it off);
//   - float32 operands with a float32 result, or bfloat16 operands with a float32 or bfloat16 result;
//   - one group, and at least conv_onednn_min_flops() FLOPs (below that, creating and looking up the
//     primitive costs more than it saves);
//   - oneDNN has an optimised implementation for this machine (a reference one, "ref:any", is never used).
// Otherwise the functions return false and conv.cpp runs its own path. The weight gradient always stays on
// conv.cpp's path: oneDNN's sums it across threads, so its bits change with the thread count.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace vb::cpu {

// Whether this build has the oneDNN path at all.
bool onednn_built();
// Turns the oneDNN path on or off and returns the previous setting (tests and benchmarks compare the two).
bool conv_onednn(bool on);
// The smallest convolution (2·N·OH·OW·O·KH·KW·C FLOPs) handed to oneDNN; returns the previous value.
int64_t conv_onednn_min_flops(int64_t flops);
// Convolutions oneDNN has run in this process (each forward or input gradient counts one): so that a test
// knows which path it checked.
uint64_t conv_onednn_calls();
// The implementation oneDNN chose for the last convolution it ran ("brgconv:avx512_core", …), or "" if none.
std::string conv_onednn_last_impl();

// One line for `videobert info`: which convolutions this process runs, and oneDNN's version where built.
std::string conv_onednn_info();

// y = conv(x, w) + bias, as Backend::conv2d (bias may be undefined). False: not taken, y untouched.
bool onednn_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y);
// gx = the input gradient, as Backend::conv2d_backward_input. False: not taken, gx untouched.
bool onednn_conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx);

}  // namespace vb::cpu
