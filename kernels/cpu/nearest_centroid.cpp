// The nearest centroid of each row: k-means' assignment step (train/visual_vocab.h).
//
//   x (N, D), c (K, D):   dist(i, k) = Σ_d (x[i, d] − c[k, d])²
//                         distance[i] = min_k dist(i, k),   index[i] = the smallest k attaining it
//
// Exactly as kernels/backend.h specifies: each dist(i, k) is acc ← fma(x − c, x − c, acc) over d = 0 …
// D − 1 from acc = 0, in float32 (float64 for float64 x), and k is scanned upwards with a strict <. The
// CUDA kernel (kernels/cuda/nearest_centroid.cu) does the same operations in the same order, so both give
// the same bits and a feature gets the same visual word on every device.
//
// To use the SIMD lanes without reordering any sum, the loop is vectorised across centroids, not dims:
// the centroids are transposed once to (D, K), and for each d the running sums of a row against a chunk
// of kChunk centroids advance together (one vector fma per 8 or 16 of them). Rows are taken in blocks of
// kRowBlock so that a chunk of the transposed centroids (D·kChunk values) stays in cache across them.
// Cost: 3·N·K·D FLOPs (subtract, multiply, add); reads x once per chunk of centroids and the centroids
// once per block of rows (from cache), writes 16 bytes (12 for float32) per row.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

constexpr int64_t kChunk = 64;     // centroids whose running sums a row keeps at once
constexpr int64_t kRowBlock = 64;  // rows that share one pass over a chunk of centroids
// (row, centroid, dim) triples below which a call stays on one thread (≈ 0.3 ms of work): the deep levels
// of the hierarchy make thousands of small calls, and on a loaded machine an OpenMP region costs more
// than such a call (measured: 10x slower clustering with two threads at load average 7).
constexpr int64_t kParallelWork = int64_t(1) << 20;

// a beats the best so far b: smaller, or a number where b is NaN (NaN never wins against a number).
template <typename A>
bool better(A a, A b) {
  return a < b || (std::isnan(b) && !std::isnan(a));
}

// A is the arithmetic type: float (float32 and the half types, loaded into float32) or double.
template <typename A>
void nearest_rows(const A* x, const A* ct, int64_t n, int64_t k, int64_t d, int64_t* index, A* distance) {
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) if (n * k * d >= kParallelWork)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * kRowBlock, r1 = std::min(n, r0 + kRowBlock);
    for (int64_t i = r0; i < r1; ++i) {  // "no centroid yet": NaN loses to any number
      distance[i] = std::numeric_limits<A>::quiet_NaN();
      index[i] = 0;
    }
    A acc[kChunk];
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, k - k0);
      for (int64_t i = r0; i < r1; ++i) {
        std::fill(acc, acc + kc, A(0));
        const A* xi = x + i * d;  // (D)
        for (int64_t j = 0; j < d; ++j) {
          const A xv = xi[j];
          const A* cj = ct + j * k + k0;  // centroids k0 … k0 + kc − 1 at dim j
          for (int64_t c = 0; c < kc; ++c) {
            const A diff = xv - cj[c];
            acc[c] = std::fma(diff, diff, acc[c]);
          }
        }
        A best = distance[i];
        int64_t arg = index[i];
        for (int64_t c = 0; c < kc; ++c) {
          if (better(acc[c], best)) {
            best = acc[c];
            arg = k0 + c;
          }
        }
        distance[i] = best;
        index[i] = arg;
      }
    }
  }
}

// c (K, D) → (D, K), in the arithmetic type.
template <typename A>
std::vector<A> transposed(const Tensor& c, int64_t k, int64_t d) {
  std::vector<A> out(size_t(k * d));
  const A* p = c.data<A>();
  for (int64_t r = 0; r < k; ++r)
    for (int64_t j = 0; j < d; ++j) out[size_t(j * k + r)] = p[r * d + j];
  return out;
}

}  // namespace

void CpuBackend::nearest_centroid(const Tensor& x, const Tensor& centroids, Tensor& index, Tensor& distance) {
  VB_CHECK(x.dim() == 2 && centroids.dim() == 2 && x.size(1) == centroids.size(1),
           "cpu nearest_centroid: x {} and centroids {} (expected (N, D) and (K, D))", shape_str(x.shape()),
           shape_str(centroids.shape()));
  VB_CHECK(is_floating(x.dtype()) && x.dtype() == centroids.dtype(),
           "cpu nearest_centroid: x {} and centroids {} (expected one floating dtype)", x.dtype(), centroids.dtype());
  VB_CHECK(centroids.size(0) >= 1, "cpu nearest_centroid: centroids {} (expected at least one centroid)",
           shape_str(centroids.shape()));
  const int64_t n = x.size(0), k = centroids.size(0), d = x.size(1);
  const DType want = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  VB_CHECK(index.shape() == Shape{n} && index.dtype() == DType::Int64 && index.is_contiguous(),
           "cpu nearest_centroid: index {} {} (expected contiguous int64 ({}))", shape_str(index.shape()),
           index.dtype(), n);
  VB_CHECK(distance.shape() == Shape{n} && distance.dtype() == want && distance.is_contiguous(),
           "cpu nearest_centroid: distance {} {} (expected contiguous {} ({}))", shape_str(distance.shape()),
           distance.dtype(), want, n);
  if (n == 0) return;
  if (want == DType::Float64) {
    const Tensor xc = cpu::contiguous(x), cc = cpu::contiguous(centroids);
    const std::vector<double> ct = transposed<double>(cc, k, d);
    nearest_rows(xc.data<double>(), ct.data(), n, k, d, index.data<int64_t>(), distance.data<double>());
  } else {
    const Tensor xc = cpu::float32_contiguous(x), cc = cpu::float32_contiguous(centroids);
    const std::vector<float> ct = transposed<float>(cc, k, d);
    nearest_rows(xc.data<float>(), ct.data(), n, k, d, index.data<int64_t>(), distance.data<float>());
  }
}

}  // namespace vb
