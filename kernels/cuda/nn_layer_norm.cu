// Layer normalisation over the last dim of a contiguous (N, C) input: one fused forward kernel, one
// backward kernel that also produces per-slot partial sums of gw and gb, and a small second kernel
// that adds the partials in slot order (deterministic, no float atomics).
//
//   forward, per row (two passes over the row held in registers: no cancellation):
//     μ = Σ_j x_j / C,   σ² = Σ_j (x_j − μ)² / C,   rstd = 1/√(σ² + eps)
//     x̂_j = (x_j − μ)·rstd,   y_j = x̂_j·w_j + b_j          (mean, rstd saved in float32)
//   backward, with wdy_j = w_j·gy_j (gy_j without a weight):
//     c1 = Σ_j x̂_j·wdy_j / C,   c2 = Σ_j wdy_j / C,   gx_j = (wdy_j − (x̂_j·c1 + c2))·rstd
//     gw_j = Σ_rows gy_j·x̂_j,   gb_j = Σ_rows gy_j
//
// Cost per element: forward ≈ 8 FLOPs, reads x once (rows of C ≤ 1024, and the first 4096 columns of
// longer rows, stay in registers) and writes y: 2·sizeof(T) bytes (+ w, b once per block's rows).
// Backward ≈ 14 FLOPs, reads gy and x twice (the second time from L1/L2) and writes gx: 3·sizeof(T)
// bytes, plus 2·slots·C floats of partials written and read once.
//
// Launch: C ≤ 1024: one warp per row, 4 rows (128 threads) per block (the forward with 16-byte loads and
// stores when C is a multiple of 16/sizeof(T) and the rows are aligned); C > 1024: one block of 256
// threads per row. Thread t of a row handles columns t, t + threads, …. Backward: min(N, 1024)
// (warp form) or min(N, 256) (block form) slots — a slot is one row-owner, a warp or a block — and
// slot s handles rows s, s + slots, …, keeping its gw/gb partials per column in registers; the
// reduction kernel (256 threads per block, one column per thread) adds the slots in order.
#include "kernels/cuda/nn.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nnk::load;
using nnk::store;

constexpr int kWarpRows = 4;        // rows (warps) per block in the warp form
constexpr int kBlockThreads = 256;  // threads per row in the block form
constexpr int kWarpSlots = 1024, kBlockSlots = 256;

// Columns per thread kept in registers: all of a row of ≤ 1024 in the warp form, 4096 in the block form.
template <int kThreads>
constexpr int kCache = kThreads == 32 ? 32 : 16;

template <int kThreads>
__device__ __forceinline__ int thread_in_row() {
  return static_cast<int>(kThreads == 32 ? threadIdx.x % 32 : threadIdx.x);
}

// x, y: (rows, cols); w, b: (cols) or null; mean, rstd: (rows). Launch: see the file comment.
template <class T, int kThreads>
__global__ void layer_norm_forward_kernel(const T* x, const T* w, const T* b, float eps, T* y, float* mean,
                                          float* rstd, int64_t rows, int cols) {
  constexpr int kC = kCache<kThreads>;
  const int t = thread_in_row<kThreads>();
  const int64_t row = kThreads == 32 ? static_cast<int64_t>(blockIdx.x) * kWarpRows + threadIdx.x / 32 : blockIdx.x;
  if (row >= rows) return;
  const T* xr = x + row * cols;  // (C)
  T* yr = y + row * cols;        // (C)
  float cache[kC];               // x at columns t + k·kThreads
  float sum = 0.0f;
VB_NN_UNROLL
  for (int k = 0; k < kC; ++k) {
    const int j = t + k * kThreads;
    cache[k] = j < cols ? load(xr[j]) : 0.0f;
    sum += cache[k];
  }
  for (int j = t + kC * kThreads; j < cols; j += kThreads) sum += load(xr[j]);
  const float mu = nnk::row_sum<kThreads>(sum) / static_cast<float>(cols);
  float sq = 0.0f;
VB_NN_UNROLL
  for (int k = 0; k < kC; ++k) {
    const float d = cache[k] - mu;
    if (t + k * kThreads < cols) sq += d * d;
  }
  for (int j = t + kC * kThreads; j < cols; j += kThreads) {
    const float d = load(xr[j]) - mu;
    sq += d * d;
  }
  const float rs = 1.0f / sqrtf(nnk::row_sum<kThreads>(sq) / static_cast<float>(cols) + eps);
  if (t == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
  auto out = [&](int j, float xj) {
    float v = (xj - mu) * rs;
    if (w) v *= load(w[j]);
    if (b) v += load(b[j]);
    yr[j] = store<T>(v);
  };
VB_NN_UNROLL
  for (int k = 0; k < kC; ++k)
    if (t + k * kThreads < cols) out(t + k * kThreads, cache[k]);
  for (int j = t + kC * kThreads; j < cols; j += kThreads) out(j, load(xr[j]));
}

// The warp form with 16-byte accesses, for rows of C ≤ 1024 with C a multiple of kVec = 16/sizeof(T)
// and 16-byte aligned x, y, w, b: lane l holds the kVec columns from kVec·(l + 32k), k < kChunks, read
// and written as one word each — an eighth (bf16/f16) or a quarter (f32) of the scalar form's memory
// instructions. The same math, rows summed in another fixed order. Launch: as the warp form.
template <class T>
__global__ void layer_norm_forward_words_kernel(const T* x, const T* w, const T* b, float eps, T* y, float* mean,
                                                float* rstd, int64_t rows, int cols) {
  constexpr int kVec = 16 / int(sizeof(T)), kChunks = 1024 / (32 * kVec);
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpRows + threadIdx.x / 32;
  if (row >= rows) return;
  auto words = [](const T* p, int j, float (&out)[kVec]) {  // out ← p[j .. j + kVec)
    T v[kVec];
    const uint4 word = *reinterpret_cast<const uint4*>(p + j);
    memcpy(static_cast<void*>(v), &word, 16);
VB_NN_UNROLL
    for (int e = 0; e < kVec; ++e) out[e] = load(v[e]);
  };
  const T* xr = x + row * cols;
  float cache[kChunks][kVec];
  float sum = 0.0f;
VB_NN_UNROLL
  for (int k = 0; k < kChunks; ++k) {
    const int j = kVec * (lane + 32 * k);
    if (j < cols) {
      words(xr, j, cache[k]);
VB_NN_UNROLL
      for (int e = 0; e < kVec; ++e) sum += cache[k][e];
    }
  }
  const float mu = nnk::row_sum<32>(sum) / static_cast<float>(cols);
  float sq = 0.0f;
VB_NN_UNROLL
  for (int k = 0; k < kChunks; ++k) {
    if (kVec * (lane + 32 * k) >= cols) continue;
VB_NN_UNROLL
    for (int e = 0; e < kVec; ++e) sq += (cache[k][e] - mu) * (cache[k][e] - mu);
  }
  const float rs = 1.0f / sqrtf(nnk::row_sum<32>(sq) / static_cast<float>(cols) + eps);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
VB_NN_UNROLL
  for (int k = 0; k < kChunks; ++k) {
    const int j = kVec * (lane + 32 * k);
    if (j >= cols) continue;
    float wk[kVec], bk[kVec];
    if (w) words(w, j, wk);
    if (b) words(b, j, bk);
    T v[kVec];
VB_NN_UNROLL
    for (int e = 0; e < kVec; ++e) {
      float o = (cache[k][e] - mu) * rs;
      if (w) o *= wk[e];
      if (b) o += bk[e];
      v[e] = store<T>(o);
    }
    uint4 word;
    memcpy(&word, v, 16);
    *reinterpret_cast<uint4*>(y + row * cols + j) = word;
  }
}

// gx (rows, cols); part_w, part_b (slots, cols) float32 or null (no gw/gb wanted). Slot s is warp s
// of the grid (warp form) or block s (block form); it handles rows s, s + slots, ….
template <class T, int kThreads>
__global__ void layer_norm_backward_kernel(const T* gy, const T* x, const T* w, const float* mean, const float* rstd,
                                           T* gx, float* part_w, float* part_b, int64_t rows, int cols, int slots) {
  constexpr int kC = kCache<kThreads>;
  const int t = thread_in_row<kThreads>();
  const int slot = kThreads == 32 ? static_cast<int>(blockIdx.x * kWarpRows + threadIdx.x / 32)
                                  : static_cast<int>(blockIdx.x);
  if (slot >= slots) return;
  const bool partials = part_w != nullptr;
  float pw[kC], pb[kC];  // this thread's partial gw, gb at columns t + k·kThreads
VB_NN_UNROLL
  for (int k = 0; k < kC; ++k) pw[k] = pb[k] = 0.0f;
  float* slot_w = partials ? part_w + static_cast<int64_t>(slot) * cols : nullptr;  // (C)
  float* slot_b = partials ? part_b + static_cast<int64_t>(slot) * cols : nullptr;  // (C)
  if (partials)  // columns past the register cache accumulate in the slot's own partial row
    for (int j = t + kC * kThreads; j < cols; j += kThreads) slot_w[j] = slot_b[j] = 0.0f;

  for (int64_t row = slot; row < rows; row += slots) {
    const T* gyr = gy + row * cols;  // (C)
    const T* xr = x + row * cols;    // (C)
    T* gxr = gx + row * cols;        // (C)
    const float mu = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;  // Σ x̂·wdy, Σ wdy
    for (int j = t; j < cols; j += kThreads) {
      const float g = load(gyr[j]), wdy = w ? load(w[j]) * g : g, xhat = (load(xr[j]) - mu) * rs;
      s1 += xhat * wdy;
      s2 += wdy;
    }
    const float c1 = nnk::row_sum<kThreads>(s1) / static_cast<float>(cols);
    const float c2 = nnk::row_sum<kThreads>(s2) / static_cast<float>(cols);
    auto grad = [&](int j, float& acc_w, float& acc_b) {
      const float g = load(gyr[j]), wdy = w ? load(w[j]) * g : g, xhat = (load(xr[j]) - mu) * rs;
      gxr[j] = store<T>((wdy - (xhat * c1 + c2)) * rs);
      acc_w += g * xhat;
      acc_b += g;
    };
VB_NN_UNROLL
    for (int k = 0; k < kC; ++k)
      if (t + k * kThreads < cols) grad(t + k * kThreads, pw[k], pb[k]);
    for (int j = t + kC * kThreads; j < cols; j += kThreads) {
      float dummy_w = 0.0f, dummy_b = 0.0f;
      float& aw = partials ? slot_w[j] : dummy_w;
      float& ab = partials ? slot_b[j] : dummy_b;
      grad(j, aw, ab);
    }
  }
  if (!partials) return;
VB_NN_UNROLL
  for (int k = 0; k < kC; ++k) {
    const int j = t + k * kThreads;
    if (j < cols) {
      slot_w[j] = pw[k];
      slot_b[j] = pb[k];
    }
  }
}

// gw[j] = Σ_s part_w[s, j], gb[j] = Σ_s part_b[s, j], in slot order. Launch: ceil(C / 256) x 256.
template <class T>
__global__ void layer_norm_partials_kernel(const float* part_w, const float* part_b, T* gw, T* gb, int slots,
                                           int cols) {
  const int j = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (j >= cols) return;
  float sw = 0.0f, sb = 0.0f;
  for (int s = 0; s < slots; ++s) {
    sw += part_w[static_cast<int64_t>(s) * cols + j];
    sb += part_b[static_cast<int64_t>(s) * cols + j];
  }
  if (gw) gw[j] = store<T>(sw);
  if (gb) gb[j] = store<T>(sb);
}

int slots_for(int64_t rows, int64_t cols) {
  return static_cast<int>(std::min<int64_t>(rows, cols <= 1024 ? kWarpSlots : kBlockSlots));
}

void check_rows(const char* op, int64_t rows, int64_t cols) {
  nnk::check(rows >= 0 && cols >= 0 && cols <= INT32_MAX, "{}: expected (N, C) with C < 2^31, got ({}, {})", op,
             rows, cols);
}

}  // namespace

void layer_norm_forward(const void* x, const void* w, const void* b, double eps, void* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, DType dtype, rt::Stream stream) {
  check_rows("layer_norm", rows, cols);
  if (rows == 0 || cols == 0) return;
  nnk::dispatch_floating(dtype, "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const auto* xt = static_cast<const T*>(x);
    const auto *wt = static_cast<const T*>(w), *bt = static_cast<const T*>(b);
    auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };  // null is
    if (cols <= 1024 && cols % (16 / int64_t(sizeof(T))) == 0 && aligned(x) && aligned(y) && aligned(w) &&
        aligned(b)) {
      launch(layer_norm_forward_words_kernel<T>, {blocks_for(rows, kWarpRows), 32 * kWarpRows, 0, stream}, xt,
             wt, bt, static_cast<float>(eps), static_cast<T*>(y), mean, rstd, rows, static_cast<int>(cols));
    } else if (cols <= 1024) {
      launch(layer_norm_forward_kernel<T, 32>, {blocks_for(rows, kWarpRows), 32 * kWarpRows, 0, stream}, xt, wt,
             bt, static_cast<float>(eps), static_cast<T*>(y), mean, rstd, rows, static_cast<int>(cols));
    } else {
      launch(layer_norm_forward_kernel<T, kBlockThreads>, {static_cast<unsigned>(rows), kBlockThreads, 0, stream}, xt,
             wt, bt, static_cast<float>(eps), static_cast<T*>(y), mean, rstd, rows, static_cast<int>(cols));
    }
  });
}

std::size_t layer_norm_backward_workspace_bytes(int64_t rows, int64_t cols) {
  return 2 * static_cast<std::size_t>(slots_for(rows, cols)) * static_cast<std::size_t>(cols) * sizeof(float);
}

void layer_norm_backward(const void* gy, const void* x, const void* w, const float* mean, const float* rstd, void* gx,
                         void* gw, void* gb, int64_t rows, int64_t cols, DType dtype, void* workspace,
                         rt::Stream stream) {
  check_rows("layer_norm_backward", rows, cols);
  const bool partials = gw || gb;
  nnk::check(!partials || workspace || rows * cols == 0,
             "layer_norm_backward: gw/gb requested without a workspace of {} bytes",
             layer_norm_backward_workspace_bytes(rows, cols));
  if (cols == 0) return;
  const int slots = slots_for(rows, cols);
  nnk::dispatch_floating(dtype, "layer_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (rows == 0) {  // no rows: gw = gb = 0
      if (gw) rt::VB_KERNEL_NS::memset_async(gw, 0, cols * sizeof(T), stream);
      if (gb) rt::VB_KERNEL_NS::memset_async(gb, 0, cols * sizeof(T), stream);
      return;
    }
    float* part_w = partials ? static_cast<float*>(workspace) : nullptr;                     // (slots, C)
    float* part_b = partials ? part_w + static_cast<int64_t>(slots) * cols : nullptr;        // (slots, C)
    const auto *gyt = static_cast<const T*>(gy), *xt = static_cast<const T*>(x), *wt = static_cast<const T*>(w);
    if (cols <= 1024) {
      launch(layer_norm_backward_kernel<T, 32>, {blocks_for(slots, kWarpRows), 32 * kWarpRows, 0, stream}, gyt,
             xt, wt, mean, rstd, static_cast<T*>(gx), part_w, part_b, rows, static_cast<int>(cols), slots);
    } else {
      launch(layer_norm_backward_kernel<T, kBlockThreads>, {static_cast<unsigned>(slots), kBlockThreads, 0, stream},
             gyt, xt, wt, mean, rstd, static_cast<T*>(gx), part_w, part_b, rows, static_cast<int>(cols), slots);
    }
    if (partials)
      launch(layer_norm_partials_kernel<T>, {blocks_for(cols, 256), 256, 0, stream}, part_w, part_b,
             static_cast<T*>(gw), static_cast<T*>(gb), slots, static_cast<int>(cols));
  });
}

}  // namespace vb::VB_KERNEL_NS
