// The attention kernels (kernels/cuda/attention.cu, attention_mma.cu) on a real GPU: the cases of
// tests/support/attention_cases.h, each run twice with bit-identical results (the kernels are
// deterministic), and the BERT shapes (B=32, H=12, T=128 and 512, D=64) with a padding mask, checked
// against the CPU backend on a slice of (batch, head) pairs. Exits 77 (skipped) without a GPU or
// without the CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "kernels/cuda/attention.h"
#include "tests/support/attention_cases.h"

namespace {

// The whole problem on the GPU, the first `batches` batch entries on the CPU. The reference is the CPU
// backend in float32 on the same (T-representable) inputs. Tolerances: float32 differs from the CPU only
// in summation order; bf16/f16 round the outputs (and out before Δ) to T, and the tensor-core kernels
// round P' and dS to T before their products: under the emulator the kernels' largest error against
// float64 on the small cases was 7.4e-3 (bf16) and 1.6e-3 (f16), so 2e-2 and 4e-3, absolute and relative.
template <class T>
void check_slice(const Case& c, int64_t batches, double atol, double rtol) {
  INFO(describe(c), " ", dtype_name(dtype_of<T>()), ", checked on the first ", batches, " batch entries");
  const Inputs in = make_inputs<T, float>(c, 31);
  check_close_to_cpu(run_checked<T, float>(c, in), run_cpu(c, in, DType::Float32, batches), {atol, rtol},
                     {1e-4, 1e-5}, {atol, rtol});
}

}  // namespace

TEST_CASE("attention on the GPU: BERT shapes (B=32, H=12, T=128 and 512, D=64), checked on a slice") {
  for (int64_t T : {128, 512}) {
    check_slice<float>({32, 12, T, T, 64, MaskKind::padding}, 2, 5e-5, 1e-4);  // sums over 512 terms
    check_slice<__nv_bfloat16>({32, 12, T, T, 64, MaskKind::padding, 0.1}, 2, 2e-2, 2e-2);
    check_slice<__half>({32, 12, T, T, 64, MaskKind::padding}, 2, 4e-3, 4e-3);
  }
}

#endif
