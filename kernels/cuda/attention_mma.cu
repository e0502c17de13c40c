// Scaled dot-product attention forward on the tensor cores, for bfloat16 and float16 (FlashAttention-2,
// Dao 2023, §3.1–3.3): the same math as the float32 kernel in kernels/cuda/attention.cu, with both
// products done by mma.sync.m16n8k16 (16-bit inputs, float32 accumulation). The CPU reference is
// kernels/cpu/attention.cpp (Backend::attention); the backward stays the float32-arithmetic kernels of
// attention.cu, which recompute P from q, k and the lse saved here.
//
// Math, per (b, h), as in attention.cu, with the exponentials taken base 2 (exp(x) = 2^(x·log2 e), so
// one ex2 per score):
//   S_ij = (scale·q_i·k_j + mask_ij)·log2 e                    float32, from the tensor cores
//   m_i  = max_j S_ij (running),  l_i = Σ_j 2^(S_ij − m_i) (running, float32)
//   P'_ij = 2^(S_ij − m_i)·Z_ij, rounded to T                  the A operand of the second product
//   out_i = (Σ_j P'_ij·v_j) / l_i,  lse_i = (m_i + log2 l_i)·ln 2
// P' is rounded to 16 bits before P'·v, as FlashAttention does: the tests judge the result against a
// float64 reference with the FlashAttention criterion (at most about twice the error of a naive
// attention computed in T), not bit for bit against the float32 kernel.
//
// Launch shape: grid (⌈Tq/64⌉, B·H), 128 threads = 4 warps; warp w owns query rows 16w..16w+15 of
// the CTA's 64. Key tiles of 64 rows stream through shared memory by cp.async, two stages deep (tile
// j + 1 loads while tile j is computed). Per key tile each warp computes its 16×64 block of S with
// (D'/16)·8 mma (D' = D rounded up to 32, 64 or 128: the head dims past D are zeros), keeps it in
// registers, turns it into P' in place — the accumulator layout of S is the A-operand layout of
// P'·v (FlashAttention-2's register reuse) — and adds P'·v with 4·(D'/8) mma. Q stays in registers
// (A fragments by ldmatrix), K feeds the B operand by ldmatrix, V by ldmatrix.trans.
// Shared memory: Q tile + 2 stages × (K tile + V tile), each 64 rows × (D' + 8) elements (16 bytes of
// padding per row, so that the 8 row addresses of an ldmatrix hit 8 different bank groups):
// 5·64·(D' + 8)·2 bytes = 25.6 KiB (D' = 32), 45 KiB (64), 85 KiB (128, over the 48 KiB default: the
// launcher opts in).
//
// Cost, per (b, h): 4·Tq·Tk·D FLOPs on the tensor cores (two products) + ≈ 5·Tq·Tk on the ALUs
// (scale, max, ex2, sum, convert). Bytes: q read and out written once, k and v read once per query tile
// of 64: (2·Tq·D + 2·Tk·D·⌈Tq/64⌉)·sizeof(T) + 4·Tq (lse) + the mask's elements when there is one.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "kernels/ptx.h"

#if defined(__CUDACC__)
#define VB_ATTN_UNROLL _Pragma("unroll")
#else
#define VB_ATTN_UNROLL _Pragma("GCC unroll 16")
#endif

namespace vb::VB_KERNEL_NS::attention_detail {
namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kBlockM = 16 * kMmaWarps;  // query rows per CTA: 16 per warp (the mma's M)
constexpr int kBlockN = 64;              // keys per tile
constexpr int kStages = 2;               // key/value tiles in flight
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// The shared-memory layout for padded head dim kD: row stride ld elements; Q, K[kStages], V[kStages].
template <class T, int kD>
struct Layout {
  static constexpr int ld = kD + 8;
  static constexpr int tile = kBlockN * ld;  // kBlockM == kBlockN rows
  static constexpr std::size_t bytes = sizeof(T) * std::size_t(tile) * (1 + 2 * kStages);
  static_assert(kBlockM == kBlockN, "Q, K and V tiles share one shape");
  static_assert(ld * sizeof(T) % 16 == 0, "ldmatrix rows must stay 16-byte aligned");
};

// Two floats rounded to T and packed as one 32-bit register, `lo` in the low half (the mma's order).
template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t bits;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    memcpy(&bits, &pair, 4);
  } else {
    const __half2 pair = __floats2half2_rn(lo, hi);
    memcpy(&bits, &pair, 4);
  }
  return bits;
}

template <class T>
__device__ __forceinline__ void mma(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  const std::uint32_t b[2] = {b0, b1};
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    ptx::mma_m16n8k16_bf16(d, a, b, d);
  else
    ptx::mma_m16n8k16_f16(d, a, b, d);
}

// dst (64 rows, stride ld) ← rows row0.. of src (rows, D); rows past `rows` and columns past D are
// zeros. With `vec` (D a multiple of 8, 16-byte aligned rows) by 16-byte cp.async (the caller commits
// and waits); otherwise element by element (visible after the caller's barrier). All threads.
template <class T, int kD>
__device__ void load_rows(T* dst, const T* src, int row0, int rows, int D, bool vec) {
  constexpr int kChunks = kD / 8, ld = Layout<T, kD>::ld;  // 16-byte chunks per row
  for (int idx = threadIdx.x; idx < kBlockN * kChunks; idx += kMmaThreads) {
    const int r = idx / kChunks, d0 = idx % kChunks * 8;
    T* to = dst + r * ld + d0;
    const bool row_ok = row0 + r < rows;
    if (vec) {
      const bool ok = row_ok && d0 < D;
      ptx::cp_async<16>(to, ok ? src + int64_t(row0 + r) * D + d0 : src, ok ? 16 : 0);
    } else {
      for (int e = 0; e < 8; ++e)
        to[e] = row_ok && d0 + e < D ? src[int64_t(row0 + r) * D + d0 + e] : store<T>(0.0f);
    }
  }
}

// One CTA per (query tile blockIdx.x of 64 rows, pair blockIdx.y = b·H + h). Lane l of warp w holds
// rows g = 16w + l/4 and g + 8 of the tile, and in each 8-column block of S (or of out) the columns
// 2(l%4) and 2(l%4) + 1: the mma's C layout.
template <class T, class M, int kD>
__global__ void __launch_bounds__(kMmaThreads)
    attention_forward_mma_kernel(Problem<T, M> pr, bool vec, T* out, float* lse) {
  using L = Layout<T, kD>;
  constexpr int ld = L::ld;
  VB_DYNAMIC_SHARED(T, shared);
  T* q_s = shared;
  T* k_s = q_s + L::tile;             // kStages tiles
  T* v_s = k_s + kStages * L::tile;   // kStages tiles
  const int64_t bh = blockIdx.y;
  const int D = pr.D, Tq = pr.Tq, Tk = pr.Tk;
  const int i0 = blockIdx.x * kBlockM, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const T* q = pr.q + bh * Tq * D;
  const T* k = pr.k + bh * Tk * D;
  const T* v = pr.v + bh * Tk * D;
  const int tiles = (Tk + kBlockN - 1) / kBlockN;
  const float scale_log2 = pr.scale * kLog2e;
  // The mask's (b, h) plane, found once: element (i, j) at mask_bh[i·s2 + j·s3].
  const M* mask_bh = pr.mask ? pr.mask + bh / pr.H * pr.mask_stride[0] + bh % pr.H * pr.mask_stride[1] : nullptr;

  // Prologue: group 0 = Q and key tile 0, group 1 = key tile 1 (empty groups still count).
  load_rows<T, kD>(q_s, q, i0, Tq, D, vec);
  for (int s = 0; s < kStages; ++s) {
    if (s < tiles) {
      load_rows<T, kD>(k_s + s * L::tile, k, s * kBlockN, Tk, D, vec);
      load_rows<T, kD>(v_s + s * L::tile, v, s * kBlockN, Tk, D, vec);
    }
    ptx::cp_async_commit();
  }

  std::uint32_t qf[kD / 16][4];  // the warp's 16 query rows as A fragments, one per 16 head dims
  float o[kD / 8][4];            // unnormalised out, one C fragment per 8 head dims
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g, g + 8: running max (log2), sum
  VB_ATTN_UNROLL
  for (int db = 0; db < kD / 8; ++db)
    for (int e = 0; e < 4; ++e) o[db][e] = 0.0f;
  if (tiles == 0) {  // no keys: every row is fully masked; Q still has to land before the CTA ends
    ptx::cp_async_wait<0>();
    __syncthreads();
  }

  for (int tile = 0; tile < tiles; ++tile) {
    ptx::cp_async_wait<kStages - 1>();  // this tile's group has landed (for this thread) ...
    __syncthreads();                    // ... and for every thread
    const T* ks = k_s + tile % kStages * L::tile;
    const T* vs = v_s + tile % kStages * L::tile;
    if (tile == 0) {
      // A fragment (16×16): lanes 0–15 give rows 0–15 at head dims 16kk.., lanes 16–31 at 16kk + 8..
      VB_ATTN_UNROLL
      for (int kk = 0; kk < kD / 16; ++kk)
        ptx::ldmatrix_x4(qf[kk], q_s + (warp * 16 + lane % 16) * ld + kk * 16 + lane / 16 * 8);
    }

    // S = Q·Kᵀ for the warp's 16 rows × the tile's 64 keys. One ldmatrix.x4 gives the B fragments of
    // two 8-key blocks: matrix j = lane/8 is keys 8(nb + j/2).., head dims 16kk + 8(j%2)..
    float s[kBlockN / 8][4];
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kBlockN / 8; ++nb)
      for (int e = 0; e < 4; ++e) s[nb][e] = 0.0f;
    VB_ATTN_UNROLL
    for (int kk = 0; kk < kD / 16; ++kk) {
      VB_ATTN_UNROLL
      for (int nb = 0; nb < kBlockN / 8; nb += 2) {
        std::uint32_t b[4];
        ptx::ldmatrix_x4(b, ks + (nb * 8 + lane / 16 * 8 + lane % 8) * ld + kk * 16 + lane / 8 % 2 * 8);
        mma<T>(s[nb], qf[kk], b[0], b[1]);
        mma<T>(s[nb + 1], qf[kk], b[2], b[3]);
      }
    }

    // Scores in log2 units; keys past Tk (last tile) and masked pairs are −inf. Rows past Tq hold
    // zeros of Q (finite scores) and are never stored.
    const int j0 = tile * kBlockN;
    if (mask_bh == nullptr && j0 + kBlockN <= Tk) {
      VB_ATTN_UNROLL
      for (int nb = 0; nb < kBlockN / 8; ++nb)
        for (int e = 0; e < 4; ++e) s[nb][e] *= scale_log2;
    } else {
      VB_ATTN_UNROLL
      for (int nb = 0; nb < kBlockN / 8; ++nb)
        for (int e = 0; e < 4; ++e) {
          const int i = i0 + warp * 16 + g + e / 2 * 8, j = j0 + nb * 8 + 2 * t + e % 2;
          float x = -INFINITY;
          if (j < Tk) {
            x = pr.scale * s[nb][e];  // as Problem::score: scale·dot + mask, then to log2 units
            if (mask_bh && i < Tq) x += load(mask_bh[i * pr.mask_stride[2] + j * pr.mask_stride[3]]);
            x *= kLog2e;
          }
          s[nb][e] = x;
        }
    }

    // Online softmax per row: the row's 64 scores sit in the 4 lanes t = 0..3 of its group.
    float base[2];
    VB_ATTN_UNROLL
    for (int r = 0; r < 2; ++r) {
      float row_max = m[r];
      for (int nb = 0; nb < kBlockN / 8; ++nb) row_max = fmaxf(row_max, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
      base[r] = row_max == -INFINITY ? 0.0f : row_max;  // fully masked so far: every 2^x is 0
      const float alpha = exp2f(m[r] - base[r]);
      m[r] = row_max;
      l[r] *= alpha;  // this lane's share of the row sum; the 4 shares are added at the end
      VB_ATTN_UNROLL
      for (int db = 0; db < kD / 8; ++db) {
        o[db][2 * r] *= alpha;
        o[db][2 * r + 1] *= alpha;
      }
    }
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kBlockN / 8; ++nb)
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[nb][e] - base[e / 2]);
        l[e / 2] += p;
        s[nb][e] = p;
      }
    if (pr.dropout) {
      VB_ATTN_UNROLL
      for (int nb = 0; nb < kBlockN / 8; ++nb)
        for (int e = 0; e < 4; ++e) {
          const int i = i0 + warp * 16 + g + e / 2 * 8, j = j0 + nb * 8 + 2 * t + e % 2;
          if (i < Tq && j < Tk) s[nb][e] *= pr.dropout_factor(bh, i, j);
        }
    }

    // out += P'·V. The C fragments of S blocks 2kk and 2kk + 1 are the A fragment of keys 16kk..16kk+15;
    // one ldmatrix.x4.trans gives the B fragments of two 8-dim blocks: matrix j = lane/8 is keys
    // 16kk + 8(j%2).., head dims 8(db + j/2)..
    VB_ATTN_UNROLL
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const std::uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                  pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      VB_ATTN_UNROLL
      for (int db = 0; db < kD / 8; db += 2) {
        std::uint32_t b[4];
        ptx::ldmatrix_x4_trans(b, vs + (kk * 16 + lane / 8 % 2 * 8 + lane % 8) * ld + (db + lane / 16) * 8);
        mma<T>(o[db], a, b[0], b[1]);
        mma<T>(o[db + 1], a, b[2], b[3]);
      }
    }

    __syncthreads();  // every warp is done with this stage: refill it with tile + kStages
    if (tile + kStages < tiles) {
      load_rows<T, kD>(k_s + tile % kStages * L::tile, k, (tile + kStages) * kBlockN, Tk, D, vec);
      load_rows<T, kD>(v_s + tile % kStages * L::tile, v, (tile + kStages) * kBlockN, Tk, D, vec);
    }
    ptx::cp_async_commit();
  }

  VB_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int i = i0 + warp * 16 + g + r * 8;
    if (i >= Tq) continue;
    const float inv_l = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    T* row = out + (bh * Tq + i) * D;
    VB_ATTN_UNROLL
    for (int db = 0; db < kD / 8; ++db) {
      const int d = db * 8 + 2 * t;
      if (d < D) row[d] = store<T>(o[db][2 * r] * inv_l);
      if (d + 1 < D) row[d + 1] = store<T>(o[db][2 * r + 1] * inv_l);
    }
    if (t == 0) lse[bh * Tq + i] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

template <class T, class M, int kD>
void forward_mma_with(const Problem<T, M>& pr, int64_t pairs, T* out, float* lse, rt::Stream stream) {
  // 16-byte copies need whole 8-element chunks per row and 16-byte aligned rows.
  auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  const bool vec = pr.D % 8 == 0 && aligned(pr.q) && aligned(pr.k) && aligned(pr.v);
  auto kernel = attention_forward_mma_kernel<T, M, kD>;
  allow_shared(kernel, Layout<T, kD>::bytes);
  const auto tiles = static_cast<unsigned>((pr.Tq + kBlockM - 1) / kBlockM);
  launch(kernel, {dim3(tiles, unsigned(pairs)), dim3(kMmaThreads), Layout<T, kD>::bytes, stream}, pr, vec, out,
         lse);
}

}  // namespace

template <class T, class M>
void attention_forward_mma(const Problem<T, M>& pr, int64_t pairs, T* out, float* lse, rt::Stream stream) {
  if (pr.D <= 32)
    forward_mma_with<T, M, 32>(pr, pairs, out, lse, stream);
  else if (pr.D <= 64)
    forward_mma_with<T, M, 64>(pr, pairs, out, lse, stream);
  else
    forward_mma_with<T, M, 128>(pr, pairs, out, lse, stream);
}

template void attention_forward_mma<__nv_bfloat16, __nv_bfloat16>(const Problem<__nv_bfloat16, __nv_bfloat16>&,
                                                                  int64_t, __nv_bfloat16*, float*, rt::Stream);
template void attention_forward_mma<__nv_bfloat16, float>(const Problem<__nv_bfloat16, float>&, int64_t,
                                                          __nv_bfloat16*, float*, rt::Stream);
template void attention_forward_mma<__half, __half>(const Problem<__half, __half>&, int64_t, __half*, float*,
                                                    rt::Stream);
template void attention_forward_mma<__half, float>(const Problem<__half, float>&, int64_t, __half*, float*,
                                                   rt::Stream);

}  // namespace vb::VB_KERNEL_NS::attention_detail
