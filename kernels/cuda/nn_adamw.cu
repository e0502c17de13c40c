// AdamW as a fused multi-tensor update (train/optim.h's formula, torch.optim.AdamW's):
//
//   g ← g·s                               (only when grad_scale s ≠ 1: clipping's factor, rounded to g's dtype)
//   p ← p·(1 − lr·λ)                      (tensors with decay; decoupled weight decay)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / c1) · m / (√v / √c2 + ε)   c1 = 1 − β1ᵗ, c2 = 1 − β2ᵗ (bias corrections, passed in)
//
// In float32 master arithmetic: p and g are loaded from their storage type (float32, bfloat16 or
// float16), m and v are float32, and p is stored back rounded once. The scalars (1 − lr·λ, 1 − β1,
// 1 − β2, 1/√c2, lr/c1) are computed in double on the host and rounded once to float32.
//
// Cost per element: ≈ 14 FLOPs and one square root; reads p, g, m, v and writes p, m, v:
// 2·sizeof(param) + sizeof(grad) + 16 bytes.
//
// Launch: the tensors travel by value, kMaxTensors per launch (a few launches for a whole model);
// blocks of 256 threads, as many blocks as the largest tensor of the launch needs (at most 1024);
// every block walks every tensor of the launch with a grid stride, so small tensors cost little.
#include "kernels/cuda/nn.h"

#include <algorithm>
#include <cmath>

#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nn_kernels::AdamWHyper;
using nn_kernels::AdamWTensor;

constexpr int kMaxTensors = 24;  // 24 descriptors of 48 bytes stay well inside a launch's 4 KiB of arguments
constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 1024;

struct Pack {
  AdamWTensor tensors[kMaxTensors];
  int count;
};

struct Scalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float decay_factor;  // 1 − lr·λ
  float inv_sqrt_c2;   // 1/√c2
  float step_size;     // lr / c1
  float grad_scale;    // s
  bool weight_decay;   // λ ≠ 0
  bool scaled;         // s ≠ 1
};

__device__ __forceinline__ float load_as(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::BFloat16: return nnk::load(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::Float16: return nnk::load(static_cast<const __half*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store_as(void* p, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::BFloat16: static_cast<__nv_bfloat16*>(p)[i] = nnk::store<__nv_bfloat16>(v); break;
    case DType::Float16: static_cast<__half*>(p)[i] = nnk::store<__half>(v); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}

// v rounded to dtype and read back as float32.
__device__ __forceinline__ float round_as(DType dtype, float v) {
  switch (dtype) {
    case DType::BFloat16: return nnk::load(nnk::store<__nv_bfloat16>(v));
    case DType::Float16: return nnk::load(nnk::store<__half>(v));
    default: return v;
  }
}

__global__ void adamw_kernel(Pack pack, Scalars s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int k = 0; k < pack.count; ++k) {
    const AdamWTensor& t = pack.tensors[k];
    const bool decay = t.decay && s.weight_decay;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < t.numel; i += stride) {
      float g = load_as(t.grad, t.dtype, i);
      if (s.scaled) g = round_as(t.dtype, g * s.grad_scale);  // as scaling the gradient in place would leave it
      float p = load_as(t.param, t.dtype, i);
      if (decay) p *= s.decay_factor;
      const float m = s.beta1 * t.m[i] + s.one_minus_beta1 * g;
      const float v = s.beta2 * t.v[i] + s.one_minus_beta2 * (g * g);
      t.m[i] = m;
      t.v[i] = v;
      p -= m / (sqrtf(v) * s.inv_sqrt_c2 + s.eps) * s.step_size;
      store_as(t.param, t.dtype, i, p);
    }
  }
}

}  // namespace

void adamw(const AdamWTensor* tensors, int count, const AdamWHyper& h, rt::Stream stream) {
  nnk::check(h.bias_correction1 > 0 && h.bias_correction2 > 0,
             "adamw: bias corrections must be positive (1 − β^t for step t ≥ 1), got {} and {}", h.bias_correction1,
             h.bias_correction2);
  const Scalars s{static_cast<float>(h.beta1),
                  static_cast<float>(1 - h.beta1),
                  static_cast<float>(h.beta2),
                  static_cast<float>(1 - h.beta2),
                  static_cast<float>(h.eps),
                  static_cast<float>(1 - h.lr * h.weight_decay),
                  static_cast<float>(1 / std::sqrt(h.bias_correction2)),
                  static_cast<float>(h.lr / h.bias_correction1),
                  static_cast<float>(h.grad_scale),
                  h.weight_decay != 0,
                  h.grad_scale != 1};
  for (int first = 0; first < count; first += kMaxTensors) {
    Pack pack{};
    pack.count = std::min(kMaxTensors, count - first);
    int64_t largest = 0;
    for (int k = 0; k < pack.count; ++k) {
      const AdamWTensor& t = tensors[first + k];
      nnk::check(t.dtype == DType::Float32 || t.dtype == DType::BFloat16 || t.dtype == DType::Float16,
                 "adamw: tensor {} is {}, expected float32, bfloat16 or float16", first + k, t.dtype);
      pack.tensors[k] = t;
      largest = std::max(largest, t.numel);
    }
    if (largest == 0) continue;
    const unsigned blocks = std::min(kMaxBlocks, blocks_for(largest, kThreads));
    launch(adamw_kernel, {blocks, kThreads, 0, stream}, pack, s);
  }
}

}  // namespace vb::VB_KERNEL_NS
