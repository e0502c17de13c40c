// Batched matrix product on the CPU through Eigen's GEMM.
//
// Math: out[b] (M, N) = a[b] (M, K) · b[b] (K, N).  Backward (autograd/ops_linalg.cpp):
//   ga = g · bᵀ,  gb = aᵀ · g — both again this kernel, on transposed views (no copies).
// Cost: 2·Bt·M·N·K FLOPs; reads Bt·(M·K + K·N) and writes Bt·M·N elements (compute bound once the
// matrices are larger than ~32 on a side).
//
// Each operand is mapped in place with an Eigen::Map: row-major when its column stride is 1, column-major
// when its row stride is 1 (a transposed view), so transposes cost nothing; only an operand with neither
// unit stride is copied. float32 and float64 run natively; bfloat16/float16 are staged through float32.
// Threads: many small matrices → one matrix per thread (OpenMP over the batch); otherwise the batch runs
// in order and Eigen's own OpenMP GEMM splits each product (Eigen stays serial inside our parallel loop, so
// there is no nested parallelism).
#include <Eigen/Core>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// How one (Bt, R, C) operand is read: base pointer, batch stride, and the stride between rows
// (row-major) or columns (column-major).
template <typename T>
struct Operand {
  const T* data;
  int64_t batch_stride;
  int64_t outer_stride;
  bool row_major;
};

// Maps t in place when one of its two inner strides is 1 (or irrelevant because that dim has size 1) and
// the other spans a whole row or column (no overlapping broadcast rows); otherwise copies it into `keep`
// (contiguous) and maps that.
template <typename T>
Operand<T> make_operand(const Tensor& t, Tensor& keep) {
  const int64_t rows = t.size(1), cols = t.size(2), sr = t.stride(1), sc = t.stride(2);
  if ((cols == 1 || sc == 1) && (rows == 1 || sr >= cols))
    return {static_cast<const T*>(t.data_ptr()), t.stride(0), rows == 1 ? cols : sr, true};
  if ((rows == 1 || sr == 1) && (cols == 1 || sc >= rows))
    return {static_cast<const T*>(t.data_ptr()), t.stride(0), cols == 1 ? rows : sc, false};
  keep = cpu::contiguous(t);
  return {static_cast<const T*>(keep.data_ptr()), keep.stride(0), cols, true};
}

template <typename T, int Order>
using ConstMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, Eigen::Unaligned,
                            Eigen::OuterStride<>>;
using Eigen::ColMajor;
using Eigen::RowMajor;

// Products of at most this many multiply-adds run one per thread when there are several in the batch.
constexpr int64_t kSmallProduct = int64_t(1) << 21;

template <typename T, int OA, int OB>
void gemm_batched(const Operand<T>& a, const Operand<T>& b, T* out, int64_t batch, int64_t m, int64_t k, int64_t n) {
  using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, RowMajor>>;
  auto one = [&](int64_t i) {
    ConstMap<T, OA> A(a.data + i * a.batch_stride, m, k, Eigen::OuterStride<>(a.outer_stride));
    ConstMap<T, OB> B(b.data + i * b.batch_stride, k, n, Eigen::OuterStride<>(b.outer_stride));
    OutMap C(out + i * m * n, m, n);
    C.noalias() = A * B;
  };
  if (batch > 1 && m * n * k <= kSmallProduct) {
#pragma omp parallel for schedule(static) if (batch * m * n * k >= cpu::kParallelGrain)
    for (int64_t i = 0; i < batch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);
  }
}

template <typename T>
void matmul_typed(const Tensor& a, const Tensor& b, Tensor& out) {
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  T* po = static_cast<T*>(out.data_ptr());
  if (k == 0) {
    for (int64_t i = 0; i < out.numel(); ++i) po[i] = T(0);
    return;
  }
  Tensor keep_a, keep_b;
  const Operand<T> oa = make_operand<T>(a, keep_a), ob = make_operand<T>(b, keep_b);
  if (oa.row_major && ob.row_major) gemm_batched<T, RowMajor, RowMajor>(oa, ob, po, batch, m, k, n);
  else if (oa.row_major) gemm_batched<T, RowMajor, ColMajor>(oa, ob, po, batch, m, k, n);
  else if (ob.row_major) gemm_batched<T, ColMajor, RowMajor>(oa, ob, po, batch, m, k, n);
  else gemm_batched<T, ColMajor, ColMajor>(oa, ob, po, batch, m, k, n);
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
