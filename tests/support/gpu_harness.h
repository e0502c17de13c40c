// The GPU's side of tests/support/emu_harness.h (the one way a device test shares its cases): the same
// names, for device `cuda` — rt = vb::rt::cuda, kern = vb::cuda, and repeat_bit_identical / run_orders run
// `run` twice and throw unless the two results are bit-identical (the kernels are deterministic: a
// difference is a race or an order-dependent sum). Results reach the host by copies that wait for the
// kernels. Without a GPU or without the CUDA build, the test exits 77 (skipped) at start-up.
#pragma once

#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA)
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/allocator.h"
#include "kernels/runtime.h"
#include "tensor/device.h"

namespace vb::cuda {}  // the launchers, declared by the kernels' own headers

namespace {
namespace rt = vb::rt::cuda;
namespace kern = vb::cuda;

// Device allocations are poisoned (0xFF bytes: NaN in every float type), so an output element no kernel
// writes fails the comparison that reads it.
inline const bool poisoned = [] {
  vb::set_poison_allocations(true);
  return true;
}();

[[maybe_unused]] vb::Device device_under_test() { return vb::Device(vb::DeviceType::CUDA); }

template <class Run>
auto repeat_bit_identical(Run run) {
  const auto first = run(), second = run();
  if (first.size() != second.size() ||
      std::memcmp(first.data(), second.data(), first.size() * sizeof(first[0])) != 0)
    throw std::runtime_error("two runs on the GPU differ: a nondeterministic reduction or a race");
  return first;
}

[[maybe_unused]] std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  return repeat_bit_identical(run);
}
}  // namespace
#endif
