// The backend of device `cuda`: kernels/cuda/backend.inc over the nvcc-compiled kernels (vb::cuda) and
// the real runtime (vb::rt::cuda), registered when the library loads on a machine with a GPU. Matrix
// products run on cuBLASLt.
#if defined(VB_HAVE_CUDA)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <memory>
#include <mutex>

#include "kernels/backend.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/nn.h"
#include "kernels/cuda/nearest_centroid.h"
#include "kernels/cuda/core.h"
#include "kernels/runtime.h"

namespace vb::cuda {
namespace device_rt = ::vb::rt::cuda;
namespace device_kernels = ::vb::cuda;
#include "kernels/cuda/backend.inc"

namespace {

void check_lt(cublasStatus_t status, const char* what) {
  VB_CHECK(status == CUBLAS_STATUS_SUCCESS, "cuda matmul: {} failed: {} ({})", what, cublasLtGetStatusName(status),
           cublasLtGetStatusString(status));
}

// One cuBLASLt handle and workspace for the process (the framework uses one stream).
struct LtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t(32) << 20;
  LtContext() {
    check_lt(cublasLtCreate(&handle), "cublasLtCreate");
    workspace = device_rt::malloc(workspace_bytes);
  }
};
LtContext& lt() {
  static LtContext& context = *new LtContext;  // never destroyed: the driver may be gone at exit
  return context;
}

cudaDataType_t data_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDA_R_32F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: fail("cuda matmul: dtype {} (expected float32, bfloat16 or float16)", t);
  }
}

// How one (B, R, C) operand is read as column-major storage: `transposed` when its storage is the
// column-major (C, R) matrix (a row-major operand), with leading dimension ld and batch stride.
struct Operand {
  bool row_major;
  int64_t ld;
  int64_t batch_stride;
};

// The operand's layout, or nothing when cuBLASLt cannot read it in place (then it is copied).
bool describe(const Tensor& t, Operand& o) {
  const int64_t rows = t.size(1), cols = t.size(2);
  int64_t sr = t.stride(1), sc = t.stride(2);
  if (cols == 1) sc = 1;     // a single column: any stride reads the same elements
  if (rows == 1) sr = cols;  // a single row
  o.batch_stride = t.size(0) == 1 ? 0 : t.stride(0);
  if (sc == 1 && sr >= std::max<int64_t>(cols, 1)) {
    o = {true, sr, o.batch_stride};
    return true;
  }
  if (sr == 1 && sc >= std::max<int64_t>(rows, 1)) {
    o = {false, sc, o.batch_stride};
    return true;
  }
  return false;
}

// The alignment in bytes that every matrix of a strided batch keeps: the base pointer's, lowered by the
// batch stride's when the stride (in bytes) is less aligned than the base (matrix i starts at p + i·stride).
uint32_t alignment(const void* p, int64_t batch_stride_bytes = 0) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(p) | uintptr_t(batch_stride_bytes);
  uint32_t a = 256;
  while (a > 1 && bits % a != 0) a /= 2;
  return a;
}

cublasLtMatrixLayout_t matrix_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int batch,
                                     int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&layout, type, uint64_t(rows), uint64_t(cols), ld), "cublasLtMatrixLayoutCreate");
  check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)),
           "batch count");
  check_lt(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                            sizeof(batch_stride)),
           "batch stride");
  return layout;
}

}  // namespace

// Row-major out (B, M, N) = a (B, M, K) · b (B, K, N) is column-major outᵀ (N, M) = bᵀ (N, K) · aᵀ (K, M):
// cuBLASLt's A is b and its B is a. A row-major operand's storage is its transpose in column-major
// order (op N); a column-major one (a transposed view) is read with op T. f32 accumulation throughout
// (CUBLAS_COMPUTE_32F: no TF32). With a bias, cuBLASLt's bias epilogue adds it to every row of out
// (every row of column-major D: its length is D's row count, N) in float32 before the one rounding to
// out's dtype; batch stride 0 (its default) broadcasts it over the batch. cuBLASLt's GELU epilogues are
// not used: their GELU is the tanh approximation, and the models' GELU is the exact (erf) one.
void device_matmul(const Tensor& a_in, const Tensor& b_in, const Tensor& bias, Tensor& out, bool accumulate) {
  auto& backend = static_cast<CudaBackend&>(vb::backend(out.device()));
  if (out.numel() == 0) return;  // M or N is 0: nothing to write (and no valid cuBLASLt layout)
  if (a_in.size(2) == 0) {  // an empty sum: zeros (out unchanged when accumulating), as on the CPU (cuBLASLt
    if (!accumulate) backend.fill(out, 0.0);  // takes no zero-sized operand or ld)
    return;
  }
  static std::mutex mutex;  // the shared workspace
  std::lock_guard lock(mutex);
  Operand oa{}, ob{};
  Tensor a = a_in, b = b_in;
  if (!describe(a, oa)) describe(a = backend.contiguous(a_in), oa);
  if (!describe(b, ob)) describe(b = backend.contiguous(b_in), ob);
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  const cudaDataType_t type = data_type(out.dtype());

  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t op_a = ob.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;  // cuBLASLt's A is b
  const cublasOperation_t op_b = oa.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)), "transa");
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)), "transb");
  Tensor bias_c = bias.defined() ? backend.contiguous(bias) : Tensor();
  auto set_epilogue = [&](bool with_bias) {
    const cublasLtEpilogue_t epilogue = with_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
             "epilogue");
    const void* pointer = with_bias ? bias_c.data_ptr() : nullptr;
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, sizeof(pointer)),
             "bias pointer");
  };
  set_epilogue(bias.defined());
  // Stored shapes (column-major rows × cols) before the op.
  cublasLtMatrixLayout_t la = ob.row_major ? matrix_layout(type, n, k, ob.ld, int(batch), ob.batch_stride)
                                           : matrix_layout(type, k, n, ob.ld, int(batch), ob.batch_stride);
  cublasLtMatrixLayout_t lb = oa.row_major ? matrix_layout(type, k, m, oa.ld, int(batch), oa.batch_stride)
                                           : matrix_layout(type, m, k, oa.ld, int(batch), oa.batch_stride);
  cublasLtMatrixLayout_t ld = matrix_layout(type, n, m, n, int(batch), m * n);

  cublasLtMatmulPreference_t preference = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &lt().workspace_bytes, sizeof(lt().workspace_bytes)),
           "workspace preference");
  // Split-K only with partial sums kept in float32 (COMPUTE_TYPE): the INPLACE and OUTPUT_TYPE schemes
  // round every partial sum to the output type, which for bf16/f16 is not the float32 accumulation above
  // (nor the CPU backend's, which device emu runs).
  const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                                                sizeof(reductions)),
           "reduction scheme preference");
  const int64_t esize = int64_t(dtype_size(out.dtype()));
  const uint32_t align_a = alignment(b.data_ptr(), ob.batch_stride * esize),
                 align_b = alignment(a.data_ptr(), oa.batch_stride * esize),
                 align_d = alignment(out.data_ptr(), batch > 1 ? m * n * esize : 0);  // one matrix: no stride
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                sizeof(align_a)), "alignment A");
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                sizeof(align_b)), "alignment B");
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d,
                                                sizeof(align_d)), "alignment C");
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                                sizeof(align_d)), "alignment D");
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  cublasStatus_t heuristic_status =
      cublasLtMatmulAlgoGetHeuristic(lt().handle, desc, la, lb, ld, ld, preference, 1, &heuristic, &found);
  // No algorithm with the epilogue (cuBLASLt answers NOT_SUPPORTED or none found): the product, then the
  // bias by a kernel.
  const bool bias_after = bias.defined() && (heuristic_status != CUBLAS_STATUS_SUCCESS || found == 0);
  if (bias_after) {
    set_epilogue(false);
    heuristic_status =
        cublasLtMatmulAlgoGetHeuristic(lt().handle, desc, la, lb, ld, ld, preference, 1, &heuristic, &found);
  }
  check_lt(heuristic_status, "cublasLtMatmulAlgoGetHeuristic");
  VB_CHECK(found > 0, "cuda matmul: cuBLASLt has no algorithm for {} ({}, {}, {}) x {}", out.dtype(), m, n, k, batch);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;  // β = 1: D = A·B + C with C = D = out
  const cublasStatus_t status =
      cublasLtMatmul(lt().handle, desc, &alpha, b.data_ptr(), la, a.data_ptr(), lb, &beta, out.data_ptr(), ld,
                     out.data_ptr(), ld, &heuristic.algo, lt().workspace, lt().workspace_bytes, nullptr);
  cublasLtMatmulPreferenceDestroy(preference);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatmulDescDestroy(desc);
  check_lt(status, "cublasLtMatmul");
  if (bias_after) backend.binary(BinaryOp::Add, out, bias_c.as_strided(out.shape(), {0, 0, 1}, bias_c.offset()), out);
}

namespace {
[[maybe_unused]] const bool registered = [] {
  if (device_rt::device_count() > 0) register_backend(DeviceType::CUDA, new CudaBackend(Device(DeviceType::CUDA)));
  return true;
}();
}  // namespace

}  // namespace vb::cuda
#endif
