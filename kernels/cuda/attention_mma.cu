// Scaled dot-product attention on the tensor cores, for bfloat16 and float16 (FlashAttention-2, Dao
// 2023): the same math as the float32 kernels in kernels/cuda/attention.cu, forward and backward, with
// every product done by mma.sync.m16n8k16 (16-bit inputs, float32 accumulation). The CPU reference is
// kernels/cpu/attention.cpp (Backend::attention / attention_backward).
//
// Math, per (b, h), as in attention.cu, with the exponentials taken base 2 (exp(x) = 2^(x·log2 e), one
// ex2 per score):
//   forward:
//     S_ij = (scale·q_i·k_j + mask_ij)·log2 e                  float32, from the tensor cores
//     m_i  = max_j S_ij (running),  l_i = Σ_j 2^(S_ij − m_i) (running, float32)
//     P'_ij = 2^(S_ij − m_i)·Z_ij, rounded to T                the A operand of the second product
//     out_i = (Σ_j P'_ij·v_j) / l_i,  lse_i = (m_i + log2 l_i)·ln 2
//   backward (Δ_i = Σ_d dO_id·out_id from attention.cu's delta kernel):
//     P_ij = 2^(S_ij − lse_i·log2 e),  dP_ij = dO_i·v_j
//     P'_ij = P_ij·Z_ij,  dS_ij = P_ij·(dP_ij·Z_ij − Δ_i)       both rounded to T for the products
//     dV_j = Σ_i P'_ij·dO_i,  dK_j = scale·Σ_i dS_ij·q_i,  dQ_i = scale·Σ_j dS_ij·k_j
// P' and dS are rounded to 16 bits before their products, as FlashAttention does: the tests judge the
// results against a float64 reference with the FlashAttention criterion (at most about twice the error
// of a naive attention computed in T), not bit for bit against the float32 kernels.
//
// Launch shapes: 128 threads = 4 warps; a CTA owns 64 rows (queries, or keys for dK/dV), warp w rows
// 16w..16w+15; the other side streams through shared memory in tiles of 64 rows by cp.async, two
// stages deep (tile j + 1 loads while tile j is computed). Each warp computes a 16×64 block of scores
// with (D'/16)·8 mma (D' = D rounded up to 32, 64 or 128: the head dims past D are zeros), keeps it
// in registers and turns it into P' (or dS) in place — the accumulator layout of a 16×64 block is the
// A-operand layout of the next product (FlashAttention-2's register reuse) — then adds a 16×64 by
// 64×D' product with 4·(D'/8) mma. B operands come from shared memory by ldmatrix (row-major K-like
// tiles) or ldmatrix.trans (V-like tiles); A operands by ldmatrix too.
//   forward:  grid (⌈Tq/64⌉, B·H); Q in registers; K, V tiles stream. out = P'·V.
//   dK/dV:    grid (⌈Tk/64⌉, B·H); the CTA's K and V stay in shared memory; Q, dO (with lse, Δ) tiles
//             stream. Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, then dV += P'ᵀ·dO and dK += dSᵀ·Q.
//   dQ:       grid (⌈Tq/64⌉, B·H); the CTA's Q and dO stay; K, V tiles stream. S = Q·Kᵀ and
//             dP = dO·Vᵀ, then dQ += dS·K.
// Each gradient element is summed by one thread in a fixed order: deterministic, no atomics, at the
// price of computing S and dP twice (dK/dV pass and dQ pass), as in attention.cu.
// Shared memory: tiles of 64 rows × (D' + 8) elements (16 bytes of padding per row, so that the 8 row
// addresses of an ldmatrix hit 8 different bank groups): forward 5 tiles = 25.6 / 45 / 85 KiB for
// D' = 32 / 64 / 128; backward 6 tiles (+ 1 KiB of lse and Δ) = 31 / 55 / 103 KiB. Past 48 KiB the
// launcher opts in.
//
// Cost, per (b, h): forward 4·Tq·Tk·D FLOPs on the tensor cores + ≈ 5·Tq·Tk on the ALUs (scale, max,
// ex2, sum, convert); backward 10·Tq·Tk·D counted (S, dP, dV, dK, dQ), 14·Tq·Tk·D executed (S and dP
// twice) + ≈ 8·Tq·Tk on the ALUs per pass. Bytes: the forward reads q and writes out once and reads k
// and v once per query tile of 64: (2·Tq·D + 2·Tk·D·⌈Tq/64⌉)·sizeof(T) + 4·Tq (lse). The backward
// reads q and dO once per key tile and k and v once per query tile:
// 2·D·(Tq·⌈Tk/64⌉ + Tk·⌈Tq/64⌉)·sizeof(T) + 8·Tq·⌈Tk/64⌉, and writes dq, dk, dv once. A mask adds its
// elements to each pass.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "kernels/ptx.h"

// Unrolled by nvcc (register arrays stay in registers); the emulator's g++ build gains nothing from
// unrolling loops whose bodies meet at warp-wide operations, and compiles far faster without.
#if defined(__CUDACC__)
#define VB_ATTN_UNROLL _Pragma("unroll")
#else
#define VB_ATTN_UNROLL
#endif

namespace vb::VB_KERNEL_NS::attention_detail {
namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kRows = 16 * kMmaWarps;  // a CTA's own rows: 16 per warp (the mma's M)
constexpr int kCols = 64;              // rows per streamed tile = columns of a warp's score block
constexpr int kNb = kCols / 8;         // 8-column blocks of a score block
constexpr int kStages = 2;             // streamed tiles in flight
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Shared-memory tiles for padded head dim kD: 64 rows, row stride ld elements.
template <class T, int kD>
struct Layout {
  static constexpr int ld = kD + 8;
  static constexpr int tile = kCols * ld;
  static_assert(kRows == kCols, "own and streamed tiles share one shape");
  static_assert(ld * sizeof(T) % 16 == 0, "ldmatrix rows must stay 16-byte aligned");
};

using Block = float[kNb][4];  // a warp's 16×64 score block: one C fragment per 8 columns

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

// dst (64 rows, stride ld) ← rows row0.. of src (rows, D); rows past `rows` and columns past D are
// zeros. With `vec` (D a multiple of 8, 16-byte aligned rows) by 16-byte cp.async (the caller commits
// and waits); otherwise element by element (visible after the caller's barrier). All threads.
template <class T, int kD>
__device__ void load_rows(T* dst, const T* src, int row0, int rows, int D, bool vec) {
  constexpr int kChunks = kD / 8, ld = Layout<T, kD>::ld;  // 16-byte chunks per row
  for (int idx = threadIdx.x; idx < kCols * kChunks; idx += kMmaThreads) {
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

// a ← the A fragment of 16 rows × head dims 16kk..16kk+15 at `rows` (stride ld): lanes 0–15 give rows
// 0–15 at 16kk, lanes 16–31 the same rows at 16kk + 8.
template <class T, int kD>
__device__ __forceinline__ void load_a(std::uint32_t (&a)[4], const T* rows, int kk) {
  const int lane = threadIdx.x % 32;
  ptx::ldmatrix_x4(a, rows + (lane % 16) * Layout<T, kD>::ld + kk * 16 + lane / 16 * 8);
}

// acc (16×64) += A_kk·B_kkᵀ: A_kk the fragment a (16 rows × head dims 16kk..), B the 64 rows of the
// tile at b_s. One ldmatrix.x4 gives the B fragments of two 8-row blocks: matrix j = lane/8 is rows
// 8(nb + j/2).., head dims 16kk + 8(j%2)..
template <class T, int kD>
__device__ __forceinline__ void mma_abt_step(Block& acc, const std::uint32_t (&a)[4], const T* b_s, int kk) {
  const int lane = threadIdx.x % 32;
  VB_ATTN_UNROLL
  for (int nb = 0; nb < kNb; nb += 2) {
    std::uint32_t b[4];
    ptx::ldmatrix_x4(b, b_s + (nb * 8 + lane / 16 * 8 + lane % 8) * Layout<T, kD>::ld + kk * 16 + lane / 8 % 2 * 8);
    ptx::mma_m16n8k16<T>(acc[nb], a, b[0], b[1]);
    ptx::mma_m16n8k16<T>(acc[nb + 1], a, b[2], b[3]);
  }
}

// acc (16×64) = A·Bᵀ over the head dims, A the 16 rows at a_s, B the tile at b_s: S = Q·Kᵀ, dP = dO·Vᵀ.
template <class T, int kD>
__device__ __forceinline__ void mma_abt(Block& acc, const T* a_s, const T* b_s) {
  VB_ATTN_UNROLL
  for (int nb = 0; nb < kNb; ++nb)
    for (int e = 0; e < 4; ++e) acc[nb][e] = 0.0f;
  VB_ATTN_UNROLL
  for (int kk = 0; kk < kD / 16; ++kk) {
    std::uint32_t a[4];
    load_a<T, kD>(a, a_s, kk);
    mma_abt_step<T, kD>(acc, a, b_s, kk);
  }
}

// acc (16×D') += P·B: P a 16×64 block (rounded to T here), B the 64 rows × D' of the tile at b_s. The
// C fragments of blocks 2kk and 2kk + 1 are the A fragment of columns 16kk..16kk+15; one
// ldmatrix.x4.trans gives the B fragments of two 8-dim blocks: matrix j = lane/8 is rows 16kk + 8(j%2)..,
// head dims 8(db + j/2)..
template <class T, int kD>
__device__ __forceinline__ void mma_pb(float (&acc)[kD / 8][4], const Block& p, const T* b_s) {
  const int lane = threadIdx.x % 32;
  VB_ATTN_UNROLL
  for (int kk = 0; kk < kCols / 16; ++kk) {
    const std::uint32_t a[4] = {pack2<T>(p[2 * kk][0], p[2 * kk][1]), pack2<T>(p[2 * kk][2], p[2 * kk][3]),
                                pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                                pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    VB_ATTN_UNROLL
    for (int db = 0; db < kD / 8; db += 2) {
      std::uint32_t b[4];
      ptx::ldmatrix_x4_trans(b, b_s + (kk * 16 + lane / 8 % 2 * 8 + lane % 8) * Layout<T, kD>::ld + (db + lane / 16) * 8);
      ptx::mma_m16n8k16<T>(acc[db], a, b[0], b[1]);
      ptx::mma_m16n8k16<T>(acc[db + 1], a, b[2], b[3]);
    }
  }
}

// The score of pair (i, j) in log2 units from its dot product q_i·k_j: (scale·dot + mask_ij)·log2 e.
// mask_bh is the mask's (b, h) plane or null; the forward and both backward passes use this one
// formula, so they see the same bits.
template <class T, class M>
__device__ __forceinline__ float score_log2(const Problem<T, M>& pr, const M* mask_bh, int i, int j, float dot) {
  if (!mask_bh) return dot * (pr.scale * kLog2e);
  return (pr.scale * dot + load(mask_bh[i * pr.mask_stride[2] + j * pr.mask_stride[3]])) * kLog2e;
}

// The backward's terms of pair (i, j): qk becomes P'_ij = P_ij·Z_ij and dp becomes dS_ij =
// P_ij·(dP_ij·Z_ij − Δ_i), with P_ij = 2^(S_ij − lse2_i), lse2_i = lse_i·log2 e; both 0 for pairs
// outside the problem and for fully masked rows (lse = −inf).
template <class T, class M>
__device__ __forceinline__ void score_grads(const Problem<T, M>& pr, const M* mask_bh, int64_t bh, int i, int j,
                                            float lse2_i, float delta_i, float& qk, float& dp) {
  if (i >= pr.Tq || j >= pr.Tk || lse2_i == -INFINITY) {
    qk = dp = 0.0f;
    return;
  }
  const float p = exp2f(score_log2(pr, mask_bh, i, j, qk) - lse2_i);
  const float z = pr.dropout_factor(bh, i, j);
  qk = p * z;
  dp = p * (dp * z - delta_i);
}

// What every kernel of one call knows about its (b, h) pair.
template <class T, class M>
struct Pair {
  int64_t bh;
  const T *q, *k, *v;  // this pair's (Tq | Tk, D) planes
  const M* mask_bh;    // the mask's plane, or null

  __device__ Pair(const Problem<T, M>& pr, int64_t bh_) : bh(bh_) {
    q = pr.q + bh * pr.Tq * pr.D;
    k = pr.k + bh * pr.Tk * pr.D;
    v = pr.v + bh * pr.Tk * pr.D;
    mask_bh = pr.mask ? pr.mask + bh / pr.H * pr.mask_stride[0] + bh % pr.H * pr.mask_stride[1] : nullptr;
  }
};

// Key/value tile `tile` of the pair into stage tile % kStages of k_s and v_s (the caller commits).
template <class T, class M, int kD>
__device__ void load_kv(T* k_s, T* v_s, const Problem<T, M>& pr, const Pair<T, M>& at, int tile, bool vec) {
  const int stage = tile % kStages * Layout<T, kD>::tile;
  load_rows<T, kD>(k_s + stage, at.k, tile * kCols, pr.Tk, pr.D, vec);
  load_rows<T, kD>(v_s + stage, at.v, tile * kCols, pr.Tk, pr.D, vec);
}

// ---- forward ----

// One CTA per (query tile blockIdx.x of 64 rows, pair blockIdx.y = b·H + h). Lane l of warp w holds
// rows g = 16w + l/4 and g + 8 of the tile, and in each 8-column block of S (or of out) the columns
// 2(l%4) and 2(l%4) + 1: the mma's C layout.
template <class T, class M, int kD>
__global__ void __launch_bounds__(kMmaThreads)
    attention_forward_mma_kernel(Problem<T, M> pr, bool vec, T* out, float* lse) {
  using L = Layout<T, kD>;
  VB_DYNAMIC_SHARED(T, shared);
  T* q_s = shared;
  T* k_s = q_s + L::tile;            // kStages tiles
  T* v_s = k_s + kStages * L::tile;  // kStages tiles
  const Pair<T, M> at(pr, blockIdx.y);
  const int D = pr.D, Tq = pr.Tq, Tk = pr.Tk;
  const int i0 = blockIdx.x * kRows, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = ptx::MmaLayout::group(lane), t = ptx::MmaLayout::place(lane);
  const int tiles = (Tk + kCols - 1) / kCols;

  // Prologue: group 0 = Q and key tile 0, group 1 = key tile 1 (empty groups still count).
  load_rows<T, kD>(q_s, at.q, i0, Tq, D, vec);
  for (int s = 0; s < kStages; ++s) {
    if (s < tiles) load_kv<T, M, kD>(k_s, v_s, pr, at, s, vec);
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
      VB_ATTN_UNROLL
      for (int kk = 0; kk < kD / 16; ++kk) load_a<T, kD>(qf[kk], q_s + warp * 16 * L::ld, kk);
    }

    // S = Q·Kᵀ for the warp's 16 rows × the tile's 64 keys, in log2 units; keys past Tk (last tile)
    // and masked pairs are −inf. Rows past Tq hold zeros of Q (finite scores) and are never stored.
    Block s;
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kNb; ++nb)
      for (int e = 0; e < 4; ++e) s[nb][e] = 0.0f;
    VB_ATTN_UNROLL
    for (int kk = 0; kk < kD / 16; ++kk) mma_abt_step<T, kD>(s, qf[kk], ks, kk);
    const int j0 = tile * kCols;
    const bool edge = at.mask_bh || j0 + kCols > Tk;  // per element: mask reads, key bounds
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kNb; ++nb)
      for (int e = 0; e < 4; ++e) {
        const int i = i0 + warp * 16 + g + e / 2 * 8, j = j0 + nb * 8 + 2 * t + e % 2;
        if (!edge)
          s[nb][e] = score_log2(pr, at.mask_bh, i, j, s[nb][e]);
        else
          s[nb][e] = j < Tk ? score_log2(pr, i < Tq ? at.mask_bh : nullptr, i, j, s[nb][e]) : -INFINITY;
      }

    // Online softmax per row: the row's 64 scores sit in the 4 lanes t = 0..3 of its group.
    float base[2];
    VB_ATTN_UNROLL
    for (int r = 0; r < 2; ++r) {
      float row_max = m[r];
      for (int nb = 0; nb < kNb; ++nb) row_max = fmaxf(row_max, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
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
    for (int nb = 0; nb < kNb; ++nb)
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[nb][e] - base[e / 2]);
        l[e / 2] += p;
        s[nb][e] = p;
      }
    if (pr.dropout) {
      VB_ATTN_UNROLL
      for (int nb = 0; nb < kNb; ++nb)
        for (int e = 0; e < 4; ++e) {
          const int i = i0 + warp * 16 + g + e / 2 * 8, j = j0 + nb * 8 + 2 * t + e % 2;
          if (i < Tq && j < Tk) s[nb][e] *= pr.dropout_factor(at.bh, i, j);
        }
    }
    mma_pb<T, kD>(o, s, vs);  // out += P'·V

    __syncthreads();  // every warp is done with this stage: refill it with tile + kStages
    if (tile + kStages < tiles) load_kv<T, M, kD>(k_s, v_s, pr, at, tile + kStages, vec);
    ptx::cp_async_commit();
  }

  VB_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int i = i0 + warp * 16 + g + r * 8;
    if (i >= Tq) continue;
    const float inv_l = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    T* row = out + (at.bh * Tq + i) * D;
    VB_ATTN_UNROLL
    for (int db = 0; db < kD / 8; ++db) {
      const int d = db * 8 + 2 * t;
      if (d < D) row[d] = store<T>(o[db][2 * r] * inv_l);
      if (d + 1 < D) row[d + 1] = store<T>(o[db][2 * r + 1] * inv_l);
    }
    if (t == 0) lse[at.bh * Tq + i] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

// ---- backward ----

// Rows row0.. of a (rows, D) gradient from a warp's C fragments acc (16 rows × D'), times `factor`.
template <class T, int kD>
__device__ void store_rows(T* dst, const float (&acc)[kD / 8][4], float factor, int row0, int rows, int D) {
  const int lane = threadIdx.x % 32, g = ptx::MmaLayout::group(lane), t = ptx::MmaLayout::place(lane);
  VB_ATTN_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + g + r * 8;
    if (row >= rows) continue;
    VB_ATTN_UNROLL
    for (int db = 0; db < kD / 8; ++db) {
      const int d = db * 8 + 2 * t;
      if (d < D) dst[int64_t(row) * D + d] = store<T>(factor * acc[db][2 * r]);
      if (d + 1 < D) dst[int64_t(row) * D + d + 1] = store<T>(factor * acc[db][2 * r + 1]);
    }
  }
}

// One CTA per (key tile blockIdx.x of 64 keys, pair blockIdx.y): dK and dV of its keys, summed over
// every query tile in order. Warp w owns keys 16w..16w+15: it computes Sᵀ and dPᵀ (16 keys × 64
// queries), so lane l holds keys g, g + 8 and, in each 8-query block, queries 2(l%4) and 2(l%4) + 1.
template <class T, class M, int kD>
__global__ void __launch_bounds__(kMmaThreads)
    attention_dkdv_mma_kernel(Problem<T, M> pr, bool vec, const T* gout, const float* lse, const float* delta,
                              T* gk, T* gv) {
  using L = Layout<T, kD>;
  VB_DYNAMIC_SHARED(T, shared);
  T* k_s = shared;                    // this CTA's keys
  T* v_s = k_s + L::tile;             // and values
  T* q_s = v_s + L::tile;             // kStages query tiles
  T* do_s = q_s + kStages * L::tile;  // kStages tiles of dO
  float* lse2_s = reinterpret_cast<float*>(do_s + kStages * L::tile);  // kStages × 64: lse·log2 e
  float* delta_s = lse2_s + kStages * kCols;                           // kStages × 64: Δ
  const Pair<T, M> at(pr, blockIdx.y);
  const int D = pr.D, Tq = pr.Tq, Tk = pr.Tk;
  const int j0 = blockIdx.x * kRows, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = ptx::MmaLayout::group(lane), t = ptx::MmaLayout::place(lane);
  const T* dout = gout + at.bh * Tq * D;
  const int tiles = (Tq + kCols - 1) / kCols;

  auto load_queries = [&](int stage, int tile) {
    load_rows<T, kD>(q_s + stage * L::tile, at.q, tile * kCols, Tq, D, vec);
    load_rows<T, kD>(do_s + stage * L::tile, dout, tile * kCols, Tq, D, vec);
    if (threadIdx.x < kCols) {  // plain loads: visible after the barrier that follows the wait
      const int i = tile * kCols + threadIdx.x;
      lse2_s[stage * kCols + threadIdx.x] = i < Tq ? lse[at.bh * Tq + i] * kLog2e : -INFINITY;
      delta_s[stage * kCols + threadIdx.x] = i < Tq ? delta[at.bh * Tq + i] : 0.0f;
    }
  };
  load_rows<T, kD>(k_s, at.k, j0, Tk, D, vec);
  load_rows<T, kD>(v_s, at.v, j0, Tk, D, vec);
  for (int s = 0; s < kStages; ++s) {
    if (s < tiles) load_queries(s, s);
    ptx::cp_async_commit();
  }
  if (tiles == 0) {  // no queries: the gradients are zeros; K and V still have to land
    ptx::cp_async_wait<0>();
    __syncthreads();
  }

  float dk[kD / 8][4], dv[kD / 8][4];
  VB_ATTN_UNROLL
  for (int db = 0; db < kD / 8; ++db)
    for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.0f;
  for (int tile = 0; tile < tiles; ++tile) {
    ptx::cp_async_wait<kStages - 1>();
    __syncthreads();
    const int stage = tile % kStages;
    const T* qs = q_s + stage * L::tile;
    const T* dos = do_s + stage * L::tile;
    Block st, dpt;  // Sᵀ and dPᵀ: rows = keys, columns = queries
    mma_abt<T, kD>(st, k_s + warp * 16 * L::ld, qs);
    mma_abt<T, kD>(dpt, v_s + warp * 16 * L::ld, dos);
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kNb; ++nb)
      for (int e = 0; e < 4; ++e) {
        const int c = nb * 8 + 2 * t + e % 2;  // query within the tile
        score_grads(pr, at.mask_bh, at.bh, tile * kCols + c, j0 + warp * 16 + g + e / 2 * 8,
                    lse2_s[stage * kCols + c], delta_s[stage * kCols + c], st[nb][e], dpt[nb][e]);
      }
    mma_pb<T, kD>(dv, st, dos);  // dV_j += Σ_i P'_ij·dO_i
    mma_pb<T, kD>(dk, dpt, qs);  // dK_j += Σ_i dS_ij·q_i
    __syncthreads();             // every warp is done with this stage: refill it
    if (tile + kStages < tiles) load_queries(stage, tile + kStages);
    ptx::cp_async_commit();
  }
  store_rows<T, kD>(gk + at.bh * Tk * D, dk, pr.scale, j0 + warp * 16, Tk, D);
  store_rows<T, kD>(gv + at.bh * Tk * D, dv, 1.0f, j0 + warp * 16, Tk, D);
}

// One CTA per (query tile blockIdx.x of 64 queries, pair blockIdx.y): dQ of its queries, summed over
// every key tile in order. Warp w owns queries 16w..16w+15 (the forward's layout).
template <class T, class M, int kD>
__global__ void __launch_bounds__(kMmaThreads)
    attention_dq_mma_kernel(Problem<T, M> pr, bool vec, const T* gout, const float* lse, const float* delta,
                            T* gq) {
  using L = Layout<T, kD>;
  VB_DYNAMIC_SHARED(T, shared);
  T* q_s = shared;                   // this CTA's queries
  T* do_s = q_s + L::tile;           // and their rows of dO
  T* k_s = do_s + L::tile;           // kStages key tiles
  T* v_s = k_s + kStages * L::tile;  // kStages value tiles
  const Pair<T, M> at(pr, blockIdx.y);
  const int D = pr.D, Tq = pr.Tq, Tk = pr.Tk;
  const int i0 = blockIdx.x * kRows, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = ptx::MmaLayout::group(lane), t = ptx::MmaLayout::place(lane);
  const int tiles = (Tk + kCols - 1) / kCols;

  load_rows<T, kD>(q_s, at.q, i0, Tq, D, vec);
  load_rows<T, kD>(do_s, gout + at.bh * Tq * D, i0, Tq, D, vec);
  for (int s = 0; s < kStages; ++s) {
    if (s < tiles) load_kv<T, M, kD>(k_s, v_s, pr, at, s, vec);
    ptx::cp_async_commit();
  }
  if (tiles == 0) {
    ptx::cp_async_wait<0>();
    __syncthreads();
  }
  float lse2[2], delta_row[2];  // rows g, g + 8
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + warp * 16 + g + r * 8;
    lse2[r] = i < Tq ? lse[at.bh * Tq + i] * kLog2e : -INFINITY;
    delta_row[r] = i < Tq ? delta[at.bh * Tq + i] : 0.0f;
  }

  float dq[kD / 8][4];
  VB_ATTN_UNROLL
  for (int db = 0; db < kD / 8; ++db)
    for (int e = 0; e < 4; ++e) dq[db][e] = 0.0f;
  for (int tile = 0; tile < tiles; ++tile) {
    ptx::cp_async_wait<kStages - 1>();
    __syncthreads();
    const T* ks = k_s + tile % kStages * L::tile;
    const T* vs = v_s + tile % kStages * L::tile;
    Block s, dp;
    mma_abt<T, kD>(s, q_s + warp * 16 * L::ld, ks);
    mma_abt<T, kD>(dp, do_s + warp * 16 * L::ld, vs);
    VB_ATTN_UNROLL
    for (int nb = 0; nb < kNb; ++nb)
      for (int e = 0; e < 4; ++e)
        score_grads(pr, at.mask_bh, at.bh, i0 + warp * 16 + g + e / 2 * 8, tile * kCols + nb * 8 + 2 * t + e % 2,
                    lse2[e / 2], delta_row[e / 2], s[nb][e], dp[nb][e]);
    mma_pb<T, kD>(dq, dp, ks);  // dQ_i += Σ_j dS_ij·k_j
    __syncthreads();  // every warp is done with this stage: refill it
    if (tile + kStages < tiles) load_kv<T, M, kD>(k_s, v_s, pr, at, tile + kStages, vec);
    ptx::cp_async_commit();
  }
  store_rows<T, kD>(gq + at.bh * Tq * D, dq, pr.scale, i0 + warp * 16, Tq, D);
}

// ---- launchers ----

// 16-byte copies need whole 8-element chunks per row and 16-byte aligned rows.
template <class T>
bool vectorizable(int D, std::initializer_list<const T*> planes) {
  bool ok = D % 8 == 0;
  for (const T* p : planes) ok = ok && reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
  return ok;
}

template <class T, int kD>
constexpr std::size_t tiles_bytes(int tiles) {
  return sizeof(T) * std::size_t(Layout<T, kD>::tile) * std::size_t(tiles);
}

unsigned ctas(int rows) { return static_cast<unsigned>((rows + kRows - 1) / kRows); }

template <class T, class M, int kD>
void forward_mma_with(const Problem<T, M>& pr, int64_t pairs, T* out, float* lse, rt::Stream stream) {
  const bool vec = vectorizable<T>(pr.D, {pr.q, pr.k, pr.v});
  const std::size_t shared = tiles_bytes<T, kD>(1 + 2 * kStages);
  auto kernel = attention_forward_mma_kernel<T, M, kD>;
  allow_shared(kernel, shared);
  launch(kernel, {dim3(ctas(pr.Tq), unsigned(pairs)), dim3(kMmaThreads), shared, stream}, pr, vec, out, lse);
}

template <class T, class M, int kD>
void backward_mma_with(const Problem<T, M>& pr, int64_t pairs, const T* gout, const float* lse, const float* delta,
                       T* gq, T* gk, T* gv, rt::Stream stream) {
  const bool vec = vectorizable<T>(pr.D, {pr.q, pr.k, pr.v, gout});
  if (pr.Tk > 0) {
    const std::size_t shared = tiles_bytes<T, kD>(2 + 2 * kStages) + sizeof(float) * 2 * kStages * kCols;
    auto kernel = attention_dkdv_mma_kernel<T, M, kD>;
    allow_shared(kernel, shared);
    launch(kernel, {dim3(ctas(pr.Tk), unsigned(pairs)), dim3(kMmaThreads), shared, stream}, pr, vec, gout, lse,
           delta, gk, gv);
  }
  if (pr.Tq > 0) {
    const std::size_t shared = tiles_bytes<T, kD>(2 + 2 * kStages);
    auto kernel = attention_dq_mma_kernel<T, M, kD>;
    allow_shared(kernel, shared);
    launch(kernel, {dim3(ctas(pr.Tq), unsigned(pairs)), dim3(kMmaThreads), shared, stream}, pr, vec, gout, lse,
           delta, gq);
  }
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

template <class T, class M>
void attention_backward_mma(const Problem<T, M>& pr, int64_t pairs, const T* gout, const float* lse,
                            const float* delta, T* gq, T* gk, T* gv, rt::Stream stream) {
  if (pr.D <= 32)
    backward_mma_with<T, M, 32>(pr, pairs, gout, lse, delta, gq, gk, gv, stream);
  else if (pr.D <= 64)
    backward_mma_with<T, M, 64>(pr, pairs, gout, lse, delta, gq, gk, gv, stream);
  else
    backward_mma_with<T, M, 128>(pr, pairs, gout, lse, delta, gq, gk, gv, stream);
}

#define VB_ATTENTION_MMA_INSTANTIATE(T, M)                                                                     \
  template void attention_forward_mma<T, M>(const Problem<T, M>&, int64_t, T*, float*, rt::Stream);           \
  template void attention_backward_mma<T, M>(const Problem<T, M>&, int64_t, const T*, const float*, const float*, \
                                             T*, T*, T*, rt::Stream);
VB_ATTENTION_MMA_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
VB_ATTENTION_MMA_INSTANTIATE(__nv_bfloat16, float)
VB_ATTENTION_MMA_INSTANTIATE(__half, __half)
VB_ATTENTION_MMA_INSTANTIATE(__half, float)
#undef VB_ATTENTION_MMA_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS::attention_detail
