// Every op against PyTorch: tests/golden/ops.safetensors (float32) and ops_f64.safetensors (float64), written
// by tests/golden/make_fixtures.py, hold per case the inputs, PyTorch's output and the gradients of
// sum(out * weight). Each case below repeats the scalar arguments the script used, under the same name.
// Tolerances, per case family: |ours − PyTorch| ≤ atol + rtol·|PyTorch|
//   float32: elementwise and data movement 1e-6 / 1e-5; reductions, linear algebra, nn functions,
//            convolution and pooling 1e-5 / 1e-4 (sums whose order differs from PyTorch's)
//   float64: elementwise and data movement 1e-12 / 1e-11; the rest 1e-10 / 1e-9
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tensor/safetensors.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;

namespace {

struct Tolerance {
  double atol32, rtol32, atol64, rtol64;
};
constexpr Tolerance kElementwise{1e-6, 1e-5, 1e-12, 1e-11};
constexpr Tolerance kComputed{1e-5, 1e-4, 1e-10, 1e-9};

// A case's inputs by name; a missing required input is a broken fixture, not a skipped argument.
class Inputs {
 public:
  std::map<std::string, Tensor> tensors;
  const Tensor& operator[](const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) fail("golden fixture has no input \"{}\"", name);
    return it->second;
  }
  Tensor get(const std::string& name) const {  // undefined when absent (optional arguments)
    auto it = tensors.find(name);
    return it == tensors.end() ? Tensor() : it->second;
  }
};
using Extras = std::map<std::string, Tensor>;  // extra outputs, compared with "<case>.out.<name>"

struct GoldenCase {
  const char* name;
  Tolerance tol;
  std::function<Tensor(const Inputs&, Extras&)> fn;
};

Conv2dParams conv_params(int stride_h, int stride_w, int pad_h, int pad_w, int dilation, int groups) {
  Conv2dParams p;
  p.stride_h = stride_h, p.stride_w = stride_w, p.pad_h = pad_h, p.pad_w = pad_w;
  p.dilation_h = p.dilation_w = dilation;
  p.groups = groups;
  return p;
}

Tensor batch_norm_case(const Inputs& t, Extras& ex, bool training, double momentum, double eps) {
  Tensor rm = clone(t["running_mean"]), rv = clone(t["running_var"]);
  Tensor y = batch_norm(t["x"], t["w"], t["b"], rm, rv, training, momentum, eps);
  ex["running_mean"] = rm;
  ex["running_var"] = rv;
  return y;
}

// The same names as make_fixtures.py, in its order.
const std::vector<GoldenCase>& golden_cases() {
  using I = const Inputs&;
  using E = Extras&;
  static const std::vector<GoldenCase> cases = {
      // elementwise
      {"add", kElementwise, [](I t, E) { return add(t["a"], t["b"]); }},
      {"sub", kElementwise, [](I t, E) { return sub(t["a"], t["b"]); }},
      {"mul", kElementwise, [](I t, E) { return mul(t["a"], t["b"]); }},
      {"div", kElementwise, [](I t, E) { return div(t["a"], t["b"]); }},
      {"add_scalar", kElementwise, [](I t, E) { return add(t["x"], 1.5); }},
      {"mul_scalar", kElementwise, [](I t, E) { return mul(t["x"], -2.0); }},
      {"rsub_scalar", kElementwise, [](I t, E) { return rsub(t["x"], 2.5); }},
      {"neg", kElementwise, [](I t, E) { return neg(t["x"]); }},
      {"exp", kElementwise, [](I t, E) { return exp(t["x"]); }},
      {"log", kElementwise, [](I t, E) { return log(t["x"]); }},
      {"sqrt", kElementwise, [](I t, E) { return sqrt(t["x"]); }},
      {"rsqrt", kElementwise, [](I t, E) { return rsqrt(t["x"]); }},
      {"abs", kElementwise, [](I t, E) { return abs(t["x"]); }},
      {"tanh", kElementwise, [](I t, E) { return tanh(t["x"]); }},
      {"sigmoid", kElementwise, [](I t, E) { return sigmoid(t["x"]); }},
      {"relu", kElementwise, [](I t, E) { return relu(t["x"]); }},
      {"gelu_erf", kElementwise, [](I t, E) { return gelu(t["x"]); }},
      {"gelu_tanh", kElementwise, [](I t, E) { return gelu(t["x"], true); }},
      {"pow_2", kElementwise, [](I t, E) { return pow(t["x"], 2.0); }},
      {"pow_3", kElementwise, [](I t, E) { return pow(t["x"], 3.0); }},
      {"pow_half", kElementwise, [](I t, E) { return pow(t["x"], 0.5); }},
      {"pow_neg1_5", kElementwise, [](I t, E) { return pow(t["x"], -1.5); }},
      // reductions
      {"sum_all", kComputed, [](I t, E) { return sum(t["x"]); }},
      {"sum_dims", kComputed, [](I t, E) { return sum(t["x"], {0, 2}); }},
      {"sum_last_keepdim", kComputed, [](I t, E) { return sum(t["x"], {-1}, true); }},
      {"mean_all", kComputed, [](I t, E) { return mean(t["x"]); }},
      {"mean_dim_keepdim", kComputed, [](I t, E) { return mean(t["x"], {1}, true); }},
      {"amax_dim", kComputed, [](I t, E) { return amax(t["x"], {1}); }},
      {"amax_dims_keepdim", kComputed, [](I t, E) { return amax(t["x"], {0, 2}, true); }},
      {"amax_ties", kComputed, [](I t, E) { return amax(t["x"], {1}); }},
      {"argmax_dim", kComputed, [](I t, E) { return argmax(t["x"], 1); }},
      {"argmax_last_keepdim", kComputed, [](I t, E) { return argmax(t["x"], -1, true); }},
      {"argmax_ties", kComputed, [](I t, E) { return argmax(t["x"], 1); }},
      {"var_unbiased_dim", kComputed, [](I t, E) { return var(t["x"], {1}, true); }},
      {"var_biased_dims_keepdim", kComputed, [](I t, E) { return var(t["x"], {0, 2}, false, true); }},
      {"var_all_unbiased", kComputed, [](I t, E) { return var(t["x"], {}, true); }},
      // linear algebra
      {"matmul_2d", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_batched", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_broadcast", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_mv", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_vm", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_dot", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_batched_mv", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"matmul_vm_batched", kComputed, [](I t, E) { return matmul(t["a"], t["b"]); }},
      {"linear", kComputed, [](I t, E) { return linear(t["x"], t["w"], t["b"]); }},
      {"linear_nobias", kComputed, [](I t, E) { return linear(t["x"], t["w"]); }},
      // neural-network functions
      {"softmax_last", kComputed, [](I t, E) { return softmax(t["x"], -1); }},
      {"softmax_dim1_large", kComputed, [](I t, E) { return softmax(t["x"], 1); }},
      {"log_softmax_last", kComputed, [](I t, E) { return log_softmax(t["x"], -1); }},
      {"log_softmax_dim0_large", kComputed, [](I t, E) { return log_softmax(t["x"], 0); }},
      {"layer_norm_affine", kComputed, [](I t, E) { return layer_norm(t["x"], 1, t["w"], t["b"], 1e-5); }},
      {"layer_norm_two_dims", kComputed, [](I t, E) { return layer_norm(t["x"], 2, t["w"], t["b"], 1e-5); }},
      {"layer_norm_plain_bert_eps", kComputed, [](I t, E) { return layer_norm(t["x"], 1, {}, {}, 1e-12); }},
      {"embedding", kComputed, [](I t, E) { return embedding(t["weight"], t["ids"]); }},
      {"embedding_padding_idx", kComputed, [](I t, E) { return embedding(t["weight"], t["ids"], 2); }},
      {"embedding_int32", kComputed, [](I t, E) { return embedding(t["weight"], t["ids"]); }},
      {"cross_entropy_mean", kComputed, [](I t, E) { return cross_entropy(t["logits"], t["target"]); }},
      {"cross_entropy_smoothing", kComputed,
       [](I t, E) { return cross_entropy(t["logits"], t["target"], -100, 0.1); }},
      {"cross_entropy_ignore1_smoothing", kComputed,
       [](I t, E) { return cross_entropy(t["logits"], t["target"], 1, 0.2); }},
      {"cross_entropy_sum", kComputed,
       [](I t, E) { return cross_entropy(t["logits"], t["target"], -100, 0.0, Reduction::Sum); }},
      {"cross_entropy_none", kComputed,
       [](I t, E) { return cross_entropy(t["logits"], t["target"], -100, 0.0, Reduction::None); }},
      {"cross_entropy_3d", kComputed, [](I t, E) { return cross_entropy(t["logits"], t["target"]); }},
      {"bce_logits_mean", kComputed, [](I t, E) { return binary_cross_entropy_with_logits(t["logits"], t["target"]); }},
      {"bce_logits_pos_weight", kComputed,
       [](I t, E) {
         return binary_cross_entropy_with_logits(t["logits"], t["target"], Reduction::Mean, t["pos_weight"]);
       }},
      {"bce_logits_sum", kComputed,
       [](I t, E) { return binary_cross_entropy_with_logits(t["logits"], t["target"], Reduction::Sum); }},
      {"bce_logits_none", kComputed,
       [](I t, E) { return binary_cross_entropy_with_logits(t["logits"], t["target"], Reduction::None); }},
      // joining and indexing
      {"cat_dim1", kElementwise, [](I t, E) { return cat({t["a"], t["b"], t["c"]}, 1); }},
      {"cat_dim0", kElementwise, [](I t, E) { return cat({t["a"], t["b"]}, 0); }},
      {"stack_dim0", kElementwise, [](I t, E) { return stack({t["a"], t["b"], t["c"]}, 0); }},
      {"stack_last", kElementwise, [](I t, E) { return stack({t["a"], t["b"]}, -1); }},
      {"index_select_dim0", kElementwise, [](I t, E) { return index_select(t["x"], 0, t["index"]); }},
      {"index_select_dim1", kElementwise, [](I t, E) { return index_select(t["x"], 1, t["index"]); }},
      {"gather_dim1", kElementwise, [](I t, E) { return gather(t["x"], 1, t["index"]); }},
      {"gather_dim0", kElementwise, [](I t, E) { return gather(t["x"], 0, t["index"]); }},
      {"where_broadcast", kElementwise, [](I t, E) { return where(t["cond"], t["a"], t["b"]); }},
      {"masked_fill_broadcast", kElementwise, [](I t, E) { return masked_fill(t["x"], t["mask"], -5.0); }},
      // convolution and pooling, channels-last
      {"conv2d_pad1", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], t["b"], conv_params(1, 1, 1, 1, 1, 1)); }},
      {"conv2d_stride2_nobias", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], {}, conv_params(2, 2, 0, 0, 1, 1)); }},
      {"conv2d_dilation2", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], t["b"], conv_params(1, 1, 2, 2, 2, 1)); }},
      {"conv2d_groups2", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], t["b"], conv_params(1, 1, 1, 1, 1, 2)); }},
      {"conv2d_depthwise_asymmetric", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], t["b"], conv_params(2, 1, 1, 0, 1, 3)); }},
      {"conv2d_1x1_stride2", kComputed,
       [](I t, E) { return conv2d(t["x"], t["w"], {}, conv_params(2, 2, 0, 0, 1, 1)); }},
      {"max_pool2d_k2s2", kComputed, [](I t, E) { return max_pool2d(t["x"], 2, 2); }},
      {"max_pool2d_k3s2p1", kComputed, [](I t, E) { return max_pool2d(t["x"], 3, 2, 1); }},
      {"avg_pool2d_k2s2", kComputed, [](I t, E) { return avg_pool2d(t["x"], 2, 2); }},
      {"avg_pool2d_k3s2p1_include_pad", kComputed, [](I t, E) { return avg_pool2d(t["x"], 3, 2, 1, true); }},
      {"avg_pool2d_k3s2p1_exclude_pad", kComputed, [](I t, E) { return avg_pool2d(t["x"], 3, 2, 1, false); }},
      {"adaptive_avg_pool2d_3x4", kComputed, [](I t, E) { return adaptive_avg_pool2d(t["x"], 3, 4); }},
      {"adaptive_avg_pool2d_1x1", kComputed, [](I t, E) { return adaptive_avg_pool2d(t["x"], 1, 1); }},
      {"adaptive_avg_pool2d_overlap_2x3", kComputed, [](I t, E) { return adaptive_avg_pool2d(t["x"], 2, 3); }},
      // batch norm
      {"batch_norm_train_nhwc", kComputed, [](I t, E e) { return batch_norm_case(t, e, true, 0.1, 1e-5); }},
      {"batch_norm_train_2d_momentum", kComputed, [](I t, E e) { return batch_norm_case(t, e, true, 0.3, 1e-3); }},
      {"batch_norm_eval_nhwc", kComputed, [](I t, E e) { return batch_norm_case(t, e, false, 0.1, 1e-5); }},
      // attention
      {"sdpa_plain", kComputed, [](I t, E) { return scaled_dot_product_attention(t["q"], t["k"], t["v"]); }},
      {"sdpa_bool_padding_mask", kComputed,
       [](I t, E) { return scaled_dot_product_attention(t["q"], t["k"], t["v"], t["mask"]); }},
      {"sdpa_additive_mask_scale", kComputed,
       [](I t, E) { return scaled_dot_product_attention(t["q"], t["k"], t["v"], t["mask"], 0.0, 0.3); }},
      {"sdpa_additive_padding_mask", kComputed,
       [](I t, E) { return scaled_dot_product_attention(t["q"], t["k"], t["v"], t["mask"]); }},
  };
  return cases;
}

std::string fixture_path(DType dtype) {
  return std::string(VB_SOURCE_DIR) + (dtype == DType::Float64 ? "/tests/golden/ops_f64.safetensors"
                                                                : "/tests/golden/ops.safetensors");
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Runs one case: forward, extra outputs, and gradients of sum(out * weight) against PyTorch's.
void run_case(const SafetensorsFile& file, const GoldenCase& c, DType dtype) {
  const std::string prefix = std::string(c.name) + ".";
  const double atol = dtype == DType::Float64 ? c.tol.atol64 : c.tol.atol32;
  const double rtol = dtype == DType::Float64 ? c.tol.rtol64 : c.tol.rtol32;
  Inputs in;
  std::set<std::string> expected_extras;
  for (const auto& [name, t] : file.tensors) {
    if (starts_with(name, prefix + "in.")) {
      const std::string input = name.substr(prefix.size() + 3);
      Tensor leaf = clone(t);  // a fresh leaf: gradients never carry over between cases
      if (file.contains(prefix + "grad." + input)) leaf.set_requires_grad(true);
      in.tensors[input] = leaf;
    } else if (starts_with(name, prefix + "out.")) {
      expected_extras.insert(name.substr(prefix.size() + 4));
    }
  }
  REQUIRE_MESSAGE(!in.tensors.empty(), c.name, ": no inputs in ", file.path);

  Extras extras;
  const Tensor out = c.fn(in, extras);
  const Tensor& expected = file.at(prefix + "out");
  CHECK_MESSAGE(out.dtype() == expected.dtype(), c.name, ": output dtype ", dtype_name(out.dtype()), " vs ",
                dtype_name(expected.dtype()));
  check_close(out, expected, atol, rtol, std::string(c.name) + " output");
  for (const std::string& extra : expected_extras) {
    REQUIRE_MESSAGE(extras.count(extra), c.name, ": the case produced no \"", extra, "\"");
    check_close(extras[extra], file.at(prefix + "out." + extra), atol, rtol, std::string(c.name) + " " + extra);
  }

  if (!file.contains(prefix + "weight")) return;  // an integer output: nothing to differentiate
  backward(out, file.at(prefix + "weight"));
  for (const auto& [input, leaf] : in.tensors) {
    if (!leaf.requires_grad()) continue;
    const std::string what = std::string(c.name) + " gradient of " + input;
    REQUIRE_MESSAGE(leaf.grad().defined(), what, ": no gradient reached the input");
    check_close(leaf.grad(), file.at(prefix + "grad." + input), atol, rtol, what);
  }
}

void run_all(DType dtype) {
  const SafetensorsFile file = load_safetensors(fixture_path(dtype));
  for (const GoldenCase& c : golden_cases()) {
    SUBCASE(c.name) {
      try {
        run_case(file, c, dtype);
      } catch (const std::exception& e) {  // e.g. an op that has not landed yet
        FAIL_CHECK(c.name, ": ", e.what());
      }
    }
  }
}

}  // namespace

TEST_CASE("every fixture case has a C++ case and every C++ case a fixture") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const SafetensorsFile file = load_safetensors(fixture_path(dtype));
    std::set<std::string> in_file, in_code;
    for (const auto& [name, t] : file.tensors) {
      in_file.insert(name.substr(0, name.find('.')));
      if (is_floating(t.dtype())) CHECK_MESSAGE(t.dtype() == dtype, name, " is ", dtype_name(t.dtype()));
    }
    for (const GoldenCase& c : golden_cases()) {
      CHECK_MESSAGE(in_code.insert(c.name).second, c.name, " twice");
      CHECK_MESSAGE(in_file.count(c.name), c.name, " missing from ", file.path);
    }
    for (const std::string& name : in_file) CHECK_MESSAGE(in_code.count(name), name, " has no C++ case");
  }
}

TEST_CASE("ops match PyTorch in float32") { run_all(DType::Float32); }

TEST_CASE("ops match PyTorch in float64") { run_all(DType::Float64); }
