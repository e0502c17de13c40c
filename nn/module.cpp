#include "nn/module.h"

#include <map>
#include <set>

namespace vb::nn {

void Module::check_name(const std::string& name) const {
  VB_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "module: name '{}' must be non-empty and contain no '.'", name);
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  VB_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "module: name '{}' registered twice", name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name);
  VB_CHECK(t.defined() && is_floating(t.dtype()), "register_parameter '{}': expected a floating tensor", name);
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  VB_CHECK(t.defined(), "register_buffer '{}': undefined tensor", name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const {
  for (const auto& [n, t] : params ? params_ : buffers_) out.emplace_back(prefix + n, t);
  if (!recurse) return;
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, true, out);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect("", true, recurse, out);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect("", false, recurse, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& [n, m] : children_) {
    out.emplace_back(n, m);
    for (auto& [sub, mm] : m->named_modules()) out.emplace_back(n + "." + sub, mm);
  }
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, m] : children_) m->train(on);
}

void assign_in_place(Tensor& t, const Tensor& src) {
  TensorImpl* impl = t.impl();
  impl->storage = src.impl()->storage;
  impl->shape = src.shape();
  impl->strides = src.strides();
  impl->offset = src.offset();
  impl->dtype = src.dtype();
  impl->grad = nullptr;  // a gradient of the old device/dtype no longer fits
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (bool params : {true, false}) {
    for (auto& [_, t] : params ? named_parameters() : named_buffers()) {
      if (t.device() == device) continue;
      Tensor moved = vb::to(detach(t), device);
      assign_in_place(t, moved);
    }
  }
}

void Module::to(DType dtype) {
  VB_CHECK(is_floating(dtype), "module to({}): expected a floating dtype", dtype);
  NoGradGuard no_grad;
  for (bool params : {true, false}) {
    for (auto& [_, t] : params ? named_parameters() : named_buffers()) {
      if (t.dtype() == dtype || !is_floating(t.dtype())) continue;
      Tensor converted = vb::to(detach(t), dtype);
      assign_in_place(t, converted);
    }
  }
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) t.set_grad(Tensor());
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  // Per module: parameters then buffers, as PyTorch orders them.
  for (const auto& [n, t] : params_) out.emplace_back(n, t);
  for (const auto& [n, t] : buffers_) out.emplace_back(n, t);
  for (const auto& [n, m] : children_)
    for (auto& [sub, t] : m->state_dict()) out.emplace_back(n + "." + sub, t);
  return out;
}

Module::LoadReport Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::map<std::string, Tensor> given;
  for (const auto& [n, t] : state) {
    VB_CHECK(given.emplace(n, t).second, "load_state_dict: '{}' appears twice in the state dict", n);
  }
  LoadReport report;
  NamedTensors own = state_dict();
  std::set<std::string> own_names;
  std::vector<std::pair<Tensor, Tensor>> to_copy;
  for (auto& [n, t] : own) {
    own_names.insert(n);
    auto it = given.find(n);
    if (it == given.end()) {
      report.missing.push_back(n);
    } else if (it->second.shape() != t.shape()) {
      report.mismatched.push_back(fmt::format("{} (checkpoint {}, model {})", n, shape_str(it->second.shape()),
                                              shape_str(t.shape())));
    } else {
      to_copy.emplace_back(t, it->second);
    }
  }
  for (const auto& [n, _] : state)
    if (!own_names.count(n)) report.unexpected.push_back(n);
  if (strict && (!report.missing.empty() || !report.unexpected.empty() || !report.mismatched.empty())) {
    std::string msg = "load_state_dict: the state dict does not match the model";
    if (!report.missing.empty()) msg += fmt::format("\n  missing ({}): {}", report.missing.size(), fmt::join(report.missing, ", "));
    if (!report.unexpected.empty())
      msg += fmt::format("\n  unexpected ({}): {}", report.unexpected.size(), fmt::join(report.unexpected, ", "));
    if (!report.mismatched.empty())
      msg += fmt::format("\n  shape mismatch ({}): {}", report.mismatched.size(), fmt::join(report.mismatched, ", "));
    throw Error(msg);
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : to_copy) copy_(dst, src);
  return report;
}

}  // namespace vb::nn
