// The tensor: a view (shape, strides, storage offset, dtype) onto refcounted storage on one device,
// plus the autograd fields that autograd/ fills in. Tensor is a cheap handle: copies share the data.
// Ops on tensors are free functions in autograd/ops.h; this layer holds only the data structure.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace vb {

using Shape = std::vector<int64_t>;

// Refcounted memory on one device; freed through that device's runtime.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;

  bool owned = true;  // false: memory owned elsewhere, never freed here
  // Host memory page-locked by this device type's runtime (DeviceRuntime::allocate_pinned): copies to
  // that device run asynchronously. CPU for ordinary memory.
  DeviceType pinned_for = DeviceType::CPU;

  Storage(size_t bytes, Device device);
  // CPU memory pinned for copies to `pinned_for` (ordinary memory when that runtime has no pinning).
  Storage(size_t bytes, DeviceType pinned_for);
  // A view of `bytes` of memory owned elsewhere (e.g. emulator "device" memory seen as CPU memory).
  Storage(void* external, size_t bytes, Device device) : data(external), bytes(bytes), device(device), owned(false) {}
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Node;  // autograd/node.h
class Tensor;
using GradHook = std::function<void(const Tensor& grad)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements, into storage
  DType dtype = DType::Float32;

  // Autograd (see autograd/): a leaf that requires grad accumulates into `grad`; a non-leaf result
  // of a recorded op points at the node that computes its inputs' gradients.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
  std::weak_ptr<Node> grad_accumulator;  // a leaf's one accumulation node, shared by every use of it
  std::vector<GradHook> hooks;           // fire when a leaf's gradient of one backward pass is complete
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Uninitialised contiguous memory. Most code wants vb::zeros/vb::empty from autograd/ops.h.
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = {});
  // A CPU tensor in host memory pinned for fast, asynchronous copies to devices of type `for_device`
  // (ordinary memory when that runtime cannot pin; an Error when it is not built or has no device).
  static Tensor empty_pinned(const Shape& shape, DType dtype, DeviceType for_device);
  // A CPU tensor holding a copy of `values`, converted to `dtype`.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::Float32);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, DType dtype = DType::Float32);
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::Int64);
  static Tensor scalar(double value, DType dtype = DType::Float32, Device device = {});

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int dim() const { return int(impl_->shape.size()); }
  int64_t size(int d) const { return impl_->shape[size_t(wrap_dim(d))]; }
  int64_t stride(int d) const { return impl_->strides[size_t(wrap_dim(d))]; }
  int64_t numel() const;
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  bool is_pinned() const { return impl_->storage->pinned_for != DeviceType::CPU; }
  int64_t element_size() const { return dtype_size(impl_->dtype); }
  bool is_contiguous() const;
  // Wraps a negative dim (-1 = last) and checks the range; the message names `op`.
  int wrap_dim(int d, const char* op = "dim") const;

  // The first element's address (a device address for device tensors).
  void* data_ptr() const;
  // Typed pointer to the first element of a CPU tensor of type T.
  template <typename T>
  T* data() const {
    VB_CHECK(dtype() == dtype_of<T>(), "data<{}>(): tensor is {}", dtype_name(dtype_of<T>()), dtype());
    VB_CHECK(device().is_cpu(), "data(): tensor is on {}, expected cpu (use to(t, Device()) first)", device());
    return static_cast<T*>(data_ptr());
  }

  // A view sharing this storage, recorded by no autograd (autograd/ops.h has the differentiable views).
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;

  // Element access for tests and printing: works on any device and dtype, returns double.
  double item() const;
  double at(std::initializer_list<int64_t> index) const;
  double at_linear(int64_t i) const;  // i-th element in row-major order of the shape
  std::vector<double> to_vector() const;

  // Autograd state (autograd/ drives it).
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  // Marks a leaf as a parameter; an error on a non-leaf (results get requires_grad from their inputs).
  Tensor& set_requires_grad(bool on = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  Tensor grad() const { return impl_->grad ? Tensor(impl_->grad) : Tensor(); }
  void set_grad(const Tensor& g) const { impl_->grad = g.impl_; }  // the handle is const, the tensor is not
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  // Adds a hook run when this leaf's gradient of a backward pass is complete (DDP starts all-reduces here).
  void register_hook(GradHook hook) { impl_->hooks.push_back(std::move(hook)); }

  std::string str() const;  // PyTorch-like: values (abbreviated), shape, dtype, device
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Helpers on shapes.
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);

}  // namespace vb
