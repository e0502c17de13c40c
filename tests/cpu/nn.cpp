// nn modules: registration and dotted names, state dicts (strict errors, round trips), device/dtype moves
// that keep member handles valid, train/eval, and each layer against its formula.
#include <cmath>

#include "nn/init.h"
#include "nn/layers.h"
#include "tests/support/check.h"

using namespace vb;
using namespace vb::nn;
using vb::test::check_close;

namespace {
struct Block : Module {
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<LayerNorm> norm;
  Block() {
    fc1 = register_module("fc1", std::make_shared<Linear>(4, 8));
    norm = register_module("norm", std::make_shared<LayerNorm>(8));
    fc2 = register_module("fc2", std::make_shared<Linear>(8, 2, false));
  }
};
struct Net : Module {
  std::shared_ptr<ModuleList<Block>> blocks = std::make_shared<ModuleList<Block>>();
  std::shared_ptr<BatchNorm2d> bn;
  Net() {
    blocks->push_back(std::make_shared<Block>());
    blocks->push_back(std::make_shared<Block>());
    register_module("blocks", blocks);
    bn = register_module("bn", std::make_shared<BatchNorm2d>(3));
  }
};
std::vector<std::string> names(const NamedTensors& list) {
  std::vector<std::string> out;
  for (auto& [n, _] : list) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("parameters, buffers and submodules have stable dotted names in registration order") {
  Net net;
  const std::vector<std::string> expected = {
      "blocks.0.fc1.weight", "blocks.0.fc1.bias", "blocks.0.norm.weight", "blocks.0.norm.bias", "blocks.0.fc2.weight",
      "blocks.1.fc1.weight", "blocks.1.fc1.bias", "blocks.1.norm.weight", "blocks.1.norm.bias", "blocks.1.fc2.weight",
      "bn.weight",           "bn.bias"};
  CHECK(names(net.named_parameters()) == expected);
  CHECK(names(net.named_buffers()) ==
        std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  CHECK(net.parameter_count() == 2 * (4 * 8 + 8 + 8 + 8 + 8 * 2) + 3 + 3);
  CHECK(net.state_dict().size() == 15);
  for (const Tensor& p : net.parameters()) CHECK(p.requires_grad());
  auto modules = net.named_modules();
  CHECK(modules.front().first == "blocks");
  CHECK(modules[1].first == "blocks.0");
}

TEST_CASE("train() and eval() reach every submodule") {
  Net net;
  net.eval();
  CHECK(!(*net.blocks)[1].fc2->is_training());
  net.train();
  CHECK(net.bn->is_training());
}

TEST_CASE("state_dict round trip and strict-load errors list every problem") {
  Net a, b;
  b.load_state_dict(a.state_dict());
  for (auto& [n, t] : b.state_dict()) {
    bool found = false;
    for (auto& [m, u] : a.state_dict())
      if (m == n) {
        found = true;
        CHECK(t.to_vector() == u.to_vector());
      }
    CHECK(found);
  }
  // Member handles see the loaded values.
  CHECK((*b.blocks)[0].fc1->weight.to_vector() == (*a.blocks)[0].fc1->weight.to_vector());

  NamedTensors bad = a.state_dict();
  bad.erase(bad.begin());                                      // missing blocks.0.fc1.weight
  bad.emplace_back("extra.weight", zeros({1}));                // unexpected
  for (auto& [n, t] : bad)
    if (n == "bn.bias") t = zeros({4});                        // shape mismatch
  try {
    b.load_state_dict(bad);
    FAIL("a strict load of a mismatching state dict must throw");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("missing (1): blocks.0.fc1.weight") != std::string::npos);
    CHECK(m.find("unexpected (1): extra.weight") != std::string::npos);
    CHECK(m.find("bn.bias (checkpoint (4), model (3))") != std::string::npos);
  }
  Module::LoadReport r = b.load_state_dict(bad, /*strict=*/false);
  CHECK(r.missing.size() == 1);
  CHECK(r.unexpected.size() == 1);
  CHECK(r.mismatched.size() == 1);
}

TEST_CASE("to(dtype) changes tensors in place; integer buffers keep their dtype") {
  Net net;
  Tensor w = (*net.blocks)[0].fc1->weight;
  const std::vector<double> before = w.to_vector();
  net.to(DType::Float64);
  CHECK(w.dtype() == DType::Float64);  // the member handle sees the conversion
  CHECK(w.to_vector() == before);
  CHECK(net.bn->num_batches_tracked.dtype() == DType::Int64);
  CHECK(w.requires_grad());
}

TEST_CASE("Linear, LayerNorm and Sequential compute their formulas") {
  Generator g{3, 0};
  Linear fc(3, 2);
  Tensor x = randn({4, 3}, &g);
  Tensor y = fc(x);
  for (int i = 0; i < 4; ++i)
    for (int o = 0; o < 2; ++o) {
      double ref = fc.bias.at({o});
      for (int k = 0; k < 3; ++k) ref += x.at({i, k}) * fc.weight.at({o, k});
      CHECK(y.at({i, o}) == doctest::Approx(ref).epsilon(1e-5));
    }
  Sequential seq({std::make_shared<Linear>(3, 5), std::make_shared<ReLU>(), std::make_shared<Linear>(5, 1)});
  CHECK(names(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(seq(x).shape() == Shape{4, 1});
  LayerNorm ln(3);
  Tensor z = ln(x);
  for (int i = 0; i < 4; ++i) {
    double m = 0, v = 0;
    for (int k = 0; k < 3; ++k) m += x.at({i, k}) / 3;
    for (int k = 0; k < 3; ++k) v += (x.at({i, k}) - m) * (x.at({i, k}) - m) / 3;
    CHECK(z.at({i, 0}) == doctest::Approx((x.at({i, 0}) - m) / std::sqrt(v + 1e-5)).epsilon(1e-4));
  }
}

TEST_CASE("initialisers follow the reference models") {
  Generator g{5, 0};
  Tensor w = zeros({256, 3, 3, 64});  // a conv weight (O, KH, KW, I)
  init::kaiming_normal_(w, /*fan_out=*/true, &g);
  auto [fan_in, fan_out] = init::fans(w);
  CHECK(fan_in == 3 * 3 * 64);
  CHECK(fan_out == 3 * 3 * 256);
  const std::vector<double> v = w.to_vector();
  double ss = 0;
  for (double x : v) ss += x * x;
  const double std_measured = std::sqrt(ss / double(v.size()));
  CHECK(std_measured == doctest::Approx(std::sqrt(2.0 / double(fan_out))).epsilon(0.02));
  Embedding emb(10, 4, /*padding_idx=*/0);
  for (int j = 0; j < 4; ++j) CHECK(emb.weight.at({0, j}) == 0.0);
  Linear fc(100, 10);
  for (double x : fc.weight.to_vector()) CHECK(std::abs(x) <= 0.1);
}

TEST_CASE("BatchNorm2d counts batches and switches statistics with the mode") {
  Generator g{9, 0};
  BatchNorm2d bn(3);
  Tensor x = randn({2, 4, 4, 3}, &g);
  bn(x);
  bn(x);
  CHECK(bn.num_batches_tracked.item() == 2);
  bn.eval();
  Tensor y = bn(x);
  // Eval normalises with the running statistics.
  const double mean0 = bn.running_mean.at({0}), var0 = bn.running_var.at({0});
  CHECK(y.at({1, 2, 3, 0}) == doctest::Approx((x.at({1, 2, 3, 0}) - mean0) / std::sqrt(var0 + 1e-5)).epsilon(1e-4));
  CHECK(bn.num_batches_tracked.item() == 2);
}

TEST_CASE("multi-head self-attention equals the per-head computation") {
  Generator g{7, 0};
  MultiheadSelfAttention mha(8, 2);
  mha.eval();
  Tensor x = randn({2, 5, 8}, &g);
  Tensor y = mha.forward(x);
  // Reference: heads computed one by one with explicit softmax.
  Tensor q = (*mha.query)(x), k = (*mha.key)(x), v = (*mha.value)(x);
  std::vector<Tensor> heads;
  for (int h = 0; h < 2; ++h) {
    Tensor qh = narrow(q, 2, h * 4, 4), kh = narrow(k, 2, h * 4, 4), vh = narrow(v, 2, h * 4, 4);
    Tensor s = mul(matmul(qh, transpose(kh, 1, 2)), 0.5);  // 1/√4
    heads.push_back(matmul(softmax(s, -1), vh));
  }
  Tensor ref = (*mha.out)(cat(heads, 2));
  check_close(y, ref, 1e-5, 1e-4, "mha");
  // A key padding mask hides the last key of batch 1.
  Tensor mask = Tensor::from_vector(std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, {2, 1, 1, 5}, DType::Bool);
  Tensor ym = mha.forward(x, mask);
  check_close(narrow(ym, 0, 0, 1), narrow(y, 0, 0, 1), 1e-6, 1e-5, "mask leaves batch 0 unchanged");
}
