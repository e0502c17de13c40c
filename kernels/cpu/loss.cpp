// Cross-entropy with label smoothing, per row of (N, C) logits, and its backward.
//
//   forward, per row i with target t and smoothing s (PyTorch's definition: the target distribution is
//   (1 − s)·onehot(t) + s/C everywhere):
//     lse_i  = m + log Σ_j exp(x_ij − m),   m = max_j x_ij
//     loss_i = −Σ_j q_j·log softmax_ij = lse_i − (1 − s)·x_it − s/C·Σ_j x_ij
//   backward:  glogits_ij = gloss_i · (softmax_ij − (1 − s)·[j = t] − s/C),  softmax_ij = exp(x_ij − lse_i)
//   Rows whose target is ignore_index get loss 0 and gradient 0; any other target outside [0, C) is an
//   error naming the row, the target and C.
//
// lse (N) is float32 for float32/bfloat16/float16 logits and float64 for float64 logits.
// Cost: forward ≈ 4·N·C FLOPs plus N·C exps, reads N·C elements; backward the same and writes N·C.
#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// The targets as int64 (read from any strides), each checked against [0, C) unless ignored.
std::vector<int64_t> read_targets(const Tensor& target, int64_t rows, int64_t classes, int64_t ignore_index,
                                  const char* op) {
  VB_CHECK(target.dtype() == DType::Int64 && target.dim() == 1 && target.size(0) == rows,
           "{}: target must be int64 of shape ({}), got {} {}", op, rows, shape_str(target.shape()), target.dtype());
  const Tensor t = cpu::contiguous(target);
  const int64_t* p = t.data<int64_t>();
  std::vector<int64_t> out(p, p + rows);
  for (int64_t i = 0; i < rows; ++i) {
    VB_CHECK(out[size_t(i)] == ignore_index || (out[size_t(i)] >= 0 && out[size_t(i)] < classes),
             "{}: target {} of row {} is out of range [0, {}) for {} classes (ignore_index = {})", op,
             out[size_t(i)], i, classes, classes, ignore_index);
  }
  return out;
}

template <typename T>
void cross_entropy_rows(const T* x, const std::vector<int64_t>& target, int64_t ignore_index, double smoothing,
                        T* loss, T* lse, int64_t rows, int64_t cols) {
  const T s = T(smoothing), on = T(1 - smoothing);
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xr(x + r * cols, cols);  // (C)
    const T m = xr.maxCoeff();
    const T total = s != 0 ? xr.sum() : T(0);
    const T l = m + std::log((xr - m).exp().sum());
    lse[r] = l;
    const int64_t t = target[size_t(r)];
    if (t == ignore_index) {
      loss[r] = 0;
    } else {
      loss[r] = l - on * xr[t] - s / T(cols) * total;
    }
  }
}

template <typename T>
void cross_entropy_backward_rows(const T* x, const std::vector<int64_t>& target, const T* lse, const T* gloss,
                                 int64_t gstride, int64_t ignore_index, double smoothing, T* gx, int64_t rows,
                                 int64_t cols) {
  const T spread = T(smoothing) / T(cols), on = T(1 - smoothing);
#pragma omp parallel for schedule(static) if (rows * cols >= cpu::kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xr(x + r * cols, cols);  // (C)
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> gr(gx + r * cols, cols);
    const int64_t t = target[size_t(r)];
    if (t == ignore_index) {
      gr.setZero();
      continue;
    }
    const T g = gloss[r * gstride], l = lse[r];
    gr = g * ((xr - l).exp() - spread);
    gr[t] -= g * on;
  }
}

}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits_in, const Tensor& target, int64_t ignore_index, double smoothing,
                               Tensor& loss, Tensor& lse) {
  VB_CHECK(logits_in.dim() == 2, "cpu cross_entropy: logits must be (N, C), got {}", shape_str(logits_in.shape()));
  const int64_t rows = logits_in.size(0), cols = logits_in.size(1);
  const std::vector<int64_t> t = read_targets(target, rows, cols, ignore_index, "cross_entropy");
  if (is_half(logits_in.dtype())) {
    Tensor lf = Tensor::empty(loss.shape(), DType::Float32, loss.device());
    cross_entropy(cpu::float32_contiguous(logits_in), target, ignore_index, smoothing, lf, lse);
    cpu::copy_into(loss, lf);
    return;
  }
  const Tensor x = cpu::contiguous(logits_in);
  switch (x.dtype()) {
    case DType::Float32:
      cross_entropy_rows(x.data<float>(), t, ignore_index, smoothing, loss.data<float>(), lse.data<float>(), rows,
                         cols);
      break;
    case DType::Float64:
      cross_entropy_rows(x.data<double>(), t, ignore_index, smoothing, loss.data<double>(), lse.data<double>(), rows,
                         cols);
      break;
    default: fail("cpu cross_entropy: expected floating logits, got {}", x.dtype());
  }
}

void CpuBackend::cross_entropy_backward(const Tensor& logits_in, const Tensor& target, const Tensor& lse,
                                        const Tensor& grad_loss, int64_t ignore_index, double smoothing,
                                        Tensor& glogits) {
  VB_CHECK(logits_in.dim() == 2 && glogits.shape() == logits_in.shape(),
           "cpu cross_entropy_backward: expected (N, C) logits and glogits, got {} and {}",
           shape_str(logits_in.shape()), shape_str(glogits.shape()));
  const int64_t rows = logits_in.size(0), cols = logits_in.size(1);
  VB_CHECK(grad_loss.dim() == 1 && grad_loss.size(0) == rows,
           "cpu cross_entropy_backward: grad_loss must be ({}), got {}", rows, shape_str(grad_loss.shape()));
  const std::vector<int64_t> t = read_targets(target, rows, cols, ignore_index, "cross_entropy_backward");
  if (is_half(logits_in.dtype())) {
    Tensor gf = Tensor::empty(glogits.shape(), DType::Float32, glogits.device());
    cross_entropy_backward(cpu::float32_contiguous(logits_in), target, lse, cpu::float32_contiguous(grad_loss),
                           ignore_index, smoothing, gf);
    cpu::copy_into(glogits, gf);
    return;
  }
  const Tensor x = cpu::contiguous(logits_in);
  // grad_loss is read through its stride: a mean's gradient arrives as one value expanded with stride 0.
  const int64_t gstride = grad_loss.stride(0);
  switch (x.dtype()) {
    case DType::Float32:
      cross_entropy_backward_rows(x.data<float>(), t, lse.data<float>(), grad_loss.data<float>(), gstride,
                                  ignore_index, smoothing, glogits.data<float>(), rows, cols);
      break;
    case DType::Float64:
      cross_entropy_backward_rows(x.data<double>(), t, lse.data<double>(), grad_loss.data<double>(), gstride,
                                  ignore_index, smoothing, glogits.data<double>(), rows, cols);
      break;
    default: fail("cpu cross_entropy_backward: expected floating logits, got {}", x.dtype());
  }
}

}  // namespace vb
