// 2-d pooling, channels-last, on the CPU: max, average and adaptive average, with their backwards.
//
// x (N, H, W, C) → y (N, OH, OW, C). A window of output (oh, ow) covers rows oh·s − p … oh·s − p + k − 1
// (likewise columns), OH = (H + 2p − k)/s + 1.
//   max:      y = max over the window's in-image cells (padding never wins: it counts as −inf, PyTorch's
//             rule); indices = ih·W + iw of the first maximum (a NaN wins and propagates).
//             gx[n, idx, c] += gy[n, oh, ow, c].
//   avg:      y = Σ window / d, d = the window's size clipped to the padded image (count_include_pad) or
//             the number of in-image cells; gx[cell] += gy / d for each in-image cell of the window.
//   adaptive: output cell i averages rows floor(i·H/OH) … ceil((i+1)·H/OH) − 1 (likewise columns).
// Cost: forward reads each window (N·OH·OW·C·kh·kw reads, as many adds or compares) and writes y; the
// backwards read gy once and add into gx. Memory-bound; channels-last makes every inner loop a
// contiguous run of C values.
//
// Parallelism: forwards split output rows (n, oh) across threads; backwards, whose windows overlap,
// split (image, block of channels) so that each thread owns disjoint gx and the sum order stays fixed.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

constexpr int64_t kChannelBlock = 64;

struct Plane {
  int64_t N, H, W, C, OH, OW;
};

// One pooling window, clipped to the image: rows [h0, h1), columns [w0, w1).
struct Window {
  int64_t h0, h1, w0, w1;
};

Window pool_window(const Pool2dParams& p, const Plane& s, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  return {std::max<int64_t>(h0, 0), std::min<int64_t>(h0 + p.kernel_h, s.H), std::max<int64_t>(w0, 0),
          std::min<int64_t>(w0 + p.kernel_w, s.W)};
}

// The avg_pool2d divisor of output (oh, ow).
int64_t avg_divisor(const Pool2dParams& p, const Plane& s, int64_t oh, int64_t ow) {
  if (!p.count_include_pad) {
    const Window win = pool_window(p, s, oh, ow);
    return (win.h1 - win.h0) * (win.w1 - win.w0);
  }
  const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  const int64_t h1 = std::min<int64_t>(h0 + p.kernel_h, s.H + p.pad_h);
  const int64_t w1 = std::min<int64_t>(w0 + p.kernel_w, s.W + p.pad_w);
  return (h1 - h0) * (w1 - w0);
}

Window adaptive_window(const Plane& s, int64_t oh, int64_t ow) {
  auto start = [](int64_t i, int64_t in, int64_t out) { return i * in / out; };
  auto end = [](int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; };
  return {start(oh, s.H, s.OH), end(oh, s.H, s.OH), start(ow, s.W, s.OW), end(ow, s.W, s.OW)};
}

Plane plane_of(const Tensor& x, const Tensor& y) { return {x.size(0), x.size(1), x.size(2), x.size(3), y.size(1), y.size(2)}; }

// best[c], at[c] ← v[c], here where v[c] > best[c] or v[c] is NaN (the first maximum is kept; a NaN wins), for
// c < C: written as selects over unaliased pointers, so that the compiler vectorises it (masked blends of 16
// values and of their 16 indices). With a branch per channel it stayed scalar: the ResNet stem's 3 × 3 pool
// over 4 × 112² × 64 took 9 ms a call on the dev VM.
template <typename T>
inline void max_into(const T* __restrict v, int64_t here, int64_t C, T* __restrict best, int64_t* __restrict at) {
  for (int64_t c = 0; c < C; ++c) {
    const bool take = v[c] > best[c] || v[c] != v[c];
    best[c] = take ? v[c] : best[c];
    at[c] = take ? here : at[c];
  }
}

template <typename T>
void max_pool_forward(const T* x, T* y, int64_t* idx, const Plane& s, const Pool2dParams& p) {
  const int64_t rows = s.N * s.OH;
#pragma omp parallel for schedule(static) if (rows * s.OW * s.C * p.kernel_h * p.kernel_w >= cpu::kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const Window win = pool_window(p, s, oh, ow);
      T* best = y + ((n * s.OH + oh) * s.OW + ow) * s.C;
      int64_t* at = idx + ((n * s.OH + oh) * s.OW + ow) * s.C;
      std::fill(best, best + s.C, -std::numeric_limits<T>::infinity());
      std::fill(at, at + s.C, win.h0 * s.W + win.w0);
      for (int64_t ih = win.h0; ih < win.h1; ++ih) {
        for (int64_t iw = win.w0; iw < win.w1; ++iw) {
          const T* v = x + ((n * s.H + ih) * s.W + iw) * s.C;
          max_into(v, ih * s.W + iw, s.C, best, at);
        }
      }
    }
  }
}

template <typename T>
void max_pool_backward(const T* gy, const int64_t* idx, T* gx, const Plane& s) {
  const int64_t blocks = (s.C + kChannelBlock - 1) / kChannelBlock;
  const int64_t tasks = s.N * blocks;
#pragma omp parallel for schedule(static) if (s.N * s.OH * s.OW * s.C >= cpu::kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / blocks, c0 = t % blocks * kChannelBlock, c1 = std::min(c0 + kChannelBlock, s.C);
    T* gxn = gx + n * s.H * s.W * s.C;
    for (int64_t ih = 0; ih < s.H * s.W; ++ih) std::fill(gxn + ih * s.C + c0, gxn + ih * s.C + c1, T(0));
    for (int64_t o = 0; o < s.OH * s.OW; ++o) {
      const T* g = gy + (n * s.OH * s.OW + o) * s.C;
      const int64_t* at = idx + (n * s.OH * s.OW + o) * s.C;
      for (int64_t c = c0; c < c1; ++c) gxn[at[c] * s.C + c] += g[c];
    }
  }
}

// Average pooling forward for both avg_pool2d and adaptive_avg_pool2d: window(oh, ow) and divisor(oh, ow).
template <typename T, typename WindowFn, typename DivisorFn>
void avg_forward(const T* x, T* y, const Plane& s, WindowFn window, DivisorFn divisor) {
  const int64_t rows = s.N * s.OH;
#pragma omp parallel for schedule(static) if (rows * s.OW * s.C * 4 >= cpu::kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const Window win = window(oh, ow);
      T* out = y + ((n * s.OH + oh) * s.OW + ow) * s.C;
      std::fill(out, out + s.C, T(0));
      for (int64_t ih = win.h0; ih < win.h1; ++ih) {
        for (int64_t iw = win.w0; iw < win.w1; ++iw) {
          const T* v = x + ((n * s.H + ih) * s.W + iw) * s.C;
          for (int64_t c = 0; c < s.C; ++c) out[c] += v[c];
        }
      }
      const T scale = T(1) / T(divisor(oh, ow));
      for (int64_t c = 0; c < s.C; ++c) out[c] *= scale;
    }
  }
}

template <typename T, typename WindowFn, typename DivisorFn>
void avg_backward(const T* gy, T* gx, const Plane& s, WindowFn window, DivisorFn divisor) {
  const int64_t blocks = (s.C + kChannelBlock - 1) / kChannelBlock;
  const int64_t tasks = s.N * blocks;
#pragma omp parallel for schedule(static) if (s.N * s.OH * s.OW * s.C * 4 >= cpu::kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / blocks, c0 = t % blocks * kChannelBlock, c1 = std::min(c0 + kChannelBlock, s.C);
    T* gxn = gx + n * s.H * s.W * s.C;
    for (int64_t q = 0; q < s.H * s.W; ++q) std::fill(gxn + q * s.C + c0, gxn + q * s.C + c1, T(0));
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const Window win = window(oh, ow);
        const T scale = T(1) / T(divisor(oh, ow));
        const T* g = gy + ((n * s.OH + oh) * s.OW + ow) * s.C;
        for (int64_t ih = win.h0; ih < win.h1; ++ih) {
          for (int64_t iw = win.w0; iw < win.w1; ++iw) {
            T* dst = gxn + (ih * s.W + iw) * s.C;
            for (int64_t c = c0; c < c1; ++c) dst[c] += g[c] * scale;
          }
        }
      }
    }
  }
}

// Runs body(in, out) with in and out as float32 or float64 contiguous CPU tensors: halves are staged
// through float32 and converted into `out` afterwards.
template <typename F>
void with_float(const Tensor& in, Tensor& out, F&& body) {
  if (is_half(out.dtype())) {
    Tensor tmp = Tensor::empty(out.shape(), DType::Float32, out.device());
    body(cpu::float32_contiguous(in), tmp);
    cpu::copy_into(out, tmp);
  } else {
    body(cpu::contiguous(in), out);
  }
}

}  // namespace

void CpuBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& indices) {
  const Plane s = plane_of(x, y);
  with_float(x, y, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) max_pool_forward(in.data<double>(), out.data<double>(), indices.data<int64_t>(), s, p);
    else max_pool_forward(in.data<float>(), out.data<float>(), indices.data<int64_t>(), s, p);
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, Tensor& gx) {
  const Plane s = plane_of(gx, gy);
  const Tensor idx = cpu::contiguous(indices);
  with_float(gy, gx, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) max_pool_backward(in.data<double>(), idx.data<int64_t>(), out.data<double>(), s);
    else max_pool_backward(in.data<float>(), idx.data<int64_t>(), out.data<float>(), s);
  });
}

void CpuBackend::avg_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y) {
  const Plane s = plane_of(x, y);
  auto window = [&](int64_t oh, int64_t ow) { return pool_window(p, s, oh, ow); };
  auto divisor = [&](int64_t oh, int64_t ow) { return avg_divisor(p, s, oh, ow); };
  with_float(x, y, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) avg_forward(in.data<double>(), out.data<double>(), s, window, divisor);
    else avg_forward(in.data<float>(), out.data<float>(), s, window, divisor);
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, Tensor& gx) {
  const Plane s = plane_of(gx, gy);
  auto window = [&](int64_t oh, int64_t ow) { return pool_window(p, s, oh, ow); };
  auto divisor = [&](int64_t oh, int64_t ow) { return avg_divisor(p, s, oh, ow); };
  with_float(gy, gx, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) avg_backward(in.data<double>(), out.data<double>(), s, window, divisor);
    else avg_backward(in.data<float>(), out.data<float>(), s, window, divisor);
  });
}

void CpuBackend::adaptive_avg_pool2d(const Tensor& x, Tensor& y) {
  const Plane s = plane_of(x, y);
  auto window = [&](int64_t oh, int64_t ow) { return adaptive_window(s, oh, ow); };
  auto divisor = [&](int64_t oh, int64_t ow) {
    const Window win = adaptive_window(s, oh, ow);
    return (win.h1 - win.h0) * (win.w1 - win.w0);
  };
  with_float(x, y, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) avg_forward(in.data<double>(), out.data<double>(), s, window, divisor);
    else avg_forward(in.data<float>(), out.data<float>(), s, window, divisor);
  });
}

void CpuBackend::adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) {
  const Plane s = plane_of(gx, gy);
  auto window = [&](int64_t oh, int64_t ow) { return adaptive_window(s, oh, ow); };
  auto divisor = [&](int64_t oh, int64_t ow) {
    const Window win = adaptive_window(s, oh, ow);
    return (win.h1 - win.h0) * (win.w1 - win.w0);
  };
  with_float(gy, gx, [&](const Tensor& in, Tensor& out) {
    if (out.dtype() == DType::Float64) avg_backward(in.data<double>(), out.data<double>(), s, window, divisor);
    else avg_backward(in.data<float>(), out.data<float>(), s, window, divisor);
  });
}

}  // namespace vb
