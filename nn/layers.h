// The standard layers. Shapes follow PyTorch except images, which are channels-last (N, H, W, C).
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "kernels/dist/communicator.h"
#include "nn/module.h"

namespace vb::nn {

// A module with one input and one output, so that Sequential can chain it.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// y = x·Wᵀ + b; weight (out, in).
class Linear : public UnaryModule {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

// weight (num, dim); the padding row starts at zero and gets no gradient.
class Embedding : public UnaryModule {
 public:
  Embedding(int64_t num, int64_t dim, int64_t padding_idx = -1);
  Tensor forward(const Tensor& ids) override;
  Tensor weight;
  int64_t padding_idx;
};

class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  double eps;
};

// Channels-last: x (N, H, W, C_in) → (N, OH, OW, C_out); weight (C_out, KH, KW, C_in/groups).
class Conv2d : public UnaryModule {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int kernel, int stride = 1, int padding = 0, int dilation = 1,
         int groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  Conv2dParams params;
};

// Normalises the last (channel) dim; running statistics and num_batches_tracked are buffers.
// In training it normalises with the batch's statistics: this process's rows, or with `sync` set every
// rank's rows (sync_batch_norm, autograd/collectives.h). `frozen` normalises with the running statistics
// in training too and leaves them as they are (only weight and bias learn): the result of a row then does
// not depend on the other rows of its batch.
class BatchNorm2d : public UnaryModule {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
  dist::Communicator* sync = nullptr;
  bool frozen = false;
};

// Sets `sync` and `frozen` on every BatchNorm2d below `module`.
void configure_batch_norm(Module& module, dist::Communicator* sync, bool frozen);

class MaxPool2d : public UnaryModule {
 public:
  MaxPool2d(int kernel, int stride, int padding = 0) : kernel(kernel), stride(stride), padding(padding) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel, stride, padding); }
  int kernel, stride, padding;
};

class AdaptiveAvgPool2d : public UnaryModule {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : out_h(out_h), out_w(out_w) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, out_h, out_w); }
  int64_t out_h, out_w;
};

class Dropout : public UnaryModule {
 public:
  explicit Dropout(double p = 0.5) : p(p) {}
  Tensor forward(const Tensor& x) override { return dropout(x, p, is_training()); }
  double p;
};

class ReLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class GELU : public UnaryModule {
 public:
  explicit GELU(bool tanh_approximation = false) : tanh_approximation(tanh_approximation) {}
  Tensor forward(const Tensor& x) override { return gelu(x, tanh_approximation); }
  bool tanh_approximation;
};

class Tanh : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

// Multi-head self-attention on the fused attention op: x (B, T, C) → (B, T, C). The mask is what
// scaled_dot_product_attention takes (bool: true = may attend), e.g. a key padding mask (B, 1, 1, T).
class MultiheadSelfAttention : public Module {
 public:
  MultiheadSelfAttention(int64_t hidden, int64_t heads, double dropout = 0.0);
  Tensor forward(const Tensor& x, const Tensor& mask = {});
  std::shared_ptr<Linear> query, key, value, out;
  int64_t heads;
  double attention_dropout;
};

// Splits (B, T, H·D) into heads (B, H, T, D), and back.
Tensor split_heads(const Tensor& x, int64_t heads);
Tensor merge_heads(const Tensor& x);

// Runs its children in order; names are "0", "1", … as in PyTorch.
class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> modules);
  void push_back(std::shared_ptr<UnaryModule> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return modules_.size(); }
  std::shared_ptr<UnaryModule> operator[](size_t i) const { return modules_.at(i); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> modules_;
};

// Holds modules under "0", "1", … without a forward of its own.
template <typename M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(items_.size()), m);
    items_.push_back(std::move(m));
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace vb::nn
