// 2-d convolution, channels-last, as implicit GEMM: forward, data gradient and weight gradient.
// This file's kernel is the clear float32-arithmetic version and runs float32; bfloat16/float16 run
// the same three GEMMs on the tensor cores (kernels/cuda/conv_mma.cu).
//
// Shapes: x (N, H, W, C), w (O, KH, KW, Cg) with G groups, Cg = C/G, Og = O/G, y (N, OH, OW, O).
// Forward, for group g (out-of-image x reads as 0):
//   y[n, oh, ow, g·Og + o] = bias[g·Og + o]
//       + Σ_{kh, kw, c} x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, g·Cg + c] · w[g·Og + o, kh, kw, c]
// Each pass is one GEMM per group whose operand A is never stored: a tile of it is gathered from x
// (or gy) on the fly into shared memory — "implicit" GEMM, no im2col buffer in global memory.
//   forward:  Y_g (M, Og)   = A (M, K) · W_gᵀ         M = N·OH·OW rows (n, oh, ow), K = KH·KW·Cg
//             A[(n, oh, ow), (kh, kw, c)] = x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, g·Cg + c]
//   dgrad:    gX_g (N·H·W, Cg) = B (N·H·W, KH·KW·Og) · W'_g (KH·KW·Og, Cg), the transposed convolution:
//             B[(n, ih, iw), (kh, kw, o)] = gy[n, oh, ow, g·Og + o] where oh = (ih + ph − kh·dh)/sh
//             when that divides exactly and lands in [0, OH) ("which output positions contribute":
//             with stride 2, three taps in four contribute nothing and read as 0), likewise ow;
//             W'_g[(kh, kw, o), c] = w[g·Og + o, kh, kw, c].
//   wgrad:    gW_g (Og, K) = gY_gᵀ (Og, M) · A (M, K), the reduction over M = N·OH·OW split in
//             conv2d_weight_slices fixed slices, each writing a float32 partial to the workspace,
//             then summed in slice order (deterministic: no atomics, no order that depends on the
//             schedule).
// FLOPs per pass: 2·N·OH·OW·O·KH·KW·Cg. Bytes moved (minimum, elements × size): x N·H·W·C, w O·KH·KW·Cg,
//   y N·OH·OW·O; the gathered tiles re-read x up to KH·KW/(sh·sw) times, through L1/L2 rather than
//   through a column buffer of N·OH·OW·KH·KW·Cg elements written and read back.
//
// Launch shape: one 64×64 output tile per block of 256 threads, each thread a 4×4 register tile
// (rows ty + 16i, columns tx + 16j); 16-deep K steps staged in dynamic shared memory as float32
// (8.25 KiB); grid (⌈M/64⌉, ⌈cols/64⌉, G·slices). The tiles are gathered by the operands of
// kernels/cuda/conv_gemm.h (each thread one row of each tile, a run of 4 consecutive k; 4 threads per
// row, so a row's 16 k are read together), which the tensor-core kernel shares. Depthwise convolution (Og = Cg = 1) runs correctly through the same path,
// wasting all but one column of each tile.
//
// Why channels-last: the Cg channels of a pixel are contiguous, so consecutive k of a gathered row
// (c fastest within a tap) are consecutive addresses — coalesced loads; y's rows (n, oh, ow) with O
// contiguous *are* the GEMM's output matrix; and w (O, KH, KW, Cg) is W_g row-major with the same k
// order. Tensor cores and cuDNN's fastest convolutions want NHWC for the same reasons.
#include "kernels/cuda/conv.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/conv_gemm.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {

// The bfloat16/float16 passes on the tensor cores (kernels/cuda/conv_mma.cu): the same GEMMs, shapes
// and weight-gradient slices as below.
namespace conv_detail {
template <class T>
void conv2d_mma(const T* x, const T* w, const T* bias, T* y, const ConvShape& s, rt::Stream stream);
template <class T>
void conv2d_backward_input_mma(const T* gy, const T* w, T* gx, const ConvShape& s, rt::Stream stream);
template <class T>
void conv2d_backward_weight_mma(const T* gy, const T* x, float* partial, const ConvShape& s, int slices,
                                rt::Stream stream);
}  // namespace conv_detail

namespace {

using conv_detail::BackwardInput;
using conv_detail::BackwardWeight;
using conv_detail::Forward;

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256;
constexpr int kRun = kTileK * kTileM / kThreads;  // k per thread per operand per step: 4 (one 16-byte word)
constexpr int kRunsPerRow = kTileK / kRun;        // 4 threads share a row of a tile
constexpr int kRowsPerWarp = 32 / kRunsPerRow;    // 8
// Shared rows of kTileM + 2 floats. A warp stores its 8 rows × 16 k transposed, As[k][m]: for its e-th
// element lane l writes k = 4(l / 8) + e, m = 8w + l % 8, in bank (4(l / 8)·66 + l % 8 + const) mod 32 =
// 8(l / 8) + l % 8 + const: 32 distinct banks (with rows of kTileM + 1, 4(l / 8) + l % 8 repeats: 2-way).
// The 4×4 register tiles' reads (16 consecutive m, or one m broadcast) stay conflict-free.
constexpr int kPad = 2;
static_assert(kTileM == kTileN, "a thread stages the same row index of both tiles");

// One kTileM × kTileN tile of C = A·B for group blockIdx.z % groups, summing k over slice
// blockIdx.z / groups of `slices` equal slices. Each K step, lane l of warp w stages row 8w + l % 8 of
// both tiles, a run of 4 consecutive k starting at 4(l / 8) (conv_gemm.h's gathers): the 4 lanes of a
// row read its 16 consecutive k, which for the forward's A (one pixel's channels) and for a filter's
// weights are 64 contiguous bytes, so a warp's 16-byte loads cover 8 rows × 64 bytes, 16 sectors, where
// lanes along rows (one row each) touched 32. Each thread computes a 4×4 register tile (rows ty + 16i,
// columns tx + 16j). Launch: see the file comment.
template <class Op>
__global__ void __launch_bounds__(kThreads) implicit_gemm_kernel(Op op, int groups, int slices) {
  VB_DYNAMIC_SHARED(float, shared);
  float* As = shared;                             // (kTileK, kTileM + kPad): As[k][m]
  float* Bs = shared + kTileK * (kTileM + kPad);  // (kTileK, kTileN + kPad): Bs[k][n]
  const int t = static_cast<int>(threadIdx.x), tx = t % 16, ty = t / 16;
  const int g = static_cast<int>(blockIdx.z) % groups, slice = static_cast<int>(blockIdx.z) / groups;
  const int64_t M = op.m(), Ncols = op.n(), K = op.k();
  const int64_t m0 = int64_t(blockIdx.x) * kTileM, n0 = int64_t(blockIdx.y) * kTileN;
  const int64_t per_slice = (K + slices - 1) / slices;
  const int64_t k_begin = slice * per_slice, k_end = k_begin + per_slice < K ? k_begin + per_slice : K;

  // This thread's row of both tiles and its first k.
  const int row = t / 32 * kRowsPerWarp + t % 32 % kRowsPerWarp, run = t % 32 / kRowsPerWarp * kRun;
  const auto a_row = op.a_row(g, m0 + row);
  const auto b_row = op.b_row(g, n0 + row);
  float acc[4][4] = {};
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTileK) {
    float v[kRun];
    op.a_run(a_row, k0 + run, k_end, v);
    for (int e = 0; e < kRun; ++e) As[(run + e) * (kTileM + kPad) + row] = v[e];
    op.b_run(b_row, k0 + run, k_end, v);
    for (int e = 0; e < kRun; ++e) Bs[(run + e) * (kTileN + kPad) + row] = v[e];
    __syncthreads();
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = As[kk * (kTileM + kPad) + ty + 16 * i];
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk * (kTileN + kPad) + tx + 16 * j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // the next step overwrites the tiles
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t gm = m0 + ty + 16 * i, gn = n0 + tx + 16 * j;
      if (gm < M && gn < Ncols) op.put(g, slice, gm, gn, acc[i][j]);
    }
}

// gw[e] = Σ_slice partial[slice][e], in slice order. Launch: ⌈size/256⌉ × 256.
template <class T>
__global__ void sum_slices_kernel(const float* partial, T* gw, int64_t size, int slices) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= size) return;
  float sum = 0.0f;
  for (int i = 0; i < slices; ++i) sum += partial[i * size + e];
  gw[e] = store<T>(sum);
}

void check_shape(const ConvShape& s, const char* op) {
  const bool ok = s.N >= 0 && s.H > 0 && s.W > 0 && s.C > 0 && s.O > 0 && s.KH > 0 && s.KW > 0 && s.groups > 0 &&
                  s.C % s.groups == 0 && s.O % s.groups == 0 && s.stride_h > 0 && s.stride_w > 0 &&
                  s.dilation_h > 0 && s.dilation_w > 0 && s.pad_h >= 0 && s.pad_w >= 0 &&
                  s.OH == (s.H + 2 * s.pad_h - s.dilation_h * (s.KH - 1) - 1) / s.stride_h + 1 &&
                  s.OW == (s.W + 2 * s.pad_w - s.dilation_w * (s.KW - 1) - 1) / s.stride_w + 1 && s.OH > 0 &&
                  s.OW > 0;
  if (!ok)
    throw std::invalid_argument(std::string(op) + ": inconsistent convolution shape (x (" + std::to_string(s.N) +
                                ", " + std::to_string(s.H) + ", " + std::to_string(s.W) + ", " +
                                std::to_string(s.C) + "), w (" + std::to_string(s.O) + ", " + std::to_string(s.KH) +
                                ", " + std::to_string(s.KW) + ", C/" + std::to_string(s.groups) + "), y (" +
                                std::to_string(s.OH) + ", " + std::to_string(s.OW) + "))");
}

template <class Problem>
void run_gemm(const Problem& p, int64_t m, int64_t n, int groups, int slices, rt::Stream stream) {
  if (m == 0 || n == 0) return;
  const dim3 grid(static_cast<unsigned>((m + kTileM - 1) / kTileM), static_cast<unsigned>((n + kTileN - 1) / kTileN),
                  static_cast<unsigned>(groups * slices));
  const std::size_t shared = sizeof(float) * kTileK * (kTileM + kPad + kTileN + kPad);
  launch(implicit_gemm_kernel<Problem>, {grid, kThreads, shared, stream}, p, groups, slices);
}

}  // namespace

template <class T>
void conv2d(const T* x, const T* w, const T* bias, T* y, const ConvShape& s, rt::Stream stream) {
  check_shape(s, "conv2d");
  if constexpr (!std::is_same_v<T, float>)
    conv_detail::conv2d_mma(x, w, bias, y, s, stream);
  else
    run_gemm(Forward<T>{s, x, w, bias, y}, s.N * s.OH * s.OW, s.O / s.groups, s.groups, 1, stream);
}

template <class T>
void conv2d_backward_input(const T* gy, const T* w, T* gx, const ConvShape& s, rt::Stream stream) {
  check_shape(s, "conv2d_backward_input");
  if constexpr (!std::is_same_v<T, float>)
    conv_detail::conv2d_backward_input_mma(gy, w, gx, s, stream);
  else
    run_gemm(BackwardInput<T>{s, gy, w, gx}, s.N * s.H * s.W, s.C / s.groups, s.groups, 1, stream);
}

template <class T>
void conv2d_backward_weight(const T* gy, const T* x, T* gw, float* workspace, const ConvShape& s, rt::Stream stream) {
  check_shape(s, "conv2d_backward_weight");
  const int slices = static_cast<int>(conv2d_weight_slices(s));
  const int64_t size = s.O * s.KH * s.KW * (s.C / s.groups);
  if constexpr (!std::is_same_v<T, float>)
    conv_detail::conv2d_backward_weight_mma(gy, x, workspace, s, slices, stream);
  else
    run_gemm(BackwardWeight<T>{s, gy, x, workspace}, s.O / s.groups, size / s.O, s.groups, slices, stream);
  launch(sum_slices_kernel<T>, {static_cast<unsigned>((size + 255) / 256), 256, 0, stream}, workspace, gw, size,
         slices);
}

#define VB_INSTANTIATE(T)                                                                                 \
  template void conv2d<T>(const T*, const T*, const T*, T*, const ConvShape&, rt::Stream);               \
  template void conv2d_backward_input<T>(const T*, const T*, T*, const ConvShape&, rt::Stream);          \
  template void conv2d_backward_weight<T>(const T*, const T*, T*, float*, const ConvShape&, rt::Stream);
VB_INSTANTIATE(float)
VB_INSTANTIATE(__nv_bfloat16)
VB_INSTANTIATE(__half)
#undef VB_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS
