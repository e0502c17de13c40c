// Batched matrix product on the CPU through the packed GEMM of kernels/cpu/gemm.cpp.
//
// Math: out[b] (M, N) = a[b] (M, K) · b[b] (K, N) (+ bias (N) on every row: matmul_bias, the forward of
// linear with a bias; + out's own values: matmul_add, a gradient joining a sum).  Backward (autograd/ops_linalg.cpp):
//   ga = g · bᵀ,  gb = aᵀ · g — both again this kernel, on transposed views (no copies).
// Cost: 2·Bt·M·N·K FLOPs; reads Bt·(M·K + K·N) and writes Bt·M·N elements (compute bound once the
// matrices are larger than ~32 on a side).
//
// Operands are passed to the GEMM as strided views (any strides: transposed, sliced, a batch broadcast with
// stride 0); its packing step reads them in place, so nothing is copied here. float32 and float64 run
// natively; bfloat16 runs the bfloat16 GEMM (AMX tiles, gemm_bf16.cpp) with float32 sums, which its epilogue
// adds the bias to and rounds once as they leave the tiles; float16 is staged through float32.
// Threads: many small matrices → one matrix per thread (OpenMP over the batch, each GEMM on its thread);
// otherwise the batch runs in order and each GEMM uses all threads.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// Products of at most this many multiply-adds run one per thread when there are several in the batch.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

// T: the operands' type; out is gemm_acc_t<T> (float32 for bfloat16). bias (n values, or null) is added to every
// row as the GEMM stores its sums; with `accumulate` the sums are added to out's values (C += A·B). For
// bfloat16, out16 (or null) takes the result rounded to bfloat16 (out is then only the GEMM's scratch).
template <typename T>
void matmul_typed(const Tensor& a, const Tensor& b, Tensor& out, const cpu::gemm_acc_t<T>* bias = nullptr,
                  [[maybe_unused]] bf16* out16 = nullptr, bool accumulate = false) {
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  auto* po = static_cast<cpu::gemm_acc_t<T>*>(out.data_ptr());
  auto one = [&](int64_t i, bool parallel) {
    const auto oa = cpu::GemmOperand<T>::strided(pa + i * a.stride(0), a.stride(1), a.stride(2));
    const auto ob = cpu::GemmOperand<T>::strided(pb + i * b.stride(0), b.stride(1), b.stride(2));
    if constexpr (std::is_same_v<T, bf16>) {
      cpu::GemmBf16Epilogue ep;
      ep.bias = bias, ep.out = out16 ? out16 + i * m * n : nullptr, ep.ldo = n;
      cpu::gemm_bf16(m, n, k, oa, ob, po + i * m * n, n, accumulate, parallel, ep);
    } else {
      cpu::gemm(m, n, k, oa, ob, po + i * m * n, n, accumulate, parallel, bias);
    }
  };
  if (batch > 1 && m * n * k <= kSmallProduct) {
#pragma omp parallel for schedule(static) if (batch * m * n * k >= cpu::kParallelGrain)
    for (int64_t i = 0; i < batch; ++i) one(i, false);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i, true);
  }
}

// Checks the operands, then computes a·b (+ bias on every row, when bias is defined) into `out` when it can
// take the product directly, or else into a contiguous float32 (float64) tensor, which it returns; nothing
// (an undefined tensor) when out is empty. Directly: a contiguous float32 or float64 out; and for bfloat16
// operands a contiguous float32 out (the CPU's mixed precision, autograd/autocast.h, asks for float32 results
// of bfloat16 operands) or a contiguous bfloat16 one, which the bfloat16 GEMM (AMX where the machine has it)
// rounds into as the sums leave the tiles (cpu::GemmBf16Epilogue). The GEMMs add the bias as they store the
// sums. float16 operands are staged through float32. The sums, then + bias, then one rounding: the same bits
// whichever way. With `accumulate` (no bias) the sums are added to out's values, also before the one rounding:
// into out itself when it takes the product directly, else into a float32 (float64) copy of it.
Tensor product(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out,
               bool accumulate = false) {
  VB_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1) &&
               out.size(0) == a.size(0) && out.size(1) == a.size(1) && out.size(2) == b.size(2),
           "cpu {}: expected a (Bt, M, K), b (Bt, K, N), out (Bt, M, N); got {}, {}, {}", op, shape_str(a.shape()),
           shape_str(b.shape()), shape_str(out.shape()));
  const bool mixed = a.dtype() == DType::BFloat16 && out.dtype() == DType::Float32;
  VB_CHECK(a.dtype() == b.dtype() && (a.dtype() == out.dtype() || mixed) && is_floating(a.dtype()),
           "cpu {}: expected one floating dtype (or bfloat16 operands with a float32 result), got {}, {} → {}", op,
           a.dtype(), b.dtype(), out.dtype());
  if (out.numel() == 0) return {};
  const DType work = a.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  // The bias in the type of the sums (float64 for float64, float32 otherwise), contiguous; null without one.
  Tensor bias_w;
  if (bias.defined()) bias_w = work == DType::Float64 ? cpu::contiguous(bias) : cpu::float32_contiguous(bias);
  const void* pbias = bias_w.defined() ? bias_w.data_ptr() : nullptr;
  // The sums' tensor when out cannot take them directly: float32 (float64), holding out's values to add to.
  const auto sums = [&](DType dtype) {
    Tensor acc = Tensor::empty(out.shape(), dtype, out.device());
    if (accumulate) cpu::copy_into(acc, out);
    return acc;
  };
  if (a.dtype() == DType::BFloat16) {
    const auto* fbias = static_cast<const float*>(pbias);
    if (mixed && out.is_contiguous()) {
      matmul_typed<bf16>(a, b, out, fbias, nullptr, accumulate);
      return out;
    }
    if (out.dtype() == DType::BFloat16 && out.is_contiguous() && !accumulate) {
      Tensor acc = sums(DType::Float32);  // (only scratch)
      matmul_typed<bf16>(a, b, acc, fbias, static_cast<bf16*>(out.data_ptr()));
      return out;
    }
    Tensor acc = sums(DType::Float32);
    matmul_typed<bf16>(a, b, acc, fbias, nullptr, accumulate);
    return acc;
  }
  const bool direct = out.is_contiguous() && (a.dtype() == DType::Float32 || a.dtype() == DType::Float64);
  Tensor acc = direct ? out : sums(work);
  if (work == DType::Float64) {
    matmul_typed<double>(a, b, acc, static_cast<const double*>(pbias), nullptr, accumulate);
  } else {
    const Tensor a32 = a.dtype() == DType::Float32 ? a : cpu::float32_contiguous(a);
    const Tensor b32 = b.dtype() == DType::Float32 ? b : cpu::float32_contiguous(b);
    matmul_typed<float>(a32, b32, acc, static_cast<const float*>(pbias), nullptr, accumulate);
  }
  return acc;
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  const Tensor product_ = product("matmul", a, b, Tensor(), out);
  if (product_.defined() && !product_.same(out)) cpu::copy_into(out, product_);  // the one rounding of half types
}

void CpuBackend::matmul_bias(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) {
  VB_CHECK(bias.dim() == 1 && out.dim() == 3 && bias.size(0) == out.size(2) && bias.dtype() == out.dtype(),
           "cpu matmul_bias: bias {} {} for out {} {} (expected ({}) of out's dtype)", shape_str(bias.shape()),
           bias.dtype(), shape_str(out.shape()), out.dtype(), out.dim() == 3 ? out.size(2) : 0);
  const Tensor product_ = product("matmul_bias", a, b, bias, out);
  if (product_.defined() && !product_.same(out)) cpu::copy_into(out, product_);  // the one rounding of half types
}

void CpuBackend::matmul_add(const Tensor& a, const Tensor& b, Tensor& out) {
  const Tensor product_ = product("matmul_add", a, b, Tensor(), out, /*accumulate=*/true);
  if (product_.defined() && !product_.same(out)) cpu::copy_into(out, product_);  // the one rounding of half types
}

}  // namespace vb
