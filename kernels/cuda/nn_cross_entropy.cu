// Fused cross-entropy with label smoothing over (N, C) logits and int64 targets; the softmax is
// never materialised.
//
//   forward, per row i with target t and smoothing s (one online pass: running max m and
//   Σ exp(x − m), plus Σ_j x_j when s ≠ 0 and x_t):
//     lse_i  = m + log Σ_j exp(x_ij − m)
//     loss_i = lse_i − (1 − s)·x_it − s/C·Σ_j x_ij          (0 when t = ignore_index)
//   backward, elementwise from the logits and the saved lse:
//     glogits_ij = gloss_i·(exp(x_ij − lse_i) − s/C) − gloss_i·(1 − s)·[j = t]   (0 for ignored rows)
//   A target outside [0, C) other than ignore_index is an error naming the row, as on the CPU.
//
// Cost per element: forward ≈ 4 FLOPs + 1 exp, reads the logits once (sizeof(T) bytes);
// backward ≈ 4 FLOPs + 1 exp, reads the logits and writes glogits (2·sizeof(T) bytes).
//
// Launch: forward as softmax: C ≤ 1024 one warp per row (4 rows per 128-thread block), else a block
// of 512 threads per row. Backward: one thread per element, blocks of 256.
#include "kernels/cuda/nn.h"
#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nnk::load;
using nnk::store;

constexpr int kWarpRows = 4;
constexpr int kBlockThreads = 512;

// loss (rows, T), lse (rows, float32). Bad targets go to the error record.
template <class T, int kThreads>
__global__ void cross_entropy_forward_kernel(const T* logits, const int64_t* target, int64_t rows, int cols,
                                             int64_t ignore_index, float smoothing, float on, T* loss, float* lse,
                                             unsigned long long* error) {
  const int t = static_cast<int>(kThreads == 32 ? threadIdx.x % 32 : threadIdx.x);
  const int64_t row = kThreads == 32 ? static_cast<int64_t>(blockIdx.x) * kWarpRows + threadIdx.x / 32 : blockIdx.x;
  if (row >= rows) return;
  const T* xr = logits + row * cols;  // (C)
  nnk::MaxSum a;
  float total = 0.0f;
  for (int j = t; j < cols; j += kThreads) {
    const float v = load(xr[j]);
    nnk::online_add(a, v);
    total += v;
  }
  a = nnk::row_merge<kThreads>(a);
  if (smoothing != 0.0f) total = nnk::row_sum<kThreads>(total);
  if (t != 0) return;
  const float l = a.m + logf(a.s);
  lse[row] = l;
  const int64_t tgt = target[row];
  if (tgt == ignore_index) {
    loss[row] = store<T>(0.0f);
  } else if (tgt < 0 || tgt >= cols) {
    nnk::report(error, row);
  } else {
    loss[row] = store<T>(l - on * load(xr[tgt]) - smoothing / static_cast<float>(cols) * (smoothing != 0.0f ? total : 0.0f));
  }
}

// glogits (rows, cols); grad_loss read at i·gstride. One thread per element.
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, const float* lse,
                                              const T* grad_loss, int64_t gstride, int64_t rows, int64_t cols,
                                              int64_t ignore_index, float spread, float on, T* glogits,
                                              unsigned long long* error) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t row = i / cols, j = i % cols;
  const int64_t tgt = target[row];
  if (tgt == ignore_index) {
    glogits[i] = store<T>(0.0f);
    return;
  }
  if (tgt < 0 || tgt >= cols) {
    nnk::report(error, row);
    return;
  }
  const float g = load(grad_loss[row * gstride]);
  float v = g * (expf(load(logits[i]) - lse[row]) - spread);
  if (j == tgt) v -= g * on;
  glogits[i] = store<T>(v);
}

// Throws the CPU backend's error for the first bad target the kernel reported, if any.
void check_targets(const char* op, const int64_t* target, int64_t cols, int64_t ignore_index, rt::Stream stream) {
  const unsigned long long row = nnk::ErrorRecord::first_bad(stream);
  if (row == nnk::ErrorRecord::kNone) return;
  const int64_t t = nnk::read_index(target, static_cast<int64_t>(row), true);
  nnk::raise("{}: target {} of row {} is out of range [0, {}) for {} classes (ignore_index = {})", op, t, row, cols,
             cols, ignore_index);
}

}  // namespace

void cross_entropy_forward(const void* logits, const int64_t* target, int64_t rows, int64_t cols, DType dtype,
                           int64_t ignore_index, double smoothing, void* loss, float* lse, rt::Stream stream) {
  nnk::check(rows >= 0 && cols > 0 && cols <= INT32_MAX, "cross_entropy: expected (N, C) logits with C ≥ 1, got ({}, {})",
             rows, cols);
  if (rows == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  nnk::dispatch_floating(dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const auto* x = static_cast<const T*>(logits);
    if (cols <= 1024) {
      launch(cross_entropy_forward_kernel<T, 32>, {blocks_for(rows, kWarpRows), 32 * kWarpRows, 0, stream}, x,
             target, rows, static_cast<int>(cols), ignore_index, static_cast<float>(smoothing),
             static_cast<float>(1 - smoothing), static_cast<T*>(loss), lse, error);
    } else {
      launch(cross_entropy_forward_kernel<T, kBlockThreads>, {static_cast<unsigned>(rows), kBlockThreads, 0, stream},
             x, target, rows, static_cast<int>(cols), ignore_index, static_cast<float>(smoothing),
             static_cast<float>(1 - smoothing), static_cast<T*>(loss), lse, error);
    }
  });
  check_targets("cross_entropy", target, cols, ignore_index, stream);
}

void cross_entropy_backward(const void* logits, const int64_t* target, const float* lse, const void* grad_loss,
                            int64_t grad_loss_stride, int64_t rows, int64_t cols, DType dtype, int64_t ignore_index,
                            double smoothing, void* glogits, rt::Stream stream) {
  nnk::check(rows >= 0 && cols > 0, "cross_entropy_backward: expected (N, C) logits with C ≥ 1, got ({}, {})", rows,
             cols);
  if (rows == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  // The CPU's constants: s/C and 1 − s rounded once to float32.
  const float spread = static_cast<float>(smoothing) / static_cast<float>(cols);
  const auto on = static_cast<float>(1 - smoothing);
  nnk::dispatch_floating(dtype, "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    launch(cross_entropy_backward_kernel<T>, {blocks_for(rows * cols, 256), 256, 0, stream},
           static_cast<const T*>(logits), target, lse, static_cast<const T*>(grad_loss), grad_loss_stride, rows, cols,
           ignore_index, spread, on, static_cast<T*>(glogits), error);
  });
  check_targets("cross_entropy_backward", target, cols, ignore_index, stream);
}

}  // namespace vb::VB_KERNEL_NS
