// The GEMM baseline of bench_kernels_gpu: cuBLASLt, loaded at run time (baselines.h), on the sets of the
// gemm/linear cases (gemm.cpp) and the f32 GEMM-ladder rungs (ladders.cpp), and for the GEMM ceilings that
// main.cpp measures at start-up (8192³ in bf16 and f32).
#include "bench/kernels_gpu/baselines.h"

#if defined(VB_HAVE_CUDA)
#include <cublasLt.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bench/gpu_timing.h"
#include "bench/kernels_gpu/cases.h"
#include "kernels/runtime.h"

namespace vb::bench::kernels_gpu {

namespace {

namespace rtc = vb::rt::cuda;

struct CublasLt {
  VB_BENCH_SYMBOL(cublasLtCreate);
  VB_BENCH_SYMBOL(cublasLtGetStatusString);
  VB_BENCH_SYMBOL(cublasLtMatmulDescCreate);
  VB_BENCH_SYMBOL(cublasLtMatmulDescDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulDescSetAttribute);
  VB_BENCH_SYMBOL(cublasLtMatrixLayoutCreate);
  VB_BENCH_SYMBOL(cublasLtMatrixLayoutDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceCreate);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceDestroy);
  VB_BENCH_SYMBOL(cublasLtMatmulPreferenceSetAttribute);
  VB_BENCH_SYMBOL(cublasLtMatmulAlgoGetHeuristic);
  VB_BENCH_SYMBOL(cublasLtMatmul);
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t(32) << 20;  // what our matmul gives cuBLASLt (kernels/cuda/backend_cuda.cpp)

  explicit CublasLt(void* library) {
    const char* library_name = "libcublasLt";
    VB_BENCH_LOAD(cublasLtCreate);
    VB_BENCH_LOAD(cublasLtGetStatusString);
    VB_BENCH_LOAD(cublasLtMatmulDescCreate);
    VB_BENCH_LOAD(cublasLtMatmulDescDestroy);
    VB_BENCH_LOAD(cublasLtMatmulDescSetAttribute);
    VB_BENCH_LOAD(cublasLtMatrixLayoutCreate);
    VB_BENCH_LOAD(cublasLtMatrixLayoutDestroy);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceCreate);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceDestroy);
    VB_BENCH_LOAD(cublasLtMatmulPreferenceSetAttribute);
    VB_BENCH_LOAD(cublasLtMatmulAlgoGetHeuristic);
    VB_BENCH_LOAD(cublasLtMatmul);
    check(cublasLtCreate(&handle), "cublasLtCreate");
    workspace = rtc::malloc(workspace_bytes);
  }
  void check(cublasStatus_t status, const char* what) const {
    VB_CHECK(status == CUBLAS_STATUS_SUCCESS, "cuBLASLt baseline: {} failed: {}", what,
             cublasLtGetStatusString(status));
  }
};

// The process's cuBLASLt (never destroyed: the driver may be gone at exit), or null.
CublasLt* cublas_lt() {
  static CublasLt* lt = []() -> CublasLt* {
    std::string tried;
    void* library = open_library({"libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR), "libcublasLt.so"}, tried);
    if (library == nullptr) {
      library_notes.push_back("cuBLASLt could not be loaded (" + tried + "): no GEMM baseline");
      return nullptr;
    }
    return new CublasLt(library);
  }();
  return lt;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDA_R_32F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: fail("cuBLASLt baseline: dtype {}", t);
  }
}

// cuBLASLt on a GEMM set [a, b, out]. Row-major out (M, N) = a (M, K)·b (K, N) is column-major
// outᵀ (N, M) = bᵀ·aᵀ: cuBLASLt's A is b and its B is a, as in our matmul (kernels/cuda/backend_cuda.cpp).
// Float32 accumulation (CUBLAS_COMPUTE_32F, no TF32). Of cuBLASLt's top 8 heuristic algorithms the
// fastest on these sets is kept.
class LtGemm final : public Baseline {
 public:
  LtGemm(CublasLt& lt, const GemmShape& g, DType t, const std::vector<Set>& sets) : lt_(lt) {
    const cudaDataType_t type = cuda_type(t);
    lt.check(lt.cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    // b (K, N) row-major is column-major (N, K), op N; the linear weight (N, K) row-major is column-major
    // (K, N), read with op T.
    const cublasOperation_t op_a = g.linear ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    lt.check(lt.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)), "transa");
    lt.check(lt.cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)), "transb");
    layout(&a_, type, g.linear ? g.k : g.n, g.linear ? g.n : g.k, g.linear ? g.k : g.n);
    layout(&b_, type, g.k, g.m, g.k);
    layout(&d_, type, g.n, g.m, g.n);
    cublasLtMatmulPreference_t preference = nullptr;
    lt.check(lt.cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
    lt.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &lt.workspace_bytes, sizeof(lt.workspace_bytes)),
             "workspace preference");
    // The reduction schemes our matmul allows (float32 partial sums only), so that both compute alike.
    const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    lt.check(lt.cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                     &reductions, sizeof(reductions)),
             "reduction scheme preference");
    cublasLtMatmulHeuristicResult_t results[8] = {};
    int found = 0;
    const cublasStatus_t status =
        lt.cublasLtMatmulAlgoGetHeuristic(lt.handle, desc_, a_, b_, d_, d_, preference, 8, results, &found);
    lt.cublasLtMatmulPreferenceDestroy(preference);
    lt.check(status, "cublasLtMatmulAlgoGetHeuristic");
    VB_CHECK(found > 0, "cuBLASLt baseline: no algorithm for {} {}x{}x{}", t, g.m, g.k, g.n);
    const bench::TimingOptions quick{1, 5, 1.0, 50};
    double best = INFINITY;
    std::string failed;
    for (int i = 0; i < found; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      algo_ = &results[i].algo;
      try {
        const double s = bench::median_seconds([&](int k) { run(sets[size_t(k)]); }, int(sets.size()), quick);
        if (s < best) {
          best = s;
          chosen_ = results[i].algo;
        }
      } catch (const std::exception& e) {  // an algorithm the heuristic offered but cannot run: skip it
        failed = e.what();
      }
    }
    VB_CHECK(best < INFINITY, "cuBLASLt baseline: none of {} algorithms ran for {} {}x{}x{} ({})", found, t, g.m, g.k,
             g.n, failed);
    algo_ = &chosen_;
  }
  ~LtGemm() override {
    lt_.cublasLtMatrixLayoutDestroy(d_);
    lt_.cublasLtMatrixLayoutDestroy(b_);
    lt_.cublasLtMatrixLayoutDestroy(a_);
    lt_.cublasLtMatmulDescDestroy(desc_);
  }
  std::string name() const override { return "cuBLASLt"; }
  void run(const Set& s) override {
    const float alpha = 1.0f, beta = 0.0f;
    lt_.check(
        lt_.cublasLtMatmul(lt_.handle, desc_, &alpha, s[1].data_ptr(), a_, s[0].data_ptr(), b_, &beta, s[2].data_ptr(),
                           d_, s[2].data_ptr(), d_, algo_, lt_.workspace, lt_.workspace_bytes, nullptr),
        "cublasLtMatmul");
  }

 private:
  void layout(cublasLtMatrixLayout_t* l, cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
    lt_.check(lt_.cublasLtMatrixLayoutCreate(l, type, uint64_t(rows), uint64_t(cols), ld),
              "cublasLtMatrixLayoutCreate");
  }

  CublasLt& lt_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  const cublasLtMatmulAlgo_t* algo_ = nullptr;
  cublasLtMatmulAlgo_t chosen_{};
};

}  // namespace

std::unique_ptr<Baseline> make_lt_gemm(const GemmShape& g, DType t, const std::vector<Set>& sets) {
  CublasLt* lt = cublas_lt();
  if (lt == nullptr) return nullptr;
  return std::make_unique<LtGemm>(*lt, g, t, sets);
}

}  // namespace vb::bench::kernels_gpu

#endif  // VB_HAVE_CUDA
