// The GEMM ladder (kernels/cuda/gemm_ladder.cu) on a real GPU against the CPU backend, every case run
// twice with identical bytes. The cases are tests/support/gemm_ladder_cases.h, shared with the emulator
// test. Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#if defined(VB_HAVE_CUDA)

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/cuda/gemm_ladder.h"
#include "kernels/runtime.h"
#include "tensor/device.h"

namespace {

vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }

void run_ladder(int rung, const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  vb::cuda::gemm_ladder(rung, a, b, c, m, n, k);
  vb::rt::cuda::synchronize();
}

void run_ladder_bf16(int rung, const __nv_bfloat16* a, const __nv_bfloat16* b, float* c, int64_t m, int64_t n,
                     int64_t k) {
  vb::cuda::gemm_ladder_bf16(rung, a, b, c, m, n, k);
  vb::rt::cuda::synchronize();
}

void run_ladder_f16(int rung, const __half* a, const __half* b, float* c, int64_t m, int64_t n, int64_t k) {
  vb::cuda::gemm_ladder_f16(rung, a, b, c, m, n, k);
  vb::rt::cuda::synchronize();
}

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return vb::test::run_twice_same(run);
}

}  // namespace

#include "tests/support/gemm_ladder_cases.h"

#endif
