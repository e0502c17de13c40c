// Batched matrix product on the CPU through the packed GEMM of kernels/cpu/gemm.cpp.
//
// Math: out[b] (M, N) = a[b] (M, K) · b[b] (K, N) (+ bias (N) on every row: matmul_bias, the forward of
// linear with a bias).  Backward (autograd/ops_linalg.cpp):
//   ga = g · bᵀ,  gb = aᵀ · g — both again this kernel, on transposed views (no copies).
// Cost: 2·Bt·M·N·K FLOPs; reads Bt·(M·K + K·N) and writes Bt·M·N elements (compute bound once the
// matrices are larger than ~32 on a side).
//
// Operands are passed to the GEMM as strided views (any strides: transposed, sliced, a batch broadcast with
// stride 0); its packing step reads them in place, so nothing is copied here. float32 and float64 run
// natively; bfloat16 runs the bfloat16 GEMM (AMX tiles, gemm_bf16.cpp) into float32, rounded once when
// stored; float16 is staged through float32.
// Threads: many small matrices → one matrix per thread (OpenMP over the batch, each GEMM on its thread);
// otherwise the batch runs in order and each GEMM uses all threads.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// Products of at most this many multiply-adds run one per thread when there are several in the batch.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

// T: the operands' type; out is gemm_acc_t<T> (float32 for bfloat16).
template <typename T>
void matmul_typed(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  auto* po = static_cast<cpu::gemm_acc_t<T>*>(out.data_ptr());
  auto one = [&](int64_t i, bool parallel) {
    cpu::gemm(m, n, k, cpu::GemmOperand<T>::strided(pa + i * a.stride(0), a.stride(1), a.stride(2)),
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

// Checks the operands, then computes a·b into `out` when it can take the product directly (contiguous,
// float32 or float64) or else into a contiguous float32 (float64) tensor, which it returns; nothing
// (an undefined tensor) when out is empty. bfloat16 operands go to the bfloat16 GEMM (AMX where the
// machine has it) as they are — into `out` itself when it is a contiguous float32 tensor (the CPU's
// mixed precision, autograd/autocast.h, asks for float32 results of bfloat16 operands); float16 ones are
// staged through float32.
Tensor product(const char* op, const Tensor& a, const Tensor& b, Tensor& out) {
  VB_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1) &&
               out.size(0) == a.size(0) && out.size(1) == a.size(1) && out.size(2) == b.size(2),
           "cpu {}: expected a (Bt, M, K), b (Bt, K, N), out (Bt, M, N); got {}, {}, {}", op, shape_str(a.shape()),
           shape_str(b.shape()), shape_str(out.shape()));
  const bool mixed = a.dtype() == DType::BFloat16 && out.dtype() == DType::Float32;
  VB_CHECK(a.dtype() == b.dtype() && (a.dtype() == out.dtype() || mixed) && is_floating(a.dtype()),
           "cpu {}: expected one floating dtype (or bfloat16 operands with a float32 result), got {}, {} → {}", op,
           a.dtype(), b.dtype(), out.dtype());
  if (out.numel() == 0) return {};
  if (mixed && out.is_contiguous()) {
    matmul_typed<bf16>(a, b, out);
    return out;
  }
  const bool direct = out.is_contiguous() && (a.dtype() == DType::Float32 || a.dtype() == DType::Float64);
  if (direct) {
    if (a.dtype() == DType::Float32) matmul_typed<float>(a, b, out);
    else matmul_typed<double>(a, b, out);
    return out;
  }
  const DType work = a.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor tmp = Tensor::empty(out.shape(), work, out.device());
  if (work == DType::Float64) {
    matmul_typed<double>(a, b, tmp);
  } else if (a.dtype() == DType::BFloat16) {
    matmul_typed<bf16>(a, b, tmp);
  } else {
    const Tensor a32 = a.dtype() == DType::Float32 ? a : cpu::float32_contiguous(a);
    const Tensor b32 = b.dtype() == DType::Float32 ? b : cpu::float32_contiguous(b);
    matmul_typed<float>(a32, b32, tmp);
  }
  return tmp;
}

// acc (rows, n) += bias (n) on every row.
template <typename T>
void add_bias(T* acc, const T* bias, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n >= cpu::kParallelGrain)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) acc[r * n + j] += bias[j];
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  const Tensor product_ = product("matmul", a, b, out);
  if (product_.defined() && !product_.same(out)) cpu::copy_into(out, product_);
}

void CpuBackend::matmul_bias(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) {
  VB_CHECK(bias.dim() == 1 && out.dim() == 3 && bias.size(0) == out.size(2) && bias.dtype() == out.dtype(),
           "cpu matmul_bias: bias {} {} for out {} {} (expected ({}) of out's dtype)", shape_str(bias.shape()),
           bias.dtype(), shape_str(out.shape()), out.dtype(), out.dim() == 3 ? out.size(2) : 0);
  Tensor acc = product("matmul_bias", a, b, out);  // contiguous, float32 or float64
  if (!acc.defined()) return;
  const int64_t rows = acc.size(0) * acc.size(1), n = acc.size(2);
  if (acc.dtype() == DType::Float64) {
    const Tensor b64 = cpu::contiguous(bias);
    add_bias(static_cast<double*>(acc.data_ptr()), static_cast<const double*>(b64.data_ptr()), rows, n);
  } else {
    const Tensor b32 = cpu::float32_contiguous(bias);
    add_bias(static_cast<float*>(acc.data_ptr()), static_cast<const float*>(b32.data_ptr()), rows, n);
  }
  if (!acc.same(out)) cpu::copy_into(out, acc);  // the one rounding of half types
}

}  // namespace vb
