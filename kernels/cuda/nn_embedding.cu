// Embedding lookup and the index ops, with deterministic scatter-style backwards.
//
//   embedding:          out[i, :] = weight[ids[i], :]
//   embedding_backward: gweight[v, :] = Σ_{i: ids[i] = v, v ≠ padding_idx} grad[i, :]   (in index order)
//   index_select:       out[o, j, r] = x[o, idx[j], r]          x viewed as (outer, n, inner)
//   index_add:          out[o, idx[j], r] += src[o, j, r]        for j = 0, 1, … in order
//   gather:             out[p] = x[p with dim ← idx[p]]
//   scatter_add:        out[p with dim ← idx[p]] += src[p]       repeated targets in row-major order
//
// Determinism without float atomics: every output element has one owning thread, which adds its
// contributions in index order. embedding_backward sorts the ids on the host (a stable counting sort:
// positions grouped by id, increasing within a group) and gives each distinct id a block that sums its
// rows in that order in float32; index_add and scatter_add give each thread one (outer, inner) line
// and walk the indexed dim in order. bfloat16/float16 index_add/scatter_add round after each addition,
// as the CPU backend (and PyTorch) do.
//
// Indices are checked: a kernel that meets one outside its range reports the position to the error
// record and the launcher throws vb::Error naming it (embedding_backward checks during its sort).
//
// Cost: embedding, index_select and gather move their output's bytes twice (read + write) plus the
// indices; embedding_backward reads grad (N·H) and writes gweight (V·H); index_add and scatter_add read
// src and read-modify-write their targets. No FLOPs beyond one add per element.
//
// Launch: one thread per output element (blocks of 256) for the copies; embedding_backward one block
// of 256 threads per distinct id (threads stride over H); index_add one thread per (outer, inner)
// line; scatter_add one thread per line of the index along dim.
#include "kernels/cuda/nn.h"

#include <algorithm>
#include <vector>

#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nnk::load;
using nnk::store;
using nn_kernels::IndexGeometry;

// out (count, hidden) = weight[ids]; E an element of the right size.
template <class E>
__global__ void embedding_forward_kernel(const E* weight, int64_t vocab, int64_t hidden, const void* ids, bool int64,
                                         int64_t count, E* out, unsigned long long* error) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count * hidden) return;
  const int64_t row = i / hidden, h = i % hidden;
  const int64_t id = nnk::load_index(ids, row, int64);
  if (id < 0 || id >= vocab) {
    nnk::report(error, row);
    return;
  }
  out[i] = weight[id * hidden + h];
}

// gweight[ids of segment s] = Σ grad[positions[starts[s] .. starts[s + 1])] in that order.
// Launch: one block per segment, threads stride over hidden.
template <class T>
__global__ void embedding_backward_kernel(const T* grad, const int64_t* positions, const int64_t* starts,
                                          const int64_t* segment_ids, int64_t hidden, T* gweight) {
  const int64_t s = blockIdx.x;
  const int64_t begin = starts[s], end = starts[s + 1];
  T* dst = gweight + segment_ids[s] * hidden;  // (H)
  for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
    float acc = 0.0f;
    for (int64_t k = begin; k < end; ++k) acc += load(grad[positions[k] * hidden + h]);
    dst[h] = store<T>(acc);
  }
}

// out (outer, m, inner) = x (outer, n, inner)[:, idx, :].
template <class E>
__global__ void index_select_kernel(const E* x, int64_t outer, int64_t n, int64_t inner, const int64_t* idx, int64_t m,
                                    E* out, unsigned long long* error) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= outer * m * inner) return;
  const int64_t r = i % inner, j = (i / inner) % m, o = i / (inner * m);
  const int64_t k = idx[j];
  if (k < 0 || k >= n) {
    nnk::report(error, j);
    return;
  }
  out[i] = x[(o * n + k) * inner + r];
}

// a + b in T's arithmetic: float types through float32, rounded once per addition.
template <class T>
__device__ __forceinline__ T add_elem(T a, T b) {
  if constexpr (std::is_integral_v<T>) return a + b;
  else return store<T>(load(a) + load(b));
}

// One thread per (o, r) line walks j in order: out[o, idx[j], r] += src[o, j, r].
template <class T>
__global__ void index_add_kernel(T* out, int64_t outer, int64_t n, int64_t inner, const int64_t* idx, int64_t m,
                                 const T* src, unsigned long long* error) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= outer * inner) return;
  const int64_t o = line / inner, r = line % inner;
  for (int64_t j = 0; j < m; ++j) {
    const int64_t k = idx[j];
    if (k < 0 || k >= n) {
      nnk::report(error, j);
      return;
    }
    T& dst = out[(o * n + k) * inner + r];
    dst = add_elem(dst, src[(o * m + j) * inner + r]);
  }
}

// The coordinates of element p of the index (row-major over g.index_shape), with dim's left 0:
// its offset through `strides` (and src_strides), and the position of its line along dim.
struct Coords {
  int64_t offset = 0, src_offset = 0;
};

__device__ __forceinline__ Coords coords_of(const IndexGeometry& g, int64_t p) {
  Coords c;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t coord = p % g.index_shape[d];
    p /= g.index_shape[d];
    if (d != g.dim) c.offset += coord * g.strides[d];
    c.src_offset += coord * g.src_strides[d];
  }
  return c;
}

// out[p] = x[p with dim ← idx[p]]. One thread per index element.
template <class E>
__global__ void gather_kernel(const E* x, IndexGeometry g, const int64_t* idx, int64_t count, E* out,
                              unsigned long long* error) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= count) return;
  const int64_t k = idx[p];
  if (k < 0 || k >= g.size) {
    nnk::report(error, p);
    return;
  }
  out[p] = x[coords_of(g, p).offset + k * g.strides[g.dim]];
}

// One thread per line of the index along dim (its other coordinates fixed) walks the line in order:
// out[line's coordinates with dim ← idx[p]] += src[p].
template <class T>
__global__ void scatter_add_kernel(T* out, IndexGeometry g, const int64_t* idx, int64_t lines, const T* src,
                                   unsigned long long* error) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= lines) return;
  int64_t inner = 1;  // elements of the index after dim
  for (int d = g.dim + 1; d < g.ndim; ++d) inner *= g.index_shape[d];
  const int64_t len = g.index_shape[g.dim];
  const int64_t first = (line / inner) * len * inner + line % inner;  // the line's element at dim = 0
  const Coords c = coords_of(g, first);
  for (int64_t j = 0; j < len; ++j) {
    const int64_t p = first + j * inner;
    const int64_t k = idx[p];
    if (k < 0 || k >= g.size) {
      nnk::report(error, p);
      return;
    }
    T& dst = out[c.offset + k * g.strides[g.dim]];
    dst = add_elem(dst, src[c.src_offset + j * g.src_strides[g.dim]]);
  }
}

// Throws when the kernel reported a bad index: "<op>: <noun> <value> (at position <p>) is out of
// range [0, <size>) for <what>", the CPU backend's message.
void check_reported(const char* op, const char* noun, const void* ids, bool int64, int64_t size,
                    const std::string& what, rt::Stream stream) {
  const unsigned long long p = nnk::ErrorRecord::first_bad(stream);
  if (p == nnk::ErrorRecord::kNone) return;
  nnk::raise("{}: {} {} (at position {}) is out of range [0, {}) for {}", op, noun,
             nnk::read_index(ids, static_cast<int64_t>(p), int64), p, size, what);
}

bool id_dtype_is_int64(DType id_dtype, const char* op) {
  nnk::check(id_dtype == DType::Int32 || id_dtype == DType::Int64, "{}: indices must be int32 or int64, got {}", op,
             id_dtype);
  return id_dtype == DType::Int64;
}

// Integer and float element types for the adding kernels.
template <class F>
void dispatch_addable(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Int32: f(int32_t{}); break;
    case DType::Int64: f(int64_t{}); break;
    default: nnk::dispatch_floating(dtype, op, f);
  }
}

std::string dim_of_size(int dim, int64_t size) { return fmt::format(fmt::runtime("dim {} of size {}"), dim, size); }

}  // namespace

void embedding_forward(const void* weight, int64_t vocab, int64_t hidden, DType dtype, const void* ids,
                       DType id_dtype, int64_t count, void* out, rt::Stream stream) {
  const bool int64 = id_dtype_is_int64(id_dtype, "embedding");
  if (count == 0 || hidden == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  nnk::dispatch_bytes(dtype, [&](auto tag) {
    using E = decltype(tag);
    launch(embedding_forward_kernel<E>, {blocks_for(count * hidden, 256), 256, 0, stream},
           static_cast<const E*>(weight), vocab, hidden, ids, int64, count, static_cast<E*>(out), error);
  });
  check_reported("embedding", "id", ids, int64, vocab,
                 fmt::format(fmt::runtime("a weight of V = {} rows"), vocab), stream);
}

void embedding_backward(const void* grad, const void* ids, DType id_dtype, int64_t count, int64_t padding_idx,
                        void* gweight, int64_t vocab, int64_t hidden, DType dtype, rt::Stream stream) {
  const bool int64 = id_dtype_is_int64(id_dtype, "embedding_backward");
  nnk::dispatch_floating(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    // Rows no id touches (and padding_idx's) are 0.
    rt::VB_KERNEL_NS::memset_async(gweight, 0, static_cast<std::size_t>(vocab * hidden) * sizeof(T), stream);
    if (count == 0 || hidden == 0) return;
    // The ids on the host, checked, then a stable counting sort into segments of equal ids.
    std::vector<int64_t> host(static_cast<std::size_t>(count));
    if (int64) {
      rt::VB_KERNEL_NS::copy_async(host.data(), ids, host.size() * sizeof(int64_t), stream);
      rt::VB_KERNEL_NS::stream_synchronize(stream);
    } else {
      std::vector<int32_t> narrow(host.size());
      rt::VB_KERNEL_NS::copy_async(narrow.data(), ids, narrow.size() * sizeof(int32_t), stream);
      rt::VB_KERNEL_NS::stream_synchronize(stream);
      std::copy(narrow.begin(), narrow.end(), host.begin());
    }
    std::vector<int64_t> counts(static_cast<std::size_t>(vocab) + 1, 0);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t v = host[static_cast<std::size_t>(i)];
      nnk::check(v >= 0 && v < vocab, "embedding_backward: id {} (at position {}) is out of range [0, {}) for a weight of V = {} rows",
                 v, i, vocab, vocab);
      if (v != padding_idx) ++counts[static_cast<std::size_t>(v) + 1];
    }
    // Segments: the distinct ids in increasing order, their starts in `positions`.
    std::vector<int64_t> segment_ids, starts{0};
    for (int64_t v = 0; v < vocab; ++v) {
      const int64_t c = counts[static_cast<std::size_t>(v) + 1];
      if (c == 0) continue;
      segment_ids.push_back(v);
      starts.push_back(starts.back() + c);
    }
    if (segment_ids.empty()) return;
    std::vector<int64_t> first(static_cast<std::size_t>(vocab), 0);  // next slot per id
    for (std::size_t s = 0; s < segment_ids.size(); ++s) first[static_cast<std::size_t>(segment_ids[s])] = starts[s];
    std::vector<int64_t> positions(static_cast<std::size_t>(starts.back()));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t v = host[static_cast<std::size_t>(i)];
      if (v != padding_idx) positions[static_cast<std::size_t>(first[static_cast<std::size_t>(v)]++)] = i;
    }
    // One device buffer: positions, then starts, then segment ids.
    std::vector<int64_t> packed(positions);
    packed.insert(packed.end(), starts.begin(), starts.end());
    packed.insert(packed.end(), segment_ids.begin(), segment_ids.end());
    auto* device = static_cast<int64_t*>(rt::VB_KERNEL_NS::malloc(packed.size() * sizeof(int64_t)));
    rt::VB_KERNEL_NS::copy_async(device, packed.data(), packed.size() * sizeof(int64_t), stream);
    const int64_t* d_positions = device;
    const int64_t* d_starts = device + positions.size();
    const int64_t* d_segment_ids = d_starts + starts.size();
    try {
      launch(embedding_backward_kernel<T>, {static_cast<unsigned>(segment_ids.size()), 256, 0, stream},
             static_cast<const T*>(grad), d_positions, d_starts, d_segment_ids, hidden, static_cast<T*>(gweight));
    } catch (...) {
      rt::VB_KERNEL_NS::free(device);
      throw;
    }
    rt::VB_KERNEL_NS::stream_synchronize(stream);  // the packed host buffer and the device copy die here
    rt::VB_KERNEL_NS::free(device);
  });
}

void index_select(const void* x, int64_t outer, int64_t n, int64_t inner, DType dtype, const int64_t* idx, int64_t m,
                  void* out, rt::Stream stream) {
  if (outer * m * inner == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  nnk::dispatch_bytes(dtype, [&](auto tag) {
    using E = decltype(tag);
    launch(index_select_kernel<E>, {blocks_for(outer * m * inner, 256), 256, 0, stream}, static_cast<const E*>(x),
           outer, n, inner, idx, m, static_cast<E*>(out), error);
  });
  check_reported("index_select", "index", idx, true, n, fmt::format(fmt::runtime("a dim of size {}"), n), stream);
}

void index_add(void* out, int64_t outer, int64_t n, int64_t inner, DType dtype, const int64_t* idx, int64_t m,
               const void* src, rt::Stream stream) {
  if (outer * inner * m == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  dispatch_addable(dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    launch(index_add_kernel<T>, {blocks_for(outer * inner, 256), 256, 0, stream}, static_cast<T*>(out), outer, n,
           inner, idx, m, static_cast<const T*>(src), error);
  });
  check_reported("index_add", "index", idx, true, n, fmt::format(fmt::runtime("a dim of size {}"), n), stream);
}

void gather(const void* x, const IndexGeometry& geometry, DType dtype, const int64_t* idx, void* out,
            rt::Stream stream) {
  nnk::check(geometry.ndim >= 1 && geometry.ndim <= IndexGeometry::kMaxDims && geometry.dim >= 0 &&
                 geometry.dim < geometry.ndim,
             "gather: expected 1 to {} dims and dim in range, got {} dims, dim {}", int(IndexGeometry::kMaxDims),
             geometry.ndim, geometry.dim);
  int64_t count = 1;
  for (int d = 0; d < geometry.ndim; ++d) count *= geometry.index_shape[d];
  if (count == 0) return;
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  nnk::dispatch_bytes(dtype, [&](auto tag) {
    using E = decltype(tag);
    launch(gather_kernel<E>, {blocks_for(count, 256), 256, 0, stream}, static_cast<const E*>(x), geometry, idx,
           count, static_cast<E*>(out), error);
  });
  check_reported("gather", "index", idx, true, geometry.size, dim_of_size(geometry.dim, geometry.size), stream);
}

void scatter_add(void* out, const IndexGeometry& geometry, DType dtype, const int64_t* idx, const void* src,
                 rt::Stream stream) {
  nnk::check(geometry.ndim >= 1 && geometry.ndim <= IndexGeometry::kMaxDims && geometry.dim >= 0 &&
                 geometry.dim < geometry.ndim,
             "scatter_add: expected 1 to {} dims and dim in range, got {} dims, dim {}",
             int(IndexGeometry::kMaxDims), geometry.ndim, geometry.dim);
  int64_t count = 1;
  for (int d = 0; d < geometry.ndim; ++d) count *= geometry.index_shape[d];
  if (count == 0) return;
  const int64_t lines = count / geometry.index_shape[geometry.dim];
  unsigned long long* error = nnk::ErrorRecord::arm(stream);
  dispatch_addable(dtype, "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    launch(scatter_add_kernel<T>, {blocks_for(lines, 256), 256, 0, stream}, static_cast<T*>(out), geometry, idx,
           lines, static_cast<const T*>(src), error);
  });
  check_reported("scatter_add", "index", idx, true, geometry.size, dim_of_size(geometry.dim, geometry.size), stream);
}

}  // namespace vb::VB_KERNEL_NS
