// Softmax and log-softmax over the last dim of a contiguous (N, C) input, and their backward.
//
//   forward (per row, m = max_j x_j so that no exp overflows):
//     softmax:      y_j = exp(x_j − m) / Σ_k exp(x_k − m)
//     log_softmax:  y_j = x_j − lse,   lse = m + log Σ_k exp(x_k − m)
//   backward (gy = ∂L/∂y):
//     softmax:      gx_j = y_j · (gy_j − Σ_k gy_k·y_k)
//     log_softmax:  gx_j = gy_j − exp(y_j) · Σ_k gy_k
//
// A row that is −inf everywhere gives NaN, as in PyTorch (0/0: there is no distribution to return).
// Cost: forward ≈ 4·N·C FLOPs plus N·C exps, reads and writes N·C elements; backward ≈ 4·N·C FLOPs
// (plus N·C exps for log_softmax), reads 2·N·C and writes N·C elements.
#include <Eigen/Core>
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

template <typename T>
using Row = Eigen::Array<T, Eigen::Dynamic, 1>;

// Rows go through Eigen arrays: its vectorised exp and multi-accumulator sums make the loops SIMD.
template <typename T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  if (cols == 0) return;
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<const Row<T>> xr(x + r * cols, cols);  // (C)
    Eigen::Map<Row<T>> yr(y + r * cols, cols);        // (C)
    const T m = xr.maxCoeff();
    if (log) {
      yr = xr - m;
      yr -= std::log(yr.exp().sum());
    } else {
      yr = (xr - m).exp();
      yr *= T(1) / yr.sum();
    }
  }
}

template <typename T>
void softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols, bool log) {
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<const Row<T>> yr(y + r * cols, cols), gyr(gy + r * cols, cols);
    Eigen::Map<Row<T>> gxr(gx + r * cols, cols);
    if (log) {
      gxr = gyr - yr.exp() * gyr.sum();
    } else {
      gxr = yr * (gyr - (gyr * yr).sum());
    }
  }
}

void check_rows(const char* op, const Tensor& x, const Tensor& y) {
  VB_CHECK(x.dim() == 2 && x.shape() == y.shape() && x.dtype() == y.dtype(),
           "cpu {}: expected (N, C) input and output of one shape and dtype, got {} {} and {} {}", op,
           shape_str(x.shape()), x.dtype(), shape_str(y.shape()), y.dtype());
}

}  // namespace

void CpuBackend::softmax(const Tensor& x_in, Tensor& y, bool log) {
  check_rows("softmax", x_in, y);
  if (is_half(x_in.dtype())) {  // compute in float32
    Tensor yf = Tensor::empty(y.shape(), DType::Float32, y.device());
    softmax(cpu::float32_contiguous(x_in), yf, log);
    cpu::copy_into(y, yf);
    return;
  }
  const Tensor x = cpu::contiguous(x_in);
  const int64_t rows = x.size(0), cols = x.size(1);
  switch (x.dtype()) {
    case DType::Float32: softmax_rows(x.data<float>(), y.data<float>(), rows, cols, log); break;
    case DType::Float64: softmax_rows(x.data<double>(), y.data<double>(), rows, cols, log); break;
    default: fail("cpu softmax: expected a floating input, got {}", x.dtype());
  }
}

void CpuBackend::softmax_backward(const Tensor& y_in, const Tensor& gy_in, Tensor& gx, bool log) {
  check_rows("softmax_backward", y_in, gx);
  check_rows("softmax_backward", gy_in, gx);
  if (is_half(y_in.dtype())) {
    Tensor gxf = Tensor::empty(gx.shape(), DType::Float32, gx.device());
    softmax_backward(cpu::float32_contiguous(y_in), cpu::float32_contiguous(gy_in), gxf, log);
    cpu::copy_into(gx, gxf);
    return;
  }
  const Tensor y = cpu::contiguous(y_in), gy = cpu::contiguous(gy_in);
  const int64_t rows = y.size(0), cols = y.size(1);
  switch (y.dtype()) {
    case DType::Float32:
      softmax_backward_rows(y.data<float>(), gy.data<float>(), gx.data<float>(), rows, cols, log);
      break;
    case DType::Float64:
      softmax_backward_rows(y.data<double>(), gy.data<double>(), gx.data<double>(), rows, cols, log);
      break;
    default: fail("cpu softmax_backward: expected a floating input, got {}", y.dtype());
  }
}

}  // namespace vb
