// The other kernel families (kernels/cuda/nn.h, conv.h, attention.h) reached through the public ops
// and the device backend's wiring (kernels/cuda/backend.inc): dtype dispatch, non-contiguous inputs made
// contiguous, workspaces, parameter dtypes. Forward and backward against the CPU backend, float32 and
// bfloat16, under two fiber orders. The kernels' own edge cases are their families' tests.
// Included by tests/emu/ops_wired.cpp and tests/gpu/ops_wired.cpp after `device_under_test()`.
#pragma once

#include "tests/support/device_ops.h"
#include "train/optim.h"

namespace {

using namespace vb;
using vb::device_test::compare;
using vb::device_test::uniform;
using Inputs = std::vector<Tensor>;

const std::vector<DType> wired_dtypes = {DType::Float32, DType::BFloat16};

TEST_CASE("softmax, log_softmax, layer_norm of non-contiguous inputs") {
  const Device dev = device_under_test();
  const Tensor x = uniform({7, 5, 33}, 30), w = uniform({5}, 31), b = uniform({5}, 32);
  for (DType t : wired_dtypes) {
    compare(dev, "softmax", [](const Inputs& v) { return softmax(transpose(v[0], 1, 2)); }, {x}, t);
    compare(dev, "log_softmax", [](const Inputs& v) { return log_softmax(v[0]); }, {x}, t);
    compare(dev, "layer_norm", [](const Inputs& v) { return layer_norm(transpose(v[0], 1, 2), 1, v[1], v[2]); },
            {x, w, b}, t);
  }
}

TEST_CASE("embedding, index_select, gather, cross_entropy, dropout") {
  const Device dev = device_under_test();
  const Tensor weight = uniform({11, 6}, 33);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 10, 3, 7, 3, 1}, {7});
  const Tensor logits = uniform({7, 11}, 34);
  const Tensor target = Tensor::from_vector(std::vector<int64_t>{2, 10, 0, 5, -100, 5, 1}, {7});
  for (DType t : wired_dtypes) {
    compare(dev, "embedding", [&](const Inputs& v) { return embedding(v[0], v[1], 3); }, {weight, ids}, t);
    compare(dev, "index_select", [&](const Inputs& v) { return index_select(transpose(v[0], 0, 1), 1, v[1]); },
            {weight, ids}, t);
    compare(dev, "gather", [&](const Inputs& v) { return gather(v[0], 1, v[1]); },
            {logits, Tensor::from_vector(std::vector<int64_t>{0, 10, 4, 4, 9, 1, 2, 3, 8, 8, 5, 6, 7, 0}, {7, 2})}, t);
    compare(dev, "cross_entropy", [&](const Inputs& v) { return cross_entropy(v[0], v[1], -100, 0.1); },
            {logits, target}, t);
    compare(dev, "cross_entropy (none)",
            [&](const Inputs& v) { return cross_entropy(v[0], v[1], -100, 0.0, Reduction::None); }, {logits, target},
            t);
    compare(dev, "dropout", [&](const Inputs& v) {
      Generator g{5, 0};
      return dropout(v[0], 0.3, true, &g);
    }, {logits}, t);
  }
}

TEST_CASE("conv2d, pooling, batch_norm") {
  const Device dev = device_under_test();
  const Tensor x = uniform({2, 7, 6, 5}, 35), w = uniform({4, 3, 3, 5}, 36), bias = uniform({4}, 37);
  Conv2dParams p;
  p.stride_h = 2;
  p.pad_h = p.pad_w = 1;
  for (DType t : wired_dtypes) {
    compare(dev, "conv2d", [&](const Inputs& v) { return conv2d(v[0], v[1], v[2], p); }, {x, w, bias}, t);
    compare(dev, "max_pool2d", [](const Inputs& v) { return max_pool2d(v[0], 3, 2, 1); }, {x}, t);
    compare(dev, "avg_pool2d", [](const Inputs& v) { return avg_pool2d(v[0], 3, 2, 1, false); }, {x}, t);
    compare(dev, "adaptive_avg_pool2d", [](const Inputs& v) { return adaptive_avg_pool2d(v[0], 3, 2); }, {x}, t);
    compare(dev, "batch_norm (training)", [&](const Inputs& v) {
      Tensor rm = zeros({5}, v[1].dtype(), v[0].device()), rv = ones({5}, v[1].dtype(), v[0].device());
      return batch_norm(v[0], v[1], v[2], rm, rv, true);
    }, {x, uniform({5}, 38), uniform({5}, 39)}, t);
  }
}

TEST_CASE("scaled_dot_product_attention with a padding mask") {
  const Device dev = device_under_test();
  const Tensor q = uniform({2, 3, 5, 8}, 40), k = uniform({2, 3, 7, 8}, 41), v = uniform({2, 3, 7, 8}, 42);
  std::vector<int64_t> m(2 * 7, 0);
  m[7 + 5] = m[7 + 6] = 1;  // the second sequence has two padded keys
  const Tensor padded = Tensor::from_vector(m, {2, 1, 1, 7});
  for (DType t : wired_dtypes) {
    compare(dev, "attention", [](const Inputs& in) {
      const Tensor mask = mul(to(in[3], in[0].dtype()), -1e9);  // additive, no gradient
      return scaled_dot_product_attention(in[0], in[1], in[2], mask);
    }, {q, k, v, padded}, t);
  }
}

TEST_CASE("fused AdamW (train::AdamW → Backend::adamw) and the gradient norm (Backend::sum_squares)") {
  // Three steps of train::AdamW over parameters of several shapes and dtypes (with and without weight
  // decay; one of 70 000 elements so the kernel's grid stride and several blocks are used) on the device
  // and on the CPU, from the same values and gradients; then the global gradient norm of the same
  // gradients. float32 may differ from the CPU by a few ulp per step (sqrt, division), the half types by
  // one rounding of the stored parameter.
  const Device dev = device_under_test();
  struct Spec {
    Shape shape;
    DType dtype;
    bool decay;
  };
  const std::vector<Spec> specs = {{{7, 13}, DType::Float32, true},  {{70000}, DType::Float32, true},
                                   {{33}, DType::Float32, false},    {{5, 9}, DType::BFloat16, true},
                                   {{17}, DType::Float16, false}};
  auto run = [&](Device d) {
    std::vector<train::ParamRef> refs;
    for (size_t i = 0; i < specs.size(); ++i) {
      Tensor p = to(to(uniform(specs[i].shape, 50 + i), specs[i].dtype), d);
      p.set_requires_grad(true);
      refs.push_back({fmt::format("p{}", i), p, specs[i].decay});
    }
    train::AdamW opt(refs, 0.9, 0.999, 1e-8, 0.1);
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < specs.size(); ++i)
        refs[i].param.set_grad(to(to(uniform(specs[i].shape, 100 * step + i, -1e-2, 1e-2), specs[i].dtype), d));
      opt.step(1e-2 * (step + 1));
    }
    std::vector<Tensor> out;
    for (auto& r : refs) out.push_back(r.param);
    for (auto& [name, t] : opt.state_tensors()) out.push_back(t);
    out.push_back(Tensor::from_vector(std::vector<double>{train::grad_norm(refs)}, {1}, DType::Float64));
    return out;
  };
  const std::vector<Tensor> expected = run(Device());
  const std::vector<Tensor> actual = device_test::run_twice(dev, [&] { return run(dev); }, "adamw");
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    const DType t = i < specs.size() ? specs[i].dtype : DType::Float32;
    const double tol = t == DType::BFloat16 ? 1e-2 : t == DType::Float16 ? 1e-3 : 1e-5;
    test::check_close(actual[i], expected[i], tol, tol, fmt::format("adamw result {}", i));
  }
}

}  // namespace
