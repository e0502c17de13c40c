// A packed, cache-blocked GEMM in the style of BLIS/GotoBLAS: C (M, N) (+)= A (M, K) · B (K, N).
//
// Math and cost: C[i, j] = Σ_k A[i, k]·B[k, j] — 2·M·N·K FLOPs. Ideally each operand crosses memory once:
// 4·(M·K + K·N + M·N) bytes in float32; packing reads each A element ⌈N/NC⌉·… times at most (see below),
// so the product is compute bound for any side above a few dozen.
//
// The algorithm, from the inside out:
//   1. Micro-kernel: an MR × NR tile of C lives in registers (MR rows × two SIMD vectors of NR/2 lanes).
//      For each k it loads one row of a packed B panel (two vectors), broadcasts MR values of a packed A
//      panel, and issues 2·MR fused multiply-adds. With AVX-512 and float32 the tile is 12 × 32:
//      24 accumulators + 2 B vectors + 1 broadcast = 27 of the 32 vector registers, and each k does
//      24 FMAs (768 FLOPs) per 128 + 48 bytes loaded — enough independent FMAs to hide their 4-cycle
//      latency on both FMA pipes. AVX2 (16 registers) uses 6 × 16, plain SSE 4 × 8.
//   2. Packing: before the micro-kernels run, a KC-deep slice of A is copied into MR-row panels
//      (element (i, k) of a panel at k·MR + i) and a KC × NC block of B into NR-column panels (at k·NR + j),
//      zero-padded at the edges. The micro-kernel then reads both with unit stride, whatever the strides
//      of the operands (transposed views, broadcast rows, convolution's im2col generated on the fly), and
//      the edge tiles need no special code in the inner loop.
//   3. Blocking (loops, outer to inner):
//        ic: M in blocks of MC rows     — the packed A block (MC × KC) stays in L3 (≤ 6 MB);
//        pc: K in blocks of KC          — C is updated once per KC slice: C += A[:, pc]·B[pc, :];
//        jc: N in blocks of NC columns  — the packed B block (KC × NC) stays in each core's L2 (~0.5 MB);
//        ir: MR-row panels of the A block — one A panel (MR × KC ≈ 18 KB) is reused from L1 across …
//        jr: NR-column panels of the B block, one micro-kernel call each.
//      KC = 384 floats: an A panel (12 × 384 × 4 B = 18 KB) fits L1 (32 KB) beside the B rows streaming
//      from L2, and C is read and written only ⌈K/384⌉ times. NC ≈ 320: a B block is 384 × 320 × 4 B
//      = 480 KB, half of a 1 MB L2. MC = 3072 rows keeps the A block (4.5 MB) well inside a 32 MB L3 and
//      makes re-packing B (once per MC block) cost under 1/3000 of the FLOPs.
//   4. Threads (OpenMP): the KC slice of A is packed by all threads together; then each thread takes
//      whole tasks — a range of B columns (when N is wide) or a range of A panels (when N is narrow,
//      e.g. a convolution with 64 output channels) — and packs its own B block into its own L2.
//
// Determinism: every element of C is summed in the same order — k ascending within a KC slice (one FMA
// chain per register lane), slices added to C in ascending order — and KC does not depend on the thread
// count, so the result is bitwise the same for the same input on any number of threads.
//
// Buffers: the packed blocks live in per-thread buffers that grow to the largest size used and are kept,
// so that a product does not allocate (and page-fault in) megabytes on every call.
#include "kernels/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

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
template <typename T>
constexpr int64_t kNC = std::max<int64_t>(kNR<T>, (int64_t(512) << 10) / (kKC<T> * int64_t(sizeof(T))) / kNR<T> * kNR<T>);
constexpr int64_t kMC = 256 * kMR;
// Products with fewer multiply-adds than this run on one thread (waking the others costs more).
constexpr int64_t kParallelMacs = int64_t(1) << 17;

// ---- The micro-kernel: C[0:mr, 0:nr] (+)= Ap (MR × kc panel) · Bp (kc × NR panel). ----
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
      const V a = splat(ap[i]);
      acc[i][0] = fma(a, b0, acc[i][0]);
      acc[i][1] = fma(a, b1, acc[i][1]);
    }
    ap += kMR;
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

enum class Slot { kPackedA, kPackedB, kRows };

template <typename T>
T* thread_buffer(Slot slot, size_t n) {
  thread_local Buffer<T> buffers[3];
  return buffers[int(slot)].get(n);
}

// ---- Packing. ----

// Ap (kc × MR, element (i, p) at p·MR + i) ← A[i0 : i0+mr, k0 : k0+kc], rows mr … MR−1 zero.
template <typename T>
void pack_a(const GemmOperand<T>& a, int64_t i0, int mr, int64_t k0, int64_t kc, T* ap) {
  if (!a.row && a.row_stride == 1 && a.col_stride != 1) {
    // Column-major (a transposed view): the MR values of one k are contiguous.
    for (int64_t p = 0; p < kc; ++p) {
      const T* src = a.data + (k0 + p) * a.col_stride + i0;
      T* dst = ap + p * kMR;
      for (int i = 0; i < mr; ++i) dst[i] = src[i];
      for (int i = mr; i < kMR; ++i) dst[i] = T(0);
    }
    return;
  }
  // Row access: point at each row's kc values in place, or have them written to a scratch row.
  const T* rows[kMR];
  T* scratch = (a.row || a.col_stride != 1) ? thread_buffer<T>(Slot::kRows, size_t(kMR * kc)) : nullptr;
  for (int i = 0; i < mr; ++i) {
    if (a.row) {
      a.row(i0 + i, k0, kc, scratch + i * kc);
      rows[i] = scratch + i * kc;
    } else if (a.col_stride == 1) {
      rows[i] = a.data + (i0 + i) * a.row_stride + k0;
    } else {
      const T* src = a.data + (i0 + i) * a.row_stride + k0 * a.col_stride;
      for (int64_t p = 0; p < kc; ++p) scratch[i * kc + p] = src[p * a.col_stride];
      rows[i] = scratch + i * kc;
    }
  }
  for (int64_t p = 0; p < kc; ++p) {
    T* dst = ap + p * kMR;
    for (int i = 0; i < mr; ++i) dst[i] = rows[i][p];
    for (int i = mr; i < kMR; ++i) dst[i] = T(0);
  }
}

// Bp (NR-column panels, each kc × NR, element (p, j) at p·NR + j) ← B[k0 : k0+kc, j0 : j0+nc], columns past
// nc zero.
template <typename T>
void pack_b(const GemmOperand<T>& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, T* bp) {
  constexpr int NR = kNR<T>;
  const int64_t panels = (nc + NR - 1) / NR;
  if (!b.row && b.row_stride == 1 && b.col_stride != 1) {
    // Column-major (e.g. a linear layer's weight, (out, in), read as its transpose): each column's kc
    // values are contiguous; write them down a panel column.
    for (int64_t jp = 0; jp < panels; ++jp) {
      T* panel = bp + jp * kc * NR;
      for (int j = 0; j < NR; ++j) {
        const int64_t col = jp * NR + j;
        if (col < nc) {
          const T* src = b.data + (j0 + col) * b.col_stride + k0;
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = T(0);
        }
      }
    }
    return;
  }
  T* scratch = (b.row || b.col_stride != 1) ? thread_buffer<T>(Slot::kRows, size_t(nc)) : nullptr;
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

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace

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
  const int threads = (parallel && !omp_in_parallel() && M * N * K >= kParallelMacs) ? omp_get_max_threads() : 1;

  // Block sizes. KC depends only on K (never on the thread count: it fixes the summation order).
  const int64_t KC = ceil_div(K, ceil_div(K, kKC<T>));
  const int64_t MC = round_up(ceil_div(M, ceil_div(M, kMC)), kMR);
  const int64_t n_panels = ceil_div(N, NR);
  // Tasks: N in n_blocks column blocks × each A block's panels in m_slices ranges. Wide products split
  // N (each thread packs only its own B columns); narrow ones split the A panels (and pack B redundantly).
  int64_t n_blocks = ceil_div(N, kNC<T>), m_slices = 1;
  if (threads > 1) {
    if (n_panels >= 4 * threads) n_blocks = std::min(round_up(n_blocks, threads), n_panels);
    else m_slices = threads;
  }
  const int64_t NC = ceil_div(n_panels, n_blocks) * NR;
  n_blocks = ceil_div(N, NC);
  const int64_t tasks = n_blocks * m_slices;

  T* ap = thread_buffer<T>(Slot::kPackedA, size_t(MC * KC));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    T* bp = thread_buffer<T>(Slot::kPackedB, size_t(KC * NC));
    for (int64_t ic = 0; ic < M; ic += MC) {
      const int64_t mc = std::min(MC, M - ic), a_panels = ceil_div(mc, kMR);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const bool add = accumulate || pc > 0;
#pragma omp for schedule(static)
        for (int64_t ip = 0; ip < a_panels; ++ip)
          pack_a(a, ic + ip * kMR, int(std::min<int64_t>(kMR, mc - ip * kMR)), pc, kc, ap + ip * kMR * kc);
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
          const int64_t jc = (task / m_slices) * NC, nc = std::min(NC, N - jc);
          const int64_t slice = task % m_slices;
          const int64_t ip0 = a_panels * slice / m_slices, ip1 = a_panels * (slice + 1) / m_slices;
          if (ip0 == ip1) continue;
          pack_b(b, pc, kc, jc, nc, bp);
          for (int64_t ip = ip0; ip < ip1; ++ip) {
            const int64_t i = ic + ip * kMR;
            const int mr = int(std::min<int64_t>(kMR, M - i));
            for (int64_t jp = 0; jp * NR < nc; ++jp) {
              const int nr = int(std::min<int64_t>(NR, nc - jp * NR));
              micro_kernel(kc, ap + ip * kMR * kc, bp + jp * kc * NR, c + i * ldc + jc + jp * NR, ldc, mr, nr, add);
            }
          }
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
