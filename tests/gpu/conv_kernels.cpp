// The convolution, pooling and batch-norm kernels (kernels/cuda/conv.cu, pool.cu, batch_norm.cu) on a
// real GPU, against the CPU backend, every run repeated twice with bit-identical results (the
// reductions are deterministic). The cases are tests/support/conv_kernel_cases.h, shared with the
// emulator test. Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_only.h"
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/runtime.h"

#if defined(VB_HAVE_CUDA)

#include <cstring>

#include "kernels/cuda/conv.h"

namespace {
namespace rt = vb::rt::cuda;
namespace kern = vb::cuda;

template <class Run>
auto repeat_bit_identical(Run run) {
  const auto first = run(), second = run();
  if (first.size() != second.size() ||
      std::memcmp(first.data(), second.data(), first.size() * sizeof(first[0])) != 0)
    throw std::runtime_error("two runs on the GPU differ: a nondeterministic reduction or a race");
  return first;
}
}  // namespace

#include "tests/support/conv_kernel_cases.h"

#endif
