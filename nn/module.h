// Modules: named parameters, buffers and submodules, registered in constructors, with stable dotted
// names ("encoder.layer.0.attention.self.query.weight") that checkpoints, weight loading and gradient
// bucketing rely on. Member handles and the registry share each tensor's TensorImpl; moving a module to a
// device or dtype, and loading a state dict, change the tensors in place so that both stay valid.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace vb::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter / buffer / submodule below this one, depth first in registration order.
  NamedTensors named_parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;  // excludes this one
  int64_t parameter_count() const;

  // Training mode: dropout active, batch norm uses batch statistics.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter and buffer (buffers of integer dtype keep their dtype under to(DType)).
  void to(Device device);
  void to(DType dtype);
  void zero_grad();

  // Parameters then buffers of each module, depth first.
  NamedTensors state_dict() const;
  // Copies values into the existing tensors. Strict: an Error lists every missing, unexpected and
  // shape-mismatched name at once. Non-strict: loads what matches by name and shape, returns the rest.
  struct LoadReport {
    std::vector<std::string> missing, unexpected, mismatched;
  };
  LoadReport load_state_dict(const NamedTensors& state, bool strict = true);

 protected:
  // Registers t as a parameter (it is marked requires_grad) and returns the handle to keep as a member.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_name(name);
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void check_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const;

  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Replaces t's data (storage, strides, dtype) with src's while keeping every handle to t valid.
void assign_in_place(Tensor& t, const Tensor& src);

}  // namespace vb::nn
