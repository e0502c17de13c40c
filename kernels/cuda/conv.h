// Convolution, pooling and batch normalisation on the GPU, channels-last (kernels/cuda/conv.cu,
// pool.cu, batch_norm.cu). The launchers exist twice: vb::emu (run by the kernel emulator,
// tests/emu) and vb::cuda (run on a GPU, tests/gpu); conv.cu's also in vb::emu_insight (the emulator
// observing every access), for the convolution ladder (kernels/cuda/conv_ladder.h). Every pointer is a contiguous device pointer
// from vb::rt::<same namespace>::malloc; the semantics are exactly those of the Backend methods of
// the same name (kernels/backend.h), whose CPU implementations are the reference.
//
// Element types T: float, __nv_bfloat16, __half (loaded into float32, accumulated in float32, stored
// rounded to nearest). The launchers are templates rather than taking a DType because tensor/dtype.h
// pulls in fmt, which nvcc 13 cannot compile; the backend, which knows the DType, picks T.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/runtime.h"

#if !defined(__CUDACC__)
#include "kernels/backend.h"  // Conv2dParams, Pool2dParams (host code only: see above)
#endif

namespace vb {

// A convolution's sizes and parameters (the fields of Conv2dParams, which nvcc cannot include).
//   x (N, H, W, C), w (O, KH, KW, C/groups), y (N, OH, OW, O),
//   OH = (H + 2·pad_h − dilation_h·(KH − 1) − 1) / stride_h + 1 (likewise OW).
struct ConvShape {
  int64_t N = 0, H = 0, W = 0, C = 0, O = 0, KH = 0, KW = 0, OH = 0, OW = 0;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

// A pooling's sizes and parameters: x (N, H, W, C), y (N, OH, OW, C). The adaptive pool reads only
// the sizes.
struct PoolShape {
  int64_t N = 0, H = 0, W = 0, C = 0, OH = 0, OW = 0;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool count_include_pad = true;
};

#if !defined(__CUDACC__)
inline ConvShape conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int64_t KH, int64_t KW,
                            const Conv2dParams& p) {
  const int64_t OH = (H + 2 * p.pad_h - p.dilation_h * (KH - 1) - 1) / p.stride_h + 1;
  const int64_t OW = (W + 2 * p.pad_w - p.dilation_w * (KW - 1) - 1) / p.stride_w + 1;
  return {N, H, W, C, O, KH, KW, OH, OW, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
          p.groups};
}

inline PoolShape pool_shape(int64_t N, int64_t H, int64_t W, int64_t C, const Pool2dParams& p) {
  const int64_t OH = (H + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
  const int64_t OW = (W + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  return {N, H, W, C, OH, OW, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.count_include_pad};
}
#endif

// The weight gradient sums over the N·OH·OW output positions in this many fixed slices (one
// partial gradient each, added in slice order): a function of the shape only, so the result does
// not depend on the device or the run.
inline int64_t conv2d_weight_slices(const ConvShape& s) {
  const int64_t rows = s.N * s.OH * s.OW, slices = (rows + 1023) / 1024;
  return slices < 1 ? 1 : slices > 32 ? 32 : slices;
}
// Bytes of float32 scratch conv2d_backward_weight needs: one partial weight gradient per slice.
inline std::size_t conv2d_backward_weight_workspace_bytes(const ConvShape& s) {
  return std::size_t(conv2d_weight_slices(s) * s.O * s.KH * s.KW * (s.C / s.groups)) * sizeof(float);
}

// Batch norm's column statistics are taken over this many fixed slabs of rows (likewise).
inline int64_t batch_norm_slabs(int64_t M) {
  const int64_t slabs = (M + 255) / 256;
  return slabs < 1 ? 1 : slabs > 64 ? 64 : slabs;
}
// Bytes of float32 scratch batch_norm and batch_norm_backward need for x (M, C): a (count, mean,
// M2) or (Σgy, Σgy·x̂) triple per slab and channel, and three per-channel coefficients.
inline std::size_t batch_norm_workspace_bytes(int64_t M, int64_t C) {
  return std::size_t(3 * batch_norm_slabs(M) * C + 3 * C) * sizeof(float);
}

}  // namespace vb

// The launchers, declared for both namespaces. T is float, __nv_bfloat16 or __half; batch norm's
// parameter type P (w, b, running statistics, gw, gb) is float or T.
//   conv2d:                 y = conv(x, w) + bias (bias may be null).
//   conv2d_backward_input:  gx from gy (N, OH, OW, O) and w.
//   conv2d_backward_weight: gw (O, KH, KW, C/groups) from gy and x; `workspace` holds
//                           conv2d_backward_weight_workspace_bytes(s).
//   max_pool2d:             y and indices (int64, ih·W + iw); backward gathers gy through indices.
//   avg_pool2d, adaptive_avg_pool2d and their backwards.
//   batch_norm:             x, y (M, C); w, b may be null (1, 0); running_mean/var may be null in
//                           training (not updated) and are read in eval; save_mean, save_invstd (C)
//                           float32; `workspace` holds batch_norm_workspace_bytes(M, C).
//   batch_norm_backward:    gx, gw, gb may each be null (not computed).
#define VB_CONV_LAUNCHERS                                                                                      \
  template <class T>                                                                                           \
  void conv2d(const T* x, const T* w, const T* bias, T* y, const ConvShape& s, rt::Stream stream = {});       \
  template <class T>                                                                                           \
  void conv2d_backward_input(const T* gy, const T* w, T* gx, const ConvShape& s, rt::Stream stream = {});     \
  template <class T>                                                                                           \
  void conv2d_backward_weight(const T* gy, const T* x, T* gw, float* workspace, const ConvShape& s,           \
                              rt::Stream stream = {});                                                         \
  template <class T>                                                                                           \
  void max_pool2d(const T* x, T* y, int64_t* indices, const PoolShape& s, rt::Stream stream = {});            \
  template <class T>                                                                                           \
  void max_pool2d_backward(const T* gy, const int64_t* indices, T* gx, const PoolShape& s,                    \
                           rt::Stream stream = {});                                                            \
  template <class T>                                                                                           \
  void avg_pool2d(const T* x, T* y, const PoolShape& s, rt::Stream stream = {});                              \
  template <class T>                                                                                           \
  void avg_pool2d_backward(const T* gy, T* gx, const PoolShape& s, rt::Stream stream = {});                   \
  template <class T>                                                                                           \
  void adaptive_avg_pool2d(const T* x, T* y, const PoolShape& s, rt::Stream stream = {});                     \
  template <class T>                                                                                           \
  void adaptive_avg_pool2d_backward(const T* gy, T* gx, const PoolShape& s, rt::Stream stream = {});          \
  template <class T, class P>                                                                                  \
  void batch_norm(const T* x, const P* w, const P* b, P* running_mean, P* running_var, bool training,         \
                  double momentum, double eps, T* y, float* save_mean, float* save_invstd, float* workspace,   \
                  int64_t M, int64_t C, rt::Stream stream = {});                                               \
  template <class T, class P>                                                                                  \
  void batch_norm_backward(const T* gy, const T* x, const P* w, const float* save_mean,                       \
                           const float* save_invstd, bool training, T* gx, P* gw, P* gb, float* workspace,     \
                           int64_t M, int64_t C, rt::Stream stream = {});

namespace vb::emu {
VB_CONV_LAUNCHERS
}  // namespace vb::emu

namespace vb::emu_insight {  // conv2d only (conv.cu, conv_mma.cu): the convolution ladder's rungs 2 and 3
VB_CONV_LAUNCHERS
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_CONV_LAUNCHERS
}  // namespace vb::cuda

#undef VB_CONV_LAUNCHERS
