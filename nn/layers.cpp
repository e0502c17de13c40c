#include "nn/layers.h"

#include <cmath>

#include "autograd/collectives.h"
#include "nn/init.h"

namespace vb::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", empty({out_features, in_features}));
  init::default_uniform_(weight, in_features);
  if (with_bias) {
    bias = register_parameter("bias", empty({out_features}));
    init::default_uniform_(bias, in_features);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Embedding::Embedding(int64_t num, int64_t dim, int64_t padding_idx) : padding_idx(padding_idx) {
  VB_CHECK(padding_idx < num, "Embedding: padding_idx {} out of range for {} rows", padding_idx, num);
  weight = register_parameter("weight", empty({num, dim}));
  init::normal_(weight, 0.0, 1.0);
  if (padding_idx >= 0) {
    Tensor row = select(detach(weight), 0, padding_idx);
    init::constant_(row, 0.0);
  }
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids, padding_idx); }

LayerNorm::LayerNorm(int64_t dim, double eps, bool affine) : eps(eps) {
  if (affine) {
    weight = register_parameter("weight", ones({dim}));
    bias = register_parameter("bias", zeros({dim}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, 1, weight, bias, eps); }

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride, int padding, int dilation,
               int groups, bool with_bias) {
  VB_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0,
           "Conv2d: groups {} must divide in_channels {} and out_channels {}", groups, in_channels, out_channels);
  params.stride_h = params.stride_w = stride;
  params.pad_h = params.pad_w = padding;
  params.dilation_h = params.dilation_w = dilation;
  params.groups = groups;
  const int64_t fan_in = in_channels / groups * kernel * kernel;
  weight = register_parameter("weight", empty({out_channels, kernel, kernel, in_channels / groups}));
  init::default_uniform_(weight, fan_in);
  if (with_bias) {
    bias = register_parameter("bias", empty({out_channels}));
    init::default_uniform_(bias, fan_in);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, params); }

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum) : eps(eps), momentum(momentum) {
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::Int64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  const bool batch_stats = is_training() && !frozen;
  if (batch_stats) {
    NoGradGuard no_grad;
    copy_(num_batches_tracked, add(num_batches_tracked, Tensor::scalar(1, DType::Int64, num_batches_tracked.device())));
  }
  if (batch_stats && sync && sync->size() > 1)
    return sync_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps, *sync);
  return batch_norm(x, weight, bias, running_mean, running_var, batch_stats, momentum, eps);
}

void configure_batch_norm(Module& module, dist::Communicator* sync, bool frozen) {
  for (auto& [name, m] : module.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(m.get())) {
      bn->sync = sync;
      bn->frozen = frozen;
    }
  }
}

Tensor split_heads(const Tensor& x, int64_t heads) {
  VB_CHECK(x.dim() == 3 && x.size(2) % heads == 0, "split_heads: expected (B, T, H·D) with H = {}, got {}", heads,
           shape_str(x.shape()));
  return permute(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}), {0, 2, 1, 3});
}

Tensor merge_heads(const Tensor& x) {
  VB_CHECK(x.dim() == 4, "merge_heads: expected (B, H, T, D), got {}", shape_str(x.shape()));
  return reshape(permute(x, {0, 2, 1, 3}), {x.size(0), x.size(2), x.size(1) * x.size(3)});
}

MultiheadSelfAttention::MultiheadSelfAttention(int64_t hidden, int64_t heads, double dropout)
    : heads(heads), attention_dropout(dropout) {
  VB_CHECK(heads > 0 && hidden % heads == 0, "MultiheadSelfAttention: hidden {} not divisible by {} heads", hidden,
           heads);
  query = register_module("query", std::make_shared<Linear>(hidden, hidden));
  key = register_module("key", std::make_shared<Linear>(hidden, hidden));
  value = register_module("value", std::make_shared<Linear>(hidden, hidden));
  out = register_module("out", std::make_shared<Linear>(hidden, hidden));
}

Tensor MultiheadSelfAttention::forward(const Tensor& x, const Tensor& mask) {
  Tensor q = split_heads((*query)(x), heads), k = split_heads((*key)(x), heads), v = split_heads((*value)(x), heads);
  Tensor ctx = scaled_dot_product_attention(q, k, v, mask, is_training() ? attention_dropout : 0.0);
  return (*out)(merge_heads(ctx));
}

Sequential::Sequential(std::vector<std::shared_ptr<UnaryModule>> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void Sequential::push_back(std::shared_ptr<UnaryModule> m) {
  register_module(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : modules_) h = m->forward(h);
  return h;
}

}  // namespace vb::nn
