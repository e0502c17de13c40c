// Layer normalisation over the last dim of a contiguous (N, C) input.
//
//   forward, per row:  μ = Σ_j x_j / C,   σ² = Σ_j (x_j − μ)² / C   (two passes: no cancellation)
//                      rstd = 1/√(σ² + eps),   x̂_j = (x_j − μ)·rstd,   y_j = x̂_j·w_j + b_j
//   backward (gy = ∂L/∂y). With wdy_j = w_j·gy_j (gy_j when there is no weight), per row:
//                      c1 = Σ_j x̂_j·wdy_j / C      (the part of the gradient along x̂)
//                      c2 = Σ_j wdy_j / C          (the part along the mean)
//                      gx_j = (wdy_j − (x̂_j·c1 + c2))·rstd
//     which is ∂/∂x_j of Σ_k wdy_k·x̂_k: x̂ depends on x through x − μ (removing c2) and through rstd
//     (∂rstd/∂x_j = −rstd³·(x_j − μ)/C, giving x̂_j·c1). Over rows:
//                      gw_j = Σ_rows gy_j·x̂_j,   gb_j = Σ_rows gy_j
//
// mean and rstd (N) are saved in float32 for float32/bfloat16/float16 inputs and in float64 for float64
// inputs (the statistics' dtype is the dtype the arithmetic runs in).
// gw and gb are reduced deterministically: rows are cut into blocks whose size depends only on N, each
// block sums into its own partial row, and the partials are added in block order.
// Cost: forward ≈ 8·N·C FLOPs, reads N·C (+2C) and writes N·C elements (+2N statistics);
// backward ≈ 12·N·C FLOPs, reads 2·N·C (+C) and writes N·C (+2C) elements.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

template <typename T>
using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using RowMap = Eigen::Map<const Row<T>>;

// Rows go through Eigen arrays: its multi-accumulator sums vectorise where a plain float loop cannot
// (reassociating a float sum is not allowed without -ffast-math).
template <typename T>
void layer_norm_rows(const T* x, const T* w, const T* b, double eps, T* y, T* mean, T* rstd, int64_t rows,
                     int64_t cols) {
  if (cols == 0) return;
  const RowMap<T> wv(w ? w : x, w ? cols : 0), bv(b ? b : x, b ? cols : 0);  // (C), or empty when absent
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const RowMap<T> xr(x + r * cols, cols);  // (C)
    Eigen::Map<Row<T>> yr(y + r * cols, cols);
    const T mu = xr.sum() / T(cols);
    const T rs = T(1) / std::sqrt((xr - mu).square().sum() / T(cols) + T(eps));
    mean[r] = mu;
    rstd[r] = rs;
    if (w && b) yr = (xr - mu) * rs * wv + bv;
    else if (w) yr = (xr - mu) * rs * wv;
    else if (b) yr = (xr - mu) * rs + bv;
    else yr = (xr - mu) * rs;
  }
}

template <typename T>
void layer_norm_backward_rows(const T* gy, const T* x, const T* w, const T* mean, const T* rstd, T* gx, T* gw,
                              T* gb, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  // Row blocks for the gw/gb partial sums: at most 64 blocks, their size a function of N alone.
  const int64_t block = std::max<int64_t>(16, (rows + 63) / 64);
  const int64_t blocks = (rows + block - 1) / block;
  const bool partials = gw || gb;
  std::vector<T> part_w(partials ? size_t(blocks * cols) : 0, T(0));  // (blocks, C)
  std::vector<T> part_b(partials ? size_t(blocks * cols) : 0, T(0));  // (blocks, C)
  const RowMap<T> wv(w ? w : x, cols);  // (C); unused without a weight
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && blocks > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t end = std::min(rows, (blk + 1) * block);
    for (int64_t r = blk * block; r < end; ++r) {
      const RowMap<T> xr(x + r * cols, cols), gyr(gy + r * cols, cols);
      Eigen::Map<Row<T>> gxr(gx + r * cols, cols);
      const T mu = mean[r], rs = rstd[r];
      const auto xhat = (xr - mu) * rs;
      if (w) {
        const auto wdy = wv * gyr;
        const T c1 = (xhat * wdy).sum() / T(cols);
        const T c2 = wdy.sum() / T(cols);
        gxr = (wdy - (xhat * c1 + c2)) * rs;
      } else {
        const T c1 = (xhat * gyr).sum() / T(cols);
        const T c2 = gyr.sum() / T(cols);
        gxr = (gyr - (xhat * c1 + c2)) * rs;
      }
      if (partials) {
        Eigen::Map<Row<T>>(part_w.data() + blk * cols, cols) += gyr * xhat;
        Eigen::Map<Row<T>>(part_b.data() + blk * cols, cols) += gyr;
      }
    }
  }
  if (!partials) return;
  for (int64_t blk = 1; blk < blocks; ++blk) {  // in block order: deterministic
    Eigen::Map<Row<T>>(part_w.data(), cols) += RowMap<T>(part_w.data() + blk * cols, cols);
    Eigen::Map<Row<T>>(part_b.data(), cols) += RowMap<T>(part_b.data() + blk * cols, cols);
  }
  if (gw) std::copy(part_w.begin(), part_w.begin() + cols, gw);
  if (gb) std::copy(part_b.begin(), part_b.begin() + cols, gb);
}

template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <typename T>
T* data_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

Tensor float32_or_undefined(const Tensor& t) { return t.defined() ? cpu::float32_contiguous(t) : Tensor(); }
Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? cpu::contiguous(t) : Tensor(); }
Tensor float32_like(const Tensor& t) {
  return t.defined() ? Tensor::empty(t.shape(), DType::Float32, t.device()) : Tensor();
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps, Tensor& y,
                            Tensor& mean, Tensor& rstd) {
  VB_CHECK(x_in.dim() == 2 && y.shape() == x_in.shape(), "cpu layer_norm: expected (N, C) x and y, got {} and {}",
           shape_str(x_in.shape()), shape_str(y.shape()));
  if (is_half(x_in.dtype())) {
    Tensor yf = Tensor::empty(y.shape(), DType::Float32, y.device());
    layer_norm(cpu::float32_contiguous(x_in), float32_or_undefined(w_in), float32_or_undefined(b_in), eps, yf, mean,
               rstd);
    cpu::copy_into(y, yf);
    return;
  }
  const Tensor x = cpu::contiguous(x_in), w = contiguous_or_undefined(w_in), b = contiguous_or_undefined(b_in);
  const int64_t rows = x.size(0), cols = x.size(1);
  switch (x.dtype()) {
    case DType::Float32:
      layer_norm_rows(x.data<float>(), data_or_null<float>(w), data_or_null<float>(b), eps, y.data<float>(),
                      mean.data<float>(), rstd.data<float>(), rows, cols);
      break;
    case DType::Float64:
      layer_norm_rows(x.data<double>(), data_or_null<double>(w), data_or_null<double>(b), eps, y.data<double>(),
                      mean.data<double>(), rstd.data<double>(), rows, cols);
      break;
    default: fail("cpu layer_norm: expected a floating input, got {}", x.dtype());
  }
}

void CpuBackend::layer_norm_backward(const Tensor& gy_in, const Tensor& x_in, const Tensor& w_in, const Tensor& mean,
                                     const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) {
  VB_CHECK(x_in.dim() == 2 && gy_in.shape() == x_in.shape() && gx.shape() == x_in.shape(),
           "cpu layer_norm_backward: expected (N, C) gy, x and gx, got {}, {} and {}", shape_str(gy_in.shape()),
           shape_str(x_in.shape()), shape_str(gx.shape()));
  if (is_half(x_in.dtype())) {
    Tensor gxf = float32_like(gx), gwf = float32_like(gw), gbf = float32_like(gb);
    layer_norm_backward(cpu::float32_contiguous(gy_in), cpu::float32_contiguous(x_in), float32_or_undefined(w_in),
                        mean, rstd, gxf, gwf, gbf);
    cpu::copy_into(gx, gxf);
    if (gw.defined()) cpu::copy_into(gw, gwf);
    if (gb.defined()) cpu::copy_into(gb, gbf);
    return;
  }
  const Tensor gy = cpu::contiguous(gy_in), x = cpu::contiguous(x_in), w = contiguous_or_undefined(w_in);
  const int64_t rows = x.size(0), cols = x.size(1);
  switch (x.dtype()) {
    case DType::Float32:
      layer_norm_backward_rows(gy.data<float>(), x.data<float>(), data_or_null<float>(w), mean.data<float>(),
                               rstd.data<float>(), gx.data<float>(), data_or_null<float>(gw),
                               data_or_null<float>(gb), rows, cols);
      break;
    case DType::Float64:
      layer_norm_backward_rows(gy.data<double>(), x.data<double>(), data_or_null<double>(w), mean.data<double>(),
                               rstd.data<double>(), gx.data<double>(), data_or_null<double>(gw),
                               data_or_null<double>(gb), rows, cols);
      break;
    default: fail("cpu layer_norm_backward: expected a floating input, got {}", x.dtype());
  }
}

}  // namespace vb
