// A packed, cache-blocked GEMM in the style of BLIS/GotoBLAS: C (M, N) (+)= A (M, K) · B (K, N).
//
// Math and cost: C[i, j] = Σ_k A[i, k]·B[k, j] — 2·M·N·K FLOPs. Each operand ideally crosses memory once,
// 4·(M·K + K·N + M·N) bytes in float32; here B is packed once per row range (task, below) and A once per
// column block, which costs a copy per 2·rows or 2·NC FLOPs — a few percent at most for the shapes that
// matter. Compute bound for any side above a few dozen.
//
// The algorithm, from the inside out:
//   1. Micro-kernel: an MR × NR tile of C lives in registers (MR rows × two SIMD vectors of NR/2 lanes).
//      For each k it loads one row of a packed B panel (two vectors), broadcasts the MR values A[i, k] of
//      a packed A panel, and issues 2·MR fused multiply-adds. With AVX-512 and float32 the tile is
//      12 × 32: 24 accumulators + 2 B vectors + 1 broadcast = 27 of the 32 vector registers, and each k
//      does 24 FMAs (768 FLOPs) per 128 + 48 bytes loaded — enough independent FMAs to hide their
//      latency on both FMA pipes. AVX2 (16 registers) uses 6 × 16, plain SSE 4 × 8.
//   2. Packing: before the micro-kernels run, a KC × NC block of B is copied into NR-column panels
//      (element (k, j) of a panel at k·NR + j, zero-padded past N), and each MR-row panel of A into a
//      small buffer (row i at i·KC, zero rows past M) right before it is used, so it sits in L1. The
//      micro-kernel then reads both with unit stride whatever the operands' strides (transposed views,
//      broadcast rows, convolution's im2col rows generated on the fly), and edge tiles need no special
//      code in the inner loop. A's panels keep A's row-major rows, so packing a row is one memcpy (or one
//      call of the row generator) — interleaving A by k made packing cost up to half the time of a
//      narrow product (N = 64) in our measurements. A column-major A (a transposed view, as in a weight
//      gradient gW = gYᵀ·X) is packed 8 panels at a time through a 16-k transpose tile, so that both the
//      reads and the writes run along cache lines.
//   3. Blocking (loops, outer to inner, within one task = a range of rows × a block of NC columns):
//        pc: K in blocks of KC    — C is updated once per KC slice: C += A[:, pc]·B[pc, :];
//        (pack the B block, KC × NC: it stays in L2 while every row panel of the task streams past)
//        ip: MR-row panels of A   — packed into L1, reused by every B panel of the block;
//        jp: NR-column panels     — one micro-kernel call each.
//      KC = 384 floats (1.5 KB per row): an A panel (12 × 384 × 4 B = 18 KB) fits a 32 KB L1 beside the B
//      rows streaming from L2, and C is read and written only ⌈K/384⌉ times (2·KC = 768 FLOPs per C
//      element each time, so C's traffic is negligible). A B block (KC × NC) takes at most
//      half of the core's L2, as sysconf reports it: NC ≤ 320 floats with a 1 MB L2, 672 with 2 MB.
//   4. Threads (OpenMP): tasks are a grid of row ranges × column blocks (split_tasks chooses it to
//      minimise re-packing: wide products split the columns, narrow ones the rows), at least two tasks
//      per thread, handed out dynamically, so that a core slowed down by other work on the machine does
//      not hold the other one up. There is no barrier inside a product.
//
// Determinism: every element of C is summed in the same order — k ascending within a KC slice (one FMA
// chain per register lane), slices added to C in ascending order — and KC and the tiles do not depend on
// the thread count or on which thread runs a task, so the result is bitwise the same for the same input
// on any number of threads.
//
// Buffers: the packed blocks live in per-thread buffers that grow to the largest size used and are kept,
// so that a product does not allocate (and page-fault in) its buffers on every call.
#include "kernels/cpu/gemm.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace vb::cpu {

namespace {

// ---- SIMD vocabulary: one vector type per element type, a load, a store, a broadcast and an FMA. ----
// (The build compiles with -std=c++20, where GCC does not contract a·b + c into an FMA on its own, so the
// FMA is spelled out with intrinsics.)
#if defined(__AVX512F__)
#define VB_GEMM_VECTOR_BYTES 64
using VecF = __m512;
using VecD = __m512d;
inline VecF fma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a, b, c); }
inline VecD fma(VecD a, VecD b, VecD c) { return _mm512_fmadd_pd(a, b, c); }
inline VecF splat(float x) { return _mm512_set1_ps(x); }
inline VecD splat(double x) { return _mm512_set1_pd(x); }
constexpr int kMR = 12;
#elif defined(__AVX2__) && defined(__FMA__)
#define VB_GEMM_VECTOR_BYTES 32
using VecF = __m256;
using VecD = __m256d;
inline VecF fma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a, b, c); }
inline VecD fma(VecD a, VecD b, VecD c) { return _mm256_fmadd_pd(a, b, c); }
inline VecF splat(float x) { return _mm256_set1_ps(x); }
inline VecD splat(double x) { return _mm256_set1_pd(x); }
constexpr int kMR = 6;
#else
// Portable fallback: GCC vector extensions, a multiply and an add.
#define VB_GEMM_VECTOR_BYTES 16
typedef float VecF __attribute__((vector_size(16)));
typedef double VecD __attribute__((vector_size(16)));
inline VecF fma(VecF a, VecF b, VecF c) { return a * b + c; }
inline VecD fma(VecD a, VecD b, VecD c) { return a * b + c; }
inline VecF splat(float x) { return VecF{x, x, x, x}; }
inline VecD splat(double x) { return VecD{x, x}; }
constexpr int kMR = 4;
#endif

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = VecF;
};
template <>
struct Simd<double> {
  using V = VecD;
};

template <typename T>
constexpr int kLanes = VB_GEMM_VECTOR_BYTES / int(sizeof(T));
template <typename T>
constexpr int kNR = 2 * kLanes<T>;  // two vectors per tile row

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V, typename T>
inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// ---- Blocking parameters (see the header comment); KC in elements is the same bytes for both types. ----
template <typename T>
constexpr int64_t kKC = 1536 / int64_t(sizeof(T));  // 384 floats, 192 doubles
// NC: a B block (KC × NC) takes half of this core's L2 (sysconf; 1 MB assumed when it does not say), so
// that it stays there while the A panels stream past. On the dev VM (2 MB of L2) 1 MB blocks ran the
// 2048-sized products 3–10% faster than 512 KB ones. NC does not change the order of any sum (KC does),
// so results are the same whatever the machine's cache.
template <typename T>
int64_t nc_max() {
  static const int64_t nc = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    const int64_t half = std::clamp<int64_t>(l2 > 0 ? l2 / 2 : int64_t(512) << 10, int64_t(256) << 10, int64_t(4) << 20);
    return std::max<int64_t>(kNR<T>, half / (kKC<T> * int64_t(sizeof(T))) / kNR<T> * kNR<T>);
  }();
  return nc;
}
// Products with fewer multiply-adds than this run on one thread (waking the others costs more).
constexpr int64_t kParallelMacs = int64_t(1) << 17;

// ---- The micro-kernel: C[0:mr, 0:nr] (+)= Ap (MR × kc panel, row i at ap + i·kc) · Bp (kc × NR panel). ----
template <typename T>
void micro_kernel(int64_t kc, const T* __restrict ap, const T* __restrict bp, T* c, int64_t ldc, int mr, int nr,
                  bool accumulate) {
  using V = typename Simd<T>::V;
  constexpr int L = kLanes<T>, NR = kNR<T>;
  V acc[kMR][2];
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = acc[i][1] = splat(T(0));
    // The C tile is read only after the k loop: ask for it now so that it is in cache by then.
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NR - 1, 1);
  }
  for (int64_t p = 0; p < kc; ++p) {
    const V b0 = load<V>(bp), b1 = load<V>(bp + L);
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i) {
      const V a = splat(ap[i * kc + p]);
      acc[i][0] = fma(a, b0, acc[i][0]);
      acc[i][1] = fma(a, b1, acc[i][1]);
    }
    bp += NR;
  }
  if (mr == kMR && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i) {
      T* ci = c + i * ldc;
      if (accumulate) {
        acc[i][0] += load<V>(ci);
        acc[i][1] += load<V>(ci + L);
      }
      store(ci, acc[i][0]);
      store(ci + L, acc[i][1]);
    }
    return;
  }
  // Edge tile: spill the registers, then write only the mr × nr part that exists.
  alignas(64) T tile[kMR][NR];
  for (int i = 0; i < kMR; ++i) {
    store(&tile[i][0], acc[i][0]);
    store(&tile[i][L], acc[i][1]);
  }
  for (int i = 0; i < mr; ++i) {
    T* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j) ci[j] = accumulate ? ci[j] + tile[i][j] : tile[i][j];
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

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

enum class Slot { kPackedA, kPackedB, kRow };

template <typename T>
T* thread_buffer(Slot slot, size_t n) {
  thread_local Buffer<T> buffers[3];
  return buffers[int(slot)].get(n);
}

// ---- Packing. ----

// A column-major A (a transposed view, as in a weight gradient gW = gYᵀ·X) is packed this many panels at
// a time: one k then reads kPanelGroup·MR contiguous values instead of MR values from a different page.
constexpr int64_t kPanelGroup = 8;

bool column_major(const auto& op) { return !op.row && op.row_stride == 1 && op.col_stride != 1; }

// A panels (MR rows of kc each, row i of panel q at q·MR·kc + i·kc) ← A[i0 : i0+m, k0 : k0+kc], padded with
// zero rows to whole panels. Rows are what the operands offer cheaply: a memcpy of a row-major row, or
// one call of the row generator writing straight into the panel.
template <typename T>
void pack_a(const GemmOperand<T>& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, T* ap) {
  if (column_major(a)) {
    // A transpose, 16 k at a time through a small tile: the reads are 16 contiguous runs of m values, and
    // each packed row gets 16 consecutive values (one cache line) at once. (Writing one value per packed
    // row per k would touch m lines kc·sizeof(T) bytes apart — the same few L1 sets, evicted every k.)
    constexpr int64_t kStep = 16;
    T tile[kStep * kPanelGroup * kMR];
    for (int64_t p0 = 0; p0 < kc; p0 += kStep) {
      const int64_t np = std::min(kStep, kc - p0);
      for (int64_t p = 0; p < np; ++p)
        std::memcpy(tile + p * m, a.data + (k0 + p0 + p) * a.col_stride + i0, size_t(m) * sizeof(T));
      for (int64_t i = 0; i < m; ++i)  // row i of the panels is at i·kc (panel i / MR, row i % MR)
        for (int64_t p = 0; p < np; ++p) ap[i * kc + p0 + p] = tile[p * m + i];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      T* dst = ap + i * kc;  // row i of the panels: panel i / MR, row i % MR — the same address
      if (a.row) {
        a.row(i0 + i, k0, kc, dst);
      } else if (a.col_stride == 1) {
        std::memcpy(dst, a.data + (i0 + i) * a.row_stride + k0, size_t(kc) * sizeof(T));
      } else {
        const T* src = a.data + (i0 + i) * a.row_stride + k0 * a.col_stride;
        for (int64_t p = 0; p < kc; ++p) dst[p] = src[p * a.col_stride];
      }
    }
  }
  std::fill(ap + m * kc, ap + round_up(m, kMR) * kc, T(0));
}

// Packs the first whole 16-k blocks of one full column-major panel (column j's k-th value at
// src[j·ld + k]) into panel rows (p·NR + j); returns how many k it packed (the caller packs the rest).
// With AVX-512 and float32: 16 columns × 16 k are loaded as 16 vectors, transposed in registers (the
// classic 4-stage unpack / shuffle network, 64 shuffles per 256 values) and stored as 16 panel-row
// halves — 3.5× faster than element copies on the dev VM. Elsewhere it packs nothing.
template <typename T>
int64_t pack_b_transposed_full(const T* src, int64_t ld, int64_t kc, T* panel) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    static_assert(kNR<float> % 16 == 0);
    const int64_t whole = kc / 16 * 16;
    for (int64_t p0 = 0; p0 < whole; p0 += 16)
      for (int h = 0; h < kNR<float>; h += 16) {
        __m512 r[16], t[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (h + i) * ld + p0);
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
        for (int p = 0; p < 16; ++p) _mm512_storeu_ps(panel + (p0 + p) * kNR<float> + h, r[p]);
      }
    return whole;
  }
#endif
  return 0;
}

// Bp (NR-column panels, each kc × NR, element (p, j) at p·NR + j) ← B[k0 : k0+kc, j0 : j0+nc], columns past
// nc zero.
template <typename T>
void pack_b(const GemmOperand<T>& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, T* bp) {
  constexpr int NR = kNR<T>;
  const int64_t panels = (nc + NR - 1) / NR;
  if (!b.row && b.row_stride == 1 && b.col_stride != 1) {
    // Column-major (e.g. a linear layer's weight, (out, in), read as its transpose): each column's kc
    // values are contiguous, and a panel row takes one value of each of NR columns — a transpose, done
    // 16 k at a time so that the 16 panel rows being written stay in L1 (writing a whole column down a
    // 48 KB panel at a time evicted it), and for float32 with AVX-512 through registers (below).
    constexpr int64_t kStep = 16;
    for (int64_t jp = 0; jp < panels; ++jp) {
      T* panel = bp + jp * kc * NR;
      const int64_t cols = std::min<int64_t>(NR, nc - jp * NR);
      const T* first = b.data + (j0 + jp * NR) * b.col_stride + k0;  // column jp·NR of the block
      int64_t p0 = 0;
      if (cols == NR) p0 = pack_b_transposed_full(first, b.col_stride, kc, panel);
      for (; p0 < kc; p0 += kStep) {
        const int64_t np = std::min(kStep, kc - p0);
        for (int64_t j = 0; j < NR; ++j) {
          const T* src = first + j * b.col_stride + p0;
          for (int64_t p = 0; p < np; ++p) panel[(p0 + p) * NR + j] = j < cols ? src[p] : T(0);
        }
      }
    }
    return;
  }
  T* scratch = (b.row || b.col_stride != 1) ? thread_buffer<T>(Slot::kRow, size_t(nc)) : nullptr;
  for (int64_t p = 0; p < kc; ++p) {
    const T* row;
    if (b.row) {
      b.row(k0 + p, j0, nc, scratch);
      row = scratch;
    } else if (b.col_stride == 1) {
      row = b.data + (k0 + p) * b.row_stride + j0;
    } else {
      const T* src = b.data + (k0 + p) * b.row_stride + j0 * b.col_stride;
      for (int64_t j = 0; j < nc; ++j) scratch[j] = src[j * b.col_stride];
      row = scratch;
    }
    for (int64_t jp = 0; jp < panels; ++jp) {
      T* dst = bp + (jp * kc + p) * NR;
      const int64_t n = std::min<int64_t>(NR, nc - jp * NR);
      std::memcpy(dst, row + jp * NR, size_t(n) * sizeof(T));
      for (int64_t j = n; j < NR; ++j) dst[j] = T(0);
    }
  }
}

// Chooses the task grid: n_blocks column blocks (at least min_blocks) × m_slices row ranges. Each task
// packs the A rows and B columns it needs, so a column block's A rows are packed once per block and a
// row range's B columns once per range: the grid minimises that re-packing, n_blocks·M + m_slices·N
// elements per K, among grids of at least two tasks per thread (so that a core slowed down by other work
// on the machine does not hold the other one up) and a whole number of tasks per thread. Wide products
// thus split N (each thread packs only its own B columns) and narrow ones — a convolution with 64
// output channels, a weight gradient with few rows — split the other way.
std::pair<int64_t, int64_t> split_tasks(int threads, int64_t M, int64_t N, int64_t m_panels, int64_t n_panels,
                                        int64_t min_blocks) {
  if (threads == 1) return {min_blocks, 1};
  const int64_t want = 2 * int64_t(threads);
  std::pair<int64_t, int64_t> best{min_blocks, 1};
  int64_t best_tasks = 0, best_cost = 0;
  for (int64_t nb = min_blocks; nb <= std::max(min_blocks, std::min(n_panels, want)); ++nb) {
    int64_t ms = ceil_div(want, nb);
    while ((nb * ms) % threads != 0 && nb * ms < 4 * want) ++ms;
    ms = std::min(ms, m_panels);
    // Enough tasks first (a product with few rows can only be split by columns), then the least packing.
    const int64_t tasks = std::min(nb * ms, want), cost = nb * M + ms * N;
    if (tasks > best_tasks || (tasks == best_tasks && cost < best_cost)) best = {nb, ms}, best_tasks = tasks, best_cost = cost;
  }
  return best;
}

std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_flops{0};

}  // namespace

void gemm_count_flops(bool on) {
  if (on) g_flops = 0;
  g_counting = on;
}
uint64_t gemm_flops_counted() { return g_flops; }

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const GemmOperand<T>& a, const GemmOperand<T>& b, T* c, int64_t ldc,
          bool accumulate, bool parallel) {
  constexpr int NR = kNR<T>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, T(0));
    return;
  }
  if (g_counting.load(std::memory_order_relaxed)) g_flops.fetch_add(uint64_t(2 * M * N * K), std::memory_order_relaxed);
  const int threads = (parallel && !omp_in_parallel() && M * N * K >= kParallelMacs) ? omp_get_max_threads() : 1;

  // KC depends only on K (never on the thread count: it fixes the summation order); K splits evenly.
  const int64_t KC = ceil_div(K, ceil_div(K, kKC<T>));
  // Tasks: a grid of m_slices row ranges × n_blocks column blocks (NC ≤ nc_max, so a B block fits L2).
  const int64_t m_panels = ceil_div(M, kMR), n_panels = ceil_div(N, NR);
  const auto grid = split_tasks(threads, M, N, m_panels, n_panels, ceil_div(n_panels, nc_max<T>() / NR));
  int64_t n_blocks = grid.first;
  const int64_t m_slices = grid.second;
  const int64_t NC = ceil_div(n_panels, n_blocks) * NR;
  n_blocks = ceil_div(N, NC);
  const int64_t tasks = n_blocks * m_slices;

#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t jc = (task % n_blocks) * NC, nc = std::min(NC, N - jc);
    const int64_t slice = task / n_blocks;
    const int64_t ip0 = m_panels * slice / m_slices, ip1 = m_panels * (slice + 1) / m_slices;
    if (ip0 == ip1) continue;
    const int64_t group = column_major(a) ? kPanelGroup : 1;
    T* ap = thread_buffer<T>(Slot::kPackedA, size_t(group * kMR * KC));
    T* bp = thread_buffer<T>(Slot::kPackedB, size_t(KC * NC));
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const bool add = accumulate || pc > 0;
      pack_b(b, pc, kc, jc, nc, bp);
      for (int64_t ip = ip0; ip < ip1; ++ip) {
        const int64_t i = ip * kMR, q = (ip - ip0) % group;  // q: this panel's place in its packed group
        if (q == 0) pack_a(a, i, std::min((std::min(ip + group, ip1) - ip) * kMR, M - i), pc, kc, ap);
        const int mr = int(std::min<int64_t>(kMR, M - i));
        for (int64_t jp = 0; jp * NR < nc; ++jp) {
          const int nr = int(std::min<int64_t>(NR, nc - jp * NR));
          micro_kernel(kc, ap + q * kMR * kc, bp + jp * kc * NR, c + i * ldc + jc + jp * NR, ldc, mr, nr, add);
        }
      }
    }
  }
}

template void gemm<float>(int64_t, int64_t, int64_t, const GemmOperand<float>&, const GemmOperand<float>&, float*,
                          int64_t, bool, bool);
template void gemm<double>(int64_t, int64_t, int64_t, const GemmOperand<double>&, const GemmOperand<double>&,
                           double*, int64_t, bool, bool);

}  // namespace vb::cpu
