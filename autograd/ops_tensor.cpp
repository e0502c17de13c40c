// Creation, conversion, views, joining and broadcasting.
#include <algorithm>
#include <numeric>

#include "autograd/op_utils.h"

namespace vb {

using detail::describe;

// ---------------------------------------------------------------- creation

Tensor empty(const Shape& shape, DType dtype, Device device) { return Tensor::empty(shape, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend(device).fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  VB_CHECK(step != 0, "arange: step must be non-zero");
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? int64_t(count) : 0;
  Tensor t = Tensor::empty({n}, dtype, device);
  backend(device).arange(t, start, step);
  return t;
}
Tensor arange(int64_t end, DType dtype, Device device) { return arange(0, double(end), 1, dtype, device); }

namespace {
Tensor random_tensor(const Shape& shape, RandomKind kind, double a, double b, Generator* gen, DType dtype,
                     Device device, bool rows = false) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t offset = rows ? g.advance_rows(uint64_t(t.numel())) : g.advance(uint64_t(t.numel()));
  backend(device).random(t, kind, a, b, g.seed, offset);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, Generator* gen, DType dtype, Device device) {
  VB_CHECK(is_floating(dtype), "rand: dtype must be floating, got {}", dtype);
  return random_tensor(shape, RandomKind::Uniform, 0.0, 1.0, gen, dtype, device);
}
Tensor randn(const Shape& shape, Generator* gen, DType dtype, Device device) {
  VB_CHECK(is_floating(dtype), "randn: dtype must be floating, got {}", dtype);
  return random_tensor(shape, RandomKind::Normal, 0.0, 1.0, gen, dtype, device);
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* gen, DType dtype, Device device) {
  VB_CHECK(high > low, "randint: empty range [{}, {})", low, high);
  return random_tensor(shape, RandomKind::Randint, double(low), double(high), gen, dtype, device);
}
Tensor rand_rows(const Shape& shape, Generator* gen, DType dtype, Device device) {
  VB_CHECK(is_floating(dtype), "rand_rows: dtype must be floating, got {}", dtype);
  return random_tensor(shape, RandomKind::Uniform, 0.0, 1.0, gen, dtype, device, true);
}
Tensor randint_rows(int64_t low, int64_t high, const Shape& shape, Generator* gen, DType dtype, Device device) {
  VB_CHECK(high > low, "randint_rows: empty range [{}, {})", low, high);
  return random_tensor(shape, RandomKind::Randint, double(low), double(high), gen, dtype, device, true);
}

// ---------------------------------------------------------------- dtype, device, copies

Tensor to(const Tensor& t, DType dtype) {
  detail::check_defined("to", t);
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.shape(), dtype, t.device());
  backend(t.device()).copy(t, out);
  if (!is_floating(dtype) || !is_floating(t.dtype())) return out;
  const DType from = t.dtype();
  return record(out, "to_dtype", {t}, [from](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {to(g, from)};
  });
}

Tensor to(const Tensor& t, Device device) {
  detail::check_defined("to", t);
  if (t.device() == device) return t;
  Tensor src = t.is_contiguous() ? t : contiguous(t);
  Tensor out = Tensor::empty(t.shape(), t.dtype(), device);
  copy_bytes(out.data_ptr(), device, src.data_ptr(), src.device(), size_t(src.numel() * src.element_size()));
  const Device from = t.device();
  return record(out, "to_device", {t}, [from](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {to(g, from)};
  });
}

Tensor clone(const Tensor& t) {
  detail::check_defined("clone", t);
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  backend(t.device()).copy(t, out);
  return record(out, "clone", {t}, [](const Node&, const Tensor& g) -> std::vector<Tensor> { return {g}; });
}

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : clone(t); }

Tensor detach(const Tensor& t) { return t.as_strided(t.shape(), t.strides(), t.offset()); }

void copy_(Tensor& dst, const Tensor& src) {
  VB_CHECK(!(dst.requires_grad() && grad_enabled()), "copy_: destination {} requires grad; in-place writes to it "
           "would corrupt the graph (wrap the update in NoGradGuard)", describe(dst));
  Tensor s = src.device() == dst.device() ? src : to(detach(src), dst.device());
  s = expand(detach(s), dst.shape());
  backend(dst.device()).copy(s, dst);
}

void fill_(Tensor& dst, double value) {
  VB_CHECK(!(dst.requires_grad() && grad_enabled()), "fill_: destination {} requires grad (wrap in NoGradGuard)",
           describe(dst));
  if (dst.is_contiguous()) {
    backend(dst.device()).fill(dst, value);
  } else {
    Tensor v = full({}, value, dst.dtype(), dst.device());
    backend(dst.device()).copy(v.as_strided(dst.shape(), Shape(dst.shape().size(), 0), 0), dst);
  }
}

// ---------------------------------------------------------------- views

namespace {

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      VB_CHECK(infer < 0, "{}: only one -1 allowed in {}", op, shape_str(shape));
      infer = int(i);
    } else {
      VB_CHECK(out[i] >= 0, "{}: invalid size {} in {}", op, out[i], shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    VB_CHECK(known != 0 && numel % known == 0, "{}: cannot reshape {} ({} elements) into {}", op, shape_str(from),
             numel, shape_str(shape));
    out[size_t(infer)] = numel / known;
  }
  VB_CHECK(shape_numel(out) == numel, "{}: cannot reshape {} ({} elements) into {} ({} elements)", op,
           shape_str(from), numel, shape_str(shape), shape_numel(out));
  return out;
}

// Strides that view `old` memory with `new_shape`, when some exist (PyTorch's computeStride).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape) {
  Shape ns(new_shape.size());
  if (shape_numel(old_shape) == 0 || old_shape.empty()) return contiguous_strides(new_shape);
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = int64_t(old_shape.size()) - 1; td >= 0; --td) {
    tensor_numel *= old_shape[size_t(td)];
    if (td == 0 || (old_shape[size_t(td - 1)] != 1 && old_strides[size_t(td - 1)] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[size_t(view_d)] == 1)) {
        ns[size_t(view_d)] = view_numel * chunk_base;
        view_numel *= new_shape[size_t(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (td > 0) {
        chunk_base = old_strides[size_t(td - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return ns;
}

// A view of t recorded with a backward that reshapes the gradient back (and Node::view: the same view of a sum
// shaped like t, when its strides allow one).
Tensor reshaped_view(const Tensor& t, const Shape& shape, const Shape& strides, const char* name) {
  Tensor out = t.as_strided(shape, strides, t.offset());
  const Shape in_shape = t.shape();
  out = record(out, name, {t}, [in_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {reshape(g, in_shape)};
  });
  if (out.grad_fn())
    out.grad_fn()->view = [shape](const Tensor& s) -> Tensor {
      const auto st = view_strides(s.shape(), s.strides(), shape);
      return st ? s.as_strided(shape, *st, s.offset()) : Tensor();
    };
  return out;
}

}  // namespace

Tensor view(const Tensor& t, const Shape& shape) {
  detail::check_defined("view", t);
  Shape s = infer_shape(shape, t.numel(), "view", t.shape());
  auto strides = view_strides(t.shape(), t.strides(), s);
  VB_CHECK(strides.has_value(), "view: a tensor of shape {} with strides {} cannot be viewed as {}; use reshape",
           shape_str(t.shape()), shape_str(t.strides()), shape_str(s));
  return reshaped_view(t, s, *strides, "view");
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  detail::check_defined("reshape", t);
  Shape s = infer_shape(shape, t.numel(), "reshape", t.shape());
  if (s == t.shape()) return t;
  if (auto strides = view_strides(t.shape(), t.strides(), s)) return reshaped_view(t, s, *strides, "reshape");
  return reshaped_view(clone(t), s, contiguous_strides(s), "reshape");
}

Tensor flatten(const Tensor& t, int start_dim, int end_dim) {
  if (t.dim() == 0) return reshape(t, {1});
  const int s = t.wrap_dim(start_dim, "flatten"), e = t.wrap_dim(end_dim, "flatten");
  VB_CHECK(s <= e, "flatten: start_dim {} after end_dim {}", start_dim, end_dim);
  Shape shape(t.shape().begin(), t.shape().begin() + s);
  int64_t n = 1;
  for (int d = s; d <= e; ++d) n *= t.size(d);
  shape.push_back(n);
  shape.insert(shape.end(), t.shape().begin() + e + 1, t.shape().end());
  return reshape(t, shape);
}

Tensor permute(const Tensor& t, const std::vector<int>& dims) {
  detail::check_defined("permute", t);
  VB_CHECK(int(dims.size()) == t.dim(), "permute: {} dims given for a tensor of shape {}", dims.size(),
           shape_str(t.shape()));
  std::vector<int> p(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape shape(dims.size()), strides(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    p[i] = t.wrap_dim(dims[i], "permute");
    VB_CHECK(!seen[size_t(p[i])], "permute: dim {} repeated in [{}]", p[i], fmt::join(dims, ", "));
    seen[size_t(p[i])] = true;
    inverse[size_t(p[i])] = int(i);
    shape[i] = t.shape()[size_t(p[i])];
    strides[i] = t.strides()[size_t(p[i])];
  }
  Tensor out = t.as_strided(shape, strides, t.offset());
  out = record(out, "permute", {t}, [inverse](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {permute(g, inverse)};
  });
  if (out.grad_fn())
    out.grad_fn()->view = [p](const Tensor& s) -> Tensor {
      Shape sh(p.size()), st(p.size());
      for (size_t i = 0; i < p.size(); ++i) sh[i] = s.shape()[size_t(p[i])], st[i] = s.strides()[size_t(p[i])];
      return s.as_strided(sh, st, s.offset());
    };
  return out;
}

Tensor transpose(const Tensor& t, int dim0, int dim1) {
  std::vector<int> dims(size_t(t.dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[size_t(t.wrap_dim(dim0, "transpose"))], dims[size_t(t.wrap_dim(dim1, "transpose"))]);
  return permute(t, dims);
}

namespace {
// Elements start, start + step, … (length of them) along dim d of u; dim d dropped when !keep.
Tensor raw_window(const Tensor& u, int d, int64_t start, int64_t length, int64_t step, bool keep) {
  Shape shape = u.shape(), strides = u.strides();
  const int64_t offset = u.offset() + start * strides[size_t(d)];
  shape[size_t(d)] = length;
  strides[size_t(d)] *= step;
  if (!keep) {
    shape.erase(shape.begin() + d);
    strides.erase(strides.begin() + d);
  }
  return u.as_strided(shape, strides, offset);
}

// A window view of t; its backward writes the gradient into the same window of zeros of t's shape.
Tensor window(const Tensor& t, int d, int64_t start, int64_t length, int64_t step, bool keep, const char* name) {
  Tensor out = raw_window(t, d, start, length, step, keep);
  const Shape in_shape = t.shape();
  return record(out, name, {t}, [=](const Node&, const Tensor& g) {
    Tensor z = zeros(in_shape, g.dtype(), g.device());
    Tensor dst = raw_window(z, d, start, length, step, keep);
    backend(g.device()).copy(g, dst);
    return std::vector<Tensor>{z};
  });
}
}  // namespace

Tensor slice(const Tensor& t, int dim, int64_t start, int64_t end, int64_t step) {
  detail::check_defined("slice", t);
  const int d = t.wrap_dim(dim, "slice");
  const int64_t n = t.size(d);
  VB_CHECK(step > 0, "slice: step must be positive, got {}", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  return window(t, d, start, (end - start + step - 1) / step, step, true, "slice");
}

Tensor narrow(const Tensor& t, int dim, int64_t start, int64_t length) {
  detail::check_defined("narrow", t);
  const int d = t.wrap_dim(dim, "narrow");
  VB_CHECK(start >= 0 && length >= 0 && start + length <= t.size(d),
           "narrow: [{}, {}) is outside dim {} of size {} (shape {})", start, start + length, d, t.size(d),
           shape_str(t.shape()));
  return window(t, d, start, length, 1, true, "narrow");
}

Tensor select(const Tensor& t, int dim, int64_t index) {
  detail::check_defined("select", t);
  const int d = t.wrap_dim(dim, "select");
  const int64_t n = t.size(d);
  if (index < 0) index += n;
  VB_CHECK(index >= 0 && index < n, "select: index {} out of range for dim {} of size {}", index, d, n);
  return window(t, d, index, 1, 1, false, "select");
}

Tensor expand(const Tensor& t, const Shape& shape) {
  detail::check_defined("expand", t);
  VB_CHECK(shape.size() >= size_t(t.dim()), "expand: cannot expand {} to fewer dims {}", shape_str(t.shape()),
           shape_str(shape));
  const size_t lead = shape.size() - size_t(t.dim());
  Shape out_shape(shape.size()), strides(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      VB_CHECK(shape[i] >= 0, "expand: new leading dim {} of {} cannot be -1", i, shape_str(shape));
      out_shape[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    const int64_t have = t.shape()[i - lead];
    const int64_t want = shape[i] == -1 ? have : shape[i];
    VB_CHECK(have == want || have == 1, "expand: dim {} of size {} cannot become {} (shape {} to {})", i - lead, have,
             want, shape_str(t.shape()), shape_str(shape));
    out_shape[i] = want;
    strides[i] = have == want ? t.strides()[i - lead] : 0;
  }
  if (out_shape == t.shape()) return t;
  Tensor out = t.as_strided(out_shape, strides, t.offset());
  const Shape in_shape = t.shape();
  return record(out, "expand", {t}, [in_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, in_shape)};
  });
}

Tensor squeeze(const Tensor& t) {
  Shape s;
  for (int64_t v : t.shape())
    if (v != 1) s.push_back(v);
  return reshape(t, s);
}

Tensor squeeze(const Tensor& t, int dim) {
  const int d = t.wrap_dim(dim, "squeeze");
  if (t.size(d) != 1) return t;
  Shape s = t.shape();
  s.erase(s.begin() + d);
  return reshape(t, s);
}

Tensor unsqueeze(const Tensor& t, int dim) {
  detail::check_defined("unsqueeze", t);
  const int n = t.dim() + 1;
  const int d = dim < 0 ? dim + n : dim;
  VB_CHECK(d >= 0 && d < n, "unsqueeze: dim {} out of range for shape {}", dim, shape_str(t.shape()));
  Shape s = t.shape();
  s.insert(s.begin() + d, 1);
  return reshape(t, s);
}

// ---------------------------------------------------------------- joining and splitting

Tensor cat(const std::vector<Tensor>& tensors, int dim) {
  VB_CHECK(!tensors.empty(), "cat: no tensors given");
  const Tensor& first = tensors[0];
  const int d = first.wrap_dim(dim, "cat");
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    detail::check_same_device("cat", {first, t});
    detail::check_same_dtype("cat", {first, t});
    bool ok = t.dim() == first.dim();
    for (int k = 0; ok && k < t.dim(); ++k) ok = k == d || t.size(k) == first.size(k);
    VB_CHECK(ok, "cat: tensor {} has shape {}, expected {} except in dim {}", i, shape_str(t.shape()),
             shape_str(first.shape()), d);
    total += t.size(d);
  }
  Shape shape = first.shape();
  shape[size_t(d)] = total;
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t pos = 0;
  for (const Tensor& t : tensors) {
    Shape part = shape;
    part[size_t(d)] = t.size(d);
    Tensor dst = out.as_strided(part, out.strides(), pos * out.stride(d));
    backend(out.device()).copy(t, dst);
    sizes.push_back(t.size(d));
    pos += t.size(d);
  }
  return record(out, "cat", tensors, [sizes, d](const Node& self, const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (self.needs(i)) grads.push_back(narrow(g, d, at, sizes[i]));
      else grads.emplace_back();
      at += sizes[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int dim) {
  VB_CHECK(!tensors.empty(), "stack: no tensors given");
  const int n = tensors[0].dim() + 1;
  const int d = dim < 0 ? dim + n : dim;
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) {
    VB_CHECK(t.shape() == tensors[0].shape(), "stack: shapes differ: {} and {}", shape_str(tensors[0].shape()),
             shape_str(t.shape()));
    parts.push_back(unsqueeze(t, d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& t, int64_t split_size, int dim) {
  VB_CHECK(split_size > 0, "split: split_size must be positive, got {}", split_size);
  const int d = t.wrap_dim(dim, "split");
  std::vector<Tensor> out;
  for (int64_t at = 0; at < t.size(d); at += split_size) out.push_back(narrow(t, d, at, std::min(split_size, t.size(d) - at)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int dim) {
  VB_CHECK(chunks > 0, "chunk: chunks must be positive, got {}", chunks);
  const int64_t n = t.size(t.wrap_dim(dim, "chunk"));
  return split(t, std::max<int64_t>((n + chunks - 1) / chunks, 1), dim);
}

// ---------------------------------------------------------------- broadcasting

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t x = i + a.size() >= n ? a[i + a.size() - n] : 1;
    const int64_t y = i + b.size() >= n ? b[i + b.size() - n] : 1;
    VB_CHECK(x == y || x == 1 || y == 1, "{}: shapes {} and {} do not broadcast (dim {}: {} vs {})", op,
             shape_str(a), shape_str(b), i, x, y);
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const size_t lead = size_t(t.dim()) - shape.size();
  std::vector<int> dims;
  for (size_t i = 0; i < size_t(t.dim()); ++i) {
    if (i < lead || (shape[i - lead] == 1 && t.shape()[i] != 1)) dims.push_back(int(i));
  }
  Tensor s = dims.empty() ? t : sum(t, dims, /*keepdim=*/true);
  return reshape(s, shape);
}

}  // namespace vb
