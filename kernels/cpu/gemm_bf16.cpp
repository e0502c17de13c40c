// The bfloat16 GEMM of the CPU backend, on AMX tiles or AVX512-BF16 dot products: C (M, N) (+)= A (M, K) · B (K, N),
// A and B bfloat16, C float32. Mixed precision on the CPU (AutocastGuard(bfloat16)) runs its matrix products here.
//
// Math and cost: C[i, j] = Σ_k A[i, k]·B[k, j] — 2·M·N·K FLOPs; each product of two bfloat16 values is
// exact in float32 and the sums are float32. Bytes: 2·(M·K + K·N) read, 4·M·N written (8·M·N when
// accumulating) — half the operand traffic of float32.
//
// AMX (Advanced Matrix Extensions, Intel Sapphire Rapids and later) adds eight tile registers of up to
// 16 rows × 64 bytes and one instruction that multiplies them:
//   TDPBF16PS C, A, B:  C (16 × 16 float32) += A (16 × 32 bfloat16) · B (32 × 16 bfloat16)
// — 16·16·32 = 8192 multiply-adds in one instruction, issued every 16 cycles: 1024 FLOPs per cycle per core,
// 16× the 64 of float32 AVX-512 FMAs (the dev VM measured 2.9 TFLOP/s on one core from registers, against
// 223 GFLOP/s of float32 FMAs). B must be in the "VNNI" layout, pairs of k interleaved: tile row r holds,
// for each of the 16 columns j, the 32-bit word (B[2r, j], B[2r + 1, j]).
//
// The algorithm is gemm.cpp's (packing, blocking, the task grid, the fixed order of sums), with tiles in
// place of the vector registers:
//   1. Micro-kernel (tile_block): a 32 × 32 block of C in four C tiles (0–3); per 32 k it loads two A tiles
//      (rows 0–15 and 16–31 of the packed A panel, 4 and 5) and two B tiles (columns 0–15 and 16–31 of the
//      packed B panel, 6 and 7) and issues four TDPBF16PS — 32 K multiply-adds per 4 KB loaded, the most
//      reuse the eight tiles allow.
//   2. Packing: A panels of 32 rows keep A's row-major rows (row i at i·KC, each padded with zeros to a
//      whole number of 32-k tiles), so a tile load reads 16 rows at a stride of KC·2 bytes. B panels of 32
//      columns are stored as two VNNI sub-panels of 16 columns (pair row r of a sub-panel at r·32): a row-
//      major B (a gradient's dX = gY·W) interleaves two rows at a time; a column-major B (a linear
//      layer's weight, read as its transpose) already holds each column's k pairs as 32-bit words, so a
//      sub-panel is a 16 × 16 transpose of words (gemm_parts.h).
//   3. Blocking: KC = 256 (a 32-row A panel is 16 KB, in L1 beside the B tiles streaming from L2), a KC × NC
//      block of B in half the L2 (2 MB on Zen 4). The B tiles' loads from L2 are what the tiles wait for most: one core
//      reaches ~0.9–1.2 TFLOP/s in whole products, ~1.7 with both panels in L1, 2.9 with no loads at all (the
//      dev VM; KC = 128 and 512 measured 10–30% slower, 1024 and 2048 no better).
//      When the result goes to bfloat16 (the epilogue's `out`: C is only scratch), a 32 × 32 block's sums wait
//      between K slices in a contiguous 4 KB block of their own (a per-thread buffer the size of the task's
//      part of C, up to 64 MB) rather than in C, whose rows are ldc apart: four C tiles touch 32 rows' pages
//      and 64 separate lines. At 2 threads on the dev VM, 2048³ 8.0–8.7 → 7.2–7.8 ms and 2048 × 768 × 3072
//      4.5–5.0 → 4.3–4.5 ms. Where C is the result (float32), the sums stay in C: its last store then finds
//      the lines the earlier slices left in cache, and the blocks measured 5% slower (a linear layer,
//      2048 × 768 → 3072, 5.2–5.4 against 5.5–5.8 ms).
//      Runs of slices: a task packs its B block for a run of consecutive K slices at once (as many as fit half
//      the L2 in blocks of at least 512 columns: 4 slices of 256, all of K up to 1024, which takes BERT-base's
//      products with K = 768 whole), and each A panel goes through every slice of the run before the next
//      panel. The sums waiting between the slices of a run are then one panel's (32 rows × NC, ≤ 128 KB) and
//      stay in L2; one slice at a time, the whole task's part of C (6 MB for 2048 × 768 × 3072 on 2 threads)
//      left L2 and came back once per slice. Same sums, same order. At 2 threads on the dev VM, alternated
//      three times, one slice at a time → all of K in one run (up to K = 1024): 2048 × 768 × 3072 4.5–5.2 →
//      4.3–4.5 ms, 2048 × 1024 × 2048 4.0–4.5 → 3.7–3.8 ms, 2048 × 768 × 768 1.17–1.21 → 1.07–1.12 ms, a
//      linear layer under autocast (2048 × 768 → 3072, float32 result) 5.3–5.4 → 4.9–5.0 ms; then runs of up
//      to 4 slices for longer K: 2048³ 7.5–7.7 → 6.5–7.1 ms, 2048 × 3072 × 768 4.1–4.5 → 3.8–4.0 ms.
//   4. The epilogue (GemmBf16Epilogue): on the last slice a block's sums go through a 32 × 32 buffer, get the
//      bias row added and are stored to C or rounded to bfloat16 (as tensor/dtype.h's bf16, in integer
//      arithmetic), so that a bfloat16 product or a linear layer's bias needs no pass over C afterwards.
//   5. Threads: gemm.cpp's task grid; each thread loads the tile configuration once per product and
//      releases the tiles at the end (so that the OS need not save 8 KB of tile state at every switch).
//
// The OS must grant a process the tile state before it uses it (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), kernel 5.16 and later).
//
// Without AMX but with AVX512-BF16 (Intel Cooper Lake, AMD Zen 4 and later), the same driver runs a block of
// VDPBF16PS dot products instead of the tiles (DotProducts below): two bfloat16 products per float32 lane per
// instruction, twice the multiply-adds of a float32 FMA. On an AMD EPYC (Zen 4, 2 threads; its VDPBF16PS peak
// 469 GFLOP/s against 231 for float32 FMAs, bench_cpu_ceiling), 2048³ ran in 46–48 ms (355–372 GFLOP/s, 76–79%
// of that peak) against 99 ms on the float32 path. (On the Sapphire Rapids dev VM a standalone 12 × 32
// VDPBF16PS kernel ran 207 GFLOP/s against the float32 GEMM's 318: there AMX runs, and the dot products never.)
// Where the build targets neither, the product runs through the float32 GEMM (gemm.cpp), its operands widened
// while they are packed — the same results up to rounding, at float32 speed.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_parts.h"
#include "kernels/cpu/loops.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BW__) && defined(__linux__)
#define VB_GEMM_AMX 1
#else
#define VB_GEMM_AMX 0
#endif
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#define VB_GEMM_DOT 1
#else
#define VB_GEMM_DOT 0
#endif
// The blocked driver below (packing, tasks, runs of K slices, epilogue) serves both; each brings its block.
#define VB_GEMM_BLOCKS (VB_GEMM_AMX || VB_GEMM_DOT)
#if VB_GEMM_BLOCKS
#include <immintrin.h>
#endif

namespace vb::cpu {

namespace {

using namespace gemm_parts;

std::atomic<bool> g_allow_amx{true}, g_allow_dot{true};

// ---- The float32 path: each operand widened as the float32 GEMM packs it. ----

GemmOperand<float> widened(const GemmOperand<bf16>& op) {
  GemmOperand<float> w;
  w.row = [&op](int64_t i, int64_t j0, int64_t n, float* dst) {
    if (op.row) {
      thread_local std::vector<bf16> tmp;
      tmp.resize(size_t(n));
      op.row(i, j0, n, tmp.data());
      for (int64_t j = 0; j < n; ++j) dst[j] = float(tmp[size_t(j)]);
    } else {
      const bf16* src = op.data + i * op.row_stride + j0 * op.col_stride;
      for (int64_t j = 0; j < n; ++j) dst[j] = float(src[j * op.col_stride]);
    }
  };
  return w;
}

#if VB_GEMM_BLOCKS

constexpr int64_t kTileK = 32;     // bfloat16 values per tile row (64 bytes): B's VNNI sub-panels are 16 × 32 words
constexpr int kMR = 32, kNR = 32;  // a block of C: 2 × 2 tiles of 16 × 16 (AMX), or 12 + 12 + 8 rows (dot products)
// A run of K slices (gemm_amx) is as long as B's columns for it fit the B block budget (gemm_parts.h's nc_max:
// half the L2, 2 MB on Zen 4) in blocks of at least this many columns: 512 (4 slices of 256 with a 2 MB L2). With
// narrower blocks each A panel is packed for more blocks and meets fewer B panels: all of K = 2048 in one run (256
// columns) and of 3072 (160) measured 0–15% slower than one slice at a time. gemm_bf16_k_inner(false) makes every run
// one slice, for the test.
constexpr int64_t kKInnerMinNC = 512;
std::atomic<bool> g_k_inner{true};
// For a bfloat16 result the sums between K slices wait in 32 × 32 blocks of their own, up to this many floats
// (64 MB) per thread; beyond that (a task's part of C larger than 64 MB) they wait in C. gemm_bf16_sums_limit
// sets it.
std::atomic<int64_t> g_max_sums{(int64_t(64) << 20) / int64_t(sizeof(float))};

#if VB_GEMM_AMX
bool amx_granted() {
  static const bool granted = [] {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // <asm/prctl.h>, the kernel's xstate
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
}

// The tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

void configure_tiles() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
    return c;
  }();
  _tile_loadconfig(&config);
}

#endif  // VB_GEMM_AMX

uint32_t pair(bf16 lo, bf16 hi) { return uint32_t(lo.bits) | uint32_t(hi.bits) << 16; }

// B panels ← B[k0 : k0+kc, j0 : j0+nc]: panel q (columns 32q …) at bp + q·kcp·32, its sub-panel s (16
// columns) at + s·kcp·16, the word (pair row r, column j) at + r·32 + 2j. Pairs past kc and columns past
// nc are zero; kcp = kc rounded up to whole tiles.
void pack_b_vnni(const GemmOperand<bf16>& b, int64_t k0, int64_t kc, int64_t kcp, int64_t j0, int64_t nc, bf16* bp) {
  const int64_t subpanels = ceil_div(nc, 16), pairs = kcp / 2;
  auto sub = [&](int64_t s) { return reinterpret_cast<uint32_t*>(bp + (s / 2) * kcp * kNR + (s % 2) * kcp * 16); };
  // Sub-panels past the last column (an odd count) are zero.
  for (int64_t s = subpanels; s < round_up(subpanels, 2); ++s) std::fill(sub(s), sub(s) + pairs * 16, 0u);
  if (column_major(b)) {
    // Column j's values B[k0 …, j] are contiguous (ld apart), so its pairs are 32-bit words already.
    const int64_t ld = b.col_stride, whole = kc / kTileK * kTileK;
    for (int64_t s = 0; s < subpanels; ++s) {
      uint32_t* dst = sub(s);
      const int64_t cols = std::min<int64_t>(16, nc - s * 16);
      const bf16* first = b.data + (j0 + s * 16) * ld + k0;
      int64_t p0 = 0;
      if (cols == 16)
        for (; p0 < whole; p0 += kTileK)
          transpose_16x16_words(reinterpret_cast<const char*>(first + p0), ld * 2, reinterpret_cast<char*>(dst + p0 / 2 * 16), 64);
      for (int64_t r = p0 / 2; r < pairs; ++r)
        for (int64_t j = 0; j < 16; ++j) {
          const int64_t k = 2 * r;
          const bf16* col = first + j * ld;
          dst[r * 16 + j] = j >= cols ? 0u : pair(k < kc ? col[k] : bf16(), k + 1 < kc ? col[k + 1] : bf16());
        }
    }
    return;
  }
  // Rows: two at a time, interleaved 16 columns per step.
  bf16* scratch = (b.row || b.col_stride != 1) ? thread_buffer<bf16>(Slot::kRow, size_t(2 * nc)) : nullptr;
  auto row = [&](int64_t k, int slot) -> const bf16* {
    if (k >= kc) return nullptr;
    bf16* dst = scratch + slot * nc;
    if (b.row) {
      b.row(k0 + k, j0, nc, dst);
      return dst;
    }
    if (b.col_stride == 1) return b.data + (k0 + k) * b.row_stride + j0;
    const bf16* src = b.data + (k0 + k) * b.row_stride + j0 * b.col_stride;
    for (int64_t j = 0; j < nc; ++j) dst[j] = src[j * b.col_stride];
    return dst;
  };
  // A row-major B in memory is asked for kPrefetchRows rows ahead of the pair being interleaved. Packing runs
  // before the products it feeds, so nothing hides its misses: a weight last touched a whole pass ago (B of
  // dX = gY·W in a training step) came from memory at a fraction of the bandwidth. On the Zen 4 VM, 2 threads, B
  // cold (16 weights in turn), 134 × 3072 × 768, without and with it in alternate processes: 2.08–2.21 → 1.83–2.01
  // ms (distances of 8 to 64 rows did about as well); warm B unchanged. The bfloat16 base step, alternated the
  // same way, six pairs: every one faster, 1678 / 1748 / 1795 → 1649 / 1666 / 1743 ms in the quieter three. Not
  // measured on AMX.
  constexpr int64_t kPrefetchRows = 16;
  const bool in_memory = !b.row && b.col_stride == 1;
  for (int64_t r = 0; r < pairs; ++r) {
    if (in_memory && 2 * r + kPrefetchRows + 1 < kc)
      for (int64_t q = 2 * r + kPrefetchRows; q < 2 * r + kPrefetchRows + 2; ++q) {
        const char* line = reinterpret_cast<const char*>(b.data + (k0 + q) * b.row_stride + j0);
        for (int64_t off = 0; off < nc * int64_t(sizeof(bf16)); off += 64) _mm_prefetch(line + off, _MM_HINT_T0);
      }
    const bf16 *lo = row(2 * r, 0), *hi = row(2 * r + 1, 1);
    for (int64_t s = 0; s < subpanels; ++s) {
      const int64_t c = s * 16, cols = std::min<int64_t>(16, nc - c);
      const __mmask16 valid = __mmask16((1u << cols) - 1);
      const __m512i l = lo ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(valid, lo + c)) : _mm512_setzero_si512();
      const __m512i h = hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(valid, hi + c)) : _mm512_setzero_si512();
      _mm512_storeu_si512(sub(s) + r * 16, _mm512_or_si512(l, _mm512_slli_epi32(h, 16)));
    }
  }
}

// 16 floats rounded to bfloat16 as bf16(float) does (tensor/dtype.h: to nearest, ties to even, NaN quieted), in
// integer arithmetic so that subnormals round too (VCVTNEPS2BF16 would flush them to zero).
__m256i round_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

// The epilogue of the last K slice: the block's finished sums (edge, 32 × 32, rows of kNR) + bias[0:nr], then
// either stored to C or rounded to bfloat16 into out.
void finish_block(const float* edge, int mr, int nr, const float* bias, float* c, int64_t ldc, bf16* out,
                  int64_t ldo) {
  for (int h = 0; h * 16 < nr; ++h) {
    const int cols = std::min(16, nr - h * 16);
    const __mmask16 m = __mmask16((1u << cols) - 1);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + h * 16) : _mm512_setzero_ps();
    for (int i = 0; i < mr; ++i) {
      __m512 v = _mm512_load_ps(edge + i * kNR + h * 16);
      if (bias) v = _mm512_add_ps(v, b);  // (not + 0 without a bias: −0 would become +0)
      if (out) _mm256_mask_storeu_epi16(out + i * ldo + h * 16, m, round_bf16(v));
      else _mm512_mask_storeu_ps(c + i * ldc + h * 16, m, v);
    }
  }
}

#if VB_GEMM_AMX
// A 32 × 32 block of C: loads its four tiles from src (rows ld_src apart; null: zero), adds Ap (32 rows × kcp,
// row i at ap + i·kcp) · Bp (one 32-column panel, VNNI) and stores the tiles to dst (rows ld_dst apart). Tiles:
// C 0–3 (rows 0–15 / 16–31 × columns 0–15 / 16–31), A 4–5, B 6–7.
void tile_block(int64_t kcp, const bf16* ap, const bf16* bp, const float* src, int64_t ld_src, float* dst,
                int64_t ld_dst) {
  const int64_t src_bytes = ld_src * int64_t(sizeof(float)), dst_bytes = ld_dst * int64_t(sizeof(float));
  if (src) {
    _tile_loadd(0, src, src_bytes);
    _tile_loadd(1, src + 16, src_bytes);
    _tile_loadd(2, src + 16 * ld_src, src_bytes);
    _tile_loadd(3, src + 16 * ld_src + 16, src_bytes);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const int64_t a_bytes = kcp * 2;
  const bf16 *b0 = bp, *b1 = bp + kcp * 16;
  // Each load comes right before the first product that needs it, so that the products of one step start
  // while its later tiles are still loading: 1.54 → 1.70 TFLOP/s for one core on the dev VM with both panels
  // in L1 (a standalone probe), within the run-to-run spread in whole products, where B comes from L2.
  for (int64_t kk = 0; kk < kcp; kk += kTileK) {
    _tile_loadd(4, ap + kk, a_bytes);
    _tile_loadd(6, b0 + kk * 16, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b1 + kk * 16, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, ap + 16 * kcp + kk, a_bytes);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, dst, dst_bytes);
  _tile_stored(1, dst + 16, dst_bytes);
  _tile_stored(2, dst + 16 * ld_dst, dst_bytes);
  _tile_stored(3, dst + 16 * ld_dst + 16, dst_bytes);
}

// The driver's view of a kernel: k per step of the packed panels (kcp is a multiple), the size of product worth
// waking the other threads for, what each thread does before and after its tasks, and the block itself (mr: the
// rows of A that exist; AMX computes all 32 anyway, on zero rows).
struct AmxTiles {
  static constexpr int64_t kKStep = kTileK, kKC = 256;
  static constexpr int64_t kParallelMacs = int64_t(1) << 20;  // 1/16 of the float32 GEMM's: the tiles are ~16× faster
  static int64_t a_ld(int64_t kcp) { return kcp; }            // the A tiles' rows, kcp apart
  static void begin() { configure_tiles(); }
  static void end() { _tile_release(); }
  static void block(int64_t kcp, const bf16* ap, const bf16* bp, const float* src, int64_t ld_src, float* dst,
                    int64_t ld_dst, int /*mr*/) {
    tile_block(kcp, ap, bp, src, ld_src, dst, ld_dst);
  }
};
#endif  // VB_GEMM_AMX

#if VB_GEMM_DOT
// ---- The AVX512-BF16 path: VDPBF16PS on the same packed panels. ----
//   VDPBF16PS acc, a, b:  acc[l] += a.bf16[2l]·b.bf16[2l] + a.bf16[2l + 1]·b.bf16[2l + 1]   (l = 0 … 15)
// — 32 multiply-adds per instruction, two k at once in each float32 lane, where an FMA does 16. A 32-bit lane of
// a packed B sub-panel row is exactly such a pair (B[2r, j], B[2r + 1, j]) (the VNNI layout the tiles want), and
// two consecutive values of a packed A row are the pair (A[i, 2r], A[i, 2r + 1]), broadcast to all 16 lanes.
// So this runs gemm.cpp's micro-kernel shape, 12 rows × 32 columns (24 accumulators, 2 B vectors, 1 broadcast
// = 27 of the 32 registers), over k pairs: per pair 2 loads of B, 12 broadcasts of A and 24 VDPBF16PS
// (1536 FLOPs). A 32 × 32 block is three of them (rows 0–11, 12–23, 24–31), reading its B panel (kcp × 32
// bfloat16, 16 KB for KC = 256) from L2 once and from L1 twice more.
// Rounding (Intel's definition, which AMD's Zen 4 follows): each product is exact in float32, and the two of a
// pair are added to the lane one after the other, each addition rounded to nearest even — the chain of FMAs of
// the float32 path, in the order 2r + 1, 2r. Subnormal inputs count as zero and subnormal results are flushed to
// zero (the instruction does not consult MXCSR), as on the tiles.
// A panel's rows are kDotKC apart, a constant whatever kcp is: one pointer with constant offsets then reaches all
// R rows, where R pointers (rows kcp apart) took more registers than are free, and GCC spilled some of them.
constexpr int64_t kDotKC = 256;

template <int R>
void dot_rows(int64_t kcp, const bf16* ap, const bf16* bp, const float* src, int64_t ld_src, float* dst,
              int64_t ld_dst) {
  __m512 acc[R][2];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    acc[i][0] = src ? _mm512_loadu_ps(src + i * ld_src) : _mm512_setzero_ps();
    acc[i][1] = src ? _mm512_loadu_ps(src + i * ld_src + 16) : _mm512_setzero_ps();
  }
  const bf16 *b0 = bp, *b1 = bp + kcp * 16;  // the panel's two VNNI sub-panels (columns 0–15, 16–31)
  for (int64_t r = 0; r < kcp / 2; ++r) {
    const __m512bh v0 = __m512bh(_mm512_loadu_si512(b0 + r * 32)), v1 = __m512bh(_mm512_loadu_si512(b1 + r * 32));
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      int32_t word;  // (A[i, 2r], A[i, 2r + 1])
      std::memcpy(&word, ap + i * kDotKC + 2 * r, sizeof word);
      const __m512bh a = __m512bh(_mm512_set1_epi32(word));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, v0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, v1);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    _mm512_storeu_ps(dst + i * ld_dst, acc[i][0]);
    _mm512_storeu_ps(dst + i * ld_dst + 16, acc[i][1]);
  }
}

struct DotProducts {
  static constexpr int64_t kKStep = 2;  // one pair
  // KC: 256 as on the tiles; 384, 512 and 768 measured equal or up to 7% slower (Zen 4, 2 threads).
  static constexpr int64_t kKC = kDotKC;
  // Half the float32 GEMM's threshold: twice its multiply-adds per cycle.
  static constexpr int64_t kParallelMacs = int64_t(1) << 16;
  static int64_t a_ld(int64_t /*kcp*/) { return kKC; }
  static void begin() {}
  static void end() {}
  // Rows 0–11, 12–23 and 24–31 of the block, as far as A has rows (mr); a group of fewer rows runs a 4- or 8-row
  // kernel (the last panel of a product with M = 134 has 6). Rows past mr are neither read from src nor stored.
  static void block(int64_t kcp, const bf16* ap, const bf16* bp, const float* src, int64_t ld_src, float* dst,
                    int64_t ld_dst, int mr) {
    for (int i0 = 0; i0 < mr; i0 += 12) {
      const int rows = std::min(mr - i0, 12);
      const bf16* a = ap + i0 * kKC;
      const float* s = src ? src + i0 * ld_src : nullptr;
      float* d = dst + i0 * ld_dst;
      if (rows <= 4) dot_rows<4>(kcp, a, bp, s, ld_src, d, ld_dst);
      else if (rows <= 8) dot_rows<8>(kcp, a, bp, s, ld_src, d, ld_dst);
      else dot_rows<12>(kcp, a, bp, s, ld_src, d, ld_dst);
    }
  }
};
#endif  // VB_GEMM_DOT

// One K slice of the block C[0:mr, 0:nr] (mr, nr ≤ 32). Between slices the sums wait in `sums`, a 32 × 32
// block of its own (4 KB, contiguous: the tiles load and store it as 64 whole lines, where C's rows are ldc
// apart, each on its own page for wide C); the first slice starts from C (accumulating) or zero, the last
// stores to C or through the epilogue. Edge blocks reach C through a 32 × 32 buffer, so that only the mr × nr
// part of C is read and written.
template <class Kernel>
void slice_block(int64_t kcp, const bf16* ap, const bf16* bp, bool first, bool last, bool accumulate, float* c,
                 int64_t ldc, int mr, int nr, float* sums, const float* bias, bf16* out, int64_t ldo) {
  const bool full = mr == kMR && nr == kNR, epilogue = last && (bias || out);
  alignas(64) float edge[kMR * kNR];
  const float* src = first ? nullptr : sums;
  int64_t ld_src = kNR;
  if ((first && accumulate) || (!first && !sums)) {  // from C
    if (full) {
      src = c, ld_src = ldc;
    } else {
      std::fill(edge, edge + kMR * kNR, 0.0f);
      for (int i = 0; i < mr; ++i) std::memcpy(edge + i * kNR, c + i * ldc, size_t(nr) * sizeof(float));
      src = edge;
    }
  }
  if (!last && sums) {
    Kernel::block(kcp, ap, bp, src, ld_src, sums, kNR, mr);
  } else if (full && !epilogue) {
    Kernel::block(kcp, ap, bp, src, ld_src, c, ldc, mr);
  } else {
    Kernel::block(kcp, ap, bp, src, ld_src, edge, kNR, mr);
    if (epilogue) {
      finish_block(edge, mr, nr, bias, c, ldc, out, ldo);
    } else {
      for (int i = 0; i < mr; ++i) std::memcpy(c + i * ldc, edge + i * kNR, size_t(nr) * sizeof(float));
    }
  }
}

template <class Kernel>
void gemm_blocks(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
                 int64_t ldc, bool accumulate, bool parallel, const GemmBf16Epilogue& ep) {
  const int threads =
      (parallel && !omp_in_parallel() && M * N * K >= Kernel::kParallelMacs) ? omp_get_max_threads() : 1;
  // Slices of K of equal length in whole kernel steps (KC depends only on K: it fixes the order of the sums).
  const int64_t KC = round_up(ceil_div(K, ceil_div(K, Kernel::kKC)), Kernel::kKStep);
  const int64_t slices = ceil_div(K, KC);
  // Runs of slices: a task packs its B block for one run of consecutive slices at once, and each A panel goes
  // through all the slices of the run before the next panel, so that the sums waiting between the slices of a
  // run are one panel's (32 rows × NC) and stay in L2. A run is as long as B's columns for it still fit the B
  // block budget in blocks of at least kKInnerMinNC (gemm_parts.h's slice_run); runs of one slice are the plain
  // order (all panels through one slice, then the next slice). The sums are the same, in the same order, either way.
  const int64_t run =
      slice_run(g_k_inner.load(std::memory_order_relaxed), slices, KC, int64_t(sizeof(bf16)), kNR, kKInnerMinNC);
  const int64_t runs = ceil_div(slices, run);
  const TaskGrid grid(threads, M, N, kMR, kNR, nc_max(run * KC, int64_t(sizeof(bf16)), kNR));  // B: the block budget

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    Kernel::begin();
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < grid.tasks; ++task) {
      const auto [jc, nc, ip0, ip1] = grid.range(task, N);
      if (ip0 == ip1) continue;
      const int64_t group = column_major(a) ? kPanelGroup : 1;
      bf16* ap = thread_buffer<bf16>(Slot::kPackedA, size_t(group * kMR * Kernel::a_ld(KC)));
      bf16* bp = thread_buffer<bf16>(Slot::kPackedB, size_t(run * KC * grid.NC));
      const int64_t blocks_j = ceil_div(nc, kNR);
      // The sums wait for the whole task (several runs) or for one group of panels (one run: all of K).
      const int64_t sums_size = (runs == 1 ? std::min(group, ip1 - ip0) : ip1 - ip0) * blocks_j * kMR * kNR;
      float* sums = ep.out && K > KC && sums_size <= g_max_sums.load(std::memory_order_relaxed)
                        ? thread_buffer<float>(Slot::kSums, size_t(sums_size))
                        : nullptr;
      // One K slice [pc, pc + kc) of the panels [ip, ip_end) (one packed group at most) against the packed
      // B block bs; the sums of panel ip + q wait at sums + (s0 + q)·blocks_j blocks.
      auto run_slice = [&](int64_t pc, int64_t ip, int64_t ip_end, const bf16* bs, int64_t s0) {
        const int64_t kc = std::min(KC, K - pc), kcp = round_up(kc, Kernel::kKStep), ald = Kernel::a_ld(kcp);
        const bool first = pc == 0, last = pc + kc == K;
        for (int64_t q = 0; ip + q < ip_end; ++q) {
          const int64_t i = (ip + q) * kMR;
          if (q == 0) pack_a<bf16, kMR>(a, i, std::min((ip_end - ip) * kMR, M - i), pc, kc, kcp, ald, ap);
          const int mr = int(std::min<int64_t>(kMR, M - i));
          for (int64_t jp = 0; jp < blocks_j; ++jp) {
            const int nr = int(std::min<int64_t>(kNR, nc - jp * kNR));
            const int64_t j = jc + jp * kNR;
            // Where C itself is read (the first slice, accumulating) or written (the last, no bfloat16 output),
            // ask for the next block's C lines now, into L2: the block's products hide their misses. A weight
            // gradient dW += Xᵀ·gY over the base preset's 134 tokens has K = 134, so every block reads and writes
            // C once for 2·134 FLOPs per element, and dW was last touched a step ago. (The float32 micro-kernel
            // asks for its own tile before its k loop; this kernel loads C first, so it asks one block ahead.)
            // Zen 4 VM, 2 threads, alternate processes, C cold: dW 768 × 768 0.58–0.60 → 0.49–0.55 ms, 3072 × 768
            // 2.32–2.33 → 1.92–1.93 ms (into L1 instead: no gain); the bfloat16 base step faster in eight of eight
            // pairs (fastest steps 1607–1839 → 1559–1651 ms in six; medians 1647 / 1608 → 1588 / 1565 ms in two).
            // Not measured on AMX.
            if (((first && accumulate) || (last && !ep.out)) && jp + 1 < blocks_j)
              for (int r = 0; r < mr; ++r) {
                const float* next = c + (i + r) * ldc + j + kNR;
                _mm_prefetch(reinterpret_cast<const char*>(next), _MM_HINT_T1);
                _mm_prefetch(reinterpret_cast<const char*>(next + 16), _MM_HINT_T1);
              }
            slice_block<Kernel>(kcp, ap + q * kMR * ald, bs + jp * kcp * kNR, first, last, accumulate, c + i * ldc + j,
                                ldc, mr, nr, sums ? sums + ((s0 + q) * blocks_j + jp) * kMR * kNR : nullptr,
                                ep.bias ? ep.bias + j : nullptr, ep.out ? ep.out + i * ep.ldo + j : nullptr, ep.ldo);
          }
        }
      };
      for (int64_t r0 = 0; r0 < slices; r0 += run) {
        const int64_t r1 = std::min(slices, r0 + run);
        for (int64_t sl = r0; sl < r1; ++sl) {
          const int64_t kc = std::min(KC, K - sl * KC);
          pack_b_vnni(b, sl * KC, kc, round_up(kc, Kernel::kKStep), jc, nc, bp + (sl - r0) * KC * grid.NC);
        }
        for (int64_t ip = ip0; ip < ip1; ip += group)
          for (int64_t sl = r0; sl < r1; ++sl)
            run_slice(sl * KC, ip, std::min(ip + group, ip1), bp + (sl - r0) * KC * grid.NC, runs == 1 ? 0 : ip - ip0);
      }
    }
    Kernel::end();
  }
}

#endif  // VB_GEMM_BLOCKS

}  // namespace

GemmBf16Path gemm_bf16_path() {
#if VB_GEMM_AMX
  if (g_allow_amx.load(std::memory_order_relaxed) && amx_granted()) return GemmBf16Path::kAmx;
#endif
#if VB_GEMM_DOT
  if (g_allow_dot.load(std::memory_order_relaxed)) return GemmBf16Path::kDot;
#endif
  return GemmBf16Path::kFloat32;
}

const char* gemm_bf16_path_name(GemmBf16Path path) {
  switch (path) {
    case GemmBf16Path::kAmx: return "AMX tiles";
    case GemmBf16Path::kDot: return "AVX512-BF16 dot products";
    case GemmBf16Path::kFloat32: return "the float32 GEMM";
  }
  return "";
}

bool gemm_bf16_allow(GemmBf16Path path, bool allow) {
  switch (path) {
    case GemmBf16Path::kAmx: return g_allow_amx.exchange(allow);
    case GemmBf16Path::kDot: return g_allow_dot.exchange(allow);
    case GemmBf16Path::kFloat32: break;
  }
  return true;  // the float32 path is always there
}

int64_t gemm_bf16_sums_limit(int64_t floats) {
#if VB_GEMM_BLOCKS
  return g_max_sums.exchange(floats);
#else
  return floats;
#endif
}

bool gemm_bf16_k_inner(bool on) {
#if VB_GEMM_BLOCKS
  return g_k_inner.exchange(on);
#else
  return on;
#endif
}

void gemm_bf16(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
               int64_t ldc, bool accumulate, bool parallel, const GemmBf16Epilogue& epilogue) {
  if (M <= 0 || N <= 0) return;
  const GemmBf16Path path = K <= 0 ? GemmBf16Path::kFloat32 : gemm_bf16_path();
#if VB_GEMM_AMX
  if (path == GemmBf16Path::kAmx) {
    count_flops(M, N, K);
    return gemm_blocks<AmxTiles>(M, N, K, a, b, c, ldc, accumulate, parallel, epilogue);
  }
#endif
#if VB_GEMM_DOT
  if (path == GemmBf16Path::kDot) {
    count_flops(M, N, K);
    return gemm_blocks<DotProducts>(M, N, K, a, b, c, ldc, accumulate, parallel, epilogue);
  }
#endif
  // The float32 GEMM adds the bias as it stores (counting its FLOPs itself); the rounding is a pass of its own.
  gemm<float>(M, N, K, widened(a), widened(b), c, ldc, accumulate, parallel, epilogue.bias);
  if (epilogue.out) {
#pragma omp parallel for schedule(static) if (parallel && M * N >= kParallelGrain && !omp_in_parallel())
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) epilogue.out[i * epilogue.ldo + j] = bf16(c[i * ldc + j]);
  }
}

}  // namespace vb::cpu
