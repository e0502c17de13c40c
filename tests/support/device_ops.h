// Helpers for testing a device backend (`emu` under the kernel emulator, `cuda` on a GPU) against the CPU
// backend through the public ops: the same expression, forward and backward, on both, compared with a
// stated tolerance per dtype; every device run repeated under two fiber orders (on a GPU: twice) and
// required to be bit-identical. Allocations are poisoned (0xFF: NaN in every float type), so an output
// element no kernel writes fails the comparison.
#pragma once

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/cuda/allocator.h"
#include "tests/support/check.h"

#if defined(VB_HAVE_EMU)
#include "kernels/emu/emulator.h"
#endif

namespace vb::device_test {

struct Tolerance {
  double atol, rtol;
};

// Per dtype: float32 differs from the CPU by the math library (a few ulp); the half types by one
// rounding of the float32 result.
inline Tolerance tolerance(DType t) {
  switch (t) {
    case DType::BFloat16: return {2e-2, 2e-2};
    case DType::Float16: return {2e-3, 2e-3};
    case DType::Float32: return {1e-5, 1e-5};
    default: return {0, 0};
  }
}

inline const bool poisoned = [] {
  set_poison_allocations(true);
  return true;
}();

inline std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = contiguous(to(detach(t), Device()));
  std::vector<unsigned char> b(size_t(c.numel() * c.element_size()));
  if (!b.empty()) std::memcpy(b.data(), c.data_ptr(), b.size());
  return b;
}

// Runs `run` (which returns its results on `device`) under two fiber orders on emu, twice on a GPU;
// requires bit-identical results and returns the first run's, copied to the CPU.
inline std::vector<Tensor> run_twice(Device device, const std::function<std::vector<Tensor>()>& run,
                                     const std::string& what) {
  std::vector<std::vector<Tensor>> results;
  for (int order = 0; order < 2; ++order) {
#if defined(VB_HAVE_EMU)
    emulator::Options options = emulator::current_options();
    options.order = order == 0 ? emulator::Order::in_order : emulator::Order::reversed;
    std::optional<emulator::ScopedOptions> scoped;
    if (device.type == DeviceType::EMU) scoped.emplace(options);
#endif
    std::vector<Tensor> r = run();
    for (Tensor& t : r) t = t.defined() ? to(detach(t), Device()) : t;
    results.push_back(std::move(r));
  }
  REQUIRE(results[0].size() == results[1].size());
  for (size_t i = 0; i < results[0].size(); ++i) {
    if (!results[0][i].defined()) continue;
    CHECK_MESSAGE(bytes_of(results[0][i]) == bytes_of(results[1][i]), what, ": result ", i,
                  " differs between the two runs (fiber orders)");
  }
  return results[0];
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// f on the CPU and on `device` with the inputs converted to `dtype` (floating inputs also get
// gradients, compared too unless `backward` is false). Inputs are float32 CPU tensors; integer and bool
// inputs (ids, masks) keep their dtype.
inline void compare(Device device, const std::string& what, const Fn& f, const std::vector<Tensor>& inputs,
                    DType dtype, bool backward_too = true, Tolerance tol = {-1, -1}) {
  if (tol.atol < 0) tol = tolerance(dtype);
  const std::string name = what + " [" + std::string(dtype_name(dtype)) + "]";
  auto prepare = [&](Device d) {
    std::vector<Tensor> xs;
    for (const Tensor& x : inputs) {
      Tensor v = is_floating(x.dtype()) ? to(x, dtype) : x;
      v = to(detach(v), d);
      if (backward_too && is_floating(v.dtype())) v.set_requires_grad(true);
      xs.push_back(v);
    }
    return xs;
  };
  auto evaluate = [&](Device d) {
    std::vector<Tensor> xs = prepare(d);
    Tensor y = f(xs);
    std::vector<Tensor> results{y};
    if (backward_too && is_floating(y.dtype())) {
      Generator g{777, 0};
      Tensor gy = to(to(randn(y.shape(), &g), y.dtype()), d);
      backward(y, gy);
      for (const Tensor& x : xs) results.push_back(x.requires_grad() ? x.grad() : Tensor());
    }
    return results;
  };
  const std::vector<Tensor> expected = evaluate(Device());
  const std::vector<Tensor> actual = run_twice(device, [&] { return evaluate(device); }, name);
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!expected[i].defined()) continue;
    REQUIRE_MESSAGE(actual[i].defined(), name, ": no gradient for input ", i - 1);
    CHECK_MESSAGE(actual[i].dtype() == expected[i].dtype(), name, ": dtype of result ", i);
    // Gradients sum over many products: scale the tolerance with the result's magnitude.
    test::check_close(actual[i], expected[i], i == 0 ? tol.atol : 4 * tol.atol, i == 0 ? tol.rtol : 4 * tol.rtol,
                      i == 0 ? name + ": forward" : name + ": gradient of input " + std::to_string(i - 1));
  }
}

// A float32 CPU tensor with values in [lo, hi) (never all zeros).
inline Tensor uniform(const Shape& shape, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  return test::uniform(shape, seed, lo, hi, DType::Float32);
}

inline const std::vector<DType> floating_dtypes = {DType::Float32, DType::BFloat16, DType::Float16};

}  // namespace vb::device_test
