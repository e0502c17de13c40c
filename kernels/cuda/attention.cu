// Scaled dot-product attention, FlashAttention-style (Dao et al. 2022; FlashAttention-2, Dao 2023):
// tiled, with the softmax computed online, so the Tq×Tk score matrix never reaches global memory.
// The CPU reference is kernels/cpu/attention.cpp (Backend::attention); this is the clear tiled version
// in float32 arithmetic (no tensor cores) that faster versions are measured against. It runs float32
// problems, and the Δ kernel of every backward; bfloat16/float16 forward and backward run on the tensor
// cores (kernels/cuda/attention_mma.cu). What both files share is kernels/cuda/attention_common.h.
//
// Math, per (b, h), with q (Tq, D), k and v (Tk, D), an additive mask (Tq, Tk), dropout probability p:
//   forward:
//     S_ij  = scale·q_i·k_j + mask_ij                           score
//     m_i   = max_j S_ij,  l_i = Σ_j exp(S_ij − m_i)            row max and row sum
//     lse_i = m_i + log l_i                                     saved (float32) for the backward
//     P_ij  = exp(S_ij − lse_i)                                 softmax
//     Z_ij  = [philox_uniform(seed, offset + ((b·H + h)·Tq + i)·Tk + j) ≥ p] / (1 − p)   dropout
//     out_i = Σ_j P_ij·Z_ij·v_j
//   Online softmax: key tiles arrive one after another; each row keeps a running max m, sum l and an
//   unnormalised accumulator o. A tile with new max m' rescales both by α = exp(m − m'), then adds
//   l += Σ_j exp(S_ij − m'), o += Σ_j exp(S_ij − m')·Z_ij·v_j; at the end out_i = o / l.
//   backward (dO = ∂L/∂out), recomputing P from q, k and lse tile by tile:
//     Δ_i   = Σ_d dO_id·out_id            (= Σ_j P_ij·dP_ij; a preprocessing kernel)
//     dV_j  = Σ_i P_ij·Z_ij·dO_i
//     dP_ij = (dO_i·v_j)·Z_ij                                   gradient w.r.t. P (dropout folded in)
//     dS_ij = P_ij·(dP_ij − Δ_i)                                gradient w.r.t. S
//     dQ_i  = scale·Σ_j dS_ij·k_j,   dK_j = scale·Σ_i dS_ij·q_i
//   A fully masked row (every S_ij = −inf) has m = −inf; it gives out = 0, lse = −inf and zero
//   gradients (the CPU backend's convention): the exponent is taken against 0 instead of −inf.
//
// Launch shape (every kernel: 128 threads = 4 warps; a tile is 32 rows × 32 columns, each warp owns
// 8 rows and each lane one column; shared memory holds tiles as float32):
//   forward:   grid (⌈Tq/32⌉, B·H), one CTA per query tile; loops over key tiles; q tile (32, D),
//              k tile (32, D+1), v tile (32, D), P' (32, 32): 4·(96D + 1056) bytes (53 KiB at D = 128).
//   backward:  delta: grid ⌈B·H·Tq/4⌉, one warp per query row.
//              dK/dV: grid (⌈Tk/32⌉, B·H), one CTA per key tile, accumulating dK and dV in registers
//              over every query tile; dQ: grid (⌈Tq/32⌉, B·H), one CTA per query tile accumulating dQ
//              over every key tile. Each gradient element is summed by one thread in a fixed order:
//              deterministic, no float atomics — at the price of recomputing S and dP in the dQ pass.
// Why the T×T matrix never reaches global memory: a CTA holds one 32×32 tile of S / P / dS at a time,
// in registers and shared memory, and reduces it into per-row (m, l, o) or per-row gradient
// accumulators before loading the next tile.
//
// Cost, per (b, h): forward 4·Tq·Tk·D FLOPs (two GEMMs) + ≈5·Tq·Tk (exp, max, sum); backward counted
// as 2.5× the forward (five GEMMs: S, dP, dV, dK, dQ), executed 3.5× (S and dP twice).
// Bytes: the forward reads q and writes out once, and reads k and v once per query tile:
// (2·Tq·D + 2·Tk·D·⌈Tq/32⌉)·sizeof(T) + 4·Tq (lse) + the mask's distinct elements. The backward reads
// q and dO once per key tile and k and v once per query tile: ≈ 2·D·(Tq·⌈Tk/32⌉ + Tk·⌈Tq/32⌉)·sizeof(T)
// twice over (dK/dV pass and dQ pass), plus out, dO for Δ and the writes of dq, dk, dv.
#include "kernels/cuda/attention.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/attention_common.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {
namespace {

using attention_detail::allow_shared;
using attention_detail::make_problem;
using attention_detail::Problem;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = 8;
constexpr int kTile = kWarps * kRowsPerWarp;  // 32 rows (and 32 columns, one per lane) per tile
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

// dst (32, ld) ← rows [row0, row0 + 32) of src (n, D) as float32; rows past n are zeros. All threads.
template <class T>
__device__ void load_tile(float* dst, int ld, const T* src, int row0, int n, int D) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
    const int r = idx / D, d = idx % D;
    dst[r * ld + d] = row0 + r < n ? load(src[int64_t(row0 + r) * D + d]) : 0.0f;
  }
}

// dot[r] = rows[r]·cols[lane] over D, for the warp's R rows (read by every lane: broadcasts) and the
// lane's own column row of cols (padded stride ld_cols = D + 1: the lanes hit distinct banks).
template <int R>
__device__ void dot_tile(const float* rows, int ld_rows, const float* cols, int ld_cols, int D, float (&dot)[R]) {
  const float* col = cols + (threadIdx.x % 32) * ld_cols;
  for (int r = 0; r < R; ++r) dot[r] = 0.0f;
  for (int d = 0; d < D; ++d) {
    const float c = col[d];
    for (int r = 0; r < R; ++r) dot[r] = fmaf(rows[r * ld_rows + d], c, dot[r]);
  }
}

// acc[r][c] += Σ_j w[r·32 + j]·mat[j·ld + lane + 32c] over the tile's 32 rows j of mat: a (R, 32) ×
// (32, D) product, the lane holding output columns lane, lane + 32, ….
template <int R, int C>
__device__ void accumulate_tile(const float* w, const float* mat, int ld, int D, float (&acc)[R][C]) {
  const int lane = threadIdx.x % 32;
  for (int j = 0; j < kTile; ++j) {
    float m[C];
    for (int c = 0; c < C; ++c) m[c] = lane + 32 * c < D ? mat[j * ld + lane + 32 * c] : 0.0f;
    for (int r = 0; r < R; ++r) {
      const float wr = w[r * kTile + j];
      for (int c = 0; c < C; ++c) acc[r][c] = fmaf(wr, m[c], acc[r][c]);
    }
  }
}

// ---- forward ----

// One CTA per (query tile blockIdx.x, pair blockIdx.y = b·H + h). Warp w owns query rows 8w..8w+7 of
// the tile; for S and P' lane l owns key column l of the current key tile, for out it owns head
// dimensions l, l + 32, …
template <class T, class M, int C>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(Problem<T, M> pr, T* out, float* lse) {
  VB_DYNAMIC_SHARED(float, shared);
  const int D = pr.D, ld = D + 1;
  float* q_tile = shared;                // (32, D)
  float* k_tile = q_tile + kTile * D;    // (32, D + 1)
  float* v_tile = k_tile + kTile * ld;   // (32, D)
  float* p_tile = v_tile + kTile * D;    // (32, 32) P'·exp(m) of the current tile, row = query
  const int64_t bh = blockIdx.y;
  const int i0 = blockIdx.x * kTile, lane = threadIdx.x % 32, r0 = threadIdx.x / 32 * kRowsPerWarp;
  const float neg_inf = -INFINITY;

  load_tile(q_tile, D, pr.q + bh * pr.Tq * D, i0, pr.Tq, D);
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][C];  // running max, sum, unnormalised out
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = neg_inf;
    l[r] = 0.0f;
    for (int c = 0; c < C; ++c) o[r][c] = 0.0f;
  }
  for (int j0 = 0; j0 < pr.Tk; j0 += kTile) {
    __syncthreads();  // the previous tile's k, v and P' are no longer read
    load_tile(k_tile, ld, pr.k + bh * pr.Tk * D, j0, pr.Tk, D);
    load_tile(v_tile, D, pr.v + bh * pr.Tk * D, j0, pr.Tk, D);
    __syncthreads();
    float s[kRowsPerWarp];
    dot_tile(q_tile + r0 * D, D, k_tile, ld, D, s);
    const int j = j0 + lane;
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = i0 + r0 + r;
      const bool valid = i < pr.Tq && j < pr.Tk;
      s[r] = valid ? pr.score(bh, i, j, s[r]) : neg_inf;
      const float m_new = fmaxf(m[r], warp_max(s[r]));
      const float base = m_new == neg_inf ? 0.0f : m_new;  // fully masked so far: every exp is 0
      const float alpha = expf(m[r] - base);
      const float p = expf(s[r] - base);
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = m_new;
      for (int c = 0; c < C; ++c) o[r][c] *= alpha;
      p_tile[(r0 + r) * kTile + lane] = valid ? p * pr.dropout_factor(bh, i, j) : 0.0f;
    }
    __syncwarp();  // the warp's P' rows are complete
    accumulate_tile(p_tile + r0 * kTile, v_tile, D, D, o);
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = i0 + r0 + r;
    if (i >= pr.Tq) break;
    const float inv_l = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    T* out_row = out + (bh * pr.Tq + i) * D;
    for (int c = 0; c < C; ++c)
      if (lane + 32 * c < D) out_row[lane + 32 * c] = store<T>(o[r][c] * inv_l);
    if (lane == 0) lse[bh * pr.Tq + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : neg_inf;
  }
}

// ---- backward ----

// delta[row] = Σ_d gout[row, d]·out[row, d] over the B·H·Tq rows. One warp per row.
template <class T>
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(const T* out, const T* gout, float* delta,
                                                                   int64_t rows, int D) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps leave together
  float sum = 0.0f;
  for (int d = threadIdx.x % 32; d < D; d += 32) sum = fmaf(load(gout[row * D + d]), load(out[row * D + d]), sum);
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) delta[row] = sum;
}

// The gradient terms of one score: P' = P·Z (for dV) and dS = P·(dP'·Z − Δ), where dp_dot = dO_i·v_j.
struct ScoreGrad {
  float p_dropped, ds;
};

template <class T, class M>
__device__ ScoreGrad score_grad(const Problem<T, M>& pr, int64_t bh, int i, int j, float qk_dot, float dp_dot,
                                float lse_i, float delta_i) {
  if (i >= pr.Tq || j >= pr.Tk || lse_i == -INFINITY) return {0.0f, 0.0f};
  const float p = expf(pr.score(bh, i, j, qk_dot) - lse_i);
  const float z = pr.dropout_factor(bh, i, j);
  return {p * z, p * (dp_dot * z - delta_i)};
}

// One CTA per (key tile blockIdx.x, pair blockIdx.y): dK and dV of its 32 keys, summed over every query
// tile in order. Warp w owns key rows 8w..8w+7; for P' and dS lane l owns query column l of the current
// query tile, for dK and dV it owns head dimensions l, l + 32, …
template <class T, class M, int C>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(Problem<T, M> pr, const T* gout, const float* lse,
                                                                  const float* delta, T* gk, T* gv) {
  VB_DYNAMIC_SHARED(float, shared);
  const int D = pr.D, ld = D + 1;
  float* k_tile = shared;                   // (32, D)      this CTA's keys
  float* v_tile = k_tile + kTile * D;       // (32, D)
  float* q_tile = v_tile + kTile * D;       // (32, D + 1)  current query tile
  float* go_tile = q_tile + kTile * ld;     // (32, D + 1)  its rows of dO
  float* p_tile = go_tile + kTile * ld;     // (32, 32)     P', row = key
  float* ds_tile = p_tile + kTile * kTile;  // (32, 32)     dS, row = key
  float* lse_tile = ds_tile + kTile * kTile;
  float* delta_tile = lse_tile + kTile;
  const int64_t bh = blockIdx.y;
  const int j0 = blockIdx.x * kTile, lane = threadIdx.x % 32, r0 = threadIdx.x / 32 * kRowsPerWarp;

  load_tile(k_tile, D, pr.k + bh * pr.Tk * D, j0, pr.Tk, D);
  load_tile(v_tile, D, pr.v + bh * pr.Tk * D, j0, pr.Tk, D);
  float dk[kRowsPerWarp][C] = {}, dv[kRowsPerWarp][C] = {};
  for (int i0 = 0; i0 < pr.Tq; i0 += kTile) {
    __syncthreads();  // the previous query tile is no longer read
    load_tile(q_tile, ld, pr.q + bh * pr.Tq * D, i0, pr.Tq, D);
    load_tile(go_tile, ld, gout + bh * pr.Tq * D, i0, pr.Tq, D);
    if (threadIdx.x < kTile) {
      const int i = i0 + threadIdx.x;
      lse_tile[threadIdx.x] = i < pr.Tq ? lse[bh * pr.Tq + i] : -INFINITY;
      delta_tile[threadIdx.x] = i < pr.Tq ? delta[bh * pr.Tq + i] : 0.0f;
    }
    __syncthreads();
    float qk[kRowsPerWarp], dp[kRowsPerWarp];
    dot_tile(k_tile + r0 * D, D, q_tile, ld, D, qk);   // k_j·q_i
    dot_tile(v_tile + r0 * D, D, go_tile, ld, D, dp);  // v_j·dO_i
    const int i = i0 + lane;
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const ScoreGrad g = score_grad(pr, bh, i, j0 + r0 + r, qk[r], dp[r], lse_tile[lane], delta_tile[lane]);
      p_tile[(r0 + r) * kTile + lane] = g.p_dropped;
      ds_tile[(r0 + r) * kTile + lane] = g.ds;
    }
    __syncwarp();  // the warp's P' and dS rows are complete
    accumulate_tile(p_tile + r0 * kTile, go_tile, ld, D, dv);  // dV_j += Σ_i P'_ij·dO_i
    accumulate_tile(ds_tile + r0 * kTile, q_tile, ld, D, dk);  // dK_j += Σ_i dS_ij·q_i
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int j = j0 + r0 + r;
    if (j >= pr.Tk) break;
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d >= D) continue;
      gk[(bh * pr.Tk + j) * D + d] = store<T>(pr.scale * dk[r][c]);
      gv[(bh * pr.Tk + j) * D + d] = store<T>(dv[r][c]);
    }
  }
}

// One CTA per (query tile blockIdx.x, pair blockIdx.y): dQ of its 32 queries, summed over every key
// tile in order. Warp w owns query rows 8w..8w+7; for dS lane l owns key column l, for dQ head
// dimensions l, l + 32, …
template <class T, class M, int C>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(Problem<T, M> pr, const T* gout, const float* lse,
                                                                const float* delta, T* gq) {
  VB_DYNAMIC_SHARED(float, shared);
  const int D = pr.D, ld = D + 1;
  float* q_tile = shared;                // (32, D)      this CTA's queries
  float* go_tile = q_tile + kTile * D;   // (32, D)      their rows of dO
  float* k_tile = go_tile + kTile * D;   // (32, D + 1)  current key tile
  float* v_tile = k_tile + kTile * ld;   // (32, D + 1)
  float* ds_tile = v_tile + kTile * ld;  // (32, 32)     dS, row = query
  const int64_t bh = blockIdx.y;
  const int i0 = blockIdx.x * kTile, lane = threadIdx.x % 32, r0 = threadIdx.x / 32 * kRowsPerWarp;

  load_tile(q_tile, D, pr.q + bh * pr.Tq * D, i0, pr.Tq, D);
  load_tile(go_tile, D, gout + bh * pr.Tq * D, i0, pr.Tq, D);
  float lse_row[kRowsPerWarp], delta_row[kRowsPerWarp], dq[kRowsPerWarp][C] = {};
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = i0 + r0 + r;
    lse_row[r] = i < pr.Tq ? lse[bh * pr.Tq + i] : -INFINITY;
    delta_row[r] = i < pr.Tq ? delta[bh * pr.Tq + i] : 0.0f;
  }
  for (int j0 = 0; j0 < pr.Tk; j0 += kTile) {
    __syncthreads();  // the previous key tile and dS are no longer read
    load_tile(k_tile, ld, pr.k + bh * pr.Tk * D, j0, pr.Tk, D);
    load_tile(v_tile, ld, pr.v + bh * pr.Tk * D, j0, pr.Tk, D);
    __syncthreads();
    float qk[kRowsPerWarp], dp[kRowsPerWarp];
    dot_tile(q_tile + r0 * D, D, k_tile, ld, D, qk);   // q_i·k_j
    dot_tile(go_tile + r0 * D, D, v_tile, ld, D, dp);  // dO_i·v_j
    const int j = j0 + lane;
    for (int r = 0; r < kRowsPerWarp; ++r)
      ds_tile[(r0 + r) * kTile + lane] = score_grad(pr, bh, i0 + r0 + r, j, qk[r], dp[r], lse_row[r], delta_row[r]).ds;
    __syncwarp();  // the warp's dS rows are complete
    accumulate_tile(ds_tile + r0 * kTile, k_tile, ld, D, dq);  // dQ_i += Σ_j dS_ij·k_j
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = i0 + r0 + r;
    if (i >= pr.Tq) break;
    for (int c = 0; c < C; ++c)
      if (lane + 32 * c < D) gq[(bh * pr.Tq + i) * D + lane + 32 * c] = store<T>(pr.scale * dq[r][c]);
  }
}

// ---- launchers ----

unsigned tiles(int64_t n) { return static_cast<unsigned>((n + kTile - 1) / kTile); }

// C = ⌈D/32⌉: the head dimensions each lane holds.
template <class T, class M, int C>
void forward_with(const Problem<T, M>& pr, int64_t pairs, T* out, float* lse, rt::Stream stream) {
  const std::size_t shared = sizeof(float) * std::size_t(kTile * (3 * pr.D + 1) + kTile * kTile);
  auto kernel = attention_forward_kernel<T, M, C>;
  allow_shared(kernel, shared);
  launch(kernel, {dim3(tiles(pr.Tq), unsigned(pairs)), dim3(kThreads), shared, stream}, pr, out, lse);
}

template <class T, class M, int C>
void backward_with(const Problem<T, M>& pr, int64_t pairs, const T* gout, const float* lse, const float* delta,
                   T* gq, T* gk, T* gv, rt::Stream stream) {
  const std::size_t ld = std::size_t(pr.D) + 1;
  if (pr.Tk > 0) {
    const std::size_t shared = sizeof(float) * (kTile * (2 * pr.D + 2 * ld) + 2 * kTile * kTile + 2 * kTile);
    auto kernel = attention_dkdv_kernel<T, M, C>;
    allow_shared(kernel, shared);
    launch(kernel, {dim3(tiles(pr.Tk), unsigned(pairs)), dim3(kThreads), shared, stream}, pr, gout, lse, delta, gk,
           gv);
  }
  if (pr.Tq > 0) {
    const std::size_t shared = sizeof(float) * (kTile * (2 * pr.D + 2 * ld) + kTile * kTile);
    auto kernel = attention_dq_kernel<T, M, C>;
    allow_shared(kernel, shared);
    launch(kernel, {dim3(tiles(pr.Tq), unsigned(pairs)), dim3(kThreads), shared, stream}, pr, gout, lse, delta, gq);
  }
}

}  // namespace

template <class T, class M>
void attention_forward(const AttentionInputs<T, M>& in, T* out, float* lse, rt::Stream stream) {
  const Problem<T, M> pr = make_problem("attention_forward", in);
  const int64_t pairs = in.shape.B * in.shape.H;
  if (pairs == 0 || pr.Tq == 0) return;
  if constexpr (!std::is_same_v<T, float>) {
    attention_detail::attention_forward_mma(pr, pairs, out, lse, stream);  // the tensor cores
  } else {
    switch ((pr.D + 31) / 32) {
      case 1: forward_with<T, M, 1>(pr, pairs, out, lse, stream); break;
      case 2: forward_with<T, M, 2>(pr, pairs, out, lse, stream); break;
      case 3: forward_with<T, M, 3>(pr, pairs, out, lse, stream); break;
      default: forward_with<T, M, 4>(pr, pairs, out, lse, stream); break;
    }
  }
}

template <class T, class M>
void attention_backward(const AttentionInputs<T, M>& in, const T* out, const T* gout, const float* lse, float* delta,
                        T* gq, T* gk, T* gv, rt::Stream stream) {
  const Problem<T, M> pr = make_problem("attention_backward", in);
  const int64_t pairs = in.shape.B * in.shape.H, rows = pairs * pr.Tq;
  if (pairs == 0) return;
  if (rows > 0)
    launch(attention_delta_kernel<T>, {dim3(unsigned((rows + kWarps - 1) / kWarps)), dim3(kThreads), 0, stream},
           out, gout, delta, rows, pr.D);
  if constexpr (!std::is_same_v<T, float>) {
    attention_detail::attention_backward_mma(pr, pairs, gout, lse, delta, gq, gk, gv, stream);  // tensor cores
  } else {
    switch ((pr.D + 31) / 32) {
      case 1: backward_with<T, M, 1>(pr, pairs, gout, lse, delta, gq, gk, gv, stream); break;
      case 2: backward_with<T, M, 2>(pr, pairs, gout, lse, delta, gq, gk, gv, stream); break;
      case 3: backward_with<T, M, 3>(pr, pairs, gout, lse, delta, gq, gk, gv, stream); break;
      default: backward_with<T, M, 4>(pr, pairs, gout, lse, delta, gq, gk, gv, stream); break;
    }
  }
}

#define VB_ATTENTION_INSTANTIATE(T, M)                                                                     \
  template void attention_forward<T, M>(const AttentionInputs<T, M>&, T*, float*, rt::Stream);            \
  template void attention_backward<T, M>(const AttentionInputs<T, M>&, const T*, const T*, const float*, \
                                         float*, T*, T*, T*, rt::Stream);
VB_ATTENTION_INSTANTIATE(float, float)
VB_ATTENTION_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
VB_ATTENTION_INSTANTIATE(__nv_bfloat16, float)
VB_ATTENTION_INSTANTIATE(__half, __half)
VB_ATTENTION_INSTANTIATE(__half, float)
#undef VB_ATTENTION_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS
