// The nearest-centroid kernel (kernels/cuda/nearest_centroid.cu) on a real GPU, through the op and the
// backend's wiring, against the CPU backend: bit-identical results, every case run twice with identical
// bytes. The cases are tests/support/nearest_centroid_cases.h, shared with the emulator test. Exits 77
// (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#if defined(VB_HAVE_CUDA)

#include <cstdint>
#include <functional>
#include <vector>

#include "tensor/device.h"

namespace {

vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return vb::test::run_twice_same(run);
}

}  // namespace

#include "tests/support/nearest_centroid_cases.h"

#endif
