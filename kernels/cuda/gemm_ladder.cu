// The GEMM ladder: C (M, N) = A (M, K) · B (K, N), row-major float32 (bf16 A and B from rung 5), in rungs
// that each add one idea (kernels/cuda/gemm_ladder.h lists them; docs/KERNELS.md reads them with the
// emulator's counts).
//
// Every rung does the same arithmetic, 2·M·N·K FLOPs (an fma counted as 2), accumulating each C[i, j]
// over k = 0 … K−1 in order with fmaf in float32. What changes is where the operands come from:
//
//   rung  global loads (4-byte words)          shared traffic                     ideas
//   1     2·M·N·K: every thread its own        none                               —
//   2     2·M·N·K/16: once per 16×16 tile      2 reads per FMA                    tiles in shared memory
//   3     2·M·N·K/64: once per 64×64 tile      8 reads per 16 FMAs (1/2 per FMA)  register tiles, 4×4 per thread
//   4     as 3, in 16-byte words               2 float4 reads per 16 FMAs         float4, A transposed, padding
//   5     bf16, once per 64×64 tile            ldmatrix: 16-byte rows for mma     tensor cores (mma.sync, ldmatrix)
//   6     as 5, coalesced, by cp.async          as 5; B by ldmatrix.trans          cp.async double buffer
//   7     as 6                                  as 6, conflict-free                A's tile swizzled
//   8     bf16, once per 128×128 tile          1 ldmatrix per 4 mma (was 2)       64×64 warp tiles, 3 stages
//
// Rung 5 takes bf16 A and B and accumulates in float32 on the tensor cores: a warp's mma.sync.m16n8k16
// does 16·8·16 multiply-adds (4,096 FLOPs) in one instruction, against 32 FMAs (64 FLOPs) of a warp of
// CUDA-core threads.
//
// A GPU's caches catch much of rung 1's repeated loads; the counts above are what the kernel asks for,
// which is what the emulator's insight counts (kernels/emu/insight.h). Bytes that must move at least:
// 4·(M·K + K·N + M·N).
#include "kernels/cuda/gemm_ladder.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"
#include "kernels/ptx.h"

// Unrolled by nvcc (register arrays stay in registers); the emulator's build gains nothing from unrolling
// loops whose bodies meet at warp-wide operations.
#if defined(__CUDACC__)
#define VB_GEMM_UNROLL _Pragma("unroll")
#else
#define VB_GEMM_UNROLL
#endif

namespace vb::VB_KERNEL_NS {
namespace {

// ---------------------------------------------------------------- rung 1: naive
// Thread (x, y) of a 16×16 block computes C[row, col], row = blockIdx.y·16 + y, col = blockIdx.x·16 + x.
// Lanes of a warp share a row and take consecutive columns: B's loads are coalesced (32 floats, 4 sectors),
// A's are one word for the whole warp (a broadcast). Each thread reads 2K words; nothing is reused on chip.
__global__ void gemm_naive(const float* a, const float* b, float* c, int m, int n, int k) {
  const int col = int(blockIdx.x * blockDim.x + threadIdx.x);
  const int row = int(blockIdx.y * blockDim.y + threadIdx.y);
  if (row >= m || col >= n) return;
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) acc = fmaf(a[int64_t(row) * k + i], b[int64_t(i) * n + col], acc);
  c[int64_t(row) * n + col] = acc;
}

// ---------------------------------------------------------------- rung 2: shared-memory tiles
// The block's 16×16 tile of C needs a 16-row strip of A and a 16-column strip of B. They go through shared
// memory 16×16 tiles at a time: each thread loads one element of each tile (coalesced), the block waits,
// and each thread then runs 16 FMAs reading the tiles from shared memory. Global traffic falls 16×.
constexpr int kTile = 16;

__global__ void gemm_shared(const float* a, const float* b, float* c, int m, int n, int k) {
  __shared__ float as[kTile][kTile];
  __shared__ float bs[kTile][kTile];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int row = int(blockIdx.y) * kTile + ty, col = int(blockIdx.x) * kTile + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    as[ty][tx] = row < m && k0 + tx < k ? a[int64_t(row) * k + k0 + tx] : 0.0f;
    bs[ty][tx] = k0 + ty < k && col < n ? b[int64_t(k0 + ty) * n + col] : 0.0f;
    __syncthreads();
    for (int i = 0; i < kTile; ++i) acc = fmaf(as[ty][i], bs[i][tx], acc);
    __syncthreads();  // before the next tiles overwrite these
  }
  if (row < m && col < n) c[int64_t(row) * n + col] = acc;
}

// ---------------------------------------------------------------- rung 3: register tiles
// A block of 16×16 threads computes a 64×64 tile of C; thread (x, y) owns the 4×4 sub-tile at rows
// 4y … 4y+3 and columns 4x … 4x+3, in 16 registers. Per step of k the block stages a 64×8 tile of A and
// an 8×64 tile of B (2 elements of each per thread, coalesced), then for each of the 8 k's a thread reads
// 4 values of A and 4 of B from shared memory into registers and does 16 FMAs: an outer product.
// Both scalar reads conflict 2-way (the emulator's insight shows it: docs/KERNELS.md): a warp is two rows of
// 16 threads, and their reads of A (as[4y + i][kk]) are 4 rows of 8 floats = 32 words apart, one bank;
// the reads of B (bs[kk][4x + j]) are 4 words apart across the 16 lanes of a row, two lanes per bank.
// Rung 4 removes both.
constexpr int kBlockM = 64, kBlockN = 64, kBlockK = 8, kThreadM = 4, kThreadN = 4;
constexpr int kThreads = (kBlockM / kThreadM) * (kBlockN / kThreadN);  // 256

__global__ void gemm_register(const float* a, const float* b, float* c, int m, int n, int k) {
  __shared__ float as[kBlockM][kBlockK];
  __shared__ float bs[kBlockK][kBlockN];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y), tid = ty * 16 + tx;
  const int m0 = int(blockIdx.y) * kBlockM, n0 = int(blockIdx.x) * kBlockN;
  float acc[kThreadM][kThreadN] = {};
  for (int k0 = 0; k0 < k; k0 += kBlockK) {
    for (int l = tid; l < kBlockM * kBlockK; l += kThreads) {
      const int r = l / kBlockK, q = l % kBlockK;
      as[r][q] = m0 + r < m && k0 + q < k ? a[int64_t(m0 + r) * k + k0 + q] : 0.0f;
    }
    for (int l = tid; l < kBlockK * kBlockN; l += kThreads) {
      const int r = l / kBlockN, q = l % kBlockN;
      bs[r][q] = k0 + r < k && n0 + q < n ? b[int64_t(k0 + r) * n + n0 + q] : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < kBlockK; ++kk) {
      float ra[kThreadM], rb[kThreadN];
      for (int i = 0; i < kThreadM; ++i) ra[i] = as[ty * kThreadM + i][kk];
      for (int j = 0; j < kThreadN; ++j) rb[j] = bs[kk][tx * kThreadN + j];
      for (int i = 0; i < kThreadM; ++i)
        for (int j = 0; j < kThreadN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < kThreadM; ++i)
    for (int j = 0; j < kThreadN; ++j) {
      const int row = m0 + ty * kThreadM + i, col = n0 + tx * kThreadN + j;
      if (row < m && col < n) c[int64_t(row) * n + col] = acc[i][j];
    }
}

// ---------------------------------------------------------------- rung 4: vectorised, A transposed
// Rung 3 with 16-byte words. Threads 0 … 127 each load one float4 of A's 64×8 tile (2 per row) and store
// its 4 values down a column of the transposed tile as[k][m]; threads 128 … 255 each load one float4 of
// B's 8×64 tile and store it as one. A thread's 4 values of A for one k are then contiguous (as[kk][4y …]),
// so both operands come in as one float4 read each: 2 shared requests per 16 FMAs, each conflict-free
// (a quarter-warp reads 128 consecutive bytes, or one word for all). The transposing stores would put the
// two threads of a row (k = 0 … 3 and 4 … 7) in one bank; a row pitch of 68 floats (272 bytes, still
// 16-byte aligned) moves the second set 16 banks over.
constexpr int kPitchA = kBlockM + 4;

__global__ void gemm_vectorised(const float* a, const float* b, float* c, int m, int n, int k) {
  __shared__ __align__(16) float as[kBlockK][kPitchA];
  __shared__ __align__(16) float bs[kBlockK][kBlockN];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y), tid = ty * 16 + tx;
  const int m0 = int(blockIdx.y) * kBlockM, n0 = int(blockIdx.x) * kBlockN;
  float acc[kThreadM][kThreadN] = {};
  for (int k0 = 0; k0 < k; k0 += kBlockK) {
    if (tid < 128) {
      const int r = tid / 2, q = 4 * (tid % 2);  // K % 4 == 0: a float4 is wholly in range or out
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (m0 + r < m && k0 + q < k) v = *reinterpret_cast<const float4*>(&a[int64_t(m0 + r) * k + k0 + q]);
      as[q + 0][r] = v.x;
      as[q + 1][r] = v.y;
      as[q + 2][r] = v.z;
      as[q + 3][r] = v.w;
    } else {
      const int l = tid - 128, r = l / 16, q = 4 * (l % 16);  // N % 4 == 0, likewise
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (k0 + r < k && n0 + q < n) v = *reinterpret_cast<const float4*>(&b[int64_t(k0 + r) * n + n0 + q]);
      *reinterpret_cast<float4*>(&bs[r][q]) = v;
    }
    __syncthreads();
    for (int kk = 0; kk < kBlockK; ++kk) {
      const float4 va = *reinterpret_cast<const float4*>(&as[kk][ty * kThreadM]);
      const float4 vb = *reinterpret_cast<const float4*>(&bs[kk][tx * kThreadN]);
      const float ra[kThreadM] = {va.x, va.y, va.z, va.w}, rb[kThreadN] = {vb.x, vb.y, vb.z, vb.w};
      for (int i = 0; i < kThreadM; ++i)
        for (int j = 0; j < kThreadN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < kThreadM; ++i) {
    const int row = m0 + ty * kThreadM + i, col = n0 + tx * kThreadN;
    if (row >= m) continue;
    if (col + 3 < n) {
      *reinterpret_cast<float4*>(&c[int64_t(row) * n + col]) = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    } else {
      for (int j = 0; j < kThreadN; ++j)
        if (col + j < n) c[int64_t(row) * n + col + j] = acc[i][j];
    }
  }
}

// ---------------------------------------------------------------- rung 5: tensor cores
// bf16 inputs, float32 accumulation, on mma.sync.m16n8k16 (kernels/ptx.h has its fragment layouts). A block
// of 128 threads = 4 warps computes a 64×64 tile of C; warp w owns the 32×32 quarter at rows 32(w % 2),
// columns 32(w / 2): 2 × 4 mma tiles of 16×8, 32 float32 accumulators per lane. Per step of 32 k the block
// stages A's 64×32 tile (rows m, k contiguous) and B's 32×64 tile transposed (rows n, k contiguous: the
// mma's "col" operand) in 10 KiB of dynamic shared memory, each row padded from 32 to 40 elements so that
// the 8 rows an ldmatrix reads start in 8 different groups of 4 banks. Thread t stages row t % 64 of both tiles, k run 16·(t / 64) … +15: A's
// run as two 16-byte loads, B's as 16 loads down a column (lanes on consecutive n: 64 bytes per request).
// Then for each 16 of k, every warp reads its A fragments with 2 ldmatrix.x4 and its B fragments with 2
// more, and issues 16 mma. Requires K % 8 == 0 (A's 16-byte loads); M and N are free.
constexpr int kMmaTile = 64, kMmaStep = 32, kMmaRun = 16, kMmaLd = kMmaStep + 8, kMmaThreads = 128;

// One 16-byte word (8 bf16) moved whole, from or to an address 16-byte aligned.
__device__ __forceinline__ uint4 load_word(const void* src) { return *static_cast<const uint4*>(src); }
__device__ __forceinline__ void store_word(void* dst, uint4 v) { *static_cast<uint4*>(dst) = v; }

template <class T>  // __nv_bfloat16 or __half
__global__ void gemm_mma(const T* a, const T* b, float* c, int m, int n, int k) {
  VB_DYNAMIC_SHARED(T, as);          // (64 rows m, 40): A's tile, k contiguous
  T* bs = as + kMmaTile * kMmaLd;  // (64 rows n, 40): B's tile transposed, k contiguous
  const int t = int(threadIdx.x), warp = t / 32, lane = t % 32;
  const int wm = warp % 2 * 32, wn = warp / 2 * 32;
  const int m0 = int(blockIdx.y) * kMmaTile, n0 = int(blockIdx.x) * kMmaTile;
  const int row = t % kMmaTile, run = t / kMmaTile * kMmaRun;
  float acc[2][4][4];
  VB_GEMM_UNROLL
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  const T zero = store<T>(0.0f);
  for (int k0 = 0; k0 < k; k0 += kMmaStep) {
    // A: row m0 + row, k0 + run … + 15, as two 8-element words (each wholly inside K or outside: K % 8 == 0).
    for (int h = 0; h < 2; ++h) {
      const int kk = k0 + run + 8 * h;
      uint4 word = make_uint4(0, 0, 0, 0);
      if (m0 + row < m && kk < k) word = load_word(&a[int64_t(m0 + row) * k + kk]);
      store_word(&as[row * kMmaLd + run + 8 * h], word);
    }
    // B transposed: column n0 + row, k0 + run … + 15, one element per k.
    for (int q = 0; q < kMmaRun; ++q) {
      const int kk = k0 + run + q;
      bs[row * kMmaLd + run + q] = n0 + row < n && kk < k ? b[int64_t(kk) * n + n0 + row] : zero;
    }
    __syncthreads();
    VB_GEMM_UNROLL
    for (int ks = 0; ks < kMmaStep / 16; ++ks) {
      std::uint32_t af[2][4];
      VB_GEMM_UNROLL
      for (int i = 0; i < 2; ++i)  // rows wm + 16i …: lanes 0–15 give rows at k 16ks, lanes 16–31 at 16ks + 8
        ptx::ldmatrix_x4(af[i], &as[(wm + 16 * i + lane % 16) * kMmaLd + ks * 16 + lane / 16 * 8]);
      VB_GEMM_UNROLL
      for (int j = 0; j < 4; j += 2) {  // matrix q = lane / 8: columns wn + 8(j + q/2) …, k + 8(q % 2)
        std::uint32_t bf[4];
        ptx::ldmatrix_x4(bf, &bs[(wn + 8 * j + lane / 16 * 8 + lane % 8) * kMmaLd + ks * 16 + lane / 8 % 2 * 8]);
        VB_GEMM_UNROLL
        for (int i = 0; i < 2; ++i) {
          ptx::mma_m16n8k16<T>(acc[i][j], af[i], bf[0], bf[1]);
          ptx::mma_m16n8k16<T>(acc[i][j + 1], af[i], bf[2], bf[3]);
        }
      }
    }
    __syncthreads();  // the next step overwrites the tiles
  }
  // Lane l holds, in each 16×8 tile, rows l/4 and l/4 + 8, columns 2(l % 4) and 2(l % 4) + 1
  // (ptx::MmaLayout).
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) {
        const int gm = m0 + wm + 16 * i + ptx::MmaLayout::c_row(lane, e);
        const int gn = n0 + wn + 8 * j + ptx::MmaLayout::c_col(lane, e);
        if (gm < m && gn < n) c[int64_t(gm) * n + gn] = acc[i][j][e];
      }
}

// ---------------------------------------------------------------- rung 6: cp.async, double-buffered
// Rung 5's warps and mma, with the staging done right. Both tiles arrive by cp.async in 16-byte words
// (8 bf16), from global memory to shared memory without passing through registers, as coalesced runs:
// a warp copies 8 rows × 64 bytes of A or 4 rows × 128 bytes of B per request (16 sectors, every byte
// used). B stays in its own layout (rows k, n contiguous, padded from 64 to 72 elements) and is read by
// ldmatrix.trans, which hands each lane the pairs along k the mma wants: no transposing stores. And the
// tiles are double-buffered: while the warps multiply step s, the copies of step s + 1 are in flight
// (cp.async.wait_group 1 waits for all but the newest group). Requires K and N multiples of 8 (16-byte
// words of A and B); M is free.
constexpr int kPipeLdB = kMmaTile + 8;  // B's row pitch: 72 elements = 144 bytes, rows 4 banks apart

// ---------------------------------------------------------------- rung 7: A's tile swizzled, not padded
// Rung 6's A rows are 64 bytes (four 16-byte chunks) padded to 80: two rows share a 128-byte bank cycle,
// and at that pitch a quarter-warp's copies of rows r and r + 1 overlap in four banks (2-way conflicts).
// Rung 7 stores A's rows unpadded, 64 bytes apart, and permutes each row's chunks instead: chunk c of row r
// goes to slot c ^ ((r / 2) % 4). Bank groups (16-byte units of the 128-byte cycle) are then
//   4·(r % 2) + (c ^ (r / 2 % 4))
// — for the 8 rows of one ldmatrix 8×8 matrix (rows r … r + 7 at one c) 8 different groups, and for a
// quarter-warp's copies (rows r and r + 1, chunks 0 … 3) 8 different groups: conflict-free both ways, in
// 8 KiB of A instead of 10. The XOR is undone by computing the same slot on the read side.
template <bool kSwizzleA>
__device__ __forceinline__ int a_offset(int row, int col) {  // element (row, col) of one buffer of A's tile
  if constexpr (kSwizzleA) return row * kMmaStep + ((col / 8) ^ (row / 2 % 4)) * 8 + col % 8;
  else return row * kMmaLd + col;
}
template <bool kSwizzleA>
constexpr int kATileElements = kMmaTile * (kSwizzleA ? kMmaStep : kMmaLd);  // one buffer of A's tile

template <bool kSwizzleA, class T>
__global__ void gemm_mma_pipelined(const T* a, const T* b, float* c, int m, int n, int k) {
  VB_DYNAMIC_SHARED(T, shared);
  T* as = shared;                                 // [2][64 rows m][40 or 32]: A, k contiguous
  T* bs = shared + 2 * kATileElements<kSwizzleA>;  // [2][32 rows k][72]: B's tiles, n contiguous
  const int t = int(threadIdx.x), warp = t / 32, lane = t % 32;
  const int wm = warp % 2 * 32, wn = warp / 2 * 32;
  const int m0 = int(blockIdx.y) * kMmaTile, n0 = int(blockIdx.x) * kMmaTile;
  float acc[2][4][4];
  VB_GEMM_UNROLL
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  // The copies of step `step` into buffer `buf`: 256 words of A (64 rows × 4) and 256 of B (32 rows × 8),
  // two of each per thread; a word outside the matrices is zero-filled (source size 0).
  auto issue = [&](int step, int buf) {
    const int k0 = step * kMmaStep;
    for (int w = t; w < kMmaTile * 4; w += kMmaThreads) {
      const int r = w / 4, q = w % 4 * 8;
      const bool in = m0 + r < m && k0 + q < k;
      ptx::cp_async<16>(&as[buf * kATileElements<kSwizzleA> + a_offset<kSwizzleA>(r, q)],
                        in ? &a[int64_t(m0 + r) * k + k0 + q] : a, in ? 16 : 0);
    }
    for (int w = t; w < kMmaStep * 8; w += kMmaThreads) {
      const int r = w / 8, q = w % 8 * 8;
      const bool in = k0 + r < k && n0 + q < n;
      ptx::cp_async<16>(&bs[(buf * kMmaStep + r) * kPipeLdB + q], in ? &b[int64_t(k0 + r) * n + n0 + q] : b, in ? 16 : 0);
    }
    ptx::cp_async_commit();
  };
  const int steps = (k + kMmaStep - 1) / kMmaStep;
  if (steps > 0) issue(0, 0);
  for (int s = 0; s < steps; ++s) {
    const int buf = s % 2;
    if (s + 1 < steps) {
      issue(s + 1, 1 - buf);
      ptx::cp_async_wait<1>();  // step s's group is complete; step s + 1's may still be in flight
    } else {
      ptx::cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies of step s are visible
    const T* at = as + buf * kATileElements<kSwizzleA>;
    const T* bt = bs + buf * kMmaStep * kPipeLdB;
    VB_GEMM_UNROLL
    for (int ks = 0; ks < kMmaStep / 16; ++ks) {
      std::uint32_t af[2][4];
      VB_GEMM_UNROLL
      for (int i = 0; i < 2; ++i)
        ptx::ldmatrix_x4(af[i], &at[a_offset<kSwizzleA>(wm + 16 * i + lane % 16, ks * 16 + lane / 16 * 8)]);
      VB_GEMM_UNROLL
      for (int j = 0; j < 4; j += 2) {  // matrix q = lane / 8: k + 8(q % 2), columns wn + 8(j + q/2) …
        std::uint32_t bf[4];
        const int q = lane / 8;
        ptx::ldmatrix_x4_trans(bf, &bt[(ks * 16 + q % 2 * 8 + lane % 8) * kPipeLdB + wn + 8 * (j + q / 2)]);
        VB_GEMM_UNROLL
        for (int i = 0; i < 2; ++i) {
          ptx::mma_m16n8k16<T>(acc[i][j], af[i], bf[0], bf[1]);
          ptx::mma_m16n8k16<T>(acc[i][j + 1], af[i], bf[2], bf[3]);
        }
      }
    }
    __syncthreads();  // the next issue overwrites this buffer
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) {
        const int gm = m0 + wm + 16 * i + ptx::MmaLayout::c_row(lane, e);
        const int gn = n0 + wn + 8 * j + ptx::MmaLayout::c_col(lane, e);
        if (gm < m && gn < n) c[int64_t(gm) * n + gn] = acc[i][j][e];
      }
}

// ---------------------------------------------------------------- rung 8: 64×64 warp tiles, three stages
// Rungs 5–7 give each of their 4 warps a 32×32 block of C: per 16 k a warp loads 2 fragments of A and 2
// pairs of B (4 ldmatrix.x4) for 8 mma, an ldmatrix for every 2 mma, and each element copied from global
// memory serves 64 rows or columns of C. Rung 8 gives each warp 64×64, in a 128×128 block tile (still 4
// warps): 4 fragments of A and 4 pairs of B (8 ldmatrix) for 32 mma, one for every 4, and each copied
// element serves 128 rows or columns: half the shared reads and half the global bytes per FLOP. The price
// is registers: 128 float32 accumulators a thread. And the pipeline is three stages deep: while the warps
// multiply step s, the copies of steps s + 1 and s + 2 are in flight, so a longer memory latency hides
// behind two steps of mma instead of one. One barrier a step: after it, every warp has finished step
// s − 1, whose stage the copies of step s + 2 then reuse.
//
// Both tiles are unpadded and swizzled, 3 × (8 + 8) KiB = 48 KiB (the default limit of dynamic shared
// memory). A's rows (32 k = 64 bytes) as rung 7's. B's rows (128 n = 256 bytes, 16 chunks of 16 bytes)
// put chunk c of row r in slot c ^ (r % 8): a row is two whole 128-byte bank cycles, so a slot's bank
// group is slot % 8, and both the 8 rows (k … k + 7) an ldmatrix.trans matrix reads at one chunk and the 8
// chunks a quarter-warp copies of one row land in 8 different groups. C is written in pairs of adjacent
// columns (a fragment's elements e, e + 1) as 8-byte words. Requires K and N multiples of 8, as rung 6.
constexpr int kBigTile = 128, kBigStages = 3;
constexpr int kBigATile = kBigTile * kMmaStep, kBigBTile = kMmaStep * kBigTile;  // elements of a stage
__device__ __forceinline__ int b_offset_big(int row, int col) {  // element (k row, n col) of a stage of B
  return row * kBigTile + ((col / 8) ^ (row % 8)) * 8 + col % 8;
}

template <class T>
__global__ void __launch_bounds__(kMmaThreads) gemm_mma_big(const T* a, const T* b, float* c, int m, int n, int k) {
  VB_DYNAMIC_SHARED(T, shared);
  T* as = shared;                           // [3][128 rows m][32]: A, k contiguous, swizzled
  T* bs = shared + kBigStages * kBigATile;  // [3][32 rows k][128]: B, n contiguous, swizzled
  const int t = int(threadIdx.x), warp = t / 32, lane = t % 32;
  const int wm = warp % 2 * 64, wn = warp / 2 * 64;
  const int m0 = int(blockIdx.y) * kBigTile, n0 = int(blockIdx.x) * kBigTile;
  float acc[4][8][4];
  VB_GEMM_UNROLL
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j)
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
  // The copies of step `step` into stage `stage`: 512 words of A (128 rows × 4) and 512 of B (32 rows ×
  // 16), four of each per thread; a word outside the matrices is zero-filled (source size 0). Every call
  // commits one group, empty past the last step, so that wait_group counts steps.
  const int steps = (k + kMmaStep - 1) / kMmaStep;
  auto issue = [&](int step, int stage) {
    if (step < steps) {
      const int k0 = step * kMmaStep;
      for (int w = t; w < kBigTile * 4; w += kMmaThreads) {
        const int r = w / 4, q = w % 4 * 8;
        const bool in = m0 + r < m && k0 + q < k;
        ptx::cp_async<16>(&as[stage * kBigATile + a_offset<true>(r, q)], in ? &a[int64_t(m0 + r) * k + k0 + q] : a,
                          in ? 16 : 0);
      }
      for (int w = t; w < kMmaStep * 16; w += kMmaThreads) {
        const int r = w / 16, q = w % 16 * 8;
        const bool in = k0 + r < k && n0 + q < n;
        ptx::cp_async<16>(&bs[stage * kBigBTile + b_offset_big(r, q)], in ? &b[int64_t(k0 + r) * n + n0 + q] : b,
                          in ? 16 : 0);
      }
    }
    ptx::cp_async_commit();
  };
  for (int s = 0; s < kBigStages - 1; ++s) issue(s, s);
  for (int s = 0; s < steps; ++s) {
    ptx::cp_async_wait<kBigStages - 2>();  // step s's group is complete; step s + 1's may still be in flight
    __syncthreads();                       // step s visible to all; every warp done with step s − 1
    issue(s + kBigStages - 1, (s + kBigStages - 1) % kBigStages);
    const T* at = as + s % kBigStages * kBigATile;
    const T* bt = bs + s % kBigStages * kBigBTile;
    VB_GEMM_UNROLL
    for (int ks = 0; ks < kMmaStep / 16; ++ks) {
      std::uint32_t af[4][4];
      VB_GEMM_UNROLL
      for (int i = 0; i < 4; ++i)
        ptx::ldmatrix_x4(af[i], &at[a_offset<true>(wm + 16 * i + lane % 16, ks * 16 + lane / 16 * 8)]);
      VB_GEMM_UNROLL
      for (int j = 0; j < 8; j += 2) {  // matrix q = lane / 8: k + 8(q % 2), columns wn + 8(j + q/2) …
        std::uint32_t bf[4];
        const int q = lane / 8;
        ptx::ldmatrix_x4_trans(bf, &bt[b_offset_big(ks * 16 + q % 2 * 8 + lane % 8, wn + 8 * (j + q / 2))]);
        VB_GEMM_UNROLL
        for (int i = 0; i < 4; ++i) {
          ptx::mma_m16n8k16<T>(acc[i][j], af[i], bf[0], bf[1]);
          ptx::mma_m16n8k16<T>(acc[i][j + 1], af[i], bf[2], bf[3]);
        }
      }
    }
  }
  ptx::cp_async_wait<0>();  // the empty groups of the last steps
  VB_GEMM_UNROLL
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j)
      for (int e = 0; e < 4; e += 2) {
        const int gm = m0 + wm + 16 * i + ptx::MmaLayout::c_row(lane, e);
        const int gn = n0 + wn + 8 * j + ptx::MmaLayout::c_col(lane, e);
        if (gm >= m || gn >= n) continue;
        float* out = &c[int64_t(gm) * n + gn];
        if (gn + 1 < n && reinterpret_cast<std::uintptr_t>(out) % 8 == 0) {
          *reinterpret_cast<float2*>(out) = make_float2(acc[i][j][e], acc[i][j][e + 1]);
        } else {
          out[0] = acc[i][j][e];
          if (gn + 1 < n) out[1] = acc[i][j][e + 1];
        }
      }
}

void check_gemm_call(int rung, int64_t m, int64_t n, int64_t k) {
  if (rung < 1 || rung > ladder::kGemmRungs)
    throw std::invalid_argument("gemm ladder: no rung " + std::to_string(rung) + " (rungs 1 … " +
                                std::to_string(ladder::kGemmRungs) + ")");
  if (m < 0 || n < 0 || k < 0 || m >= (int64_t(1) << 31) || n >= (int64_t(1) << 31) || k >= (int64_t(1) << 31))
    throw std::invalid_argument("gemm ladder: shape M " + std::to_string(m) + ", N " + std::to_string(n) + ", K " +
                                std::to_string(k) + " (each must be in [0, 2^31))");
  if (const std::string need = ladder::gemm_shape_requirement(rung, m, n, k); !need.empty())
    throw std::invalid_argument("gemm ladder: " + need + "; got M " + std::to_string(m) + ", N " +
                                std::to_string(n) + ", K " + std::to_string(k));
}

}  // namespace

void gemm_ladder(int rung, const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k,
                 rt::Stream stream) {
  check_gemm_call(rung, m, n, k);
  if (std::string(ladder::kGemmRungTable[rung - 1].dtype) != "f32")
    throw std::invalid_argument("gemm ladder: rung " + std::to_string(rung) + " takes " +
                                ladder::kGemmRungTable[rung - 1].dtype + " inputs (gemm_ladder_bf16, gemm_ladder_f16)");
  if (m == 0 || n == 0) return;
  const int mi = int(m), ni = int(n), ki = int(k);
  switch (rung) {
    case 1:
      launch(gemm_naive, {dim3(blocks_for(n, 16), blocks_for(m, 16)), dim3(16, 16), 0, stream}, a, b, c, mi, ni, ki);
      break;
    case 2:
      launch(gemm_shared, {dim3(blocks_for(n, kTile), blocks_for(m, kTile)), dim3(kTile, kTile), 0, stream}, a, b, c, mi, ni, ki);
      break;
    case 3:
      launch(gemm_register, {dim3(blocks_for(n, kBlockN), blocks_for(m, kBlockM)), dim3(16, 16), 0, stream}, a, b, c, mi, ni, ki);
      break;
    default:
      launch(gemm_vectorised, {dim3(blocks_for(n, kBlockN), blocks_for(m, kBlockM)), dim3(16, 16), 0, stream}, a, b, c, mi, ni,
             ki);
      break;
  }
}

namespace {

// Rungs 5 … 8 for T = __nv_bfloat16 or __half (`name`: the entry point, for the message of a wrong rung).
template <class T>
void gemm_ladder_16(const char* name, int rung, const T* a, const T* b, float* c, int64_t m, int64_t n, int64_t k,
                    rt::Stream stream) {
  check_gemm_call(rung, m, n, k);
  if (std::string(ladder::kGemmRungTable[rung - 1].dtype) != "bf16")
    throw std::invalid_argument("gemm ladder: rung " + std::to_string(rung) + " takes " +
                                ladder::kGemmRungTable[rung - 1].dtype + " inputs (gemm_ladder), not " + name + "'s");
  if (m == 0 || n == 0) return;
  const dim3 grid(blocks_for(n, kMmaTile), blocks_for(m, kMmaTile));
  if (rung == 5) {
    const std::size_t shared = 2 * kMmaTile * kMmaLd * sizeof(T);  // 10 KiB
    launch(gemm_mma<T>, {grid, dim3(kMmaThreads), shared, stream}, a, b, c, int(m), int(n), int(k));
  } else if (rung == 6) {
    // Two buffers of A (64 × 40) and of B (32 × 72): 19 KiB.
    const std::size_t shared = 2 * (kATileElements<false> + kMmaStep * kPipeLdB) * sizeof(T);
    launch(gemm_mma_pipelined<false, T>, {grid, dim3(kMmaThreads), shared, stream}, a, b, c, int(m), int(n), int(k));
  } else if (rung == 7) {
    // Two buffers of A (64 × 32, swizzled) and of B (32 × 72): 17 KiB.
    const std::size_t shared = 2 * (kATileElements<true> + kMmaStep * kPipeLdB) * sizeof(T);
    launch(gemm_mma_pipelined<true, T>, {grid, dim3(kMmaThreads), shared, stream}, a, b, c, int(m), int(n), int(k));
  } else {
    // Three stages of A (128 × 32) and of B (32 × 128), both swizzled: 48 KiB.
    const std::size_t shared = kBigStages * (kBigATile + kBigBTile) * sizeof(T);
    launch(gemm_mma_big<T>, {dim3(blocks_for(n, kBigTile), blocks_for(m, kBigTile)), dim3(kMmaThreads), shared, stream},
           a, b, c, int(m), int(n), int(k));
  }
}

}  // namespace

void gemm_ladder_bf16(int rung, const __nv_bfloat16* a, const __nv_bfloat16* b, float* c, int64_t m, int64_t n,
                      int64_t k, rt::Stream stream) {
  gemm_ladder_16("gemm_ladder_bf16", rung, a, b, c, m, n, k, stream);
}

void gemm_ladder_f16(int rung, const __half* a, const __half* b, float* c, int64_t m, int64_t n, int64_t k,
                     rt::Stream stream) {
  gemm_ladder_16("gemm_ladder_f16", rung, a, b, c, m, n, k, stream);
}

}  // namespace vb::VB_KERNEL_NS
