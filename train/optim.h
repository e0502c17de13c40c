// Optimizers, learning-rate schedules, gradient clipping and the dynamic loss scaler, with state that
// checkpoints save and restore exactly.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"

namespace vb::train {

// A parameter with its name (for checkpoints) and whether weight decay applies to it.
struct ParamRef {
  std::string name;
  Tensor param;
  bool decay = true;
};

// Every parameter of a model; biases and normalisation weights (1-d tensors) get no weight decay, as BERT
// and most recipes do it.
std::vector<ParamRef> decay_groups(const nn::Module& model);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  explicit Optimizer(std::vector<ParamRef> params) : params_(std::move(params)) {}
  // One update with learning rate lr from the parameters' current gradients (parameters without a gradient
  // are skipped). grad_scale: every gradient multiplied by it first — the bits of scaling the gradients in
  // place (scale_in_place) before the step, without writing them: gradient clipping's factor, which AdamW's
  // fused step applies as it reads each gradient instead of a pass of its own. The gradients are left as
  // they were.
  virtual void step(double lr, double grad_scale) = 0;
  void step(double lr) { step(lr, 1.0); }
  void zero_grad();
  // State as tensors named "<param>.<slot>" plus scalars, for checkpoints.
  virtual nn::NamedTensors state_tensors() const = 0;
  virtual void load_state_tensors(const nn::NamedTensors& state) = 0;
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }
  const std::vector<ParamRef>& params() const { return params_; }

 protected:
  std::vector<ParamRef> params_;
  int64_t steps_ = 0;
};

// The fused step's scalars for step t (counted from 1) of AdamW with these hyperparameters, the gradients
// scaled by grad_scale (Optimizer::step's).
AdamWStep adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t t,
                        double grad_scale);

// AdamW (Loshchilov & Hutter), as torch.optim.AdamW computes it:
//   p ← p·(1 − lr·λ);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamRef> params, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  using Optimizer::step;
  void step(double lr, double grad_scale) override;
  nn::NamedTensors state_tensors() const override;
  void load_state_tensors(const nn::NamedTensors& state) override;
  double beta1, beta2, eps, weight_decay;

 private:
  std::vector<Tensor> m_, v_;  // float32 moments, one per parameter
};

// SGD with momentum, as torch.optim.SGD computes it (weight decay added to the gradient):
//   g ← g + λ·p;  b ← μ·b + (1 − dampening)·g (b = g at the first step);  p ← p − lr·(nesterov ? g + μ·b : b)
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamRef> params, double momentum = 0.9, double weight_decay = 0.0, bool nesterov = false,
      double dampening = 0.0);
  using Optimizer::step;
  void step(double lr, double grad_scale) override;
  nn::NamedTensors state_tensors() const override;
  void load_state_tensors(const nn::NamedTensors& state) override;
  double momentum, weight_decay, dampening;
  bool nesterov;

 private:
  std::vector<Tensor> buf_;
};

// Linear warm-up from 0 to base_lr over warmup steps, then linear or cosine decay to min_ratio·base_lr at
// total_steps. step counts from 1.
struct Schedule {
  double base_lr = 1e-4;
  int64_t warmup = 0;
  int64_t total = 1;
  bool cosine = false;
  double min_ratio = 0.0;
  double lr(int64_t step) const;
};

// Scales every gradient in place so that their global L2 norm is at most max_norm; returns the norm before
// clipping (inf or nan when a gradient holds one, and then nothing is scaled).
double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm);
// The global L2 norm of the gradients.
double grad_norm(const std::vector<ParamRef>& params);
// The factor that clipping to max_norm scales gradients of global norm `norm` by: max_norm / (norm + 1e-6) when
// the norm is finite and above max_norm, else 1 (nothing to scale). clip_grad_norm applies it in place; the
// trainer hands it to Optimizer::step as grad_scale.
double clip_factor(double norm, double max_norm);
// Σ‖t‖² over floating tensors (one Backend::sum_squares call per device).
double sum_of_squares(const std::vector<Tensor>& tensors);
// t ← t·factor, in place, for each tensor (undefined ones skipped): one pass over each contiguous tensor.
void scale_in_place(const std::vector<Tensor>& tensors, double factor);

// Dynamic loss scaling for float16: the loss is multiplied by scale before backward; a step whose
// gradients hold inf or nan is skipped and the scale halved; after growth_interval clean steps it doubles.
class LossScaler {
 public:
  explicit LossScaler(double initial = 65536.0, double growth = 2.0, double backoff = 0.5, int64_t interval = 2000)
      : scale_(initial), growth_(growth), backoff_(backoff), interval_(interval) {}
  double scale() const { return scale_; }
  // Divides the gradients by the scale; returns false (and lowers the scale) when one is not finite, in
  // which case the caller skips the optimizer step.
  bool unscale_and_update(const std::vector<ParamRef>& params);
  // The same in two halves, for gradients spread over ranks: unscale divides the tensors in place and
  // says whether this rank's are all finite; update takes the verdict of every rank.
  bool unscale(const std::vector<Tensor>& grads) const;
  void update(bool finite);
  int64_t clean_steps() const { return clean_; }
  void restore(double scale, int64_t clean) {
    scale_ = scale;
    clean_ = clean;
  }

 private:
  double scale_, growth_, backoff_;
  int64_t interval_, clean_ = 0;
};

}  // namespace vb::train
