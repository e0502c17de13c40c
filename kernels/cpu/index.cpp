// Embedding lookup and the index ops, with their scatter-style backwards.
//
//   embedding:          out[i, :] = weight[ids[i], :]                      (a row copy per id)
//   embedding_backward: gweight[v, :] = Σ_{i: ids[i] = v, v ≠ padding_idx} grad[i, :]
//   index_select:       out[o, j, r] = x[o, idx[j], r]    with x viewed as (outer, n, inner)
//   index_add:          out[o, idx[j], r] += src[o, j, r]
//   gather:             out[p] = x[p with coordinate dim replaced by idx[p]]
//   scatter_add:        out[p with coordinate dim replaced by idx[p]] += src[p]
//
// Copies move bytes (any dtype); sums run in index order, so repeated indices accumulate
// deterministically; bfloat16/float16 sums are accumulated in float32 (embedding_backward) or rounded per
// addition (index_add, scatter_add, as PyTorch does). Every index is checked to be in range.
// Cost: embedding and index_select move N·H elements; the backwards read N·H and write V·H elements.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace vb {

namespace {

// The ids of an int32/int64 tensor as int64, in row-major order.
std::vector<int64_t> read_ids(const Tensor& ids_in, const char* op) {
  const Tensor ids = cpu::contiguous(ids_in);
  const int64_t n = ids.numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (ids.dtype() == DType::Int64) {
    std::memcpy(out.data(), ids.data<int64_t>(), size_t(n) * sizeof(int64_t));
  } else if (ids.dtype() == DType::Int32) {
    const int32_t* p = ids.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = p[i];
  } else {
    fail("cpu {}: indices must be int32 or int64, got {}", op, ids.dtype());
  }
  return out;
}

// `what` names the range for the message, e.g. "a weight of V = 5 rows".
void check_range(const std::vector<int64_t>& ids, int64_t size, const char* op, const char* noun,
                 const std::string& what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    VB_CHECK(ids[i] >= 0 && ids[i] < size, "{}: {} {} (at position {}) is out of range [0, {}) for {}", op, noun,
             ids[i], i, size, what);
  }
}

// a + b in T's arithmetic (half types through float32).
template <typename T>
T add_elem(T a, T b) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) return T(float(a) + float(b));
  else return T(a + b);
}

// Products of a shape's dims before dim, and after it.
int64_t outer_size(const Shape& s, int dim) {
  int64_t n = 1;
  for (int d = 0; d < dim; ++d) n *= s[size_t(d)];
  return n;
}
int64_t inner_size(const Shape& s, int dim) {
  int64_t n = 1;
  for (size_t d = size_t(dim) + 1; d < s.size(); ++d) n *= s[d];
  return n;
}

template <typename T, typename A>
void embedding_backward_typed(const T* grad, const std::vector<int64_t>& ids, int64_t padding_idx, T* gw,
                              int64_t vocab, int64_t hidden) {
  // Each thread owns a slice of the H columns and walks every id in order: deterministic and race-free.
  // Half types accumulate in a float32 table; float32/float64 accumulate in place.
  std::vector<A> table(std::is_same_v<A, T> ? 0 : size_t(vocab * hidden), A(0));  // (V, H)
  A* acc = nullptr;
  if constexpr (std::is_same_v<A, T>) {
    acc = gw;
    std::fill(gw, gw + vocab * hidden, T(0));
  } else {
    acc = table.data();
  }
  const int64_t n = int64_t(ids.size());
  const int64_t col_block = 64;
  const int64_t col_blocks = (hidden + col_block - 1) / col_block;
#pragma omp parallel for schedule(static) if (n * hidden >= cpu::kParallelGrain && col_blocks > 1)
  for (int64_t cb = 0; cb < col_blocks; ++cb) {
    const int64_t c0 = cb * col_block, c1 = std::min(hidden, c0 + col_block);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = ids[size_t(i)];
      if (v == padding_idx) continue;
      A* dst = acc + v * hidden;
      const T* src = grad + i * hidden;
      for (int64_t c = c0; c < c1; ++c) dst[c] += A(src[c]);
    }
  }
  if constexpr (!std::is_same_v<A, T>) {
    for (int64_t i = 0; i < vocab * hidden; ++i) gw[i] = T(table[size_t(i)]);
  }
}

template <typename T>
void index_add_typed(T* out, const T* src, const std::vector<int64_t>& idx, int64_t outer, int64_t n, int64_t inner) {
  const int64_t m = int64_t(idx.size());
  // Parallel over outer slices (disjoint in out) when there are several, else over inner columns.
  if (outer > 1) {
#pragma omp parallel for schedule(static) if (outer * m * inner >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < m; ++j) {
        T* dst = out + (o * n + idx[size_t(j)]) * inner;
        const T* s = src + (o * m + j) * inner;
        for (int64_t r = 0; r < inner; ++r) dst[r] = add_elem(dst[r], s[r]);
      }
    }
  } else {
#pragma omp parallel for schedule(static) if (m * inner >= cpu::kParallelGrain)
    for (int64_t r = 0; r < inner; ++r) {
      for (int64_t j = 0; j < m; ++j) out[idx[size_t(j)] * inner + r] = add_elem(out[idx[size_t(j)] * inner + r], src[j * inner + r]);
    }
  }
}

// Walks the elements of a tensor of shape `shape` (contiguous index tensor) and calls f(p, other_offset)
// where p is the element's row-major position and other_offset is the offset of its coordinates — with
// dim's coordinate set to 0 — in a tensor with strides `other`. Parallel over the dims before `dim`,
// whose slices touch disjoint elements of the other tensor.
template <typename F>
void for_each_with_offset(const Shape& shape, int dim, const Shape& other, F&& f) {
  const int64_t outer = outer_size(shape, dim);
  const int64_t slice = shape_numel(shape) / std::max<int64_t>(outer, 1);
  const int nd = int(shape.size());
#pragma omp parallel for schedule(static) if (outer > 1 && outer * slice >= cpu::kParallelGrain)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t s = 0; s < slice; ++s) {
      int64_t p = o * slice + s, rest = p, off = 0;
      for (int d = nd - 1; d >= 0; --d) {
        const int64_t c = rest % shape[size_t(d)];
        rest /= shape[size_t(d)];
        if (d != dim) off += c * other[size_t(d)];
      }
      f(p, off);
    }
  }
}

}  // namespace

void CpuBackend::embedding(const Tensor& weight_in, const Tensor& ids_in, Tensor& out) {
  VB_CHECK(weight_in.dim() == 2, "embedding: weight must be (V, H), got {}", shape_str(weight_in.shape()));
  const int64_t vocab = weight_in.size(0), hidden = weight_in.size(1);
  const std::vector<int64_t> ids = read_ids(ids_in, "embedding");
  VB_CHECK(out.dim() == 2 && out.size(0) == int64_t(ids.size()) && out.size(1) == hidden,
           "cpu embedding: output {} does not match {} ids of width {}", shape_str(out.shape()), ids.size(), hidden);
  check_range(ids, vocab, "embedding", "id", fmt::format("a weight of V = {} rows", vocab));
  const Tensor weight = cpu::contiguous(weight_in);
  const char* w = static_cast<const char*>(weight.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  const size_t row_bytes = size_t(hidden * weight.element_size());
  const int64_t n = int64_t(ids.size());
#pragma omp parallel for schedule(static) if (n * hidden >= cpu::kParallelGrain)
  for (int64_t i = 0; i < n; ++i) std::memcpy(o + size_t(i) * row_bytes, w + size_t(ids[size_t(i)]) * row_bytes, row_bytes);
}

void CpuBackend::embedding_backward(const Tensor& grad_in, const Tensor& ids_in, int64_t padding_idx,
                                    Tensor& gweight) {
  VB_CHECK(gweight.dim() == 2, "cpu embedding_backward: gweight must be (V, H), got {}", shape_str(gweight.shape()));
  const int64_t vocab = gweight.size(0), hidden = gweight.size(1);
  const std::vector<int64_t> ids = read_ids(ids_in, "embedding_backward");
  VB_CHECK(grad_in.dim() == 2 && grad_in.size(0) == int64_t(ids.size()) && grad_in.size(1) == hidden,
           "cpu embedding_backward: grad {} does not match {} ids of width {}", shape_str(grad_in.shape()),
           ids.size(), hidden);
  check_range(ids, vocab, "embedding_backward", "id", fmt::format("a weight of V = {} rows", vocab));
  const Tensor grad = cpu::contiguous(grad_in);
  switch (gweight.dtype()) {
    case DType::Float32:
      embedding_backward_typed<float, float>(grad.data<float>(), ids, padding_idx, gweight.data<float>(), vocab, hidden);
      break;
    case DType::Float64:
      embedding_backward_typed<double, double>(grad.data<double>(), ids, padding_idx, gweight.data<double>(), vocab,
                                               hidden);
      break;
    case DType::BFloat16:
      embedding_backward_typed<bf16, float>(grad.data<bf16>(), ids, padding_idx, gweight.data<bf16>(), vocab, hidden);
      break;
    case DType::Float16:
      embedding_backward_typed<f16, float>(grad.data<f16>(), ids, padding_idx, gweight.data<f16>(), vocab, hidden);
      break;
    default: fail("cpu embedding_backward: expected a floating gradient, got {}", gweight.dtype());
  }
}

void CpuBackend::index_select(const Tensor& x_in, int dim, const Tensor& idx_in, Tensor& out) {
  const std::vector<int64_t> idx = read_ids(idx_in, "index_select");
  const int64_t n = x_in.size(dim);
  check_range(idx, n, "index_select", "index", fmt::format("dim {} of size {}", dim, n));
  const Tensor x = cpu::contiguous(x_in);
  const int64_t outer = outer_size(x.shape(), dim), inner = inner_size(x.shape(), dim), m = int64_t(idx.size());
  const size_t run = size_t(inner * x.element_size());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
#pragma omp parallel for schedule(static) if (outer * m * inner >= cpu::kParallelGrain)
  for (int64_t t = 0; t < outer * m; ++t) {
    const int64_t o = t / m, j = t % m;
    std::memcpy(dst + size_t(t) * run, src + size_t(o * n + idx[size_t(j)]) * run, run);
  }
}

void CpuBackend::index_add(Tensor& out, int dim, const Tensor& idx_in, const Tensor& src_in) {
  VB_CHECK(out.is_contiguous(), "cpu index_add: out must be contiguous");
  VB_CHECK(src_in.dtype() == out.dtype(), "cpu index_add: src is {}, out is {}", src_in.dtype(), out.dtype());
  const std::vector<int64_t> idx = read_ids(idx_in, "index_add");
  const int64_t n = out.size(dim);
  check_range(idx, n, "index_add", "index", fmt::format("dim {} of size {}", dim, n));
  const Tensor src = cpu::contiguous(src_in);
  const int64_t outer = outer_size(out.shape(), dim), inner = inner_size(out.shape(), dim);
  VB_CHECK(src.dim() == out.dim() && src.size(dim) == int64_t(idx.size()) &&
               outer_size(src.shape(), dim) == outer && inner_size(src.shape(), dim) == inner,
           "cpu index_add: src {} does not match out {} with {} indices along dim {}", shape_str(src.shape()),
           shape_str(out.shape()), idx.size(), dim);
  VB_DISPATCH(out.dtype(), "index_add", {
    if constexpr (std::is_same_v<T, bool>) fail("cpu index_add: bool tensors cannot be added");
    else index_add_typed(out.data<T>(), src.data<T>(), idx, outer, n, inner);
  });
}

void CpuBackend::gather(const Tensor& x, int dim, const Tensor& idx_in, Tensor& out) {
  VB_CHECK(idx_in.dtype() == DType::Int64, "gather: index must be int64, got {}", idx_in.dtype());
  const Tensor idx = cpu::contiguous(idx_in);
  const int64_t* ip = idx.data<int64_t>();
  const int64_t n = x.size(dim), xstride = x.stride(dim);
  const char* xbase = static_cast<const char*>(x.data_ptr());
  char* obase = static_cast<char*>(out.data_ptr());
  const int64_t es = x.element_size();
  for (int64_t p = 0; p < idx.numel(); ++p) {
    VB_CHECK(ip[p] >= 0 && ip[p] < n, "gather: index {} (at position {}) is out of range for dim {} of size {}",
             ip[p], p, dim, n);
  }
  for_each_with_offset(idx.shape(), dim, x.strides(), [&](int64_t p, int64_t off) {
    std::memcpy(obase + p * es, xbase + (off + ip[p] * xstride) * es, size_t(es));
  });
}

void CpuBackend::scatter_add(Tensor& out, int dim, const Tensor& idx_in, const Tensor& src_in) {
  VB_CHECK(out.is_contiguous(), "cpu scatter_add: out must be contiguous");
  VB_CHECK(idx_in.dtype() == DType::Int64, "scatter_add: index must be int64, got {}", idx_in.dtype());
  VB_CHECK(src_in.dtype() == out.dtype(), "cpu scatter_add: src is {}, out is {}", src_in.dtype(), out.dtype());
  const Tensor idx = cpu::contiguous(idx_in);
  const int64_t* ip = idx.data<int64_t>();
  const int64_t n = out.size(dim), ostride = out.stride(dim);
  for (int64_t p = 0; p < idx.numel(); ++p) {
    VB_CHECK(ip[p] >= 0 && ip[p] < n,
             "scatter_add: index {} (at position {}) is out of range for dim {} of size {}", ip[p], p, dim, n);
  }
  // src is read at the index's coordinates (src may be larger than the index, as in PyTorch).
  const Shape& ss = src_in.strides();
  const Shape& is = idx.shape();
  VB_DISPATCH(out.dtype(), "scatter_add", {
    if constexpr (std::is_same_v<T, bool>) {
      fail("cpu scatter_add: bool tensors cannot be added");
    } else {
      T* o = out.data<T>();
      const T* s = src_in.data<T>();
      // Walks in row-major order within each outer slice, so repeated targets add in index order.
      for_each_with_offset(is, dim, out.strides(), [&](int64_t p, int64_t off) {
        int64_t rest = p, soff = 0;
        for (int d = int(is.size()) - 1; d >= 0; --d) {
          soff += (rest % is[size_t(d)]) * ss[size_t(d)];
          rest /= is[size_t(d)];
        }
        T& dst = o[off + ip[p] * ostride];
        dst = add_elem(dst, s[soff]);
      });
    }
  });
}

}  // namespace vb
