// Dropout: out_i = x_i · [u_i ≥ p] / (1 − p),  u_i = philox_uniform(seed, offset + i), i the row-major index.
// Because u_i depends only on (seed, offset + i), the CUDA kernel reproduces the same mask in any thread
// layout, and the backward is this same call on the gradient (same seed and offset, hence same mask).
// The comparison is u_i ≥ float(p) in float32 (what a CUDA kernel taking p as a float computes).
// p ≥ 1 zeroes everything (no division by zero). The scale 1/(1 − p) is rounded once to the compute type
// (float32 for float32/bfloat16/float16, float64 for float64), so a kept element is exactly x·scale.
// Cost: N Philox draws (10 rounds each, ≈ 100 integer ops; drawn in vectorised blocks, tensor/philox.h),
// N multiplies, reads and writes N elements.
#include <algorithm>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "tensor/philox.h"

namespace vb {

namespace {

// C is the compute type: float for float32 and half types, double for float64.
template <typename T, typename C>
void dropout_typed(const T* x, T* out, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const C scale = p >= 1 ? C(0) : C(1.0 / (1.0 - p));
  const float threshold = p >= 1 ? 2.0f : float(p);  // u < 1 always: p ≥ 1 drops everything
  constexpr int64_t kBlock = 1024;                     // uniforms drawn per block (philox_uniform_block)
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelGrain / 8)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    float u[kBlock];
    const int64_t i0 = blk * kBlock, len = std::min(kBlock, n - i0);
    philox_uniform_block(seed, offset + uint64_t(i0), len, u);
    for (int64_t j = 0; j < len; ++j) out[i0 + j] = u[j] >= threshold ? T(C(x[i0 + j]) * scale) : T(C(0));
  }
}

}  // namespace

void CpuBackend::dropout(const Tensor& x_in, double p, uint64_t seed, uint64_t offset, Tensor& out) {
  VB_CHECK(x_in.shape() == out.shape() && x_in.dtype() == out.dtype(),
           "cpu dropout: input {} {} and output {} {} differ", shape_str(x_in.shape()), x_in.dtype(),
           shape_str(out.shape()), out.dtype());
  const Tensor x = cpu::contiguous(x_in);
  const int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::Float32: dropout_typed<float, float>(x.data<float>(), out.data<float>(), n, p, seed, offset); break;
    case DType::Float64:
      dropout_typed<double, double>(x.data<double>(), out.data<double>(), n, p, seed, offset);
      break;
    case DType::BFloat16: dropout_typed<bf16, float>(x.data<bf16>(), out.data<bf16>(), n, p, seed, offset); break;
    case DType::Float16: dropout_typed<f16, float>(x.data<f16>(), out.data<f16>(), n, p, seed, offset); break;
    default: fail("cpu dropout: expected a floating input, got {}", x.dtype());
  }
}

}  // namespace vb
