// 2-d pooling, channels-last: max (with indices), average and adaptive average, with their backwards.
//
// x (N, H, W, C) → y (N, OH, OW, C). Window (oh, ow) covers rows oh·sh − ph … oh·sh − ph + kh − 1
// (likewise columns), clipped to the image.
//   max:      y = max of the window's in-image cells (padding never wins); indices (int64) = ih·W + iw
//             of the first maximum, except that every NaN takes over (NaN propagates), as on the CPU.
//             gx[n, ih, iw, c] = Σ over the windows (oh, ow) covering (ih, iw) whose index is ih·W + iw
//             of gy[n, oh, ow, c].
//   avg:      y = Σ window / d, d = the window clipped to the padded image (count_include_pad) or its
//             in-image cell count; gx[cell] = Σ over covering windows of gy / d.
//   adaptive: output i averages rows floor(i·H/OH) … ceil((i+1)·H/OH) − 1 (likewise columns); the rows
//             i covering input row r are floor(r·OH/H) … ceil((r+1)·OH/H) − 1.
// The backwards gather: one thread per input element sums over the output windows that cover it,
// (oh, ow) ascending — the order in which the CPU scatters — so nothing is written twice, no atomics
// are needed, and the result is deterministic.
// Cost: forward N·OH·OW·C·kh·kw reads (and as many compares or adds), N·OH·OW·C writes; backward
// N·H·W·C writes and about N·H·W·C·⌈kh/sh⌉·⌈kw/sw⌉ reads of gy (and indices). Memory-bound.
// Launch shape: one thread per output element (forward) or input element (backward), c fastest, so
// the 256 threads of a block read and write consecutive channels: coalesced, the reason for
// channels-last here.
#include "kernels/cuda/conv.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Rows [lo, hi) of a window, and the windows covering one input row, along one axis.
struct Range {
  int64_t lo, hi;
};

// The strided, padded windows of max_pool2d and avg_pool2d along one axis.
struct Sliding {
  int64_t in, out;
  int k, stride, pad;
  __device__ Range window(int64_t o) const {
    const int64_t start = o * stride - pad;
    return {max64(start, 0), min64(start + k, in)};
  }
  // The window clipped to the padded image, for count_include_pad.
  __device__ int64_t padded_size(int64_t o) const {
    const int64_t start = o * stride - pad;
    return min64(start + k, in + pad) - start;
  }
  // o with o·stride − pad ≤ r ≤ o·stride − pad + k − 1.
  __device__ Range covering(int64_t r) const {
    const int64_t top = r + pad;  // o·stride ∈ [top − k + 1, top]
    const int64_t lo = top - k + 1 <= 0 ? 0 : (top - k + 1 + stride - 1) / stride;
    return {lo, min64(top / stride + 1, out)};
  }
};

// The windows of adaptive_avg_pool2d along one axis.
struct Adaptive {
  int64_t in, out;
  __device__ Range window(int64_t o) const { return {o * in / out, ((o + 1) * in + out - 1) / out}; }
  __device__ Range covering(int64_t r) const { return {r * out / in, min64(((r + 1) * out + in - 1) / in, out)}; }
};

// The divisor of avg_pool2d's window (oh, ow), and of adaptive_avg_pool2d's.
__device__ __forceinline__ int64_t divisor(const PoolShape& s, const Sliding& rows, const Sliding& cols, int64_t oh,
                                           int64_t ow) {
  if (s.count_include_pad) return rows.padded_size(oh) * cols.padded_size(ow);
  const Range h = rows.window(oh), w = cols.window(ow);
  return (h.hi - h.lo) * (w.hi - w.lo);
}
__device__ __forceinline__ int64_t divisor(const PoolShape&, const Adaptive& rows, const Adaptive& cols, int64_t oh,
                                           int64_t ow) {
  const Range h = rows.window(oh), w = cols.window(ow);
  return (h.hi - h.lo) * (w.hi - w.lo);
}

// Decomposes the flat NHWC index of a (N, rows, cols, C) tensor.
struct Pixel {
  int64_t n, h, w, c;
};
__device__ __forceinline__ Pixel pixel(int64_t i, int64_t rows, int64_t cols, int64_t C) {
  return {i / (C * cols * rows), i / (C * cols) % rows, i / C % cols, i % C};
}

template <class T>
__global__ void max_pool_kernel(const T* x, T* y, int64_t* indices, PoolShape s, Sliding rows, Sliding cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.N * s.OH * s.OW * s.C) return;
  const Pixel o = pixel(i, s.OH, s.OW, s.C);
  const Range wh = rows.window(o.h), ww = cols.window(o.w);
  float best = -INFINITY;
  int64_t at = wh.lo * s.W + ww.lo;
  for (int64_t ih = wh.lo; ih < wh.hi; ++ih)
    for (int64_t iw = ww.lo; iw < ww.hi; ++iw) {
      const float v = load(x[((o.n * s.H + ih) * s.W + iw) * s.C + o.c]);
      if (v > best || v != v) {  // v != v: NaN, which wins and propagates
        best = v;
        at = ih * s.W + iw;
      }
    }
  y[i] = store<T>(best);
  indices[i] = at;
}

template <class T>
__global__ void max_pool_backward_kernel(const T* gy, const int64_t* indices, T* gx, PoolShape s, Sliding rows,
                                         Sliding cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.N * s.H * s.W * s.C) return;
  const Pixel p = pixel(i, s.H, s.W, s.C);
  const Range oh = rows.covering(p.h), ow = cols.covering(p.w);
  const int64_t here = p.h * s.W + p.w;
  float sum = 0.0f;
  for (int64_t a = oh.lo; a < oh.hi; ++a)
    for (int64_t b = ow.lo; b < ow.hi; ++b) {
      const int64_t o = ((p.n * s.OH + a) * s.OW + b) * s.C + p.c;
      if (indices[o] == here) sum += load(gy[o]);
    }
  gx[i] = store<T>(sum);
}

// avg_pool2d (Windows = Sliding) and adaptive_avg_pool2d (Windows = Adaptive).
template <class T, class Windows>
__global__ void avg_pool_kernel(const T* x, T* y, PoolShape s, Windows rows, Windows cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.N * s.OH * s.OW * s.C) return;
  const Pixel o = pixel(i, s.OH, s.OW, s.C);
  const Range wh = rows.window(o.h), ww = cols.window(o.w);
  float sum = 0.0f;
  for (int64_t ih = wh.lo; ih < wh.hi; ++ih)
    for (int64_t iw = ww.lo; iw < ww.hi; ++iw) sum += load(x[((o.n * s.H + ih) * s.W + iw) * s.C + o.c]);
  y[i] = store<T>(sum * (1.0f / static_cast<float>(divisor(s, rows, cols, o.h, o.w))));
}

template <class T, class Windows>
__global__ void avg_pool_backward_kernel(const T* gy, T* gx, PoolShape s, Windows rows, Windows cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= s.N * s.H * s.W * s.C) return;
  const Pixel p = pixel(i, s.H, s.W, s.C);
  const Range oh = rows.covering(p.h), ow = cols.covering(p.w);
  float sum = 0.0f;
  for (int64_t a = oh.lo; a < oh.hi; ++a)
    for (int64_t b = ow.lo; b < ow.hi; ++b) {
      const Range wh = rows.window(a), ww = cols.window(b);
      if (p.h < wh.lo || p.h >= wh.hi || p.w < ww.lo || p.w >= ww.hi) continue;  // adaptive ranges are loose
      const float scale = 1.0f / static_cast<float>(divisor(s, rows, cols, a, b));
      sum += load(gy[((p.n * s.OH + a) * s.OW + b) * s.C + p.c]) * scale;
    }
  gx[i] = store<T>(sum);
}

void check_shape(const PoolShape& s, bool sliding, const char* op) {
  bool ok = s.N >= 0 && s.H > 0 && s.W > 0 && s.C >= 0 && s.OH > 0 && s.OW > 0;
  if (sliding)
    ok = ok && s.kernel_h > 0 && s.kernel_w > 0 && s.stride_h > 0 && s.stride_w > 0 && s.pad_h >= 0 &&
         s.pad_w >= 0 && s.OH == (s.H + 2 * s.pad_h - s.kernel_h) / s.stride_h + 1 &&
         s.OW == (s.W + 2 * s.pad_w - s.kernel_w) / s.stride_w + 1;
  if (!ok)
    throw std::invalid_argument(std::string(op) + ": inconsistent pooling shape (x (" + std::to_string(s.N) + ", " +
                                std::to_string(s.H) + ", " + std::to_string(s.W) + ", " + std::to_string(s.C) +
                                "), y (" + std::to_string(s.OH) + ", " + std::to_string(s.OW) + "), kernel " +
                                std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + ")");
}

Sliding sliding_rows(const PoolShape& s) { return {s.H, s.OH, s.kernel_h, s.stride_h, s.pad_h}; }
Sliding sliding_cols(const PoolShape& s) { return {s.W, s.OW, s.kernel_w, s.stride_w, s.pad_w}; }

// One thread per element of a (N, rows, cols, C) tensor.
LaunchConfig per_element(int64_t n, rt::Stream stream, std::source_location site = std::source_location::current()) {
  return {dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads)), dim3(kThreads), 0, stream, site};
}

}  // namespace

template <class T>
void max_pool2d(const T* x, T* y, int64_t* indices, const PoolShape& s, rt::Stream stream) {
  check_shape(s, true, "max_pool2d");
  if (const int64_t n = s.N * s.OH * s.OW * s.C; n > 0)
    launch(max_pool_kernel<T>, per_element(n, stream), x, y, indices, s, sliding_rows(s), sliding_cols(s));
}

template <class T>
void max_pool2d_backward(const T* gy, const int64_t* indices, T* gx, const PoolShape& s, rt::Stream stream) {
  check_shape(s, true, "max_pool2d_backward");
  if (const int64_t n = s.N * s.H * s.W * s.C; n > 0)
    launch(max_pool_backward_kernel<T>, per_element(n, stream), gy, indices, gx, s, sliding_rows(s), sliding_cols(s));
}

template <class T>
void avg_pool2d(const T* x, T* y, const PoolShape& s, rt::Stream stream) {
  check_shape(s, true, "avg_pool2d");
  if (const int64_t n = s.N * s.OH * s.OW * s.C; n > 0)
    launch(avg_pool_kernel<T, Sliding>, per_element(n, stream), x, y, s, sliding_rows(s), sliding_cols(s));
}

template <class T>
void avg_pool2d_backward(const T* gy, T* gx, const PoolShape& s, rt::Stream stream) {
  check_shape(s, true, "avg_pool2d_backward");
  if (const int64_t n = s.N * s.H * s.W * s.C; n > 0)
    launch(avg_pool_backward_kernel<T, Sliding>, per_element(n, stream), gy, gx, s, sliding_rows(s), sliding_cols(s));
}

template <class T>
void adaptive_avg_pool2d(const T* x, T* y, const PoolShape& s, rt::Stream stream) {
  check_shape(s, false, "adaptive_avg_pool2d");
  if (const int64_t n = s.N * s.OH * s.OW * s.C; n > 0)
    launch(avg_pool_kernel<T, Adaptive>, per_element(n, stream), x, y, s, Adaptive{s.H, s.OH}, Adaptive{s.W, s.OW});
}

template <class T>
void adaptive_avg_pool2d_backward(const T* gy, T* gx, const PoolShape& s, rt::Stream stream) {
  check_shape(s, false, "adaptive_avg_pool2d_backward");
  if (const int64_t n = s.N * s.H * s.W * s.C; n > 0)
    launch(avg_pool_backward_kernel<T, Adaptive>, per_element(n, stream), gy, gx, s, Adaptive{s.H, s.OH},
           Adaptive{s.W, s.OW});
}

#define VB_INSTANTIATE(T)                                                                          \
  template void max_pool2d<T>(const T*, T*, int64_t*, const PoolShape&, rt::Stream);              \
  template void max_pool2d_backward<T>(const T*, const int64_t*, T*, const PoolShape&, rt::Stream); \
  template void avg_pool2d<T>(const T*, T*, const PoolShape&, rt::Stream);                        \
  template void avg_pool2d_backward<T>(const T*, T*, const PoolShape&, rt::Stream);               \
  template void adaptive_avg_pool2d<T>(const T*, T*, const PoolShape&, rt::Stream);               \
  template void adaptive_avg_pool2d_backward<T>(const T*, T*, const PoolShape&, rt::Stream);
VB_INSTANTIATE(float)
VB_INSTANTIATE(__nv_bfloat16)
VB_INSTANTIATE(__half)
#undef VB_INSTANTIATE

}  // namespace vb::VB_KERNEL_NS
