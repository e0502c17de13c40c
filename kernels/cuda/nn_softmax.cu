// Softmax and log-softmax over the last dim of a contiguous (N, C) input, and their backward.
//
//   forward, per row (online: one pass keeps the running max m and Σ exp(x − m), rescaling the sum
//   whenever the max rises; threads merge their (m, s) pairs by the same rule):
//     lse = m + log Σ_k exp(x_k − m)
//     softmax:      y_j = exp(x_j − m) / Σ_k exp(x_k − m)
//     log_softmax:  y_j = x_j − lse
//   backward (gy = ∂L/∂y):
//     softmax:      gx_j = y_j · (gy_j − Σ_k gy_k·y_k)
//     log_softmax:  gx_j = gy_j − exp(y_j) · Σ_k gy_k
//   A row that is −inf everywhere gives NaN, as on the CPU.
//
// Cost per element: forward ≈ 5 FLOPs + 2 exps, reads x twice (the second time from L1/L2) and
// writes y once: 2·sizeof(T) bytes of DRAM traffic. Backward ≈ 4 FLOPs (+1 exp for log), reads y
// and gy twice, writes gx: 3·sizeof(T) bytes.
//
// Launch: C ≤ 1024: one warp per row, 4 rows (128 threads) per block; C > 1024: one block of 512
// threads per row. Thread t of a row handles columns t, t + threads, …; sums run in fixed trees
// (row_sum / row_merge), so results do not depend on thread order.
#include "kernels/cuda/nn.h"
#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nnk::load;
using nnk::store;

constexpr int kWarpRows = 4;        // rows per block in the warp-per-row form
constexpr int kBlockThreads = 512;  // threads per row in the block-per-row form

// The row this thread works on and its index within the row's threads.
template <int kThreads>
__device__ __forceinline__ int64_t row_of(int& t) {
  if constexpr (kThreads == 32) {
    t = static_cast<int>(threadIdx.x % 32);
    return static_cast<int64_t>(blockIdx.x) * kWarpRows + threadIdx.x / 32;
  } else {
    t = static_cast<int>(threadIdx.x);
    return blockIdx.x;
  }
}

// x, y: (rows, cols). Launch: see the file comment.
template <class T, int kThreads>
__global__ void softmax_forward_kernel(const T* x, T* y, int64_t rows, int cols, bool log) {
  int t;
  const int64_t row = row_of<kThreads>(t);
  if (row >= rows) return;  // a whole warp leaves (the block form has one row per block)
  const T* xr = x + row * cols;  // (C)
  T* yr = y + row * cols;        // (C)
  nnk::MaxSum a;
  for (int j = t; j < cols; j += kThreads) nnk::online_add(a, load(xr[j]));
  a = nnk::row_merge<kThreads>(a);
  if (log) {
    const float lse = a.m + logf(a.s);
    for (int j = t; j < cols; j += kThreads) yr[j] = store<T>(load(xr[j]) - lse);
  } else {
    const float inv = 1.0f / a.s;
    for (int j = t; j < cols; j += kThreads) yr[j] = store<T>(expf(load(xr[j]) - a.m) * inv);
  }
}

template <class T, int kThreads>
__global__ void softmax_backward_kernel(const T* y, const T* gy, T* gx, int64_t rows, int cols, bool log) {
  int t;
  const int64_t row = row_of<kThreads>(t);
  if (row >= rows) return;
  const T* yr = y + row * cols;    // (C)
  const T* gyr = gy + row * cols;  // (C)
  T* gxr = gx + row * cols;        // (C)
  float dot = 0.0f;  // Σ gy·y (softmax) or Σ gy (log_softmax)
  for (int j = t; j < cols; j += kThreads) dot += log ? load(gyr[j]) : load(gyr[j]) * load(yr[j]);
  dot = nnk::row_sum<kThreads>(dot);
  for (int j = t; j < cols; j += kThreads) {
    const float yj = load(yr[j]), gj = load(gyr[j]);
    gxr[j] = store<T>(log ? gj - expf(yj) * dot : yj * (gj - dot));
  }
}

void check_rows(const char* op, int64_t rows, int64_t cols) {
  nnk::check(rows >= 0 && cols >= 0 && cols <= INT32_MAX, "{}: expected (N, C) with C < 2^31, got ({}, {})", op, rows,
           cols);
}

// Runs kernel<T, 32> (warp per row) or kernel<T, 512> (block per row) for the row length.
template <class WarpKernel, class BlockKernel, class... Args>
void launch_rows(WarpKernel warp_kernel, BlockKernel block_kernel, int64_t rows, int64_t cols, rt::Stream stream,
                 Args... args) {
  if (rows == 0 || cols == 0) return;
  if (cols <= 1024) {
    launch(warp_kernel, {blocks_for(rows, kWarpRows), 32 * kWarpRows, 0, stream}, args...);
  } else {
    launch(block_kernel, {static_cast<unsigned>(rows), kBlockThreads, 0, stream}, args...);
  }
}

}  // namespace

void softmax_forward(const void* x, void* y, int64_t rows, int64_t cols, DType dtype, bool log, rt::Stream stream) {
  check_rows("softmax", rows, cols);
  nnk::dispatch_floating(dtype, "softmax", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(softmax_forward_kernel<T, 32>, softmax_forward_kernel<T, kBlockThreads>, rows, cols, stream,
                static_cast<const T*>(x), static_cast<T*>(y), rows, static_cast<int>(cols), log);
  });
}

void softmax_backward(const void* y, const void* gy, void* gx, int64_t rows, int64_t cols, DType dtype, bool log,
                      rt::Stream stream) {
  check_rows("softmax_backward", rows, cols);
  nnk::dispatch_floating(dtype, "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(softmax_backward_kernel<T, 32>, softmax_backward_kernel<T, kBlockThreads>, rows, cols, stream,
                static_cast<const T*>(y), static_cast<const T*>(gy), static_cast<T*>(gx), rows,
                static_cast<int>(cols), log);
  });
}

}  // namespace vb::VB_KERNEL_NS
