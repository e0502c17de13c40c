// The layer-norm ladder: y = (x − μ)·rstd·w + b per row of a contiguous (N, C) float32 input, in three
// rungs (kernels/cuda/layer_norm_ladder.h lists them; docs/KERNELS.md reads them with the emulator's counts).
//
// Every rung computes μ = Σ x / C and σ² = Σ (x − μ)² / C in float32 (two passes: no cancellation, unlike
// Σx² − (Σx)²/C), rstd = 1/√(σ² + eps), and writes y, mean and rstd. What changes is how a row is read:
//
//   rung  kernels  reads of x per element  a warp's load request                     x in
//   1     3        3 (mean, variance, y)   32 rows, one float each: 32 sectors        global memory
//   2     1        1                        one row, 32 consecutive floats: 4 sectors  registers
//   3     1        1                        one row, 32 float4: 16 sectors, 512 bytes  registers
//
// ≈ 8 FLOPs per element; bytes at least 8·N·C (x read once, y written) + 8·C + 8·N.
#include "kernels/cuda/layer_norm_ladder.h"

#include <stdexcept>
#include <string>

#include "kernels/launch.h"

// Unrolls a loop over a register array, so that the array stays in registers.
#if defined(__CUDACC__)
#define VB_LN_UNROLL _Pragma("unroll")
#else
#define VB_LN_UNROLL _Pragma("GCC unroll 32")
#endif

namespace vb::VB_KERNEL_NS {
namespace {

constexpr unsigned kAllLanes = 0xffffffffu;

// The sum over the warp's 32 lanes, every lane getting it: a butterfly of shuffles, the same tree on
// every run.
__device__ __forceinline__ float lane_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kAllLanes, v, offset);
  return v;
}

// ---------------------------------------------------------------- rung 1: three passes
// Thread r of the first two kernels owns row r and walks it: lanes of a warp read 32 different rows at the
// same column, C floats apart, so every request touches 32 sectors for 128 useful bytes. The third kernel
// is elementwise, one thread per element, coalesced; it reads x a third time.
__global__ void ln_mean(const float* x, float* mean, int n, int c) {
  const int row = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (row >= n) return;
  float s = 0.0f;
  for (int j = 0; j < c; ++j) s += x[int64_t(row) * c + j];
  mean[row] = s / float(c);
}

__global__ void ln_rstd(const float* x, const float* mean, float* rstd, int n, int c, float eps) {
  const int row = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (row >= n) return;
  const float mu = mean[row];
  float s = 0.0f;
  for (int j = 0; j < c; ++j) {
    const float d = x[int64_t(row) * c + j] - mu;
    s += d * d;
  }
  rstd[row] = 1.0f / sqrtf(s / float(c) + eps);
}

__global__ void ln_normalise(const float* x, const float* mean, const float* rstd, const float* w, const float* b,
                             float* y, int n, int c) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * c) return;
  const int row = int(i / c), col = int(i % c);
  y[i] = (x[i] - mean[row]) * rstd[row] * w[col] + b[col];
}

// ---------------------------------------------------------------- rung 2: a warp per row
// Lane l of the warp that owns a row reads columns l, l + 32, …: 32 consecutive floats per request. It
// keeps its ≤ 32 values in registers, so the variance and y need no second read of x; the sums go
// through lane_sum. Four warps (rows) per block of 128 threads.
constexpr int kRowsPerBlock = 4;
constexpr int kPerLane = 32;  // C ≤ 32·32 = 1024

__global__ void ln_warp(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int n,
                        int c, float eps) {
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (row >= n) return;  // the whole warp: a row is a warp's
  const float* xr = x + int64_t(row) * c;
  float v[kPerLane];
  float s = 0.0f;
  VB_LN_UNROLL
  for (int i = 0; i < kPerLane; ++i) {
    const int j = lane + 32 * i;
    v[i] = j < c ? xr[j] : 0.0f;
    s += v[i];
  }
  const float mu = lane_sum(s) / float(c);
  float q = 0.0f;
  VB_LN_UNROLL
  for (int i = 0; i < kPerLane; ++i) {
    const float d = lane + 32 * i < c ? v[i] - mu : 0.0f;
    q += d * d;
  }
  const float r = 1.0f / sqrtf(lane_sum(q) / float(c) + eps);
  float* yr = y + int64_t(row) * c;
  VB_LN_UNROLL
  for (int i = 0; i < kPerLane; ++i) {
    const int j = lane + 32 * i;
    if (j < c) yr[j] = (v[i] - mu) * r * w[j] + b[j];
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

// ---------------------------------------------------------------- rung 3: vectorised
// Rung 2 in 16-byte words: lane l reads float4 number l, l + 32, … of its row (C % 4 == 0), and w, b and y
// go the same way. A quarter of the requests, each 512 contiguous bytes.
constexpr int kQuadsPerLane = kPerLane / 4;  // 8 float4: C ≤ 1024

__global__ void ln_warp_vectorised(const float* x, const float* w, const float* b, float* y, float* mean,
                                   float* rstd, int n, int c, float eps) {
  const int row = int(blockIdx.x) * kRowsPerBlock + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (row >= n) return;
  const int quads = c / 4;
  const float4* xr = reinterpret_cast<const float4*>(x + int64_t(row) * c);
  float4 v[kQuadsPerLane];
  float s = 0.0f;
  VB_LN_UNROLL
  for (int i = 0; i < kQuadsPerLane; ++i) {
    const int q = lane + 32 * i;
    v[i] = q < quads ? xr[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
  }
  const float mu = lane_sum(s) / float(c);
  float sq = 0.0f;
  VB_LN_UNROLL
  for (int i = 0; i < kQuadsPerLane; ++i) {
    if (lane + 32 * i >= quads) continue;
    const float a = v[i].x - mu, bb = v[i].y - mu, cc = v[i].z - mu, d = v[i].w - mu;
    sq += (a * a + bb * bb) + (cc * cc + d * d);
  }
  const float r = 1.0f / sqrtf(lane_sum(sq) / float(c) + eps);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* yr = reinterpret_cast<float4*>(y + int64_t(row) * c);
  VB_LN_UNROLL
  for (int i = 0; i < kQuadsPerLane; ++i) {
    const int q = lane + 32 * i;
    if (q >= quads) continue;
    const float4 wq = w4[q], bq = b4[q];
    yr[q] = make_float4((v[i].x - mu) * r * wq.x + bq.x, (v[i].y - mu) * r * wq.y + bq.y,
                        (v[i].z - mu) * r * wq.z + bq.z, (v[i].w - mu) * r * wq.w + bq.w);
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

}  // namespace

void layer_norm_ladder(int rung, const float* x, const float* w, const float* b, float eps, float* y, float* mean,
                       float* rstd, int64_t n, int64_t c, rt::Stream stream) {
  if (rung < 1 || rung > ladder::kLayerNormRungs)
    throw std::invalid_argument("layer_norm ladder: no rung " + std::to_string(rung) + " (rungs 1 … " +
                                std::to_string(ladder::kLayerNormRungs) + ")");
  if (n < 0 || c < 1 || n >= (int64_t(1) << 31) || c >= (int64_t(1) << 31) || n * c >= (int64_t(1) << 40))
    throw std::invalid_argument("layer_norm ladder: shape N " + std::to_string(n) + ", C " + std::to_string(c) +
                                " (N ≥ 0, C ≥ 1)");
  if (const std::string need = ladder::layer_norm_shape_requirement(rung, n, c); !need.empty())
    throw std::invalid_argument("layer_norm ladder: " + need + "; got N " + std::to_string(n) + ", C " +
                                std::to_string(c));
  if (n == 0) return;
  const int ni = int(n), ci = int(c);
  switch (rung) {
    case 1:
      launch(ln_mean, {dim3(blocks_for(n, 128)), dim3(128), 0, stream}, x, mean, ni, ci);
      launch(ln_rstd, {dim3(blocks_for(n, 128)), dim3(128), 0, stream}, x, mean, rstd, ni, ci, eps);
      launch(ln_normalise, {dim3(blocks_for(n * c, 256)), dim3(256), 0, stream}, x, mean, rstd, w, b, y, ni, ci);
      break;
    case 2:
      launch(ln_warp, {dim3(blocks_for(n, kRowsPerBlock)), dim3(32 * kRowsPerBlock), 0, stream}, x, w, b, y, mean,
             rstd, ni, ci, eps);
      break;
    default:
      launch(ln_warp_vectorised, {dim3(blocks_for(n, kRowsPerBlock)), dim3(32 * kRowsPerBlock), 0, stream}, x, w, b,
             y, mean, rstd, ni, ci, eps);
      break;
  }
}

}  // namespace vb::VB_KERNEL_NS
