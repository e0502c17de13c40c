// 2-d convolution on the tensor cores, for bfloat16 and float16: the three implicit GEMMs of
// kernels/cuda/conv.cu (forward, data gradient, weight gradient; same shapes, same math, same fixed
// weight-gradient slices, see that file's comment), with the products done by mma.sync.m16n8k16
// (16-bit inputs, float32 accumulation). The CPU reference is kernels/cpu/conv.cpp.
//
//   forward:  Y_g (M, Og) = A (M, K)·W_gᵀ,   M = N·OH·OW, K = KH·KW·Cg, A gathered from x
//   dgrad:    gX_g (N·H·W, Cg) = B (N·H·W, KH·KW·Og)·W'_g,  B gathered from gy
//   wgrad:    gW_g (Og, KH·KW·Cg) = gY_gᵀ·A, the reduction over N·OH·OW split into slices
// FLOPs per pass: 2·N·OH·OW·O·KH·KW·Cg. Bytes: as conv.cu (x, w, y once; the gathered tiles re-read x
// or gy up to KH·KW/(sh·sw) times through L1/L2).
//
// Launch shape: one 64×64 tile of the GEMM's output per CTA of 128 threads = 4 warps (2×2, each a
// 32×32 block: 2×4 mma tiles); K advances 32 at a time. Both operands are staged in shared memory
// k-contiguous, 64 rows × (32 + 8) elements each (10 KiB; the 16 bytes of padding put the 8 rows of
// an ldmatrix in 8 different bank groups), and read by ldmatrix (A as rows × k, B as columns × k,
// which is the mma's "col" layout). The epilogue reuses that shared memory for C's tile in float32 (18
// KiB) to store whole rows. Grid (⌈M/64⌉, ⌈cols/64⌉, G·slices).
// The operands and their gathers are kernels/cuda/conv_gemm.h's (shared with conv.cu): in each K step,
// lane l of warp w stages row 16w + l % 16 of each operand's tile, two runs of 8 consecutive k (one
// 16-byte word each) at k = 8(l / 16) and 8(l / 16) + 16. Each load instruction thus has lanes l and
// l + 16 reading the two halves of one 32-byte sector of a row (the forward's pixel channels, a filter's
// weights: contiguous), 16 sectors per warp where lanes along rows reading 32 contiguous bytes each
// touched 32; and each 8-lane phase of the 16-byte shared stores writes 8 rows at one k, whose
// 80-byte strides fall in 8 different bank groups.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_gemm.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "kernels/ptx.h"

// Unrolled by nvcc (register arrays stay in registers); the emulator's g++ build gains nothing from
// unrolling loops whose bodies meet at warp-wide operations, and compiles far faster without.
#if defined(__CUDACC__)
#define VB_CONV_UNROLL _Pragma("unroll")
#else
#define VB_CONV_UNROLL
#endif

namespace vb::VB_KERNEL_NS::conv_detail {
namespace {

constexpr int kTile = 64;      // rows of A (m) and of B (n) per CTA
constexpr int kStep = 32;      // k per step
constexpr int kRun = 8;        // k per run: one 16-byte word
constexpr int kLd = kStep + 8;  // shared row stride, elements
constexpr int kThreads = 128;
constexpr int kRowsPerWarp = 16;  // lanes l and l + 16 share a row
constexpr int kCLd = kTile + 8;   // the epilogue's float32 tile of C: row stride, elements
static_assert(kThreads == kTile * (kStep / (2 * kRun)), "two runs per thread per operand");

// ---- the GEMM ----

// A run of 8 elements into its place in a shared tile, as one 16-byte store.
template <class T>
__device__ __forceinline__ void stage(T* dst, const T (&v)[kRun]) {
  static_assert(sizeof(v) == 16, "a run is one 16-byte store");
  uint4 word;
  memcpy(&word, v, sizeof(v));
  *reinterpret_cast<uint4*>(dst) = word;
}

// One 64×64 tile of C = A·B for group blockIdx.z % groups, summing k over slice blockIdx.z / groups
// of `slices` equal slices. Warp w computes rows 32(w % 2).., columns 32(w / 2)..; lane l holds, in
// each 16×8 mma tile, rows l/4 and l/4 + 8 and columns 2(l%4), 2(l%4) + 1.
template <class Op>
__global__ void __launch_bounds__(kThreads) conv_mma_kernel(Op op, int groups, int slices) {
  using T = typename Op::Elem;
  VB_DYNAMIC_SHARED(T, shared);
  T* as = shared;            // (64 rows m, kLd): A tile, k contiguous
  T* bs = as + kTile * kLd;  // (64 rows n, kLd): B tile, k contiguous
  const int t = static_cast<int>(threadIdx.x), warp = t / 32, lane = t % 32;
  const int wm = warp % 2 * 32, wn = warp / 2 * 32;
  const int g = static_cast<int>(blockIdx.z) % groups, slice = static_cast<int>(blockIdx.z) / groups;
  const int64_t M = op.m(), Ncols = op.n(), K = op.k();
  const int64_t m0 = int64_t(blockIdx.x) * kTile, n0 = int64_t(blockIdx.y) * kTile;
  const int64_t per_slice = (K + slices - 1) / slices;
  const int64_t k_begin = slice * per_slice, k_end = k_begin + per_slice < K ? k_begin + per_slice : K;

  // This thread's row of both tiles, and the first k of its two runs (the second is 16 further).
  const int row = warp * kRowsPerWarp + lane % kRowsPerWarp, run = lane / kRowsPerWarp * kRun;
  const auto a_row = op.a_row(g, m0 + row);
  const auto b_row = op.b_row(g, n0 + row);
  float acc[2][4][4];
  VB_CONV_UNROLL
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  for (int64_t k0 = k_begin; k0 < k_end; k0 += kStep) {
    T v[kRun];
    VB_CONV_UNROLL
    for (int i = 0; i < 2; ++i) {
      const int r = run + i * 2 * kRun;
      op.a_run(a_row, k0 + r, k_end, v);
      stage(as + row * kLd + r, v);
      op.b_run(b_row, k0 + r, k_end, v);
      stage(bs + row * kLd + r, v);
    }
    __syncthreads();
    VB_CONV_UNROLL
    for (int kk = 0; kk < kStep / 16; ++kk) {
      std::uint32_t a[2][4];
      VB_CONV_UNROLL
      for (int i = 0; i < 2; ++i)  // rows wm + 16i.. : lanes 0–15 rows at k 16kk, lanes 16–31 at 16kk + 8
        ptx::ldmatrix_x4(a[i], as + (wm + 16 * i + lane % 16) * kLd + kk * 16 + lane / 16 * 8);
      VB_CONV_UNROLL
      for (int j = 0; j < 4; j += 2) {  // columns wn + 8j..: matrix q = lane/8 is columns 8(j + q/2).., k + 8(q%2)
        std::uint32_t b[4];
        ptx::ldmatrix_x4(b, bs + (wn + 8 * j + lane / 16 * 8 + lane % 8) * kLd + kk * 16 + lane / 8 % 2 * 8);
        VB_CONV_UNROLL
        for (int i = 0; i < 2; ++i) {
          ptx::mma_m16n8k16<T>(acc[i][j], a[i], b[0], b[1]);
          ptx::mma_m16n8k16<T>(acc[i][j + 1], a[i], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next step overwrites the tiles
  }
  // The epilogue, through shared memory: each warp puts its 32×32 block of C, float32, into a 64 × 72 tile
  // (the pairs of a fragment, columns 2(l%4) and 2(l%4) + 1, as 8-byte words: with rows 72 floats apart a
  // half-warp's 16 words, rows l/4 … and 4 column pairs, fill 32 distinct banks); then each warp stores
  // whole rows of it, a lane a column pair (put2: one word where aligned), so a request writes 64
  // consecutive columns of one row of y, gx or the partials: whole sectors, where storing straight from
  // the fragments wrote 8 rows × 16 bytes per request, half of each sector.
  // The K loop's last barrier already has every warp done with the operand tiles this reuses.
  float* ct = reinterpret_cast<float*>(shared);
  VB_CONV_UNROLL
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; e += 2) {
        const int r = wm + 16 * i + ptx::MmaLayout::c_row(lane, e), col = wn + 8 * j + ptx::MmaLayout::c_col(lane, e);
        *reinterpret_cast<float2*>(&ct[r * kCLd + col]) = make_float2(acc[i][j][e], acc[i][j][e + 1]);
      }
  __syncthreads();
  for (int r = warp; r < kTile; r += kThreads / 32) {
    const int64_t gm = m0 + r, gn = n0 + 2 * lane;
    if (gm < M && gn < Ncols) {
      const float2 v = *reinterpret_cast<const float2*>(&ct[r * kCLd + 2 * lane]);
      op.put2(g, slice, gm, gn, v.x, v.y);
    }
  }
}

template <class Op>
void run(const Op& op, int64_t m, int64_t n, int groups, int slices, rt::Stream stream) {
  if (m == 0 || n == 0) return;
  const dim3 grid(static_cast<unsigned>((m + kTile - 1) / kTile), static_cast<unsigned>((n + kTile - 1) / kTile),
                  static_cast<unsigned>(groups * slices));
  // The operand tiles, then (reused) the float32 tile of C: 10 and 18 KiB.
  const std::size_t shared = std::max(sizeof(typename Op::Elem) * 2 * kTile * kLd, sizeof(float) * kTile * kCLd);
  launch(conv_mma_kernel<Op>, {grid, kThreads, shared, stream}, op, groups, slices);
}

}  // namespace

template <class T>
void conv2d_mma(const T* x, const T* w, const T* bias, T* y, const ConvShape& s, rt::Stream stream) {
  run(Forward<T>{s, x, w, bias, y}, s.N * s.OH * s.OW, s.O / s.groups, s.groups, 1, stream);
}

template <class T>
void conv2d_backward_input_mma(const T* gy, const T* w, T* gx, const ConvShape& s, rt::Stream stream) {
  run(BackwardInput<T>{s, gy, w, gx}, s.N * s.H * s.W, s.C / s.groups, s.groups, 1, stream);
}

template <class T>
void conv2d_backward_weight_mma(const T* gy, const T* x, float* partial, const ConvShape& s, int slices,
                                rt::Stream stream) {
  run(BackwardWeight<T>{s, gy, x, partial}, s.O / s.groups, s.KH * s.KW * (s.C / s.groups), s.groups, slices,
      stream);
}

#define VB_CONV_MMA_INSTANTIATE(T)                                                                           \
  template void conv2d_mma<T>(const T*, const T*, const T*, T*, const ConvShape&, rt::Stream);              \
  template void conv2d_backward_input_mma<T>(const T*, const T*, T*, const ConvShape&, rt::Stream);         \
  template void conv2d_backward_weight_mma<T>(const T*, const T*, float*, const ConvShape&, int, rt::Stream);
VB_CONV_MMA_INSTANTIATE(__nv_bfloat16)
VB_CONV_MMA_INSTANTIATE(__half)
#undef VB_CONV_MMA_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS::conv_detail
