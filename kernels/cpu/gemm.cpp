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
//      small buffer (row i at i·384 floats whatever KC is, zero rows past M) right before it is used, so it
//      sits in L1. The micro-kernel then reads both with unit stride whatever the operands' strides
//      (transposed views, broadcast rows, convolution's im2col rows generated on the fly), and edge tiles
//      need no special code in the inner loop. A's panels keep A's row-major rows, so packing a row is one
//      memcpy (or one call of the row generator) — interleaving A by k made packing cost up to half the time
//      of a narrow product (N = 64) in our measurements. A column-major A (a transposed view, as in a weight
//      gradient gW = gYᵀ·X) is packed 8 panels at a time through a 16-k transpose tile, so that both the
//      reads and the writes run along cache lines.
//   3. Blocking (loops, outer to inner, within one task = a range of rows × a block of NC columns):
//        pc: K in blocks of KC    — C is updated once per KC slice: C += A[:, pc]·B[pc, :];
//        (pack the B block, KC × NC: it stays in L2 while every row panel of the task streams past; a task of at
//        most 512 rows reads a row-major B where it is instead, see g_b_in_place_rows)
//        ip: MR-row panels of A   — packed into L1, reused by every B panel of the block;
//        jp: NR-column panels     — one micro-kernel call each.
//      KC = 384 floats (1.5 KB per row): an A panel (12 × 384 × 4 B = 18 KB) fits a 32 KB L1 beside the B
//      rows streaming from L2, and C is read and written only ⌈K/384⌉ times (2·KC = 768 FLOPs per C
//      element each time, so C's traffic is negligible). A B block (KC × NC) takes at most
//      half of the core's L2, as sysconf reports it: NC ≤ 320 floats with a 1 MB L2, 672 with 2 MB — or
//      2 MB on AMD Zen 4, whose L3 feeds the micro-kernel as well (b_block_bytes_default).
//      A narrow product whose B columns fit one block for several K slices packs B for a run of slices and
//      swaps the pc and ip loops within the run (g_k_inner), so that a panel's C tile stays in cache.
//   4. Threads (OpenMP): tasks are a grid of row ranges × column blocks (split_tasks chooses it to
//      minimise re-packing: wide products split the columns, narrow ones the rows), at least two tasks
//      per thread, handed out dynamically, so that a core slowed down by other work on the machine does
//      not hold the other one up. There is no barrier inside a product.
//
// Gathered B (gemm_gathered): B's rows handed over as pointers and read where they lie, for products whose
// packed B would serve too few rows of A to pay for its copy (a convolution's weight gradient with few output
// channels, kernels/cpu/conv.cpp). The same micro-kernel, slices and order of sums.
//
// Bias: a linear layer's bias row is added by the micro-kernels of the last K slice as they store C, after the
// sums (the bits of a separate pass, without its 2·4·M·N bytes).
//
// Determinism: every element of C is summed in the same order — k ascending within a KC slice (one FMA
// chain per register lane), slices added to C in ascending order — and KC and the tiles do not depend on
// the thread count or on which thread runs a task, so the result is bitwise the same for the same input
// on any number of threads.
//
// Buffers: the packed blocks live in per-thread buffers that grow to the largest size used and are kept,
// so that a product does not allocate (and page-fault in) its buffers on every call.
#include "kernels/cpu/gemm.h"

#include "kernels/cpu/gemm_parts.h"

#include <omp.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace vb::cpu {

namespace {

using namespace gemm_parts;

// ---- SIMD vocabulary: one vector type per element type, a load, a store, a broadcast and an FMA. ----
// (The FMA is spelled out with intrinsics: GCC does fuse a·b + c on its own in C++, -std=c++20 included — its
// -ffp-contract=off default in ISO mode is C's only — but where it likes, which would leave the order of
// rounding to the optimiser; see kernels/cpu/optim.cpp's AdamW for a case where that changed the bits.)
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
// A bfloat16 row of B (gemm_gathered<bf16>) is widened to float32 as it is loaded: a bfloat16 is a float32's
// top 16 bits, so widening is a zero-extension and a shift (exact; 2 instructions per vector beside the load).
template <>
inline VecF load<VecF, bf16>(const bf16* p) {
#if defined(__AVX512F__)
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
#elif defined(__AVX2__) && defined(__FMA__)
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
#else
  VecF v{};
  for (int j = 0; j < int(sizeof(VecF) / sizeof(float)); ++j) v[j] = float(p[j]);
  return v;
#endif
}
template <typename V, typename T>
inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// ---- Blocking parameters (see the header comment); KC in elements is the same bytes for both types. ----
template <typename T>
constexpr int64_t kKC = 1536 / int64_t(sizeof(T));  // 384 floats, 192 doubles
// NC: a B block (KC × NC) takes half of this core's L2, or 2 MB on AMD Zen 4 (b_block_bytes_default, below).
// Products with fewer multiply-adds than this run on one thread (waking the others costs more).
constexpr int64_t kParallelMacs = int64_t(1) << 17;

// ---- The micro-kernel: C[0:mr, 0:nr] (+)= Ap (R × kc panel, row i at ap + i·kKC) · Bp (kc × NR panel). ----
// R is MR, or fewer rows for the last panel of A (below). Bp's row p is at bp + p·ldb: NR for a packed panel,
// B's own row stride where B is read in place (g_b_in_place_rows).
//   Ap's rows are kKC apart, a compile-time constant, whatever this slice's kc: the R broadcasts of one k then
// come from one pointer at constant offsets. With rows kc apart each row needed a pointer of its own; 12 of
// them, the loop counter and the B pointer are more than the free general registers, and GCC kept two of them
// (and the loop bound) on the stack, three extra loads per k. In a standalone loop on one core of the Zen 4 VM
// (A panel in L1, B panels streaming from L2): 109–110 → 116–117 GFLOP/s, of a 117 peak. Same sums, same bits.
//   B's rows come from a row source: StridedRows (a packed panel, or B in place: row p at bp + p·ldb) or
// GatheredRows (row p wherever a table of pointers says: gemm_gathered). Either way the same chain of FMAs.
// GatheredRows<bf16> hands over bfloat16 rows, widened to float32 as they are loaded (load<VecF, bf16>).
template <typename T>
struct StridedRows {
  const T* p;
  int64_t ld;
  const T* next() {
    const T* row = p;
    p += ld;
    return row;
  }
};
template <typename T>
struct GatheredRows {
  const T* const* rows;
  int64_t col;  // the panel's first column within each row
  const T* next() { return *rows++ + col; }
};

// VW: the tile's width in vectors — 2 (NR columns) everywhere but gemm_gathered, which may take 1 where
// NR-column panels would mostly compute padding (a 42-value row: 64 lanes, against 48 in panels of 16).
template <typename T, int R, int VW, typename Rows>
void micro_kernel(int64_t kc, const T* __restrict ap, Rows b, T* c, int64_t ldc, int mr, int nr, bool accumulate,
                  const T* bias) {
  using V = typename Simd<T>::V;
  constexpr int L = kLanes<T>, W = VW * L;
  V acc[R][VW];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < VW; ++v) acc[i][v] = splat(T(0));
    // The C tile is read only after the k loop: ask for it now so that it is in cache by then.
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + W - 1, 1);
  }
  for (int64_t p = 0; p < kc; ++p) {
    const auto* __restrict bp = b.next();  // T, or bfloat16 widened by load (GatheredRows<bf16>)
    V bv[VW];
#pragma GCC unroll 2
    for (int v = 0; v < VW; ++v) bv[v] = load<V>(bp + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const V a = splat(ap[i * kKC<T> + p]);
#pragma GCC unroll 2
      for (int v = 0; v < VW; ++v) acc[i][v] = fma(a, bv[v], acc[i][v]);
    }
  }
  if (mr == R && nr == W) {
    V biasv[VW];
#pragma GCC unroll 2
    for (int v = 0; v < VW; ++v) biasv[v] = bias ? load<V>(bias + v * L) : splat(T(0));
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      T* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < VW; ++v) {
        if (accumulate) acc[i][v] += load<V>(ci + v * L);
        if (bias) acc[i][v] += biasv[v];  // (only with a bias: + 0 would turn −0 into +0)
        store(ci + v * L, acc[i][v]);
      }
    }
    return;
  }
  // Edge tile: spill the registers, then write only the mr × nr part that exists.
  alignas(64) T tile[R][W];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < VW; ++v) store(&tile[i][v * L], acc[i][v]);
  for (int i = 0; i < mr; ++i) {
    T* ci = c + i * ldc;
    for (int j = 0; j < nr; ++j) {
      const T v = accumulate ? ci[j] + tile[i][j] : tile[i][j];
      ci[j] = bias ? v + bias[j] : v;
    }
  }
}

// The last panel of A has mr = M mod MR rows (when M is not a multiple of MR); it runs a kernel with only the
// rows it needs, rounded up to a third of MR (with AVX-512: 4, 8 or 12 rows) — 8 accumulators at least, as many
// FMAs per k as the two FMA pipes need to hide their latency. The base preset's text products have M = 134 rows
// (2 captions of 67 tokens): 11 full panels and one of 2 rows, which a 12-row kernel computed as 12 (7% more
// multiply-adds than the product has; 1.5% with the 4-row kernel). Each element's sum is the same chain of FMAs
// in the same order, so the bits do not change.
template <typename T, int VW = 2, typename Rows>
void micro_kernel_rows(int64_t kc, const T* __restrict ap, Rows b, T* c, int64_t ldc, int mr, int nr, bool accumulate,
                       const T* bias) {
  if constexpr (kMR % 3 == 0) {
    if (mr <= kMR / 3) return micro_kernel<T, kMR / 3, VW>(kc, ap, b, c, ldc, mr, nr, accumulate, bias);
    if (mr <= 2 * kMR / 3) return micro_kernel<T, 2 * kMR / 3, VW>(kc, ap, b, c, ldc, mr, nr, accumulate, bias);
  }
  micro_kernel<T, kMR, VW>(kc, ap, b, c, ldc, mr, nr, accumulate, bias);
}

// ---- Packing (A rows: gemm_parts.h). ----

// Packs the first whole 16-k blocks of one full column-major panel (column j's k-th value at
// src[j·ld + k]) into panel rows (p·NR + j); returns how many k it packed (the caller packs the rest).
// With AVX-512 and float32: 16 columns × 16 k are loaded as 16 vectors, transposed in registers (the
// classic 4-stage unpack / shuffle network, 64 shuffles per 256 values) and stored as 16 panel-row
// halves — 3.5× faster than element copies on the dev VM. Elsewhere it packs nothing.
//   The panel's 32 columns are taken 16 at a time, each group down all of kc before the next: 16 streams of
// reads, 4·ld bytes apart, instead of 32 with both groups at each step. That is faster when the columns come
// from memory — a linear layer's weight in a training step, last touched a whole pass ago — likely because the
// hardware prefetchers follow 16 streams and not 32 (the VM has no counters to tell). Linear forward at M = 134
// (the base preset's text rows), the weight cold (a 96 MB sweep before each call), alternated 25 times in one
// process on the Zen 4 VM, 2 threads, two runs: 134 × 3072 × 768 135.5 and 155.1 → 149.4 and 178.2 GFLOP/s,
// 134 × 768 × 3072 154.5, 164.0 → 162.2, 174.6, 134 × 768 × 768 87.5, 144.7 → 92.0, 153.1; 2048 rows unchanged.
// (Software prefetch two lines ahead with both groups at each step, kept for a while, recovered about half of
// that; with this order it adds nothing.)
template <typename T>
int64_t pack_b_transposed_full(const T* src, int64_t ld, int64_t kc, T* panel) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    static_assert(kNR<float> % 16 == 0);
    const int64_t whole = kc / 16 * 16;
    for (int h = 0; h < kNR<float>; h += 16)  // 16 columns at a time, down all of kc (see above)
      for (int64_t p0 = 0; p0 < whole; p0 += 16)
        transpose_16x16_words(reinterpret_cast<const char*>(src + h * ld + p0), ld * int64_t(sizeof(float)),
                              reinterpret_cast<char*>(panel + p0 * kNR<float> + h), kNR<float> * int64_t(sizeof(float)));
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

// A task with few rows reads a row-major B (unit column stride: a gradient's dX = gY·W, W stored (out, in)) in
// place, the micro-kernel stepping down B's rows (ldb apart) instead of a packed panel's (NR apart): packing the
// block costs as much as the products it serves when few A panels use it. The base preset's text products have
// M = 134 rows, and there packing B took 27% of dX = gY·W (134 × 3072 · 3072 × 768) on one core of a Zen 4 VM.
// Same values in the same order, so the same bits (tests/cpu/matmul.cpp). On that VM, in one process, packed and
// in place alternated 8 times (medians): 134 × 3072 × 768 7.75 → 6.84 ms on one thread, 4.39 → 3.96 on two;
// 134 × 768 × 3072 7.16 → 6.72 and 4.26 → 3.91; 268 rows 2–9% faster; 512 rows the same; 2048 rows 0.94–1.02×
// in separate runs (so not there: from L2, a panel's 32 columns are rows ldb apart, where packed they are one
// stream). Inside a base training step the gain (~1%) is below the step's run-to-run spread. gemm_b_in_place_rows
// sets the limit on a task's rows.
std::atomic<int64_t> g_b_in_place_rows{512};

// Runs of K slices. The plain order takes every A panel through one K slice before the next slice, so C (the
// task's rows × NC) is read and written once per slice from wherever it lies. A narrow product — a convolution
// with 64 … 256 output channels — has all of B's columns in one block, and its C is large (the 56² convolution's
// output is 6.4 MB at batch 8): there a task packs B for several slices at once and takes each A panel through
// all of them, so that the panel's C tile, and the input rows a convolution's im2col rows are built from, are
// still in cache for the next slice. Alternated in one process on the Zen 4 VM: the strided 3 × 3 convolution
// 112² × 64 (a 25 MB input, read once per slice before) 156 → 165 GFLOP/s; the stride-1 3 × 3 convolutions
// within ±1.5%. A run is as long as all of B's columns, for all of its slices, still fit the B block's budget
// (gemm_parts.h's slice_run); a wide product, whose columns already need several blocks, keeps runs of one slice
// (longer runs would split its columns into more blocks, each packing A again). The sums are the same in the same order
// either way: slice after slice for each element. gemm_k_inner(false) makes every run one slice, for the test.
std::atomic<bool> g_k_inner{true};

std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_flops{0};

}  // namespace

int64_t gemm_b_block_bytes(int64_t bytes) { return gemm_parts::g_b_block_bytes.exchange(bytes); }
int64_t gemm_b_in_place_rows(int64_t rows) { return g_b_in_place_rows.exchange(rows); }
bool gemm_k_inner(bool on) { return g_k_inner.exchange(on); }

void gemm_count_flops(bool on) {
  if (on) g_flops = 0;
  g_counting = on;
}
uint64_t gemm_flops_counted() { return g_flops; }

std::atomic<int64_t> gemm_parts::g_b_block_bytes{0};

int64_t gemm_parts::count_cpu_list(const std::string& list) {
  int64_t count = 0;  // ranges and single CPUs: "0-7,16-23"
  for (const char* p = list.c_str(); *p;) {
    char* end = nullptr;
    const long first = std::strtol(p, &end, 10);
    long last = first;
    if (end == p || first < 0) return 0;
    if (*end == '-') {
      p = end + 1;
      last = std::strtol(p, &end, 10);
      if (end == p || last < first) return 0;
    }
    if (*end != ',' && *end != 0) return 0;
    count += last - first + 1;
    p = *end == ',' ? end + 1 : end;
  }
  return count;
}

namespace {
// Whether this is an AMD Zen 4 core (family 19h with AVX-512; Zen 3, also 19h, has none).
bool zen4() {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // "AuthenticAMD"
  if (!amd || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned base = (eax >> 8) & 0xf, family = base == 0xf ? base + ((eax >> 20) & 0xff) : base;
  return family == 0x19 && __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

// This CPU's share of the L3 it sits on: the L3's size over the CPUs that share it (sysfs, cpu0's cache
// index 3), or 0 where Linux does not say. (sysconf's _SC_LEVEL3_CACHE_SIZE is no help: on the Zen 4 VM it
// reports 320 MB for a 32 MB L3.)
int64_t l3_share_bytes() {
  std::ifstream size_file("/sys/devices/system/cpu/cpu0/cache/index3/size"),
      cpus_file("/sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list");
  int64_t kib = 0;
  char unit = 0;
  std::string cpus;
  if (!(size_file >> kib >> unit) || unit != 'K' || !(cpus_file >> cpus)) return 0;
  const int64_t count = count_cpu_list(cpus);
  return count > 0 && kib > 0 ? (kib << 10) / count : 0;
}
}  // namespace

// The B block's budget. By default half of this core's L2 (sysconf; a 1 MB L2 assumed when it does not say; the
// half clamped to 256 KB … 4 MB), so that the block stays in L2 while the A panels stream past: on the Intel dev
// VM (2 MB of L2, two 512-bit FMAs a cycle, so the micro-kernel wants 10.7 bytes of B a cycle) 1 MB blocks ran
// the 2048-sized products 3–10% faster than 512 KB ones, and ¾ or all of the L2 slower than half. On AMD Zen 4,
// 2 MB, mostly from L3: its core issues one 512-bit FMA a cycle (5.3 bytes of B a cycle), which its L3 feeds as
// well as its L2 (a standalone micro-kernel loop ran as fast over 1.9 MB of B panels as over 480 KB), and a
// larger block means fewer column blocks, each of which packs A again. Alternated in one process on the Zen 4
// VM (2 threads, medians of 5 rounds): 2048³ 190.6 → 202.5 GFLOP/s, 2048 × 768 × 768 166.5 → 198.0, the other
// BERT shapes 3–9% faster, bfloat16 products 0–9%, convolutions unchanged.
int64_t gemm_parts::b_block_bytes_default() {
  static const int64_t bytes = [] {
    if (zen4()) {
      // Not more than this CPU's share of the L3, where it can be read: a 16-core Zen 4c chiplet with SMT
      // shares 32 MB among 32 CPUs (1 MB each); the 2-core VM has 16 MB each. Only the VM was measured.
      const int64_t share = l3_share_bytes();
      return share > 0 ? std::clamp<int64_t>(share, int64_t(256) << 10, int64_t(2) << 20) : int64_t(2) << 20;
    }
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return std::clamp<int64_t>(l2 > 0 ? l2 / 2 : int64_t(512) << 10, int64_t(256) << 10, int64_t(4) << 20);
  }();
  return bytes;
}

void gemm_parts::count_flops(int64_t M, int64_t N, int64_t K) {
  if (g_counting.load(std::memory_order_relaxed)) g_flops.fetch_add(uint64_t(2 * M * N * K), std::memory_order_relaxed);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const GemmOperand<T>& a, const GemmOperand<T>& b, T* c, int64_t ldc,
          bool accumulate, bool parallel, const T* bias) {
  constexpr int NR = kNR<T>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const T v = accumulate ? c[i * ldc + j] : T(0);
        c[i * ldc + j] = bias ? v + bias[j] : v;
      }
    return;
  }
  gemm_parts::count_flops(M, N, K);
  const int threads = (parallel && !omp_in_parallel() && M * N * K >= kParallelMacs) ? omp_get_max_threads() : 1;

  // KC depends only on K (never on the thread count: it fixes the summation order); K splits evenly.
  const int64_t KC = ceil_div(K, ceil_div(K, kKC<T>)), slices = ceil_div(K, KC);
  // Runs of K slices (g_k_inner): where all of B's columns fit one block for several slices at once, a task
  // packs B for a run of slices and takes each group of A panels through all of them before the next group.
  const int64_t run =
      slice_run(g_k_inner.load(std::memory_order_relaxed), slices, KC, int64_t(sizeof(T)), NR, round_up(N, NR));
  // Tasks: a grid of m_slices row ranges × n_blocks column blocks (NC ≤ nc_max, so a B block fits L2).
  const TaskGrid grid(threads, M, N, kMR, NR, nc_max(run * KC, int64_t(sizeof(T)), NR));

#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t task = 0; task < grid.tasks; ++task) {
    const auto [jc, nc, ip0, ip1] = grid.range(task, N);
    if (ip0 == ip1) continue;
    const int64_t group = column_major(a) ? kPanelGroup : 1;
    T* ap = thread_buffer<T>(Slot::kPackedA, size_t(group * kMR * kKC<T>));
    // B read in place (a row-major B, whole panels, a task of few rows): see g_b_in_place_rows.
    const bool b_in_place = !b.row && b.col_stride == 1 && nc % NR == 0 &&
                            (ip1 - ip0) * kMR <= g_b_in_place_rows.load(std::memory_order_relaxed);
    T* bp = b_in_place ? nullptr : thread_buffer<T>(Slot::kPackedB, size_t(run * KC * grid.NC));
    for (int64_t r0 = 0; r0 < slices; r0 += run) {
      const int64_t r1 = std::min(slices, r0 + run);
      if (!b_in_place)
        for (int64_t sl = r0; sl < r1; ++sl)
          pack_b(b, sl * KC, std::min(KC, K - sl * KC), jc, nc, bp + (sl - r0) * KC * grid.NC);
      for (int64_t g0 = ip0; g0 < ip1; g0 += group) {  // a packed group of A panels (one, unless A is transposed)
        const int64_t g1 = std::min(g0 + group, ip1);
        for (int64_t sl = r0; sl < r1; ++sl) {
          const int64_t pc = sl * KC, kc = std::min(KC, K - pc);
          const bool add = accumulate || pc > 0;
          const T* last_bias = bias && pc + kc == K ? bias + jc : nullptr;  // added on the last slice
          pack_a<T, kMR>(a, g0 * kMR, std::min((g1 - g0) * kMR, M - g0 * kMR), pc, kc, kc, kKC<T>, ap);
          for (int64_t ip = g0; ip < g1; ++ip) {
            const int64_t i = ip * kMR;
            const int mr = int(std::min<int64_t>(kMR, M - i));
            for (int64_t jp = 0; jp * NR < nc; ++jp) {
              const int nr = int(std::min<int64_t>(NR, nc - jp * NR));
              const T* bpanel =
                  b_in_place ? b.data + pc * b.row_stride + jc + jp * NR : bp + (sl - r0) * KC * grid.NC + jp * kc * NR;
              micro_kernel_rows(
                  kc, ap + (ip - g0) * kMR * kKC<T>, StridedRows<T>{bpanel, b_in_place ? b.row_stride : int64_t(NR)},
                  c + i * ldc + jc + jp * NR, ldc, mr, nr, add, last_bias ? last_bias + jp * NR : nullptr);
            }
          }
        }
      }
    }
  }
}

// gemm_gathered's units of work with column panels `width` wide: (A range of kPanelGroup panels, group, panel).
inline int64_t gathered_units(int64_t M, int64_t N, int64_t groups, int64_t width) {
  return ceil_div(ceil_div(M, kMR), kPanelGroup) * groups * ceil_div(N, width);
}

// B's rows read where they lie (gemm.h): `groups` products C_g (M, N) (+)= A · B_g that share A. The work is
// units of (a range of at most kPanelGroup A panels, a group, one column panel), in that order, and each thread
// takes one contiguous run of units through every K slice: per slice it packs its A panels once, asks once per
// group for the slice's row pointers, and runs the micro-kernels over the rows where they are. The slice's rows
// for all of a thread's groups (the input rows a window of output pixels covers) stay in its L2 while it goes
// through them; a task per unit, each streaming all of K, read x from L3 once per unit and ran the tiny preset's
// stem 2.4× slower. Nothing of B is copied but the rows the caller builds in scratch. KC, the slices and each
// element's chain of FMAs are gemm()'s, so C_g has the bits gemm() would give A · B_g.
//   Column panels are NR wide, or one vector (NR / 2) where that computes fewer padding lanes (N = 42: 48 lanes,
// not 64) or where NR-wide units would leave a thread without two (N = 24 in 3 groups: 6 units, not 3). Alternated
// with NR-wide panels in one process on the Zen 4 VM (2 threads), as convolution weight gradients: the tiny
// preset's stem (N = 42) 3.39–3.53 → 2.85–2.92 ms, its 3 × 3 over 8 channels (N = 24) 0.33 → 0.28–0.29 ms, over
// 16 (N = 48) 0.18–0.21 → 0.16–0.17 ms; the same bits (each element's chain does not depend on the panel).
//   bfloat16 (S = bf16, T = float): A is widened as it is packed, B's rows as they are loaded (the rows and the
// scratch hold bfloat16); the rest is the float32 product's, so the bits are those of float32 operands.
template <typename T, int VW, typename S>
void gemm_gathered_panels(int64_t M, int64_t N, int64_t K, const GemmOperand<S>& a, const GemmGatheredB<S>& b, T* c,
                          int64_t ldc, int64_t c_group, bool accumulate, int threads) {
  constexpr int64_t W = VW * kLanes<T>;
  const int64_t KC = ceil_div(K, ceil_div(K, kKC<T>)), slices = ceil_div(K, KC);
  const int64_t m_panels = ceil_div(M, kMR), n_panels = ceil_div(N, W), padded = round_up(N, kNR<T>);
  const int64_t units = gathered_units(M, N, b.groups, W);
  threads = int(std::min<int64_t>(threads, units));

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t t = omp_get_thread_num(), u0 = units * t / threads, u1 = units * (t + 1) / threads;
    T* ap = thread_buffer<T>(Slot::kPackedA, size_t(kPanelGroup * kMR * kKC<T>));
    S* scratch = thread_buffer<S>(Slot::kPackedB, size_t(KC * padded));
    const S** rows = thread_buffer<const S*>(Slot::kRow, size_t(KC));
    for (int64_t sl = 0; sl < slices; ++sl) {
      const int64_t pc = sl * KC, kc = std::min(KC, K - pc);
      int64_t packed_range = -1, rows_group = -1;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t range = u / (b.groups * n_panels), g = u / n_panels % b.groups, jp = u % n_panels;
        const int64_t ip0 = range * kPanelGroup, ip1 = std::min(m_panels, ip0 + kPanelGroup);
        if (range != packed_range) {
          pack_a<T, kMR>(a, ip0 * kMR, std::min((ip1 - ip0) * kMR, M - ip0 * kMR), pc, kc, kc, kKC<T>, ap);
          packed_range = range, rows_group = -1;
        }
        if (g != rows_group) b.rows(g, pc, kc, rows, scratch), rows_group = g;
        for (int64_t ip = ip0; ip < ip1; ++ip) {
          const int64_t i = ip * kMR;
          micro_kernel_rows<T, VW>(kc, ap + (ip - ip0) * kMR * kKC<T>, GatheredRows<S>{rows, jp * W},
                                   c + g * c_group + i * ldc + jp * W, ldc, int(std::min<int64_t>(kMR, M - i)),
                                   int(std::min<int64_t>(W, N - jp * W)), accumulate || pc > 0,
                                   static_cast<const T*>(nullptr));
        }
      }
    }
  }
}

template <typename S>
void gemm_gathered(int64_t M, int64_t N, int64_t K, const GemmOperand<S>& a, const GemmGatheredB<S>& b,
                   gemm_acc_t<S>* c, int64_t ldc, int64_t c_group, bool accumulate, bool parallel) {
  using T = gemm_acc_t<S>;  // the type the products run in
  if (M <= 0 || N <= 0 || b.groups <= 0) return;
  if (K <= 0) {  // C_g = 0, or unchanged when accumulating
    if (!accumulate)
      for (int64_t g = 0; g < b.groups; ++g)
        for (int64_t i = 0; i < M; ++i) std::fill(c + g * c_group + i * ldc, c + g * c_group + i * ldc + N, T(0));
    return;
  }
  gemm_parts::count_flops(M, N * b.groups, K);
  const int threads =
      (parallel && !omp_in_parallel() && M * N * K * b.groups >= kParallelMacs) ? omp_get_max_threads() : 1;
  constexpr int64_t L = kLanes<T>, NR = kNR<T>;
  if (round_up(N, L) < round_up(N, NR) || gathered_units(M, N, b.groups, NR) < 2 * int64_t(threads))
    return gemm_gathered_panels<T, 1>(M, N, K, a, b, c, ldc, c_group, accumulate, threads);
  gemm_gathered_panels<T, 2>(M, N, K, a, b, c, ldc, c_group, accumulate, threads);
}

template <typename T>
int64_t gemm_gathered_row_length(int64_t n) {
  return round_up(n, kNR<gemm_acc_t<T>>);  // in the lanes of the type the products run in
}

template void gemm<float>(int64_t, int64_t, int64_t, const GemmOperand<float>&, const GemmOperand<float>&, float*,
                          int64_t, bool, bool, const float*);
template void gemm<double>(int64_t, int64_t, int64_t, const GemmOperand<double>&, const GemmOperand<double>&,
                           double*, int64_t, bool, bool, const double*);

template void gemm_gathered<float>(int64_t, int64_t, int64_t, const GemmOperand<float>&, const GemmGatheredB<float>&,
                                   float*, int64_t, int64_t, bool, bool);
template void gemm_gathered<double>(int64_t, int64_t, int64_t, const GemmOperand<double>&, const GemmGatheredB<double>&,
                                    double*, int64_t, int64_t, bool, bool);
template void gemm_gathered<bf16>(int64_t, int64_t, int64_t, const GemmOperand<bf16>&, const GemmGatheredB<bf16>&,
                                  float*, int64_t, int64_t, bool, bool);
template int64_t gemm_gathered_row_length<float>(int64_t);
template int64_t gemm_gathered_row_length<bf16>(int64_t);
template int64_t gemm_gathered_row_length<double>(int64_t);

}  // namespace vb::cpu
