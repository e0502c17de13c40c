// The nearest centroid of each row: k-means' assignment step (train/visual_vocab.h's hierarchical
// k-means calls it once per Lloyd iteration per cluster, and once per level to give a feature its word).
//
//   x (N, D), c (K, D):   dist(i, k) = Σ_d (x[i, d] − c[k, d])²
//                         distance[i] = min_k dist(i, k),   index[i] = the smallest k attaining it
//
// Each dist(i, k) is acc ← fma(x − c, x − c, acc) over d = 0 … D − 1 in float32, and k is scanned upwards
// with a strict < (a NaN never beats a number): the CPU backend's operations in the CPU backend's order
// (kernels/cpu/nearest_centroid.cpp), so the two give the same bits and a feature gets the same visual
// word on every device. No gradient: the assignment is piecewise constant.
//
// Why direct differences, not ‖x‖² + ‖c‖² − 2·x·c through a GEMM: the expanded form subtracts numbers of
// the size of ‖x‖² to get a distance that may be far smaller — a relative error of about ε·‖x‖²/dist.
// Deep in the hierarchy the sibling centroids lie close together, far from the origin (a ReLU network's
// features are all ≥ 0), which is where the argmin hangs on small differences; every term here is a
// square ≥ 0 and nothing cancels. What it costs: per (row, centroid, dim) triple a subtract and an fma
// on the CUDA cores (3 FLOPs, counting the fma as 2) where a GEMM does one multiply-add on tensor cores.
//   - Small K (hierarchical k-means: K = k = 12 per call): 3K FLOPs per element of x read, 9 FLOP/B
//     for float32 at K = 12 (12 computed: the chunk holds 16), under an H100's ~20 FLOP/B (67 TFLOP/s
//     over 3.35 TB/s): the kernel is bound by reading x once, as a GEMM would be — which would also write
//     and read back the (N, K) score matrix, on a skinny N × 12 product whose tensor-core tiles sit
//     mostly idle. bf16 features halve the bytes and bring it to the ridge.
//   - Large K (a flat vocabulary of thousands of words): x is read once per 16 centroids, 4 triples per
//     byte, and the CUDA cores manage ~15·10¹² triples/s on an H100 at best; a bf16 GEMM computes
//     ~20× as many dot-product terms per second. Use a GEMM there, and accept its cancellation.
//
// Cost: 3·N·K·D FLOPs. Bytes: x is read once per chunk of kCentroids centroids (once for K ≤ 16), the
// centroids once per block of kRows rows (from L2), 12 bytes written per row (int64 index, float32
// distance): N·D·s·⌈K/16⌉ + ⌈N/128⌉·K·D·s + 12·N, s = bytes per element of x.
//
// Launch: ⌈N/128⌉ blocks of kRows = 128 threads; thread t owns row blockIdx.x·128 + t and keeps the
// running sums of kCentroids = 16 centroids in registers. For each chunk of 16 centroids the block
// walks D in slices of kDims = 32: it stages the slice of its 128 rows, transposed, and the slice of
// the 16 centroids in shared memory (dynamic, 18,560 bytes), then each thread advances its 16 sums by
// 32 dims, reading its own column of x (float4, conflict-free) and the centroids as broadcasts. Rows,
// centroids and dims past the ends are staged as zeros, which add exactly nothing (fma(0, 0, acc) =
// acc), and the out-of-range centroids of the last chunk are never compared.
#include "kernels/cuda/nearest_centroid.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

// Unrolls a loop over the register array of running sums, so that it stays in registers.
#if defined(__CUDACC__)
#define VB_NC_UNROLL _Pragma("unroll")
#else
#define VB_NC_UNROLL _Pragma("GCC unroll 16")
#endif

namespace vb::VB_KERNEL_NS {
namespace {

constexpr int kRows = 128;           // rows per block = threads per block
constexpr int kCentroids = 16;       // running sums per thread
constexpr int kDims = 32;            // dims per shared-memory slice
constexpr int kQuads = kDims / 4;    // float4 words per slice of a row
constexpr int kXStride = kRows + 1;  // float4 words per quad of the x slice: the +1 makes the transposing stores
                                     // of a warp (32 dims of one row) land in 32 different banks
constexpr int kSharedBytes = (kQuads * kXStride + kCentroids * kQuads) * 16;

// Component e (0 … 3) of a float4.
__device__ __forceinline__ float& component(float4& v, int e) {
  return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

// acc ← fma(x − c, x − c, acc) for the four dims of a quad, in dim order.
__device__ __forceinline__ float add_squares(float4 x, float4 c, float acc) {
  float diff = x.x - c.x;
  acc = fmaf(diff, diff, acc);
  diff = x.y - c.y;
  acc = fmaf(diff, diff, acc);
  diff = x.z - c.z;
  acc = fmaf(diff, diff, acc);
  diff = x.w - c.w;
  return fmaf(diff, diff, acc);
}

// a beats the best so far b: smaller, or a number where b is NaN.
__device__ __forceinline__ bool better(float a, float b) { return a < b || (b != b && a == a); }

// x (n, d), c (k, d) → index (n), distance (n). Launch: see the file comment.
template <class T>
__global__ void __launch_bounds__(kRows) nearest_centroid_kernel(const T* x, const T* c, int64_t n, int k, int d,
                                                                 int64_t* index, float* distance) {
  VB_DYNAMIC_SHARED(float4, shared);
  float4* xs = shared;                      // (kQuads, kXStride): xs[q·kXStride + r] = x[row r, dims 4q … 4q+3]
  float4* cs = shared + kQuads * kXStride;  // (kCentroids, kQuads): cs[j·kQuads + q] = c[k0 + j, dims 4q … 4q+3]
  const int t = static_cast<int>(threadIdx.x);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  float best = NAN;  // no centroid yet: any number beats it
  int64_t best_k = 0;
  for (int k0 = 0; k0 < k; k0 += kCentroids) {
    float acc[kCentroids];
VB_NC_UNROLL
    for (int j = 0; j < kCentroids; ++j) acc[j] = 0.0f;
    for (int d0 = 0; d0 < d; d0 += kDims) {
      // The x slice, transposed: warp w reads rows w, w + 4, …, lane l dim d0 + l (a coalesced run of a row).
      const int lane_dim = t % kDims;
      for (int r = t / kDims; r < kRows; r += kRows / kDims) {
        const int64_t row = row0 + r;
        const bool inside = row < n && d0 + lane_dim < d;
        component(xs[(lane_dim / 4) * kXStride + r], lane_dim % 4) =
            inside ? load(x[row * d + d0 + lane_dim]) : 0.0f;
      }
      // The centroid slice: one float4 per thread (kCentroids · kQuads = kRows).
      {
        const int j = t / kQuads, q = t % kQuads;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (k0 + j < k)
          for (int e = 0; e < 4; ++e)
            if (d0 + 4 * q + e < d) component(v, e) = load(c[static_cast<int64_t>(k0 + j) * d + d0 + 4 * q + e]);
        cs[j * kQuads + q] = v;
      }
      __syncthreads();
      for (int q = 0; q < kQuads; ++q) {
        const float4 xv = xs[q * kXStride + t];
VB_NC_UNROLL
        for (int j = 0; j < kCentroids; ++j) acc[j] = add_squares(xv, cs[j * kQuads + q], acc[j]);
      }
      __syncthreads();  // the next slice overwrites the tiles
    }
    for (int j = 0; j < kCentroids && k0 + j < k; ++j) {
      if (better(acc[j], best)) {
        best = acc[j];
        best_k = k0 + j;
      }
    }
  }
  const int64_t row = row0 + t;
  if (row < n) {
    index[row] = best_k;
    distance[row] = best;
  }
}

}  // namespace

template <class T>
void nearest_centroid(const T* x, const T* centroids, int64_t n, int64_t k, int64_t d, int64_t* index,
                      float* distance, rt::Stream stream) {
  if (n < 0 || k < 1 || k > INT32_MAX || d < 0 || d > INT32_MAX)
    throw std::invalid_argument("nearest_centroid: expected x (N, D) and centroids (K ≥ 1, D) with K, D < 2^31, got N = " +
                                std::to_string(n) + ", K = " + std::to_string(k) + ", D = " + std::to_string(d));
  if (n == 0) return;
  const auto blocks = static_cast<unsigned>((n + kRows - 1) / kRows);
  launch(nearest_centroid_kernel<T>, {blocks, kRows, kSharedBytes, stream}, x, centroids, n, static_cast<int>(k),
         static_cast<int>(d), index, distance);
}

#define VB_INSTANTIATE(T) \
  template void nearest_centroid<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t*, float*, rt::Stream);
VB_INSTANTIATE(float)
VB_INSTANTIATE(__nv_bfloat16)
VB_INSTANTIATE(__half)
#undef VB_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS

#undef VB_NC_UNROLL
