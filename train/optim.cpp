#include "train/optim.h"

#include <cmath>
#include <map>

#include "kernels/backend.h"

namespace vb::train {

std::vector<ParamRef> decay_groups(const nn::Module& model) {
  std::vector<ParamRef> out;
  for (auto& [name, p] : model.named_parameters()) out.push_back({name, p, p.dim() >= 2});
  return out;
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.param.set_grad(Tensor());
}

namespace {
// A float32 zero tensor shaped like p, on p's device.
Tensor zeros_f32(const Tensor& p) { return zeros(p.shape(), DType::Float32, p.device()); }

void write_param(Tensor& p, const Tensor& value) { copy_(p, value); }

const Tensor& find_state(const nn::NamedTensors& state, const std::string& name) {
  for (auto& [n, t] : state)
    if (n == name) return t;
  fail("optimizer state: no tensor \"{}\" in the checkpoint", name);
}

void load_slot(std::vector<Tensor>& slots, const std::vector<ParamRef>& params, const nn::NamedTensors& state,
               const std::string& slot) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& t = find_state(state, params[i].name + "." + slot);
    VB_CHECK(t.shape() == params[i].param.shape(), "optimizer state \"{}.{}\": shape {} for a parameter of shape {}",
             params[i].name, slot, shape_str(t.shape()), shape_str(params[i].param.shape()));
    // A copy, always: the step updates its moments in place, and must not write into the caller's tensors
    // (vb::to returns its input when dtype and device already match).
    slots[i] = clone(vb::to(vb::to(t, DType::Float32), params[i].param.device()));
  }
}
}  // namespace

AdamW::AdamW(std::vector<ParamRef> params, double beta1, double beta2, double eps, double weight_decay)
    : Optimizer(std::move(params)), beta1(beta1), beta2(beta2), eps(eps), weight_decay(weight_decay) {
  for (auto& p : params_) {
    m_.push_back(zeros_f32(p.param));
    v_.push_back(zeros_f32(p.param));
  }
}

// One fused Backend::adamw call per device (kernels/cpu/optim.cpp, kernels/cuda/nn_adamw.cu): every
// parameter's update in one pass over p, g, m, v instead of ~15 tensor ops and their temporaries each.
AdamWStep adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t t,
                        double grad_scale) {
  AdamWStep h;
  h.lr = lr;
  h.beta1 = beta1;
  h.beta2 = beta2;
  h.eps = eps;
  h.weight_decay = weight_decay;
  h.bias_correction1 = 1 - std::pow(beta1, double(t));
  h.bias_correction2 = 1 - std::pow(beta2, double(t));
  h.grad_scale = grad_scale;
  return h;
}

void AdamW::step(double lr, double grad_scale) {
  NoGradGuard no_grad;
  ++steps_;
  const AdamWStep h = adamw_scalars(lr, beta1, beta2, eps, weight_decay, steps_, grad_scale);
  std::map<Device, std::vector<AdamWSlot>> by_device;
  std::vector<std::pair<size_t, Tensor>> staged;  // parameters updated through a contiguous copy
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].param;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    VB_CHECK(g.shape() == p.shape(), "AdamW: parameter \"{}\" has shape {} but its gradient {}", params_[i].name,
             shape_str(p.shape()), shape_str(g.shape()));
    if (g.dtype() != p.dtype()) g = vb::to(g, p.dtype());
    if (!g.is_contiguous()) g = contiguous(g);
    Tensor target = p;
    if (!p.is_contiguous()) {
      target = contiguous(p);
      staged.emplace_back(i, target);
    }
    by_device[p.device()].push_back({target, g, m_[i], v_[i], params_[i].decay});
  }
  for (auto& [device, slots] : by_device) backend(device).adamw(slots, h);
  for (auto& [i, target] : staged) copy_(params_[i].param, target);
}

nn::NamedTensors AdamW::state_tensors() const {
  nn::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].name + ".exp_avg", m_[i]);
    out.emplace_back(params_[i].name + ".exp_avg_sq", v_[i]);
  }
  return out;
}

void AdamW::load_state_tensors(const nn::NamedTensors& state) {
  load_slot(m_, params_, state, "exp_avg");
  load_slot(v_, params_, state, "exp_avg_sq");
}

SGD::SGD(std::vector<ParamRef> params, double momentum, double weight_decay, bool nesterov, double dampening)
    : Optimizer(std::move(params)), momentum(momentum), weight_decay(weight_decay), dampening(dampening),
      nesterov(nesterov) {
  buf_.resize(params_.size());
}

void SGD::step(double lr, double grad_scale) {
  NoGradGuard no_grad;
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].param;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (grad_scale != 1) g = mul(g, grad_scale);  // (in g's dtype, as scale_in_place rounds it)
    g = vb::to(g, DType::Float32);
    Tensor master = vb::to(p, DType::Float32);
    if (params_[i].decay && weight_decay != 0) g = add(g, mul(master, weight_decay));
    Tensor update = g;
    if (momentum != 0) {
      buf_[i] = buf_[i].defined() ? add(mul(buf_[i], momentum), mul(g, 1 - dampening)) : clone(g);
      update = nesterov ? add(g, mul(buf_[i], momentum)) : buf_[i];
    }
    write_param(p, sub(master, mul(update, lr)));
  }
}

nn::NamedTensors SGD::state_tensors() const {
  nn::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i)
    out.emplace_back(params_[i].name + ".momentum_buffer", buf_[i].defined() ? buf_[i] : zeros_f32(params_[i].param));
  return out;
}

void SGD::load_state_tensors(const nn::NamedTensors& state) {
  load_slot(buf_, params_, state, "momentum_buffer");
  if (steps_ == 0) std::fill(buf_.begin(), buf_.end(), Tensor());  // no step taken: buffers start fresh
}

double Schedule::lr(int64_t step) const {
  if (warmup > 0 && step <= warmup) return base_lr * double(step) / double(warmup);
  const double span = double(std::max<int64_t>(total - warmup, 1));
  const double progress = std::min(1.0, double(step - warmup) / span);
  const double factor = cosine ? 0.5 * (1 + std::cos(M_PI * progress)) : 1 - progress;
  return base_lr * (min_ratio + (1 - min_ratio) * factor);
}

// Σ‖t‖² from one Backend::sum_squares call per device: no squared copies, one small read-back.
double sum_of_squares(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::map<Device, std::vector<Tensor>> by_device;
  for (const Tensor& t : tensors)
    if (t.defined()) by_device[t.device()].push_back(t.is_contiguous() ? t : contiguous(t));
  double total = 0;
  for (auto& [device, group] : by_device) {
    Tensor sums = Tensor::empty({int64_t(group.size())}, DType::Float32, device);
    backend(device).sum_squares(group, sums);
    for (double s : sums.to_vector()) total += s;
  }
  return total;
}

void scale_in_place(const std::vector<Tensor>& tensors, double factor) {
  NoGradGuard no_grad;
  for (Tensor t : tensors) {
    if (!t.defined()) continue;
    // One pass, reading and writing each element where it is (the clip's scaling of every gradient: a
    // product and a copy back read and wrote the 137 M gradients of the base preset twice).
    if (t.is_contiguous())
      backend(t.device()).unary(UnaryOp::MulScalar, t, t, factor);
    else
      copy_(t, mul(t, factor));
  }
}

double grad_norm(const std::vector<ParamRef>& params) {
  std::vector<Tensor> grads;
  for (auto& p : params) grads.push_back(p.param.grad());
  return std::sqrt(sum_of_squares(grads));
}

double clip_factor(double norm, double max_norm) {
  return std::isfinite(norm) && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm) {
  const double norm = grad_norm(params), factor = clip_factor(norm, max_norm);
  if (factor == 1.0) return norm;
  // In place, as torch.nn.utils.clip_grad_norm_ (g.mul_) does it.
  std::vector<Tensor> grads;
  for (auto& p : params) grads.push_back(p.param.grad());
  scale_in_place(grads, factor);
  return norm;
}

bool LossScaler::unscale_and_update(const std::vector<ParamRef>& params) {
  std::vector<Tensor> grads;
  for (auto& p : params)
    if (p.param.grad().defined()) grads.push_back(p.param.grad());
  const bool finite = unscale(grads);
  update(finite);
  return finite;
}

bool LossScaler::unscale(const std::vector<Tensor>& grads) const {
  NoGradGuard no_grad;
  bool finite = true;
  for (Tensor g : grads) {
    Tensor g32 = mul(vb::to(g, DType::Float32), 1.0 / scale_);
    // A sum is finite exactly when every element is (inf − inf = nan, nan propagates).
    if (!std::isfinite(sum(g32).item())) finite = false;
    copy_(g, g32);
  }
  return finite;
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= backoff_;
    clean_ = 0;
    return;
  }
  if (++clean_ >= interval_) {
    scale_ *= growth_;
    clean_ = 0;
  }
}

}  // namespace vb::train
