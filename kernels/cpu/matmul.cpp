// Batched matrix product on the CPU through the packed GEMM of kernels/cpu/gemm.cpp.
//
// Math: out[b] (M, N) = a[b] (M, K) · b[b] (K, N).  Backward (autograd/ops_linalg.cpp):
//   ga = g · bᵀ,  gb = aᵀ · g — both again this kernel, on transposed views (no copies).
// Cost: 2·Bt·M·N·K FLOPs; reads Bt·(M·K + K·N) and writes Bt·M·N elements (compute bound once the
// matrices are larger than ~32 on a side).
//
// Operands are passed to the GEMM as strided views (any strides: transposed, sliced, a batch broadcast with
// stride 0); its packing step reads them in place, so nothing is copied here. float32 and float64 run
// natively; bfloat16/float16 are staged through float32.
// Threads: many small matrices → one matrix per thread (OpenMP over the batch, each GEMM on its thread);
// otherwise the batch runs in order and each GEMM uses all threads.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// Products of at most this many multiply-adds run one per thread when there are several in the batch.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

template <typename T>
void matmul_typed(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  T* po = static_cast<T*>(out.data_ptr());
  auto one = [&](int64_t i, bool parallel) {
    cpu::gemm<T>(m, n, k, cpu::GemmOperand<T>::strided(pa + i * a.stride(0), a.stride(1), a.stride(2)),
                 cpu::GemmOperand<T>::strided(pb + i * b.stride(0), b.stride(1), b.stride(2)), po + i * m * n, n,
                 /*accumulate=*/false, parallel);
  };
  if (batch > 1 && m * n * k <= kSmallProduct) {
#pragma omp parallel for schedule(static) if (batch * m * n * k >= cpu::kParallelGrain)
    for (int64_t i = 0; i < batch; ++i) one(i, false);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i, true);
  }
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  VB_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1) &&
               out.size(0) == a.size(0) && out.size(1) == a.size(1) && out.size(2) == b.size(2),
           "cpu matmul: expected a (Bt, M, K), b (Bt, K, N), out (Bt, M, N); got {}, {}, {}", shape_str(a.shape()),
           shape_str(b.shape()), shape_str(out.shape()));
  VB_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype() && is_floating(a.dtype()),
           "cpu matmul: expected one floating dtype, got {}, {} → {}", a.dtype(), b.dtype(), out.dtype());
  if (out.numel() == 0) return;
  const bool direct = out.is_contiguous() && (a.dtype() == DType::Float32 || a.dtype() == DType::Float64);
  if (direct) {
    if (a.dtype() == DType::Float32) matmul_typed<float>(a, b, out);
    else matmul_typed<double>(a, b, out);
    return;
  }
  // Half types (and a strided output): compute in float32 (float64 stays float64), then convert.
  const DType work = a.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor tmp = Tensor::empty(out.shape(), work, out.device());
  if (work == DType::Float64) {
    matmul_typed<double>(a, b, tmp);
  } else {
    const Tensor a32 = a.dtype() == DType::Float32 ? a : cpu::float32_contiguous(a);
    const Tensor b32 = b.dtype() == DType::Float32 ? b : cpu::float32_contiguous(b);
    matmul_typed<float>(a32, b32, tmp);
  }
  cpu::copy_into(out, tmp);
}

}  // namespace vb
