// The parts the CPU's two GEMMs share: the float32/float64 one (gemm.cpp, AVX-512 FMA) and the bfloat16 one
// (gemm_bf16.cpp, AMX tiles) — blocking arithmetic, per-thread packing buffers, the task grid, packing A
// rows and the 16 × 16 register transpose. Internal to those two files.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/gemm.h"

namespace vb::cpu::gemm_parts {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The bytes of one packed B block (KC × NC): gemm_b_block_bytes's setting, or else b_block_bytes_default()
// (gemm.cpp says how it is chosen). NC changes no sum's order (KC does), so results do not depend on it.
extern std::atomic<int64_t> g_b_block_bytes;
int64_t b_block_bytes_default();

// How many CPUs a Linux CPU list names ("0-7,16-23": 16), or 0 if it is not one.
int64_t count_cpu_list(const std::string& list);

// NC: as many whole NR-column panels of kc rows of elem_bytes values as fit one B block.
inline int64_t nc_max(int64_t kc, int64_t elem_bytes, int64_t nr) {
  const int64_t set = g_b_block_bytes.load(std::memory_order_relaxed);
  const int64_t bytes = set > 0 ? set : b_block_bytes_default();
  return std::max<int64_t>(nr, bytes / (kc * elem_bytes) / nr * nr);
}

// Runs of K slices (both GEMMs: a task packs B for a run of consecutive slices and takes each A panel through all
// of them before the next): the longest run whose B block still holds at least min_nc columns, 1 when off, then
// evened out over the runs that K needs. The sums keep their order either way.
inline int64_t slice_run(bool on, int64_t slices, int64_t KC, int64_t elem_bytes, int64_t nr, int64_t min_nc) {
  int64_t longest = 1;
  if (on)
    while (longest < slices && nc_max((longest + 1) * KC, elem_bytes, nr) >= min_nc) ++longest;
  return ceil_div(slices, ceil_div(slices, longest));
}

// Adds 2·M·N·K to the benchmarks' FLOP counter when counting is on (gemm_count_flops).
void count_flops(int64_t M, int64_t N, int64_t K);

// ---- Per-thread buffers (64-byte aligned, grown on demand, kept for the next call). ----
template <typename T>
class Buffer {
 public:
  T* get(size_t n) {
    if (n > size_) {
      const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  size_t size_ = 0;
};

enum class Slot { kPackedA, kPackedB, kRow, kSums };

template <typename T>
T* thread_buffer(Slot slot, size_t n) {
  thread_local Buffer<T> buffers[int(Slot::kSums) + 1];  // one per slot
  return buffers[int(slot)].get(n);
}

// A column-major A (a transposed view, as in a weight gradient gW = gYᵀ·X) is packed this many panels at
// a time: one k then reads kPanelGroup·MR contiguous values instead of MR values from a different page.
constexpr int64_t kPanelGroup = 8;

template <typename T>
bool column_major(const GemmOperand<T>& op) {
  return !op.row && op.row_stride == 1 && op.col_stride != 1;
}

// n values from src to dst: a memcpy, or a conversion where the panel's type is wider than the operand's (the
// float32 panels of gemm_gathered<bf16>: a bfloat16 widens to float32 exactly).
template <typename T, typename S>
inline void copy_values(const S* src, int64_t n, T* dst) {
  if constexpr (std::is_same_v<T, S>) {
    std::memcpy(dst, src, size_t(n) * sizeof(T));
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = T(src[j]);
  }
}

// A panels (MR rows each, row i at ap + i·ld, i counted across panels) ← A[i0 : i0+m, k0 : k0+kc], each row
// padded with zeros from kc to kpad (≤ ld) and the last panel with zero rows to a multiple of MR. Rows are what
// the operands offer cheaply: a memcpy of a row-major row, or one call of the row generator writing straight
// into the panel. m ≤ kPanelGroup·MR. The float32 micro-kernel and the VDPBF16PS one take ld as a compile-time
// constant (their largest KC), so that one pointer with constant offsets reaches all MR rows (gemm.cpp's
// micro-kernel says why); the AMX tiles take ld = kpad. S, A's type, is T, or bfloat16 widened into float32
// panels (gemm_gathered<bf16>).
template <typename T, int MR, typename S = T>
void pack_a(const GemmOperand<S>& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, int64_t kpad, int64_t ld, T* ap) {
  if (column_major(a)) {
    // A transpose, 16 k at a time through a small tile: the reads are 16 contiguous runs of m values, and
    // each packed row gets 16 consecutive values (one cache line) at once. (Writing one value per packed
    // row per k would touch m lines ld·sizeof(T) bytes apart — the same few L1 sets, evicted every k.)
    constexpr int64_t kStep = 16;
    T tile[kStep * kPanelGroup * MR];
    for (int64_t p0 = 0; p0 < kc; p0 += kStep) {
      const int64_t np = std::min(kStep, kc - p0);
      for (int64_t p = 0; p < np; ++p) copy_values(a.data + (k0 + p0 + p) * a.col_stride + i0, m, tile + p * m);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t p = 0; p < np; ++p) ap[i * ld + p0 + p] = tile[p * m + i];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      T* dst = ap + i * ld;
      if (a.row) {
        if constexpr (std::is_same_v<T, S>) {
          a.row(i0 + i, k0, kc, dst);
        } else {
          thread_local std::vector<S> row;
          row.resize(size_t(kc));
          a.row(i0 + i, k0, kc, row.data());
          copy_values(row.data(), kc, dst);
        }
      } else if (a.col_stride == 1) {
        copy_values(a.data + (i0 + i) * a.row_stride + k0, kc, dst);
      } else {
        const S* src = a.data + (i0 + i) * a.row_stride + k0 * a.col_stride;
        for (int64_t p = 0; p < kc; ++p) dst[p] = T(src[p * a.col_stride]);
      }
    }
  }
  if (kpad > kc)
    for (int64_t i = 0; i < m; ++i) std::fill(ap + i * ld + kc, ap + i * ld + kpad, T(0));
  for (int64_t i = m; i < round_up(m, MR); ++i) std::fill(ap + i * ld, ap + i * ld + kpad, T(0));
}

#if defined(__AVX512F__)
// dst row p (p < 16, at dst + p·dst_ld bytes) ← the p-th 32-bit word of each of 16 source rows (row i at
// src + i·src_ld bytes): a 16 × 16 transpose of 4-byte words in registers, the classic 4-stage unpack /
// shuffle network (64 shuffles per 256 words). Only moves bits, so it serves float32 values and bfloat16
// pairs alike. (GCC 12 warns about the _mm512_undefined_* inside its own intrinsics once they are inlined
// into a non-template function: its bug 105593, fixed in GCC 13.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
inline void transpose_16x16_words(const char* src, int64_t src_ld, char* dst, int64_t dst_ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * src_ld);
  // Stage 1: interleave 32-bit pairs of rows (2i, 2i+1).
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // Stage 2: interleave 64-bit pairs of the results, four rows at a time.
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                  d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // Stages 3 and 4: move 128-bit lanes between rows 4 and then 8 apart.
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
  for (int p = 0; p < 16; ++p) _mm512_storeu_ps(dst + p * dst_ld, r[p]);
}
#pragma GCC diagnostic pop
#endif

// Chooses the task grid: n_blocks column blocks (at least min_blocks) × m_slices row ranges. Each task
// packs the A rows and B columns it needs, so a column block's A rows are packed once per block and a
// row range's B columns once per range: the grid minimises that re-packing, n_blocks·M + m_slices·N
// elements per K, among grids of at least two tasks per thread (so that a core slowed down by other work
// on the machine does not hold the other one up) and a whole number of tasks per thread. Wide products
// thus split N (each thread packs only its own B columns) and narrow ones — a convolution with 64
// output channels, a weight gradient with few rows — split the other way.
//   The block counts tried run up to twice min_blocks, so that a whole number of tasks per thread can come
// from more column blocks instead of more row ranges: 512 × 1024 × 4096 in float32 on 2 threads needs 7
// blocks (L2), and 7 × 2 tasks packed B twice (n_blocks·M + m_slices·N = 11776 per K) where 8 × 1 packs
// it once (8192); a product of one row panel cannot split its rows at all.
inline std::pair<int64_t, int64_t> split_tasks(int threads, int64_t M, int64_t N, int64_t m_panels, int64_t n_panels,
                                               int64_t min_blocks) {
  if (threads == 1) return {min_blocks, 1};
  const int64_t want = 2 * int64_t(threads), most = std::max(want, 2 * min_blocks);
  std::pair<int64_t, int64_t> best{min_blocks, 1};
  int64_t best_tasks = 0, best_cost = 0;
  bool best_whole = false;
  // Each count of panels per block gives ceil(n_panels / per) blocks; fewer panels, more blocks.
  for (int64_t per = ceil_div(n_panels, min_blocks), previous = 0; per >= 1; --per) {
    const int64_t blocks = ceil_div(n_panels, per);
    if (blocks == previous) continue;
    if (blocks > most) break;
    previous = blocks;
    int64_t ms = ceil_div(want, blocks);
    while ((blocks * ms) % threads != 0 && blocks * ms < 4 * want) ++ms;
    ms = std::min(ms, m_panels);
    // Enough tasks first (a product with few rows can only be split by columns), then a whole number
    // per thread, then the least packing.
    const int64_t tasks = std::min(blocks * ms, want), cost = blocks * M + ms * N;
    const bool whole = (blocks * ms) % threads == 0;
    if (tasks > best_tasks || (tasks == best_tasks && whole > best_whole) ||
        (tasks == best_tasks && whole == best_whole && cost < best_cost))
      best = {blocks, ms}, best_tasks = tasks, best_cost = cost, best_whole = whole;
  }
  return best;
}

// The task grid of one product, from split_tasks: n_blocks column blocks of NC columns (a multiple of NR,
// at most nc_max) × m_slices row ranges of MR-row panels. range(task) gives a task's columns [jc, jc + nc)
// and panels [ip0, ip1) (possibly empty).
struct TaskGrid {
  int64_t m_panels = 0, n_blocks = 0, m_slices = 0, NC = 0, tasks = 0;

  TaskGrid(int threads, int64_t M, int64_t N, int MR, int NR, int64_t nc_max) : m_panels(ceil_div(M, MR)) {
    const int64_t n_panels = ceil_div(N, NR);
    const auto grid = split_tasks(threads, M, N, m_panels, n_panels, ceil_div(n_panels, nc_max / NR));
    m_slices = grid.second;
    NC = ceil_div(n_panels, grid.first) * NR;
    n_blocks = ceil_div(N, NC);
    tasks = n_blocks * m_slices;
  }
  struct Range {
    int64_t jc, nc, ip0, ip1;
  };
  Range range(int64_t task, int64_t N) const {
    const int64_t jc = (task % n_blocks) * NC, slice = task / n_blocks;
    return {jc, std::min(NC, N - jc), m_panels * slice / m_slices, m_panels * (slice + 1) / m_slices};
  }
};

}  // namespace vb::cpu::gemm_parts
