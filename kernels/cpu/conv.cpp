// 2-d convolution, channels-last, on the CPU: an implicit-im2col GEMM (kernels/cpu/gemm.cpp).
//
// This file is the reference. Where the build has oneDNN, the forward pass and the input gradient are first
// offered to it (kernels/cpu/conv_onednn.h says when it takes them; VB_CPU_CONV=ours never does); everything
// it does not take, and every weight gradient, runs here.
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
//   Bytes: x and y read/written once (N·H·W·C + N·OH·OW·O elements) and w once.
//
// Implicit im2col: the forward and weight-gradient products never store the column matrix. The GEMM
// packs its operands block by block anyway, and a row of cols (one output pixel's receptive field) is
// KH·KW contiguous runs of Cg channels of x, so the packing step reads them straight from x (im2col_row
// below): the KH·KW-times-larger column matrix never goes through memory, and the whole batch is one
// product. The input gradient of a stride-1 convolution is a convolution too (of gy with the flipped
// kernel, conv_backward_input_flipped) and runs the same way; only strided ones still build columns (col2im
// has to scatter them back), in chunks of images that keep the buffer under kColumnBytes.
//   A 1×1, stride-1, unpadded convolution needs no columns at all: x viewed as (N·H·W, C) already is cols.
//   The weight gradient of a convolution with at most 96 output channels does not pack its im2col rows either:
// each packed element would serve only 2·O FLOPs, so the GEMM reads each kernel row's run of x where it lies
// (cpu::gemm_gathered; conv_backward_weight_gathered below), with the same sums in the same order.
//
// Why channels-last: in NHWC the Cg channels of one pixel are contiguous, so each (kh, kw) segment of an
// im2col row is one memcpy and col2im one contiguous add; the output of the GEMM (R, O) *is* y; and the
// GPU path wants the same layout (tensor cores and cuDNN's fastest convolutions run NHWC). Weights are
// OHWI for the same reason (a row of w matches a row of cols); torchvision's OIHW checkpoints are
// permuted to OHWI when loaded.
#include "kernels/cpu/conv.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

using cpu::GemmOperand;

// Column buffer per chunk of images (input gradient only): bounded so that large batches do not allocate
// KH·KW × the input.
constexpr int64_t kColumnBytes = int64_t(8) << 20;

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

// dst[0 : n] ← cols[r, j0 : j0+n] of group g: output pixel r = (img, oh, ow), column j = (kh·KW + kw)·Cg + c.
// With one group and no horizontal dilation, the KW taps of one kernel row kh are KW·C consecutive
// elements of x (pixels iw0 … iw0 + KW − 1 of input row ih, all channels), so a kernel row is one memcpy
// plus zeros where the window hangs over the left or right edge: KH copies per output pixel instead of
// KH·KW. This is what makes the ResNet stem (7×7 over 3 channels: 49 runs of 3 floats) cheap.
template <typename T>
void im2col_row(const T* x, const Geometry& s, int64_t g, int64_t r, int64_t j0, int64_t n, T* dst) {
  const auto& p = s.p;
  const int64_t img = r / (s.OH * s.OW), oh = r / s.OW % s.OH, ow = r % s.OW;
  if (s.G == 1 && p.dilation_w == 1) {
    const int64_t span = s.KW * s.C, iw0 = ow * p.stride_w - p.pad_w;
    // Within a kernel row, element e reads x[ih, iw0 + e / C, e % C]: inside the image for e in [lo, hi).
    const int64_t lo = std::clamp<int64_t>(-iw0 * s.C, 0, span), hi = std::clamp<int64_t>((s.W - iw0) * s.C, 0, span);
    int64_t kh = j0 / span, e = j0 % span;
    while (n > 0) {
      const int64_t len = std::min(n, span - e), end = e + len;
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
      const int64_t a = std::max(e, lo), b = std::min(end, hi);  // [a, b): the part inside the image
      if (ih < 0 || ih >= s.H || b <= a) {
        std::fill(dst, dst + len, T(0));
      } else {
        std::fill(dst, dst + (a - e), T(0));
        std::memcpy(dst + (a - e), x + ((img * s.H + ih) * s.W + iw0) * s.C + a, size_t(b - a) * sizeof(T));
        std::fill(dst + (b - e), dst + len, T(0));
      }
      dst += len;
      n -= len;
      e = 0;
      ++kh;
    }
    return;
  }
  int64_t tap = j0 / s.Cg, c = j0 % s.Cg;
  while (n > 0) {
    const int64_t kh = tap / s.KW, kw = tap % s.KW, len = std::min(n, s.Cg - c);
    const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h, iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
      std::fill(dst, dst + len, T(0));
    } else {
      std::memcpy(dst, x + ((img * s.H + ih) * s.W + iw) * s.C + g * s.Cg + c, size_t(len) * sizeof(T));
    }
    dst += len;
    n -= len;
    c = 0;
    ++tap;
  }
}

// cols_g (R, K) as a GEMM operand: x itself for a pointwise convolution, im2col rows generated otherwise.
template <typename T>
GemmOperand<T> columns(const T* x, const Geometry& s, int64_t g) {
  if (s.pointwise()) return GemmOperand<T>::strided(x + g * s.Cg, s.C, 1);
  GemmOperand<T> op;
  op.row = [x, &s, g](int64_t r, int64_t j0, int64_t n, T* dst) { im2col_row(x, s, g, r, j0, n, dst); };
  return op;
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

// y = cols · Wᵀ (+ b): the bias is written first and the product accumulated onto it. T: the type of x and w;
// Acc (of y and the bias): T, or float32 for bfloat16 (gemm_acc_t).
template <typename T, typename Acc = cpu::gemm_acc_t<T>>
void conv_forward(const T* x, const T* w, const Acc* bias, Acc* y, const Geometry& s) {
  const int64_t rows = s.N * s.OH * s.OW;
  if (bias) {
#pragma omp parallel for schedule(static) if (rows * s.O >= cpu::kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * s.O, bias, size_t(s.O) * sizeof(Acc));
  }
  for (int64_t g = 0; g < s.G; ++g) {
    // W_gᵀ (K, Og): element (k, o) at w[(g·Og + o)·K + k].
    cpu::gemm(rows, s.Og, s.K, columns(x, s, g), GemmOperand<T>::strided(w + g * s.Og * s.K, 1, s.K),
                 y + g * s.Og, s.O, /*accumulate=*/bias != nullptr, /*parallel=*/true);
  }
}

// Stride 1: the input gradient is itself a convolution, of gy with the kernel turned 180° and its channel
// roles swapped, so it runs as the forward's implicit-im2col product (no column buffer, no scatter):
//   gx[n, ih, iw, g·Cg + c] = Σ_{kh', kw', o} gy[n, ih − ph' + kh'·dh, iw − pw' + kw'·dw, g·Og + o]
//                                             · w[g·Og + o, KH − 1 − kh', KW − 1 − kw', c],
//   ph' = (KH − 1)·dh − ph (≥ 0)   (substitute kh = KH − 1 − kh' in the forward's sum). Same FLOPs as the forward.
// As matrices, for group g: gX_g (N·H·W, Cg) = cols'_g (N·H·W, K') · B_g (K', Cg) with K' = KH·KW·Og ordered
// (kh', kw', o), cols' the im2col rows of gy under the flipped geometry, and row (kh', kw', o) of B_g the Cg
// contiguous values w[g·Og + o, KH − 1 − kh', KW − 1 − kw', :]. B_g is handed to the GEMM as a row generator
// reading w in place: the flipped kernel is never written out. (Written out as (C, KH, KW, Og) it was read
// back transposed by the GEMM's packing; building it element by element cost more than the products at a
// ResNet's small late stages — half of a ResNet-18 step at batch 2, 112 px, on the dev VM.)
template <typename T, typename Acc = cpu::gemm_acc_t<T>>
bool conv_backward_input_flipped(const T* gy, const T* w, Acc* gx, const Geometry& s) {
  const auto& p = s.p;
  const int ph = (int(s.KH) - 1) * p.dilation_h - p.pad_h, pw = (int(s.KW) - 1) * p.dilation_w - p.pad_w;
  if (p.stride_h != 1 || p.stride_w != 1 || ph < 0 || pw < 0) return false;
  Conv2dParams flipped = p;
  flipped.pad_h = ph;
  flipped.pad_w = pw;
  // The flipped convolution: input gy (N, OH, OW, O), kernel (C, KH, KW, Og), output gx (N, H, W, C).
  const Geometry t({s.N, s.OH, s.OW, s.O}, {s.C, s.KH, s.KW, s.Og}, {s.N, s.H, s.W, s.C}, flipped);
  const int64_t rows = s.N * s.H * s.W, taps = s.KH * s.KW;
  for (int64_t g = 0; g < s.G; ++g) {
    GemmOperand<T> b;  // B_g (K', Cg): row k' = (tap', o) is w[g·Og + o, flipped tap', j0 : j0 + n]
    b.row = [w, &s, g, taps](int64_t k, int64_t j0, int64_t n, T* dst) {
      const int64_t tap = k / s.Og, o = k % s.Og, flipped_tap = taps - 1 - tap;  // (KH−1−kh')·KW + (KW−1−kw')
      std::memcpy(dst, w + ((g * s.Og + o) * taps + flipped_tap) * s.Cg + j0, size_t(n) * sizeof(T));
    };
    cpu::gemm(rows, s.Cg, t.K, columns(gy, t, g), b, gx + g * s.Cg, s.C, /*accumulate=*/false,
                 /*parallel=*/true);
  }
  return true;
}

template <typename T, typename Acc = cpu::gemm_acc_t<T>>
void conv_backward_input(const T* gy, const T* w, Acc* gx, const Geometry& s) {
  if (!s.pointwise() && conv_backward_input_flipped(gy, w, gx, s)) return;
  const int64_t chunk = s.chunk(sizeof(Acc));
  std::unique_ptr<Acc[]> cols(new Acc[s.pointwise() ? 0 : size_t(chunk * s.OH * s.OW * s.K)]);  // uninitialised
  if (!s.pointwise()) std::fill(gx, gx + s.N * s.H * s.W * s.C, Acc(0));
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t images = std::min(chunk, s.N - n0);
    const int64_t rows = images * s.OH * s.OW;
    const T* gyn = gy + n0 * s.OH * s.OW * s.O;
    Acc* gxn = gx + n0 * s.H * s.W * s.C;
    for (int64_t g = 0; g < s.G; ++g) {
      const auto gyg = GemmOperand<T>::strided(gyn + g * s.Og, s.O, 1);         // (R, Og)
      const auto wg = GemmOperand<T>::strided(w + g * s.Og * s.K, s.K, 1);      // (Og, K)
      if (s.pointwise()) {
        cpu::gemm(rows, s.Cg, s.Og, gyg, wg, gxn + g * s.Cg, s.C, false, true);
      } else {
        cpu::gemm(rows, s.K, s.Og, gyg, wg, cols.get(), s.K, false, true);
        col2im(cols.get(), images, s, g, gxn);
      }
    }
  }
}

// The weight gradient of a convolution with few output channels, with its im2col rows read where they lie in x.
//   gW[o, kh, (kw, c)] = Σ_r gy[r, o] · x[img, oh·sh − ph + kh·dh, ow·sw − pw + kw, c]     (r = (img, oh, ow))
// With one group and no horizontal dilation, a kernel row's KW·C values for pixel r are KW·C consecutive values
// of x (the KW input pixels the window covers, all channels). So gW is KH products gW_kh (O, KW·C) =
// gYᵀ (O, R) · B_kh (R, KW·C) sharing gYᵀ, where row r of B_kh is that run of x: cpu::gemm_gathered reads it
// in place (a run over the image's left or right edge is built with its zeros in the GEMM's scratch; a kernel
// row above or below the image reads a row of zeros). The im2col path packs every im2col element, and each
// serves only 2·O FLOPs: at O = 8 (the tiny preset's stem, 7 × 7 over 6 channels, stride 2) packing was most of
// the time, 40 GFLOP/s on 2 threads of the Zen 4 VM. Here nothing is packed but gYᵀ, at the cost of the lanes
// of a panel past KW·C (the stem's 42-value rows take three 16-lane panels, 48 lanes).
// FLOPs: 2·R·O·KH·KW·C (plus that padding); bytes: x and gy read from cache KH times, gW written once.
// The same K slices and chains of FMAs as the im2col product (gemm_gathered's promise), so the same bits.
// (conv_backward_weight chooses between the two: gathered_weight_grad.)
// bfloat16 (gy, x; gW float32): the same, the products in float32 (gemm_gathered<bf16> widens A as it packs it
// and x's runs as it loads them), where gathered_weight_grad_bf16 says.
template <typename T, typename Acc = cpu::gemm_acc_t<T>>
void conv_backward_weight_gathered(const T* gy, const T* x, Acc* gw, const Geometry& s) {
  const auto& p = s.p;
  const int64_t span = s.KW * s.C, padded = cpu::gemm_gathered_row_length<T>(span);
  const int64_t rows = s.N * s.OH * s.OW, x_size = s.N * s.H * s.W * s.C;
  const std::vector<T> zeros(size_t(padded), T(0));
  // Output columns whose window lies wholly inside the image's width: ow in [ow_lo, ow_hi), iw0 = ow·sw − pw ≥ 0
  // and iw0 + KW ≤ W.
  const int64_t sw = p.stride_w, ow_lo = std::min(s.OW, (p.pad_w + sw - 1) / sw);
  const int64_t ow_hi =
      std::clamp<int64_t>(s.W - s.KW + p.pad_w >= 0 ? (s.W - s.KW + p.pad_w) / sw + 1 : 0, ow_lo, s.OW);
  // Row r = (img, oh, ow) of B_kh built in `row`: the window's part inside the image, zeros elsewhere.
  auto edge = [&](int64_t img, int64_t ih, int64_t ow, T* row) {
    const int64_t iw0 = ow * sw - p.pad_w, lo = std::clamp<int64_t>(-iw0 * s.C, 0, span),
                  hi = std::clamp<int64_t>((s.W - iw0) * s.C, 0, span);
    std::fill(row, row + padded, T(0));
    if (hi > lo) std::memcpy(row + lo, x + (((img * s.H + ih) * s.W + iw0) * s.C + lo), size_t(hi - lo) * sizeof(T));
    return row;
  };
  cpu::GemmGatheredB<T> b;
  b.groups = s.KH;
  // The slice's rows an output row (img, oh) at a time: a kernel row above or below the image reads zeros; the
  // windows inside the width are pointers stepped by sw·C values, the ones over an edge (or whose whole vectors
  // would read past x's end) are built in scratch. (Decoding each row's (img, oh, ow) and choosing among the three
  // took a fifth of the tiny preset's stem, perf on the Zen 4 VM.)
  b.rows = [&](int64_t kh, int64_t r0, int64_t n, const T** dst, T* scratch) {
    int64_t img = r0 / (s.OH * s.OW), oh = r0 / s.OW % s.OH, ow = r0 % s.OW;
    for (int64_t q = 0; q < n;) {
      const int64_t run = std::min(n - q, s.OW - ow);  // the rest of output row (img, oh) within the slice
      const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
      if (ih < 0 || ih >= s.H) {
        std::fill(dst + q, dst + q + run, zeros.data());
      } else {
        // [e0, e1): the run's windows inside the width (e counted from ow), read where they lie.
        const int64_t line = (img * s.H + ih) * s.W * s.C;
        const int64_t e0 = std::clamp<int64_t>(ow_lo - ow, 0, run);
        int64_t e1 = std::clamp<int64_t>(ow_hi - ow, e0, run);
        while (e1 > e0 && line + ((ow + e1 - 1) * sw - p.pad_w) * s.C + padded > x_size) --e1;
        for (int64_t e = 0; e < e0; ++e) dst[q + e] = edge(img, ih, ow + e, scratch + (q + e) * padded);
        const int64_t first = line + ((ow + e0) * sw - p.pad_w) * s.C;  // offsets, so no pointer leaves x
        for (int64_t e = e0; e < e1; ++e) dst[q + e] = x + (first + (e - e0) * sw * s.C);
        for (int64_t e = e1; e < run; ++e) dst[q + e] = edge(img, ih, ow + e, scratch + (q + e) * padded);
      }
      q += run;
      ow += run;
      if (ow == s.OW) {
        ow = 0;
        if (++oh == s.OH) oh = 0, ++img;
      }
    }
  };
  cpu::gemm_gathered(s.O, span, rows, GemmOperand<T>::strided(gy, 1, s.O), b, gw, s.K, span, false, true);
}

// When conv_backward_weight reads the im2col rows in place: one group, no horizontal dilation, and at most 96
// output channels (one packed group of A panels, 8 × 12 rows, in gemm_gathered). Alternated with the im2col
// product in one process, 2 threads of the Zen 4 VM, same bits: O = 8 … 32 1.4–2.9× faster (the tiny preset's
// 7 × 7 stem over 6 channels, 64 × 64 px, batch 64, 7.7 → 4.1 ms, then 2.9 with gemm_gathered's one-vector
// panels, then 2.83 → 2.29 with the row pointers an output row at a time (previous library against this one in
// alternate processes); its 3 × 3 convolutions over 8 channels 0.92 → 0.32 ms, then 0.28, then 0.33 → 0.27);
// O = 64 … 96 1.20–1.42× (3 × 3 over 64 channels at 56², 13.7 → 9.6 ms; ResNet's 7 × 7 stem over 3 channels at
// 224², 13.0–14.6 → 10.3–11.7 ms, though 21 of each 32-lane panel's values are used); O = 128 … 512 0.78–1.06×, so
// not there.
bool gathered_weight_grad(const Geometry& s) { return s.G == 1 && s.p.dilation_w == 1 && !s.pointwise() && s.O <= 96; }
// bfloat16 reads x's runs in place (gemm_gathered<bf16>, products in float32) with gemm_bf16's path in mind:
//   - on VDPBF16PS dot products, with at most 16 output channels. The dot products do twice the float32 FMAs'
//     work per instruction, but the packed path packs every im2col element, and each serves 2·O FLOPs: the fewer
//     output channels, the more packing dominates. Alternated in one process, 2 threads of the Zen 4 VM, bf16 gy
//     and x, gW float32, batch 64 unless said: O = 8 and 16 1.10–2.6× faster (the tiny preset's stem, 7 × 7 over
//     6 channels at 64², 5.4 → 2.9 ms; 3 × 3 over 8 channels at 16², 0.79 → 0.31; at 32², 3.2 → 1.26; 3 × 3
//     16 → 16 at 16², 1.0 → 0.60; batch 8, 56² × 64 → 16, 3.07 → 2.79); O = 32 0.92–1.27× (8² × 16 → 32 stride 2
//     0.084 → 0.066 ms, 4² × 32 → 32 0.115 → 0.125, batch 8, 56² × 32 → 32 2.93 → 3.00); O = 64 slower (batch 8,
//     56² × 64 → 64 7.1 → 10.1 ms, the 224² ResNet stem 16.8 → 20.4);
//   - on the float32 GEMM (no AVX512-BF16: operands widened as they are packed), where the float32 rule holds:
//     with the dot products ruled out on the same VM, every case above 1.13–4.2× faster (stem 8.3 → 2.9 ms,
//     56² × 64 → 64 13.8 → 10.1, 224² stem 24.6 → 20.7, batch 8, 28² × 96 → 96 6.3 → 5.5);
//   - never on AMX tiles (not measured there).
bool gathered_weight_grad_bf16(const Geometry& s) {
  switch (cpu::gemm_bf16_path()) {
    case cpu::GemmBf16Path::kAmx:
      return false;
    case cpu::GemmBf16Path::kDot:
      return gathered_weight_grad(s) && s.O <= 16;
    case cpu::GemmBf16Path::kFloat32:
      return gathered_weight_grad(s);
  }
  return false;
}
std::atomic<bool> g_gathered_weight_grad{true};
std::atomic<uint64_t> g_gathered_calls{0};

// gW_g (Og, K) = gY_gᵀ (Og, R) · cols_g (R, K) over the whole batch: the GEMM sums over R in a fixed
// order, so the result does not depend on the thread count.
template <typename T, typename Acc = cpu::gemm_acc_t<T>>
void conv_backward_weight(const T* gy, const T* x, Acc* gw, const Geometry& s) {
  if (g_gathered_weight_grad.load(std::memory_order_relaxed) &&
      (std::is_same_v<T, bf16> ? gathered_weight_grad_bf16(s) : gathered_weight_grad(s))) {
    g_gathered_calls.fetch_add(1, std::memory_order_relaxed);
    return conv_backward_weight_gathered(gy, x, gw, s);
  }
  const int64_t rows = s.N * s.OH * s.OW;
  for (int64_t g = 0; g < s.G; ++g) {
    // gY_gᵀ (Og, R): element (o, r) at gy[r·O + g·Og + o].
    cpu::gemm(s.Og, s.K, rows, GemmOperand<T>::strided(gy + g * s.Og, 1, s.O), columns(x, s, g),
                 gw + g * s.Og * s.K, s.K, false, true);
  }
}

// float16 runs in float32: stage the inputs, compute, convert the result into `out`.
template <typename F>
void staged(std::initializer_list<const Tensor*> inputs, Tensor& out, F&& run) {
  std::vector<Tensor> staged_inputs;
  for (const Tensor* t : inputs) staged_inputs.push_back(t->defined() ? cpu::float32_contiguous(*t) : Tensor());
  Tensor tmp = Tensor::empty(out.shape(), DType::Float32, out.device());
  run(staged_inputs, tmp);
  cpu::copy_into(out, tmp);
}

// bfloat16 runs the bfloat16 GEMM on the inputs as they are (contiguous), into float32: into `out` itself
// when it is a contiguous float32 tensor (the CPU's mixed precision, autograd/autocast.h, asks for float32
// results of bfloat16 operands), else converted into it once at the end. A bias is staged to float32: the
// product is added onto it.
template <typename F>
void bf16_to_float32(const Tensor& x, const Tensor& w, Tensor& out, F&& run) {
  const Tensor xc = cpu::contiguous(x), wc = cpu::contiguous(w);
  const bool direct = out.dtype() == DType::Float32 && out.is_contiguous();
  Tensor tmp = direct ? out : Tensor::empty(out.shape(), DType::Float32, out.device());
  run(xc.data<bf16>(), wc.data<bf16>(), tmp.data<float>());
  if (!direct) cpu::copy_into(out, tmp);
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

bool cpu::conv_gathered_weight_grad(bool on) { return g_gathered_weight_grad.exchange(on); }
uint64_t cpu::conv_gathered_weight_grad_calls() { return g_gathered_calls.load(); }

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) {
  if (cpu::onednn_conv2d(x, w, bias, p, y)) return;  // where oneDNN has a faster one (conv_onednn.h)
  const Geometry s(x.shape(), w.shape(), y.shape(), p);
  if (x.dtype() == DType::BFloat16) {  // y bfloat16, or float32 (mixed precision)
    const Tensor b32 = bias.defined() ? cpu::float32_contiguous(bias) : Tensor();
    bf16_to_float32(x, w, y, [&](const bf16* xp, const bf16* wp, float* yp) {
      conv_forward<bf16>(xp, wp, ptr_or_null<float>(b32), yp, s);
    });
    return;
  }
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
  if (cpu::onednn_conv2d_backward_input(gy, w, p, gx)) return;  // where oneDNN has a faster one
  const Geometry s(gx.shape(), w.shape(), gy.shape(), p);
  if (gy.dtype() == DType::BFloat16) {  // gx bfloat16, or float32 (mixed precision)
    bf16_to_float32(gy, w, gx, [&](const bf16* gyp, const bf16* wp, float* gxp) { conv_backward_input(gyp, wp, gxp, s); });
    return;
  }
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
  if (gy.dtype() == DType::BFloat16) {  // gw bfloat16, or float32 (mixed precision)
    bf16_to_float32(gy, x, gw, [&](const bf16* gyp, const bf16* xp, float* gwp) { conv_backward_weight(gyp, xp, gwp, s); });
    return;
  }
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
