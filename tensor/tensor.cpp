#include "tensor/tensor.h"

#include <ostream>

namespace vb {

Storage::Storage(size_t n, Device d) : bytes(n), device(d) { data = runtime(d.type).allocate(n, d); }
Storage::Storage(size_t n, DeviceType for_device) : bytes(n), device(Device()) {
  data = runtime(for_device).allocate_pinned(n);
  if (data) pinned_for = for_device;
  else data = runtime(DeviceType::CPU).allocate(n, device);
}
Storage::~Storage() {
  if (!data || !owned) return;
  if (pinned_for != DeviceType::CPU) runtime(pinned_for).deallocate_pinned(data);
  else runtime(device.type).deallocate(data, device);
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

std::string shape_str(const Shape& s) { return fmt::format("({})", fmt::join(s, ", ")); }

namespace {
// A contiguous tensor over `storage` (which a caller sized for shape and dtype).
Tensor over_storage(const Shape& shape, DType dtype, std::shared_ptr<Storage> storage) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}
size_t checked_bytes(const char* op, const Shape& shape, DType dtype) {
  for (int64_t v : shape) VB_CHECK(v >= 0, "{}: negative size in shape {}", op, shape_str(shape));
  return size_t(shape_numel(shape) * dtype_size(dtype));
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return over_storage(shape, dtype, std::make_shared<Storage>(checked_bytes("empty", shape, dtype), device));
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype, DeviceType for_device) {
  return over_storage(shape, dtype, std::make_shared<Storage>(checked_bytes("empty_pinned", shape, dtype), for_device));
}

namespace {
template <typename V>
Tensor from_values(const std::vector<V>& values, const Shape& shape, DType dtype) {
  VB_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: {} values for shape {} ({} elements)",
           values.size(), shape_str(shape), shape_numel(shape));
  Tensor t = Tensor::empty(shape, dtype);
  VB_DISPATCH(dtype, "from_vector", {
    T* p = static_cast<T*>(t.data_ptr());
    for (size_t i = 0; i < values.size(); ++i) p[i] = scalar_cast<T>(values[i]);
  });
  return t;
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, DType d) { return from_values(v, s, d); }
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, DType d) { return from_values(v, s, d); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s, DType d) { return from_values(v, s, d); }

Tensor Tensor::scalar(double value, DType dtype, Device device) {
  Tensor host = from_values(std::vector<double>{value}, {}, dtype);
  if (device.is_cpu()) return host;
  Tensor t = empty({}, dtype, device);
  copy_bytes(t.data_ptr(), device, host.data_ptr(), Device(), size_t(dtype_size(dtype)));
  return t;
}

int64_t Tensor::numel() const { return shape_numel(impl_->shape); }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to misplace
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

int Tensor::wrap_dim(int d, const char* op) const {
  int n = dim();
  int w = d < 0 ? d + n : d;
  VB_CHECK(w >= 0 && w < std::max(n, 1) && (n > 0 || w == 0),
           "{}: dim {} out of range for a tensor of shape {} (expected -{}..{})", op, d, shape_str(shape()), n,
           n - 1);
  return w;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  VB_CHECK(shape.size() == strides.size(), "as_strided: shape {} and strides {} differ in rank", shape_str(shape),
           shape_str(strides));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

namespace {
double read_element(const Tensor& t, int64_t element_offset) {
  const int64_t es = t.element_size();
  unsigned char buf[8] = {};
  const char* src = static_cast<const char*>(t.impl()->storage->data) + element_offset * es;
  copy_bytes(buf, Device(), src, t.device(), size_t(es));
  double v = 0;
  VB_DISPATCH(t.dtype(), "item", {
    T x;
    std::memcpy(&x, buf, sizeof(T));
    v = scalar_cast<double>(x);
  });
  return v;
}
}  // namespace

double Tensor::item() const {
  VB_CHECK(numel() == 1, "item(): tensor of shape {} has {} elements, expected 1", shape_str(shape()), numel());
  return read_element(*this, impl_->offset);
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  VB_CHECK(int(index.size()) == dim(), "at(): {} indices for a tensor of shape {}", index.size(), shape_str(shape()));
  int64_t off = impl_->offset;
  int d = 0;
  for (int64_t i : index) {
    VB_CHECK(i >= 0 && i < impl_->shape[size_t(d)], "at(): index {} out of range for dim {} of shape {}", i, d,
             shape_str(shape()));
    off += i * impl_->strides[size_t(d)];
    ++d;
  }
  return read_element(*this, off);
}

double Tensor::at_linear(int64_t i) const {
  VB_CHECK(i >= 0 && i < numel(), "at_linear(): index {} out of range for shape {}", i, shape_str(shape()));
  int64_t off = impl_->offset;
  for (size_t d = impl_->shape.size(); d-- > 0;) {
    off += (i % impl_->shape[d]) * impl_->strides[d];
    i /= impl_->shape[d];
  }
  return read_element(*this, off);
}

std::vector<double> Tensor::to_vector() const {
  // Copy the whole storage span once, then walk the strides on the host.
  std::vector<double> out(static_cast<size_t>(numel()));
  if (out.empty()) return out;
  int64_t lo = impl_->offset, hi = impl_->offset;
  for (size_t d = 0; d < impl_->shape.size(); ++d) {
    int64_t span = (impl_->shape[d] - 1) * impl_->strides[d];
    (span < 0 ? lo : hi) += span;
  }
  const int64_t es = element_size();
  std::vector<unsigned char> host(size_t((hi - lo + 1) * es));
  copy_bytes(host.data(), Device(), static_cast<const char*>(impl_->storage->data) + lo * es, device(), host.size());
  const int nd = dim();
  std::vector<int64_t> idx(size_t(nd), 0);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t off = impl_->offset - lo;
    for (int d = 0; d < nd; ++d) off += idx[size_t(d)] * impl_->strides[size_t(d)];
    VB_DISPATCH(dtype(), "to_vector", {
      T x;
      std::memcpy(&x, host.data() + off * es, sizeof(T));
      out[i] = scalar_cast<double>(x);
    });
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < impl_->shape[size_t(d)]) break;
      idx[size_t(d)] = 0;
    }
  }
  return out;
}

Tensor& Tensor::set_requires_grad(bool on) {
  VB_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be marked; this one is the result of {}",
           "an op (its requires_grad follows its inputs)");
  VB_CHECK(!on || is_floating(dtype()), "set_requires_grad: a {} tensor cannot require gradients", dtype());
  impl_->requires_grad = on;
  return *this;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace vb
