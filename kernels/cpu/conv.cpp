// 2-d convolution, channels-last, on the CPU: im2col + GEMM (Eigen).
//
// Shapes: x (N, H, W, C), w (O, KH, KW, C/G) ("OHWI"), y (N, OH, OW, O), G groups, Cg = C/G, Og = O/G,
//   OH = (H + 2·pad_h − dil_h·(KH − 1) − 1) / stride_h + 1   (likewise OW).
// Forward, for group g:
//   y[n, oh, ow, g·Og + o] = b[o] + Σ_{kh, kw, c} x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, g·Cg + c]
//                                                · w[g·Og + o, kh, kw, c]            (out-of-image x = 0)
//   As matrices: cols (R, K) with R = N·OH·OW rows and K = KH·KW·Cg columns ordered (kh, kw, c) — the
//   same order as a row of w viewed as (O, K) — so Y_g (R, Og) = cols_g · W_gᵀ.
// Backward:
//   input:  gcols_g (R, K) = gY_g (R, Og) · W_g (Og, K), then col2im adds every column entry back onto
//           the input pixel it was copied from (gx = Σ over the windows that cover the pixel).
//   weight: gW_g (Og, K) = gY_gᵀ (Og, R) · cols_g (R, K).
// Cost per pass (forward, backward_input, backward_weight alike): FLOPs = 2·N·OH·OW·O·KH·KW·Cg.
//   Bytes: x and y read/written once (N·H·W·C + N·OH·OW·O elements) plus the column buffer, written and
//   read once: N·OH·OW·KH·KW·C elements — KH·KW times the input, which is why the batch is processed in
//   chunks of images that keep the buffer under kColumnBytes (one image at least): a small buffer reused
//   across chunks, rather than a batch-sized one that is paged in and leaves the cache on every call.
//   A 1×1, stride-1, unpadded convolution needs no columns at all: x viewed as (N·H·W, C) already is cols.
//
// Why channels-last: in NHWC the Cg channels of one pixel are contiguous, so each (kh, kw) segment of an
// im2col row is one memcpy and col2im one contiguous add; the output of the GEMM (R, O) *is* y; and the
// GPU path wants the same layout (tensor cores and cuDNN's fastest convolutions run NHWC). Weights are
// OHWI for the same reason (a row of w matches a row of cols); torchvision's OIHW checkpoints are
// permuted to OHWI when loaded.
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// Column buffer per chunk of images: bounded so that large batches do not allocate KH·KW × the input.
constexpr int64_t kColumnBytes = int64_t(8) << 20;
// The weight gradient sums over all R rows: fixed row slices run in parallel (each a serial GEMM) and
// their partial gradients are added in slice order, so the result does not depend on the thread count.
constexpr int64_t kWeightSlices = 8;
constexpr int64_t kMinSliceRows = 256;

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MapMat = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstMapMat = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

struct Geometry {
  int64_t N, H, W, C, O, KH, KW, OH, OW, G, Cg, Og, K;
  Conv2dParams p;

  Geometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& params)
      : N(x[0]), H(x[1]), W(x[2]), C(x[3]), O(w[0]), KH(w[1]), KW(w[2]), OH(y[1]), OW(y[2]), G(params.groups),
        Cg(C / G), Og(O / G), K(KH * KW * (C / G)), p(params) {}

  // The convolution reads x as it is: no padding, stride or dilation, one tap.
  bool pointwise() const {
    return KH == 1 && KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  }
  // Images per chunk such that the column buffer stays under kColumnBytes (at least one).
  int64_t chunk(int64_t elem) const {
    return std::clamp<int64_t>(kColumnBytes / (OH * OW * K * elem + 1), 1, std::max<int64_t>(N, 1));
  }
};

// cols (images·OH·OW, K) ← the receptive fields of group g of `images` images starting at x.
template <typename T>
void im2col(const T* x, int64_t images, const Geometry& s, int64_t g, T* cols) {
  const int64_t rows = images * s.OH * s.OW;
  const auto& p = s.p;
#pragma omp parallel for schedule(static) if (rows * s.K >= cpu::kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / (s.OH * s.OW), oh = r / s.OW % s.OH, ow = r % s.OW;
    T* dst = cols + r * s.K;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
      for (int64_t kw = 0; kw < s.KW; ++kw, dst += s.Cg) {
        const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
        if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
          std::fill(dst, dst + s.Cg, T(0));
        } else {
          std::memcpy(dst, x + ((n * s.H + ih) * s.W + iw) * s.C + g * s.Cg, size_t(s.Cg) * sizeof(T));
        }
      }
    }
  }
}

// gx[images, :, :, g·Cg : (g+1)·Cg] += the columns, gathered per input pixel (each thread owns whole
// pixels, so the sum order is fixed: kh, kw ascending).
template <typename T>
void col2im(const T* cols, int64_t images, const Geometry& s, int64_t g, T* gx) {
  const auto& p = s.p;
  const int64_t pixels = images * s.H * s.W;
#pragma omp parallel for schedule(static) if (pixels * s.Cg * s.KH * s.KW >= cpu::kParallelGrain)
  for (int64_t q = 0; q < pixels; ++q) {
    const int64_t n = q / (s.H * s.W), ih = q / s.W % s.H, iw = q % s.W;
    T* dst = gx + q * s.C + g * s.Cg;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + p.pad_h - kh * p.dilation_h;  // = oh·stride_h
      if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= s.OH) continue;
      const int64_t oh = th / p.stride_h;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tw = iw + p.pad_w - kw * p.dilation_w;
        if (tw < 0 || tw % p.stride_w != 0 || tw / p.stride_w >= s.OW) continue;
        const int64_t ow = tw / p.stride_w;
        const T* src = cols + ((n * s.OH + oh) * s.OW + ow) * s.K + (kh * s.KW + kw) * s.Cg;
        for (int64_t c = 0; c < s.Cg; ++c) dst[c] += src[c];
      }
    }
  }
}

template <typename T>
void conv_forward(const T* x, const T* w, const T* bias, T* y, const Geometry& s) {
  const int64_t chunk = s.chunk(sizeof(T));
  std::unique_ptr<T[]> cols(new T[s.pointwise() ? 0 : size_t(chunk * s.OH * s.OW * s.K)]);  // uninitialised
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t images = std::min(chunk, s.N - n0);
    const int64_t rows = images * s.OH * s.OW;
    const T* xn = x + n0 * s.H * s.W * s.C;
    T* yn = y + n0 * s.OH * s.OW * s.O;
    for (int64_t g = 0; g < s.G; ++g) {
      ConstMapMat<T> wg(w + g * s.Og * s.K, s.Og, s.K, Eigen::OuterStride<>(s.K));  // (Og, K)
      MapMat<T> yg(yn + g * s.Og, rows, s.Og, Eigen::OuterStride<>(s.O));          // (R, Og)
      if (s.pointwise()) {
        ConstMapMat<T> xg(xn + g * s.Cg, rows, s.Cg, Eigen::OuterStride<>(s.C));  // (R, Cg)
        yg.noalias() = xg * wg.transpose();
      } else {
        im2col(xn, images, s, g, cols.get());
        ConstMapMat<T> cg(cols.get(), rows, s.K, Eigen::OuterStride<>(s.K));
        yg.noalias() = cg * wg.transpose();
      }
    }
    if (bias) {
      MapMat<T> yall(yn, rows, s.O, Eigen::OuterStride<>(s.O));
      Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> b(bias, s.O);
      yall.rowwise() += b;
    }
  }
}

template <typename T>
void conv_backward_input(const T* gy, const T* w, T* gx, const Geometry& s) {
  const int64_t chunk = s.chunk(sizeof(T));
  std::unique_ptr<T[]> cols(new T[s.pointwise() ? 0 : size_t(chunk * s.OH * s.OW * s.K)]);  // uninitialised
  if (!s.pointwise()) std::fill(gx, gx + s.N * s.H * s.W * s.C, T(0));
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t images = std::min(chunk, s.N - n0);
    const int64_t rows = images * s.OH * s.OW;
    const T* gyn = gy + n0 * s.OH * s.OW * s.O;
    T* gxn = gx + n0 * s.H * s.W * s.C;
    for (int64_t g = 0; g < s.G; ++g) {
      ConstMapMat<T> wg(w + g * s.Og * s.K, s.Og, s.K, Eigen::OuterStride<>(s.K));  // (Og, K)
      ConstMapMat<T> gyg(gyn + g * s.Og, rows, s.Og, Eigen::OuterStride<>(s.O));    // (R, Og)
      if (s.pointwise()) {
        MapMat<T> gxg(gxn + g * s.Cg, rows, s.Cg, Eigen::OuterStride<>(s.C));
        gxg.noalias() = gyg * wg;
      } else {
        MapMat<T> cg(cols.get(), rows, s.K, Eigen::OuterStride<>(s.K));
        cg.noalias() = gyg * wg;
        col2im(cols.get(), images, s, g, gxn);
      }
    }
  }
}

template <typename T>
void conv_backward_weight(const T* gy, const T* x, T* gw, const Geometry& s) {
  const int64_t chunk = s.chunk(sizeof(T));
  std::unique_ptr<T[]> cols(new T[s.pointwise() ? 0 : size_t(chunk * s.OH * s.OW * s.K)]);  // uninitialised
  std::vector<T> partial(size_t(kWeightSlices * s.Og * s.K));
  std::fill(gw, gw + s.O * s.K, T(0));  // chunks accumulate in batch order
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t images = std::min(chunk, s.N - n0);
    const int64_t rows = images * s.OH * s.OW;
    const T* gyn = gy + n0 * s.OH * s.OW * s.O;
    const T* xn = x + n0 * s.H * s.W * s.C;
    const int64_t slices = std::clamp<int64_t>(rows / kMinSliceRows, 1, kWeightSlices);
    const int64_t per_slice = (rows + slices - 1) / slices;
    for (int64_t g = 0; g < s.G; ++g) {
      const T* src = xn + g * s.Cg;
      int64_t stride = s.C;
      if (!s.pointwise()) {
        im2col(xn, images, s, g, cols.get());
        src = cols.get();
        stride = s.K;
      }
      // partial[i] (Og, K) = gY_g[slice i]ᵀ · cols[slice i]
#pragma omp parallel for schedule(static) if (slices > 1 && rows * s.Og * s.K >= cpu::kParallelGrain)
      for (int64_t i = 0; i < slices; ++i) {
        const int64_t r0 = i * per_slice, r1 = std::min(rows, r0 + per_slice);
        MapMat<T> part(partial.data() + i * s.Og * s.K, s.Og, s.K, Eigen::OuterStride<>(s.K));
        if (r1 <= r0) {
          part.setZero();
          continue;
        }
        ConstMapMat<T> gyg(gyn + r0 * s.O + g * s.Og, r1 - r0, s.Og, Eigen::OuterStride<>(s.O));  // (r, Og)
        ConstMapMat<T> cg(src + r0 * stride, r1 - r0, s.K, Eigen::OuterStride<>(stride));         // (r, K)
        part.noalias() = gyg.transpose() * cg;
      }
      T* gwg = gw + g * s.Og * s.K;  // (Og, K)
      for (int64_t i = 0; i < slices; ++i) {
        const T* part = partial.data() + i * s.Og * s.K;
        for (int64_t e = 0; e < s.Og * s.K; ++e) gwg[e] += part[e];
      }
    }
  }
}

// Halves run in float32: stage the inputs, compute, convert the result into `out`.
template <typename F>
void staged(std::initializer_list<const Tensor*> inputs, Tensor& out, F&& run) {
  std::vector<Tensor> staged_inputs;
  for (const Tensor* t : inputs) staged_inputs.push_back(t->defined() ? cpu::float32_contiguous(*t) : Tensor());
  Tensor tmp = Tensor::empty(out.shape(), DType::Float32, out.device());
  run(staged_inputs, tmp);
  cpu::copy_into(out, tmp);
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) {
  const Geometry s(x.shape(), w.shape(), y.shape(), p);
  if (is_half(y.dtype())) {
    staged({&x, &w, &bias}, y, [&](const std::vector<Tensor>& in, Tensor& out) {
      conv_forward<float>(in[0].data<float>(), in[1].data<float>(), ptr_or_null<float>(in[2]), out.data<float>(), s);
    });
    return;
  }
  const Tensor xc = cpu::contiguous(x), wc = cpu::contiguous(w);
  const Tensor bc = bias.defined() ? cpu::contiguous(bias) : Tensor();
  if (y.dtype() == DType::Float64) {
    conv_forward<double>(xc.data<double>(), wc.data<double>(), ptr_or_null<double>(bc), y.data<double>(), s);
  } else {
    conv_forward<float>(xc.data<float>(), wc.data<float>(), ptr_or_null<float>(bc), y.data<float>(), s);
  }
}

void CpuBackend::conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) {
  const Geometry s(gx.shape(), w.shape(), gy.shape(), p);
  if (is_half(gx.dtype())) {
    staged({&gy, &w}, gx, [&](const std::vector<Tensor>& in, Tensor& out) {
      conv_backward_input<float>(in[0].data<float>(), in[1].data<float>(), out.data<float>(), s);
    });
    return;
  }
  const Tensor gyc = cpu::contiguous(gy), wc = cpu::contiguous(w);
  if (gx.dtype() == DType::Float64) {
    conv_backward_input<double>(gyc.data<double>(), wc.data<double>(), gx.data<double>(), s);
  } else {
    conv_backward_input<float>(gyc.data<float>(), wc.data<float>(), gx.data<float>(), s);
  }
}

void CpuBackend::conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Conv2dParams& p, Tensor& gw) {
  const Geometry s(x.shape(), gw.shape(), gy.shape(), p);
  if (is_half(gw.dtype())) {
    staged({&gy, &x}, gw, [&](const std::vector<Tensor>& in, Tensor& out) {
      conv_backward_weight<float>(in[0].data<float>(), in[1].data<float>(), out.data<float>(), s);
    });
    return;
  }
  const Tensor gyc = cpu::contiguous(gy), xc = cpu::contiguous(x);
  if (gw.dtype() == DType::Float64) {
    conv_backward_weight<double>(gyc.data<double>(), xc.data<double>(), gw.data<double>(), s);
  } else {
    conv_backward_weight<float>(gyc.data<float>(), xc.data<float>(), gw.data<float>(), s);
  }
}

}  // namespace vb
