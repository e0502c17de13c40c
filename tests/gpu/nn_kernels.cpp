// The NN kernels (kernels/cuda/nn_*.cu) on a real GPU against the CPU backend: the cases of
// tests/support/nn_kernels_cases.h, each run twice and required to give bit-identical bytes (the
// kernels are deterministic). Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/runtime.h"

#if defined(VB_HAVE_CUDA)

namespace {

std::vector<uint8_t> run_orders(const std::function<std::vector<uint8_t>()>& run) {
  const std::vector<uint8_t> first = run();
  const std::vector<uint8_t> second = run();
  REQUIRE_MESSAGE(first.size() == second.size(), "two runs gave different sizes");
  std::size_t differ = 0;
  for (std::size_t i = 0; i < first.size(); ++i) differ += first[i] != second[i];
  REQUIRE_MESSAGE(differ == 0, differ, " bytes differ between two runs: the kernel is not deterministic");
  return first;
}

}  // namespace

#define NN_KERNELS_NS cuda
#include "tests/support/nn_kernels_cases.h"

#endif
