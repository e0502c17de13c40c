// What the GPU tests that call kernel launchers directly (tests/gpu/conv_kernels.cpp, attention_kernels.cpp)
// define before including their cases (tests/support/conv_kernel_cases.h, attention_cases.h): the runtime
// rt (vb::rt::cuda), the launchers kern (vb::cuda), and repeat_bit_identical(run), which runs `run`
// (launches, returns a vector of results) twice and throws unless the two results are bit-identical (the
// kernels are deterministic: a difference is a race or an order-dependent reduction); returns them.
// Included after the kernels' own header (kernels/cuda/conv.h, attention.h), which declares vb::cuda.
#pragma once

#include <cstring>
#include <stdexcept>

#include "kernels/runtime.h"

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
