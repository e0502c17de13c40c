// Mixed precision on the CPU (bfloat16 autocast; its products on AMX tiles where the machine has them):
// tests/support/autocast_cases.h.
#include "tensor/device.h"

namespace {
vb::Device device_under_test() { return vb::Device(); }
}  // namespace

#include "tests/support/autocast_cases.h"

// ---- CPU only: the guard's cache of weight casts (autograd/autocast.h, autocast_weight) ----
#include <optional>

#include "kernels/backend.h"
#include "tests/support/kernel_calls.h"

using namespace vb;

TEST_CASE("CPU autocast casts each parameter once per guard: the same results and gradients as a cast per use") {
  using vb::test::uniform;
  const Tensor x1 = uniform({6, 32}, 1, -1, 1, DType::Float32), x2 = uniform({6, 32}, 2, -1, 1, DType::Float32);
  const Tensor i1 = uniform({2, 5, 5, 4}, 3, -1, 1, DType::Float32);
  const Tensor i2 = uniform({2, 5, 5, 4}, 4, -1, 1, DType::Float32);
  Tensor w = uniform({16, 32}, 5, -1, 1, DType::Float32), b = uniform({16}, 6, -1, 1, DType::Float32);
  Tensor k = uniform({8, 3, 3, 4}, 7, -1, 1, DType::Float32);
  for (Tensor* p : {&w, &b, &k}) p->set_requires_grad(true);
  Conv2dParams same;
  same.pad_h = same.pad_w = 1;
  struct Run {
    std::vector<Tensor> out;
    int64_t casts = 0;
  };
  // Two uses of each weight (linear's w, conv2d's k), in one guard or in a guard per op.
  auto run = [&](bool one_guard) {
    Run r;
    std::vector<std::function<Tensor()>> ops = {[&] { return linear(x1, w, b); }, [&] { return linear(x2, w, b); },
                                                [&] { return conv2d(i1, k, {}, same); },
                                                [&] { return conv2d(i2, k, {}, same); }};
    r.casts = vb::test::kernel_calls([&] {
      std::optional<AutocastGuard> outer;
      if (one_guard) outer.emplace(DType::BFloat16);
      for (auto& op : ops) {
        std::optional<AutocastGuard> inner;
        if (!one_guard) inner.emplace(DType::BFloat16);
        r.out.push_back(op());
      }
    })["copy float32 → bfloat16"];
    for (Tensor* p : {&w, &b, &k}) p->set_grad(Tensor());
    backward(add(add(sum(mul(r.out[0], r.out[1])), sum(r.out[2])), sum(mul(r.out[3], r.out[3]))));
    for (Tensor* p : {&w, &b, &k}) r.out.push_back(p->grad());
    return r;
  };
  const Run cached = run(true), per_use = run(false);
  CHECK(per_use.casts == 8);  // x1, w, x2, w, i1, k, i2, k
  CHECK(cached.casts == 6);   // w and k once
  REQUIRE(cached.out.size() == per_use.out.size());
  for (size_t i = 0; i < cached.out.size(); ++i) {
    CAPTURE(i);
    CHECK(cached.out[i].to_vector() == per_use.out[i].to_vector());  // the same bits
  }
  // The cache ends with the guard: a weight changed between guards is cast again.
  {
    NoGradGuard no_grad;
    backend(w.device()).fill(w, 0.25);
  }
  AutocastGuard again(DType::BFloat16);
  const Tensor y = linear(x1, w, b);
  const Tensor expected = add(mul(sum(to(to(x1, DType::BFloat16), DType::Float32), {1}, true), 0.25), b);
  vb::test::check_close(y, expected, 1e-5, 1e-5, "linear with the refilled weight");
}
