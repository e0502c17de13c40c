// train/optim.h against PyTorch: tests/golden/optim.safetensors, written by tests/golden/make_optim_fixtures.py,
// holds torch.optim.AdamW and torch.optim.SGD runs (initial parameters, the gradient and lr of every step,
// parameters and optimizer state after every step), torch.nn.utils.clip_grad_norm_ results and the learning
// rates of PyTorch's own schedulers. Each case below repeats the hyperparameters the script used, under the
// same name. Tolerances, |ours − PyTorch| ≤ atol + rtol·|PyTorch|:
//   float32 parameters  1e-6 / 1e-5: the same float32 formula, but rounded in a different order (PyTorch
//                       divides √v by √c2 and adds eps in separate ops; the fused kernel multiplies by
//                       1/√c2 and by lr/c1 rounded once): a few ulps per step, compounded over 4 steps.
//                       Largest seen (dev VM): 6e-8 absolute; 1.4e-6 relative, on an element near 0.
//   float32 state       1e-12 / 1e-5: relative only, the moments span 1e-20 (the eps-regime element) to ~10.
//                       Largest seen: 8.5e-7 relative (an SGD momentum buffer).
//   float64 parameters  5e-9 / 1e-8: AdamW keeps its moments in float32 (PyTorch: float64), so every
//                       step's update lr·m̂/(√v̂ + ε) carries their rounding (≈ 1e-7 relative of an update
//                       of a few lr); a float32 update of |p| ≈ 1 (rounding ≈ 6e-8 per step) would fail
//                       it, so it shows the parameters are updated in double. Largest seen: 5.1e-10.
//   float64 state       1e-30 / 1e-6: float32 moments against PyTorch's float64 ones (seen: 9.5e-8).
//   clipping norm       relative 1e-6: PyTorch's norm is a float32 result, ours sums squares in double
//                       (seen: 2.8e-8); the clipped gradients 1e-7 / 1e-6 (seen: identical).
//   schedules           relative 1e-12: ours evaluates the closed form, PyTorch's schedulers a step-to-step
//                       recursion, both in double: a few ulps apart (seen: 2.5e-15).
// The loss scaler and the bad-input checks need no reference beyond their documented behaviour.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "train/optim.h"

using namespace vb;
using namespace vb::train;
using vb::test::check_close;
using vb::test::uniform;

namespace {

constexpr int kSteps = 4;
const std::vector<std::string> kParams = {"dense.weight", "dense.bias"};  // the first decays, the second not

struct Tolerance {
  double atol, rtol;
};
constexpr Tolerance kParam32{1e-6, 1e-5}, kState32{1e-12, 1e-5};
constexpr Tolerance kParam64{5e-9, 1e-8}, kState64{1e-30, 1e-6};

const SafetensorsFile& fixtures() {
  static const SafetensorsFile file = load_safetensors(std::string(VB_SOURCE_DIR) + "/tests/golden/optim.safetensors");
  return file;
}
const Tensor& fx(const std::string& name) { return fixtures().at(name); }

// Fresh parameters (copies of the fixture's, so no run changes another) with decay as PyTorch's groups had it.
std::vector<ParamRef> params_from(const std::string& prefix) {
  std::vector<ParamRef> out;
  for (const std::string& name : kParams) out.push_back({name, clone(fx(prefix + name)), name == "dense.weight"});
  return out;
}

// The fixture's gradients for step `step`; parameters the fixture does not know keep no gradient.
void set_grads(const std::vector<ParamRef>& params, const std::string& c, int step) {
  for (const ParamRef& p : params) {
    const std::string name = c + ".grad" + std::to_string(step) + "." + p.name;
    if (fixtures().contains(name)) p.param.set_grad(clone(fx(name)));
  }
}

double lr_of(const std::string& c, int step) { return fx(c + ".lr").to_vector()[size_t(step - 1)]; }

// The parameters and every state tensor after `step` against PyTorch's. PyTorch keeps no state for plain
// SGD, so the state is compared exactly when the fixture holds it.
void check_step(const Optimizer& opt, const std::string& c, int step, Tolerance param_tol, Tolerance state_tol) {
  const std::string prefix = c + ".step" + std::to_string(step) + ".";
  for (const ParamRef& p : opt.params()) {
    if (!fixtures().contains(prefix + p.name)) continue;  // a parameter the test added (checked by its caller)
    INFO(c << " step " << step);
    check_close(p.param, fx(prefix + p.name), param_tol.atol, param_tol.rtol, prefix + p.name);
  }
  for (const auto& [name, t] : opt.state_tensors()) {
    if (!fixtures().contains(prefix + name)) continue;
    check_close(t, fx(prefix + name), state_tol.atol, state_tol.rtol, prefix + name);
  }
}

// Runs `opt` from step `first` to the last, checking after each.
void run_steps(Optimizer& opt, const std::string& c, int first, Tolerance param_tol, Tolerance state_tol) {
  for (int t = first; t <= kSteps; ++t) {
    set_grads(opt.params(), c, t);
    opt.step(lr_of(c, t));
    CHECK(opt.steps() == t);
    check_step(opt, c, t, param_tol, state_tol);
  }
}

AdamW make_adamw(std::vector<ParamRef> params) { return AdamW(std::move(params), 0.9, 0.999, 1e-8, 0.1); }

struct SgdCase {
  const char* name;
  double momentum, weight_decay;
  bool nesterov;
  double dampening;
};
// The same names and hyperparameters as make_optim_fixtures.py.
const std::vector<SgdCase> kSgdCases = {
    {"sgd_momentum", 0.9, 0.01, false, 0.0},
    {"sgd_nesterov", 0.9, 0.01, true, 0.0},
    {"sgd_dampening", 0.9, 0.0, false, 0.1},
    {"sgd_plain", 0.0, 0.01, false, 0.0},
};

SGD make_sgd(const SgdCase& s, std::vector<ParamRef> params) {
  return SGD(std::move(params), s.momentum, s.weight_decay, s.nesterov, s.dampening);
}

// Runs f and expects a vb::Error whose message contains every one of `parts`.
template <typename F>
void check_error_names(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL_CHECK("no vb::Error thrown; expected one naming ", parts.front());
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const std::string& part : parts)
      CHECK_MESSAGE(what.find(part) != std::string::npos, "\"", what, "\" lacks ", part);
  }
}

}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW step by step") {
  SUBCASE("float32") {
    AdamW opt = make_adamw(params_from("adamw_f32.init."));
    run_steps(opt, "adamw_f32", 1, kParam32, kState32);
  }
  SUBCASE("float64 parameters") {
    AdamW opt = make_adamw(params_from("adamw_f64.init."));
    run_steps(opt, "adamw_f64", 1, kParam64, kState64);
    for (const ParamRef& p : opt.params()) CHECK(p.param.dtype() == DType::Float64);
  }
}

TEST_CASE("AdamW updates a non-contiguous parameter in place, as a contiguous one") {
  // dense.weight as a transposed view of a (4, 3) tensor: the optimizer must write through the view.
  std::vector<ParamRef> params = params_from("adamw_f32.init.");
  const Tensor storage = contiguous(transpose(params[0].param, 0, 1));  // (4, 3)
  params[0].param = transpose(storage, 0, 1);                           // (3, 4), strides (1, 3)
  REQUIRE_FALSE(params[0].param.is_contiguous());
  AdamW opt = make_adamw(params);
  run_steps(opt, "adamw_f32", 1, kParam32, kState32);
  check_close(transpose(storage, 0, 1), fx("adamw_f32.step4.dense.weight"), kParam32.atol, kParam32.rtol,
              "the storage behind the view");
}

TEST_CASE("AdamW's float32 update is the documented formula with its four fused multiply-adds, bit for bit") {
  // kernels/cpu/optim.cpp fuses exactly β1·m + ((1 − β1)·g), β2·v + ((1 − β2)·g²), √v·(1/√c2) + ε and
  // p − (m/d)·(lr/c1) (std::fma), compiles without contraction and vectorises the loop. The reference below
  // does the same operations one element at a time (std::fma is exact whoever evaluates it), with the step's
  // scalars rounded to float32 as the kernel's are. Every element must match: at offsets 0, 997 and 1013 of one
  // storage (ZeRO-1's shards start anywhere, so the vector body and the remainder both run), with decay, four
  // steps, one with a gradient scale. Fails if the kernel's operations change, or if the compiler fuses
  // another multiply-add (the plain expressions with GCC's default contraction: most elements differ).
  const int64_t n = 2000;
  const double lr = 3e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.1;
  const Tensor init = uniform({n}, 70, -1, 1, DType::Float32);
  const Tensor storage = clone(init);
  const std::vector<std::pair<int64_t, int64_t>> pieces = {{0, 997}, {997, 16}, {1013, 987}};
  const char* names[] = {"w0", "w997", "w1013"};
  std::vector<ParamRef> parts;
  for (size_t i = 0; i < pieces.size(); ++i)
    parts.push_back({names[i], narrow(storage, 0, pieces[i].first, pieces[i].second), true});
  AdamW opt(parts, beta1, beta2, eps, wd);
  std::vector<float> p, m(size_t(n), 0.0f), v(size_t(n), 0.0f);
  for (double x : init.to_vector()) p.push_back(float(x));
  for (int t = 1; t <= 4; ++t) {
    const Tensor grad = mul(uniform({n}, uint64_t(70 + t), -1, 1, DType::Float32), 1e-3 * t);
    for (size_t i = 0; i < parts.size(); ++i)
      parts[i].param.set_grad(clone(narrow(grad, 0, pieces[i].first, pieces[i].second)));
    const double scale = t == 3 ? 0.37 : 1.0;
    opt.step(lr, scale);
    const double c1 = 1 - std::pow(beta1, double(t)), c2 = 1 - std::pow(beta2, double(t));
    const float b1 = float(beta1), omb1 = float(1 - beta1), b2 = float(beta2), omb2 = float(1 - beta2), e = float(eps),
                decay = float(1 - lr * wd), inv_sqrt_c2 = float(1 / std::sqrt(c2)), step = float(lr / c1),
                s = float(scale);
    const std::vector<double> g = grad.to_vector();
    for (int64_t k = 0; k < n; ++k) {
      float gk = float(g[size_t(k)]);
      if (scale != 1) gk = gk * s;
      const float pk = p[size_t(k)] * decay;
      const float mk = std::fma(b1, m[size_t(k)], omb1 * gk), vk = std::fma(b2, v[size_t(k)], omb2 * (gk * gk));
      m[size_t(k)] = mk;
      v[size_t(k)] = vk;
      p[size_t(k)] = std::fma(-(mk / std::fma(std::sqrt(vk), inv_sqrt_c2, e)), step, pk);
    }
  }
  const std::vector<double> got = storage.to_vector();
  int64_t differ = 0, first = -1;
  for (int64_t k = 0; k < n; ++k)
    if (float(got[size_t(k)]) != p[size_t(k)]) {
      if (first < 0) first = k;
      ++differ;
    }
  CHECK_MESSAGE(differ == 0, differ, " of ", n, " elements differ from the formula, the first at ", first);
}

TEST_CASE("SGD matches torch.optim.SGD step by step") {
  for (const SgdCase& s : kSgdCases) {
    SUBCASE(s.name) {
      SGD opt = make_sgd(s, params_from(std::string(s.name) + ".init."));
      run_steps(opt, s.name, 1, kParam32, kState32);
    }
  }
}

TEST_CASE("a parameter without a gradient is left alone, decay included") {
  const Tensor frozen_init = clone(fx("adamw_f32.init.dense.weight"));
  SUBCASE("AdamW") {
    std::vector<ParamRef> params = params_from("adamw_f32.init.");
    params.push_back({"frozen.weight", clone(frozen_init), true});
    AdamW opt = make_adamw(params);
    run_steps(opt, "adamw_f32", 1, kParam32, kState32);
    check_close(opt.params()[2].param, frozen_init, 0, 0, "frozen.weight");
    for (const auto& [name, t] : opt.state_tensors())
      if (name.rfind("frozen.weight.", 0) == 0) check_close(t, zeros(t.shape()), 0, 0, name);
  }
  SUBCASE("SGD") {
    std::vector<ParamRef> sgd_params = params_from("sgd_momentum.init.");
    sgd_params.push_back({"frozen.weight", clone(frozen_init), true});
    SGD sgd = make_sgd(kSgdCases[0], sgd_params);
    run_steps(sgd, "sgd_momentum", 1, kParam32, kState32);
    check_close(sgd.params()[2].param, frozen_init, 0, 0, "frozen.weight");
  }
}

TEST_CASE("optimizer state round trip: state_tensors names and values are PyTorch's") {
  SUBCASE("AdamW: our state after 2 steps, loaded into a new optimizer, continues the run") {
    AdamW first = make_adamw(params_from("adamw_f32.init."));
    for (int t = 1; t <= 2; ++t) {
      set_grads(first.params(), "adamw_f32", t);
      first.step(lr_of("adamw_f32", t));
    }
    std::vector<ParamRef> copies;
    for (const ParamRef& p : first.params()) copies.push_back({p.name, clone(p.param), p.decay});
    AdamW second = make_adamw(copies);
    second.set_steps(first.steps());
    second.load_state_tensors(first.state_tensors());
    run_steps(second, "adamw_f32", 3, kParam32, kState32);
  }
  SUBCASE("AdamW: PyTorch's state after 2 steps, under our names, continues the run") {
    AdamW opt = make_adamw(params_from("adamw_f32.step2."));
    nn::NamedTensors state;
    for (const std::string& name : kParams)
      for (const char* slot : {".exp_avg", ".exp_avg_sq"})  // copies: the optimizer may adopt and update them
        state.emplace_back(name + slot, clone(fx("adamw_f32.step2." + name + slot)));
    opt.set_steps(2);
    opt.load_state_tensors(state);
    run_steps(opt, "adamw_f32", 3, kParam32, kState32);
  }
  SUBCASE("AdamW: loading copies the state (later steps leave the loaded tensors alone), as PyTorch's does") {
    AdamW opt = make_adamw(params_from("adamw_f32.step2."));
    nn::NamedTensors state;
    for (const std::string& name : kParams)
      for (const char* slot : {".exp_avg", ".exp_avg_sq"})
        state.emplace_back(name + slot, clone(fx("adamw_f32.step2." + name + slot)));
    opt.set_steps(2);
    opt.load_state_tensors(state);
    set_grads(opt.params(), "adamw_f32", 3);
    opt.step(lr_of("adamw_f32", 3));
    for (const auto& [name, t] : state)
      CHECK_MESSAGE(t.to_vector() == fx("adamw_f32.step2." + name).to_vector(), name, " changed by a later step");
  }
  SUBCASE("AdamW state names") {
    AdamW opt = make_adamw(params_from("adamw_f32.init."));
    std::vector<std::string> names;
    for (const auto& [name, t] : opt.state_tensors()) names.push_back(name);
    CHECK(names == std::vector<std::string>{"dense.weight.exp_avg", "dense.weight.exp_avg_sq", "dense.bias.exp_avg",
                                            "dense.bias.exp_avg_sq"});
  }
  for (const SgdCase& s : {kSgdCases[0], kSgdCases[1]}) {
    SUBCASE((std::string("SGD: PyTorch's momentum buffers after 2 steps continue the run, ") + s.name).c_str()) {
      SGD opt = make_sgd(s, params_from(std::string(s.name) + ".step2."));
      nn::NamedTensors state;
      for (const std::string& name : kParams)
        state.emplace_back(name + ".momentum_buffer",
                           clone(fx(std::string(s.name) + ".step2." + name + ".momentum_buffer")));
      opt.set_steps(2);
      opt.load_state_tensors(state);
      run_steps(opt, s.name, 3, kParam32, kState32);
    }
  }
  SUBCASE("SGD: our state after 2 steps continues the run") {
    SGD first = make_sgd(kSgdCases[0], params_from("sgd_momentum.init."));
    for (int t = 1; t <= 2; ++t) {
      set_grads(first.params(), "sgd_momentum", t);
      first.step(lr_of("sgd_momentum", t));
    }
    std::vector<ParamRef> copies;
    for (const ParamRef& p : first.params()) copies.push_back({p.name, clone(p.param), p.decay});
    SGD second = make_sgd(kSgdCases[0], copies);
    second.set_steps(first.steps());
    second.load_state_tensors(first.state_tensors());
    run_steps(second, "sgd_momentum", 3, kParam32, kState32);
  }
}

TEST_CASE("load_state_tensors rejects a missing or misshapen slot, naming the parameter") {
  AdamW adamw = make_adamw(params_from("adamw_f32.init."));
  const nn::NamedTensors good = adamw.state_tensors();
  SUBCASE("AdamW, missing exp_avg_sq of dense.bias") {
    nn::NamedTensors state;
    for (const auto& [name, t] : good)
      if (name != "dense.bias.exp_avg_sq") state.emplace_back(name, t);
    check_error_names([&] { adamw.load_state_tensors(state); }, {"dense.bias.exp_avg_sq"});
  }
  SUBCASE("AdamW, exp_avg of dense.weight with the wrong shape") {
    nn::NamedTensors state = good;
    for (auto& [name, t] : state)
      if (name == "dense.weight.exp_avg") t = zeros({4, 3});
    check_error_names([&] { adamw.load_state_tensors(state); }, {"dense.weight", "exp_avg", "(4, 3)", "(3, 4)"});
  }
  SUBCASE("SGD, missing momentum buffer of dense.weight") {
    SGD sgd = make_sgd(kSgdCases[0], params_from("sgd_momentum.init."));
    nn::NamedTensors state = {{"dense.bias.momentum_buffer", zeros({5})}};
    check_error_names([&] { sgd.load_state_tensors(state); }, {"dense.weight.momentum_buffer"});
  }
}

TEST_CASE("clip_grad_norm and grad_norm match torch.nn.utils.clip_grad_norm_") {
  for (const char* c : {"clip_active", "clip_inactive"}) {
    SUBCASE(c) {
      const std::string prefix = c;
      const double max_norm = prefix == "clip_active" ? 1.0 : 100.0;
      std::vector<ParamRef> params;
      for (const std::string& name : kParams) {
        params.push_back({name, zeros(fx(prefix + ".grad." + name).shape()), true});
        params.back().param.set_grad(clone(fx(prefix + ".grad." + name)));
      }
      params.push_back({"extra.weight", zeros({2}), true});  // no gradient: ignored, as PyTorch does
      const double want = fx(prefix + ".norm").item();
      CHECK(grad_norm(params) == doctest::Approx(want).epsilon(1e-6));
      CHECK(clip_grad_norm(params, max_norm) == doctest::Approx(want).epsilon(1e-6));
      for (size_t i = 0; i < kParams.size(); ++i)
        check_close(params[i].param.grad(), fx(prefix + ".clipped." + kParams[i]), 1e-7, 1e-6,
                    prefix + " " + kParams[i]);
      CHECK_FALSE(params[2].param.grad().defined());
      if (prefix == "clip_active") CHECK(grad_norm(params) == doctest::Approx(max_norm).epsilon(1e-5));
    }
  }
}

TEST_CASE("the trainer's clipping (scale_in_place) scales each gradient where it is, as torch's clip_grad_norm_") {
  // The trainer clips with sum_of_squares and scale_in_place (train/trainer.cpp). Against the same PyTorch
  // fixture: the same values, in the same memory; a strided gradient too, against mul in double.
  std::vector<Tensor> grads;
  std::vector<const void*> memory;
  for (const std::string& name : kParams) {
    grads.push_back(to(fx("clip_active.grad." + name), DType::Float32));
    memory.push_back(grads.back().data_ptr());
  }
  const double norm = std::sqrt(sum_of_squares(grads));
  CHECK(norm == doctest::Approx(fx("clip_active.norm").item()).epsilon(1e-6));
  scale_in_place(grads, 1.0 / (norm + 1e-6));  // max_norm 1
  // The factor the trainer hands to the optimizer: the same, and 1 when there is nothing to clip.
  CHECK(clip_factor(norm, 1.0) == 1.0 / (norm + 1e-6));
  CHECK(clip_factor(0.5, 1.0) == 1.0);
  CHECK(clip_factor(std::numeric_limits<double>::infinity(), 1.0) == 1.0);
  CHECK(clip_factor(std::numeric_limits<double>::quiet_NaN(), 1.0) == 1.0);
  for (size_t i = 0; i < kParams.size(); ++i) {
    check_close(grads[i], fx("clip_active.clipped." + kParams[i]), 1e-7, 1e-6, kParams[i]);
    CHECK(grads[i].data_ptr() == memory[i]);
  }
  const Tensor base = vb::test::uniform({3, 5}, 90, -1, 1, DType::Float32);
  Tensor strided = transpose(clone(base), 0, 1);
  REQUIRE(!strided.is_contiguous());
  scale_in_place({strided}, 0.25);
  check_close(strided, mul(transpose(base, 0, 1), 0.25), 0, 0, "a transposed gradient");
}

TEST_CASE("an optimizer step with grad_scale is a step after scaling the gradients in place, bit for bit") {
  // The trainer hands the clip's factor to the optimizer (AdamW applies it as its fused step reads each
  // gradient). Against the two-pass form, scale_in_place then step: the same parameters and state, bit for
  // bit, over three steps, for AdamW and SGD, float32 and bfloat16 parameters; the gradients left unscaled.
  for (const DType dt : {DType::Float32, DType::BFloat16})
    for (const bool adamw : {true, false}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(adamw);
      auto make = [&](std::vector<ParamRef>& params) -> std::unique_ptr<Optimizer> {
        params = {{"w", to(vb::test::uniform({7, 33}, 91), dt), true}, {"b", to(vb::test::uniform({33}, 92), dt), false}};
        if (adamw) return std::make_unique<AdamW>(params, 0.9, 0.999, 1e-8, 0.1);
        return std::make_unique<SGD>(params, 0.9, 0.1, true);
      };
      std::vector<ParamRef> fused_params, two_pass_params;
      auto fused = make(fused_params), two_pass = make(two_pass_params);
      for (int step = 1; step <= 3; ++step) {
        const double factor = 0.37 / step;
        std::vector<Tensor> grads;
        for (size_t i = 0; i < fused_params.size(); ++i) {
          const Tensor g = to(vb::test::uniform(fused_params[i].param.shape(), 93 + 10 * step + i), dt);
          fused_params[i].param.set_grad(clone(g));
          two_pass_params[i].param.set_grad(clone(g));
          grads.push_back(two_pass_params[i].param.grad());
        }
        const std::vector<double> before = fused_params[0].param.grad().to_vector();
        fused->step(1e-2, factor);
        scale_in_place(grads, factor);
        two_pass->step(1e-2);
        CHECK(fused_params[0].param.grad().to_vector() == before);  // left as it was
        for (size_t i = 0; i < fused_params.size(); ++i)
          CHECK(fused_params[i].param.to_vector() == two_pass_params[i].param.to_vector());
      }
      const nn::NamedTensors a = fused->state_tensors(), b = two_pass->state_tensors();
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
    }
}

TEST_CASE("clip_grad_norm with a non-finite gradient reports it and scales nothing") {
  for (double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    CAPTURE(bad);
    std::vector<ParamRef> params;
    for (const std::string& name : kParams) {
      params.push_back({name, zeros(fx("clip_active.grad." + name).shape()), true});
      params.back().param.set_grad(clone(fx("clip_active.grad." + name)));
    }
    params[1].param.set_grad(Tensor::from_vector(std::vector<double>{1.0, bad, -2.0, 0.5, 3.0}, {5}));
    const Tensor weight_grad = clone(params[0].param.grad());
    const double norm = clip_grad_norm(params, 1.0);
    CHECK_FALSE(std::isfinite(norm));
    if (std::isinf(bad)) CHECK(norm > 0);
    check_close(params[0].param.grad(), weight_grad, 0, 0, "dense.weight gradient left unscaled");
  }
}

TEST_CASE("Schedule matches PyTorch's LinearLR warm-up chained with CosineAnnealingLR / LinearLR") {
  struct ScheduleCase {
    const char* name;
    Schedule schedule;
  };
  // The same names and settings as make_optim_fixtures.py: {base_lr, warmup, total, cosine, min_ratio}.
  const std::vector<ScheduleCase> cases = {
      {"sched_cosine", {1e-3, 4, 20, true, 0.1}},
      {"sched_linear", {1e-3, 4, 20, false, 0.1}},
      {"sched_cosine_nowarmup", {1e-3, 1, 12, true, 0.0}},
  };
  for (const ScheduleCase& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    const std::vector<double> want = fx(std::string(c.name) + ".lr").to_vector();
    REQUIRE(int64_t(want.size()) == c.schedule.total);
    for (size_t e = 0; e < want.size(); ++e) {
      CAPTURE(e + 1);
      CHECK(std::abs(c.schedule.lr(int64_t(e) + 1) - want[e]) <= 1e-12 * std::abs(want[e]));
    }
  }
}

TEST_CASE("Schedule at its key points") {
  const double base = 2e-3, min_ratio = 0.1;
  Schedule s{base, 10, 110, true, min_ratio};
  CHECK(s.lr(0) == 0.0);                                    // before the first step
  CHECK(s.lr(5) == doctest::Approx(base / 2).epsilon(1e-15));  // mid warm-up
  CHECK(s.lr(10) == doctest::Approx(base).epsilon(1e-15));     // end of warm-up: the full lr
  CHECK(s.lr(60) == doctest::Approx(base * (min_ratio + (1 - min_ratio) / 2)).epsilon(1e-15));  // mid-decay
  CHECK(s.lr(110) == doctest::Approx(base * min_ratio).epsilon(1e-15));                          // the end
  CHECK(s.lr(500) == doctest::Approx(base * min_ratio).epsilon(1e-15));  // past the end: stays at the floor
  s.cosine = false;
  CHECK(s.lr(35) == doctest::Approx(base * (min_ratio + (1 - min_ratio) * 0.75)).epsilon(1e-15));  // a quarter in
  CHECK(s.lr(60) == doctest::Approx(base * (min_ratio + (1 - min_ratio) / 2)).epsilon(1e-15));
  CHECK(s.lr(110) == doctest::Approx(base * min_ratio).epsilon(1e-15));
  const Schedule no_warmup{base, 0, 100, false, 0.0};
  CHECK(no_warmup.lr(0) == doctest::Approx(base).epsilon(1e-15));
  CHECK(no_warmup.lr(50) == doctest::Approx(base / 2).epsilon(1e-15));
  CHECK(no_warmup.lr(100) == 0.0);
}

TEST_CASE("LossScaler skips non-finite steps, grows after interval clean steps, unscales exactly") {
  // Scales are powers of two, so unscaling is exact in every float type and compared with tolerance 0.
  const Tensor g = Tensor::from_vector(std::vector<double>{1.0, -2.0, 0.375, 4096.0}, {4});
  auto params_with = [](const Tensor& grad) {
    std::vector<ParamRef> params = {{"w", zeros(grad.shape(), grad.dtype()), true}};
    params[0].param.set_grad(clone(grad));
    return params;
  };
  LossScaler scaler(1024.0, 2.0, 0.5, 3);

  SUBCASE("unscale divides by the scale, in the gradient's dtype") {
    for (DType dtype : {DType::Float32, DType::BFloat16, DType::Float16}) {
      CAPTURE(dtype_name(dtype));
      auto params = params_with(vb::to(g, dtype));
      CHECK(scaler.unscale_and_update(params));
      CHECK(params[0].param.grad().dtype() == dtype);
      check_close(params[0].param.grad(), vb::to(mul(g, 1.0 / 1024.0), dtype), 0, 0, "unscaled gradient");
      scaler.restore(1024.0, 0);
    }
  }
  SUBCASE("a clean step keeps the scale and counts") {
    auto params = params_with(g);
    CHECK(scaler.unscale_and_update(params));
    CHECK(scaler.scale() == 1024.0);
    CHECK(scaler.clean_steps() == 1);
  }
  SUBCASE("inf or nan: returns false, halves the scale, resets the clean count") {
    for (double bad : {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                       std::numeric_limits<double>::quiet_NaN()}) {
      CAPTURE(bad);
      scaler.restore(1024.0, 0);
      for (int i = 0; i < 2; ++i) {
        auto clean = params_with(g);
        REQUIRE(scaler.unscale_and_update(clean));
      }
      REQUIRE(scaler.clean_steps() == 2);
      std::vector<ParamRef> params = params_with(g);
      params.push_back({"b", zeros({2}), false});
      params[1].param.set_grad(Tensor::from_vector(std::vector<double>{0.5, bad}, {2}));
      CHECK_FALSE(scaler.unscale_and_update(params));
      CHECK(scaler.scale() == 512.0);
      CHECK(scaler.clean_steps() == 0);
    }
  }
  SUBCASE("growth after interval clean steps, then the count starts over") {
    for (int i = 1; i <= 2; ++i) {
      auto params = params_with(g);
      CHECK(scaler.unscale_and_update(params));
      CHECK(scaler.scale() == 1024.0);
      CHECK(scaler.clean_steps() == i);
    }
    auto params = params_with(g);
    CHECK(scaler.unscale_and_update(params));
    check_close(params[0].param.grad(), mul(g, 1.0 / 1024.0), 0, 0, "the growing step unscales by the old scale");
    CHECK(scaler.scale() == 2048.0);
    CHECK(scaler.clean_steps() == 0);
    for (int i = 0; i < 3; ++i) {
      auto more = params_with(g);
      CHECK(scaler.unscale_and_update(more));
    }
    CHECK(scaler.scale() == 4096.0);
  }
  SUBCASE("a skipped step between clean ones delays growth") {
    for (int i = 0; i < 2; ++i) {
      auto params = params_with(g);
      CHECK(scaler.unscale_and_update(params));
    }
    auto bad = params_with(Tensor::from_vector(std::vector<double>{std::numeric_limits<double>::infinity()}, {1}));
    CHECK_FALSE(scaler.unscale_and_update(bad));
    for (int i = 0; i < 2; ++i) {
      auto params = params_with(g);
      CHECK(scaler.unscale_and_update(params));
    }
    CHECK(scaler.scale() == 512.0);  // 1024 halved, not yet grown again: 2 of 3 clean steps
    CHECK(scaler.clean_steps() == 2);
  }
}
