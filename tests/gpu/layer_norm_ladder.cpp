// The layer-norm ladder (kernels/cuda/layer_norm_ladder.cu) on a real GPU against the CPU backend, every
// case run twice with identical bytes (tests/support/layer_norm_ladder_cases.h, shared with the emulator
// test). Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#if defined(VB_HAVE_CUDA)

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/cuda/layer_norm_ladder.h"
#include "kernels/runtime.h"
#include "tensor/device.h"

namespace {

vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }

void run_ln_ladder(int rung, const float* x, const float* w, const float* b, float eps, float* y, float* mean,
                   float* rstd, int64_t n, int64_t c) {
  vb::cuda::layer_norm_ladder(rung, x, w, b, eps, y, mean, rstd, n, c);
  vb::rt::cuda::synchronize();
}

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return vb::test::run_twice_same(run);
}

}  // namespace

#include "tests/support/layer_norm_ladder_cases.h"

#endif
