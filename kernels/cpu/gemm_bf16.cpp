// The bfloat16 GEMM of the CPU backend, on AMX tiles: C (M, N) (+)= A (M, K) · B (K, N), A and B bfloat16,
// C float32. Mixed precision on the CPU (AutocastGuard(bfloat16)) runs its matrix products here.
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
//      block of B in half the L2. The B tiles' loads from L2 are what the tiles wait for most: one core
//      reaches ~0.9 TFLOP/s in whole products, ~1.7 with both panels in L1, 2.9 with no loads at all (the
//      dev VM; 512 and 1024 for KC measured the same within its run-to-run spread).
//   4. Threads: gemm.cpp's task grid; each thread loads the tile configuration once per product and
//      releases the tiles at the end (so that the OS need not save 8 KB of tile state at every switch).
//
// The OS must grant a process the tile state before it uses it (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), kernel 5.16 and later). Where the build does not target AMX, or the OS says no, the
// product runs through the float32 GEMM (gemm.cpp), its operands widened while they are packed — the
// same results up to rounding, at float32 speed.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemm_parts.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BW__) && defined(__linux__)
#include <immintrin.h>
#define VB_GEMM_AMX 1
#else
#define VB_GEMM_AMX 0
#endif

namespace vb::cpu {

namespace {

using namespace gemm_parts;

std::atomic<bool> g_allow_amx{true};

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

#if VB_GEMM_AMX

constexpr int64_t kTileK = 32;  // bfloat16 values per tile row (64 bytes)
constexpr int kMR = 32, kNR = 32;  // a 2 × 2 block of 16 × 16 C tiles
constexpr int64_t kKC = 256;

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
  for (int64_t r = 0; r < pairs; ++r) {
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

// C[0:mr, 0:nr] (+)= Ap (32 rows × kcp, row i at ap + i·kcp) · Bp (one 32-column panel, VNNI). Tiles:
// C 0–3 (rows 0–15 / 16–31 × columns 0–15 / 16–31), A 4–5, B 6–7. Edge blocks go through a 32 × 32
// buffer so that only the mr × nr part of C is read and written.
void tile_block(int64_t kcp, const bf16* ap, const bf16* bp, float* c, int64_t ldc, int mr, int nr, bool add) {
  const bool full = mr == kMR && nr == kNR;
  alignas(64) float edge[kMR * kNR];
  float* t = c;
  int64_t ld = ldc;
  if (!full) {
    t = edge, ld = kNR;
    if (add) {
      std::fill(edge, edge + kMR * kNR, 0.0f);
      for (int i = 0; i < mr; ++i) std::memcpy(edge + i * kNR, c + i * ldc, size_t(nr) * sizeof(float));
    }
  }
  const int64_t ld_bytes = ld * int64_t(sizeof(float));
  if (add) {
    _tile_loadd(0, t, ld_bytes);
    _tile_loadd(1, t + 16, ld_bytes);
    _tile_loadd(2, t + 16 * ld, ld_bytes);
    _tile_loadd(3, t + 16 * ld + 16, ld_bytes);
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
  _tile_stored(0, t, ld_bytes);
  _tile_stored(1, t + 16, ld_bytes);
  _tile_stored(2, t + 16 * ld, ld_bytes);
  _tile_stored(3, t + 16 * ld + 16, ld_bytes);
  if (!full)
    for (int i = 0; i < mr; ++i) std::memcpy(c + i * ldc, edge + i * kNR, size_t(nr) * sizeof(float));
}

void gemm_amx(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
              int64_t ldc, bool accumulate, bool parallel) {
  constexpr int64_t kParallelMacs = int64_t(1) << 20;  // 1/16 of a float32 product's threshold: AMX is ~16× faster
  const int threads = (parallel && !omp_in_parallel() && M * N * K >= kParallelMacs) ? omp_get_max_threads() : 1;
  // Slices of K of equal length in whole tiles (KC depends only on K: it fixes the order of the sums).
  const int64_t KC = round_up(ceil_div(K, ceil_div(K, kKC)), kTileK);
  const TaskGrid grid(threads, M, N, kMR, kNR, nc_max(kKC, int64_t(sizeof(bf16)), kNR));  // B: half the L2

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    configure_tiles();
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < grid.tasks; ++task) {
      const auto [jc, nc, ip0, ip1] = grid.range(task, N);
      if (ip0 == ip1) continue;
      const int64_t group = column_major(a) ? kPanelGroup : 1;
      bf16* ap = thread_buffer<bf16>(Slot::kPackedA, size_t(group * kMR * KC));
      bf16* bp = thread_buffer<bf16>(Slot::kPackedB, size_t(KC * grid.NC));
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc), kcp = round_up(kc, kTileK);
        const bool add = accumulate || pc > 0;
        pack_b_vnni(b, pc, kc, kcp, jc, nc, bp);
        for (int64_t ip = ip0; ip < ip1; ++ip) {
          const int64_t i = ip * kMR, q = (ip - ip0) % group;
          if (q == 0) pack_a<bf16, kMR>(a, i, std::min((std::min(ip + group, ip1) - ip) * kMR, M - i), pc, kc, kcp, ap);
          const int mr = int(std::min<int64_t>(kMR, M - i));
          for (int64_t jp = 0; jp * kNR < nc; ++jp) {
            const int nr = int(std::min<int64_t>(kNR, nc - jp * kNR));
            tile_block(kcp, ap + q * kMR * kcp, bp + jp * kcp * kNR, c + i * ldc + jc + jp * kNR, ldc, mr, nr, add);
          }
        }
      }
    }
    _tile_release();
  }
}

#endif  // VB_GEMM_AMX

}  // namespace

bool gemm_bf16_amx() {
#if VB_GEMM_AMX
  return g_allow_amx.load(std::memory_order_relaxed) && amx_granted();
#else
  return false;
#endif
}

void gemm_bf16_allow_amx(bool allow) { g_allow_amx = allow; }

void gemm_bf16(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
               int64_t ldc, bool accumulate, bool parallel) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || !gemm_bf16_amx()) {
    gemm<float>(M, N, K, widened(a), widened(b), c, ldc, accumulate, parallel);  // counts its FLOPs itself
    return;
  }
#if VB_GEMM_AMX
  count_flops(M, N, K);
  gemm_amx(M, N, K, a, b, c, ldc, accumulate, parallel);
#endif
}

}  // namespace vb::cpu
