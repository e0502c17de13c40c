// The case table: every kernel method of the Backend interface (kernels/backend_methods.def), run on the
// CPU backend and on a device backend from the same inputs, the device's results held to the CPU's with a
// tolerance stated per output (in the manner of ggml's test-backend-ops). One table serves every backend:
//   tests/emu/backend_cases.cpp   device `emu`: every case under two fiber orders, bit-identical;
//   tests/gpu/backend_cases.cpp   device `cuda`: every case twice, bit-identical (skipped without a GPU);
//   tests/cpu/backend_cases.cpp   the table itself: every method has a case, names are unique, and the
//                                 CPU backend gives the same bits on 1 and 2 threads.
// VB_CASES=text runs only the cases whose name contains the text.
//
// The cases live by family in tests/support/cases/<family>.h (core, nn, conv, attention, optim, cluster),
// each an add_<family>_cases(). A case is a function of the device: it builds its inputs on the CPU from
// fixed seeds (the same values for every device), moves them to the device, calls the Backend method with
// outputs allocated there (poisoned on devices by the test harness, tests/support/emu_harness.h: 0xFF
// bytes, NaN in every float type, so an element no kernel writes fails), and returns the outputs. An error case instead names the text of the vb::Error
// every backend must throw.
//
// Adding a Backend method: its entry in kernels/backend_methods.def, then at least one case here; until
// then tests/cpu/backend_cases.cpp fails, naming the method.
#pragma once

#include <doctest/doctest.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/support/check.h"

#if defined(VB_HAVE_EMU)
#include "kernels/emu/emulator.h"
#endif

namespace vb::backend_cases {

// One result of a case, held to the CPU's: |device − cpu| ≤ atol + rtol·|cpu| (0, 0: bit for bit).
struct Output {
  std::string name;
  Tensor value;
  double atol = 0, rtol = 0;
};
using Outputs = std::vector<Output>;

struct Case {
  std::string method;  // the Backend method it runs (kernels/backend_methods.def)
  std::string name;    // unique in the table
  std::function<Outputs(Device)> run;
  std::string error;          // non-empty: run must throw a vb::Error containing this text, on every backend
  bool device_only = false;   // an error only devices raise (float64, which the CPU takes)

  Case(std::string method, std::string name, std::function<Outputs(Device)> run, std::string error = "",
       bool device_only = false)
      : method(std::move(method)), name(std::move(name)), run(std::move(run)), error(std::move(error)),
        device_only(device_only) {}
};

// ---- helpers for writing cases ----

inline const std::vector<DType> kFloats = {DType::Float32, DType::BFloat16, DType::Float16};

// Per storage dtype: float32 results differ from the CPU's by reordered sums and the math library (a few
// ulp); the half types by one or two roundings of a float32 result computed in another order.
struct Tolerance {
  double atol, rtol;
};
inline Tolerance tolerance(DType t) {
  switch (t) {
    case DType::BFloat16:
      return {1e-2, 1.6e-2};
    case DType::Float16:
      return {2e-3, 2e-3};
    case DType::Float32:
      return {2e-6, 2e-5};
    default:
      return {0, 0};
  }
}
inline Output close(std::string name, Tensor value, double scale = 1) {
  const Tolerance t = tolerance(value.dtype());
  return {std::move(name), std::move(value), t.atol * scale, t.rtol * scale};
}
inline Output exact(std::string name, Tensor value) { return {std::move(name), std::move(value), 0, 0}; }

// Values in [lo, hi) from a fixed seed, rounded to `dtype` (integer dtypes truncate), on the CPU.
inline Tensor values(const Shape& shape, uint64_t seed, DType dtype, double lo = -2.0, double hi = 2.0) {
  return contiguous(to(test::uniform(shape, seed, lo, hi, DType::Float32), dtype));
}
// Indices drawn from [lo, hi), many repeats, on the CPU.
inline Tensor indices(const Shape& shape, int64_t lo, int64_t hi, uint64_t seed, DType dtype = DType::Int64) {
  Generator g{seed, 0};
  return randint(lo, hi, shape, &g, dtype);
}
// A CPU tensor on device d (undefined stays undefined).
inline Tensor on(const Tensor& t, Device d) { return t.defined() ? to(t, d) : t; }
// An output to be written by the kernel.
inline Tensor out(const Shape& shape, DType dtype, Device d) { return Tensor::empty(shape, dtype, d); }
inline std::string dtype_str(DType t) { return std::string(dtype_name(t)); }

// ---- the driver ----

using vb::test::bytes_of;

inline Outputs on_cpu(Outputs outs) {
  for (Output& o : outs)
    if (o.value.defined()) o.value = to(detach(o.value), Device());
  return outs;
}

// The case's outputs on `device`, copied to the CPU: on emu under two fiber orders (in order on one worker,
// shuffled on two), on a GPU twice; the runs must agree bit for bit (a difference is a race or an
// order-dependent sum).
inline Outputs run_repeated(const Case& c, Device device) {
  std::vector<Outputs> runs;
  for (int i = 0; i < 2; ++i) {
#if defined(VB_HAVE_EMU)
    std::optional<emulator::ScopedOptions> scoped;
    if (device.type == DeviceType::EMU) {
      emulator::Options o = emulator::current_options();
      o.order = i == 0 ? emulator::Order::in_order : emulator::Order::shuffled;
      o.workers = i == 0 ? 1 : 2;
      o.seed = 17;
      scoped.emplace(o);
    }
#endif
    runs.push_back(on_cpu(c.run(device)));
  }
  REQUIRE(runs[0].size() == runs[1].size());
  for (size_t i = 0; i < runs[0].size(); ++i)
    if (runs[0][i].value.defined())
      CHECK_MESSAGE(bytes_of(runs[0][i].value) == bytes_of(runs[1][i].value), c.name, ": ", runs[0][i].name,
                    " differs between two runs on ", device.str());
  return runs[0];
}

inline std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// One case on `device` against the CPU backend.
inline void check_case(const Case& c, Device device) {
  CAPTURE(c.name);
  if (!c.error.empty()) {
    std::vector<Device> devices = {device};
    if (!c.device_only) devices.insert(devices.begin(), Device());
    for (Device d : devices) {
      const std::string m = error_text([&] { c.run(d); });
      CHECK_MESSAGE(m.find(c.error) != std::string::npos, c.name, " on ", d.str(), ": expected an error containing \"",
                    c.error, "\", got \"", m, "\"");
    }
    return;
  }
  const Outputs expected = on_cpu(c.run(Device()));
  const Outputs actual = run_repeated(c, device);
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const Output& e = expected[i];
    if (!e.value.defined()) continue;
    REQUIRE_MESSAGE(actual[i].value.defined(), c.name, ": ", e.name, " missing on ", device.str());
    CHECK_MESSAGE(actual[i].value.dtype() == e.value.dtype(), c.name, ": dtype of ", e.name);
    test::check_close(actual[i].value, e.value, e.atol, e.rtol, c.name + ": " + e.name);
  }
}

// The cases to run: all, or those whose name contains $VB_CASES.
inline std::vector<const Case*> selected(const std::vector<Case>& cases) {
  const char* filter = std::getenv("VB_CASES");
  std::vector<const Case*> out;
  for (const Case& c : cases)
    if (filter == nullptr || c.name.find(filter) != std::string::npos) out.push_back(&c);
  return out;
}

// Every method of the interface, by name.
inline const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names = {
#define VB_BACKEND_METHOD(method, params, args) #method,
#include "kernels/backend_methods.def"
#undef VB_BACKEND_METHOD
  };
  return names;
}

}  // namespace vb::backend_cases

#include "tests/support/cases/attention.h"
#include "tests/support/cases/cluster.h"
#include "tests/support/cases/conv.h"
#include "tests/support/cases/core.h"
#include "tests/support/cases/nn.h"
#include "tests/support/cases/optim.h"

namespace vb::backend_cases {

// The table.
inline const std::vector<Case>& all_cases() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> c;
    add_core_cases(c);
    add_nn_cases(c);
    add_conv_cases(c);
    add_attention_cases(c);
    add_optim_cases(c);
    add_cluster_cases(c);
    return c;
  }();
  return cases;
}

}  // namespace vb::backend_cases
