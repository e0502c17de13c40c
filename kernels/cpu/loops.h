// Loop helpers shared by the CPU kernels: strided N-tensor iteration with dimension coalescing and
// OpenMP over the outer index, and the float32 staging used for half-precision inputs.
#pragma once
#include <array>
#include <cstdint>
#include <cstdlib>

#include "tensor/tensor.h"

namespace vb::cpu {

// The elements below which a loop stays on one thread, for a given OMP_WAIT_POLICY (null: unset). Opening a
// parallel region wakes the OpenMP workers: 0.7–3 µs on the dev VM while they spin between regions (the
// runtime's default), but with OMP_WAIT_POLICY=passive they sleep, and each region's wake-up through the
// kernel took 60–95 µs there — several times what a 103K-element add takes on one thread (13–15 µs, its
// output allocated; 9 µs on 2 spinning threads). So the grain is 32768 elements, and 8 times that under a
// passive policy (the bench scripts' setting; docs/CPU.md). The kernels give the same bits on any number of
// threads, so the grain changes only where the time goes.
int64_t parallel_grain_for(const char* wait_policy);
inline const int64_t kParallelGrain = parallel_grain_for(std::getenv("OMP_WAIT_POLICY"));
// Innermost runs longer than this are split into chunks of it, so that one contiguous tensor still uses
// every thread (for_each_strided).
constexpr int64_t kParallelChunk = 32768;
// Innermost runs shorter than this are handed out in blocks of consecutive runs (for_each_strided).
constexpr int64_t kShortRun = 256;

// Calls f(offsets, n, inner_strides) for each innermost run of `shape`, where offsets[k] is the element
// offset (relative to tensor k's data_ptr()) of the run's first element, n its length and
// inner_strides[k] the step between its elements. Adjacent dims that are contiguous in every tensor
// are merged first, so contiguous tensors give a single run (split across threads).
template <size_t N, typename F>
void for_each_strided(const Shape& shape, const std::array<Shape, N>& strides, F&& f) {
  const int64_t total = shape_numel(shape);
  if (total == 0) return;
  // Coalesce: drop size-1 dims, merge dim d into d+1 when stride[d] == stride[d+1]·size[d+1] for all k.
  Shape sz;
  std::array<Shape, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sz.empty();
    for (size_t k = 0; k < N && merge; ++k) merge = st[k].back() == strides[k][d] * shape[d];
    if (merge) {
      sz.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) st[k].back() = strides[k][d];
    } else {
      sz.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
    }
  }
  if (sz.empty()) {  // a single element
    sz.push_back(1);
    for (size_t k = 0; k < N; ++k) st[k].push_back(0);
  }
  const int nd = int(sz.size());
  int64_t inner = sz.back();
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = st[k].back();
  const int64_t outer = total / inner;
  // The offsets of run `row`'s first element: row's digits in the outer sizes sz[0 .. nd − 2] (kept in idx when
  // given), each times its strides.
  auto locate = [&](int64_t row, int64_t* idx) {
    std::array<int64_t, N> off{};
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = row % sz[size_t(d)];
      row /= sz[size_t(d)];
      if (idx) idx[d] = i;
      for (size_t k = 0; k < N; ++k) off[k] += i * st[k][size_t(d)];
    }
    return off;
  };
  if (nd > 1 && inner < kShortRun) {
    // Many short runs (a slice of the last dim: 3 channels of 6, a head's 64 values): each of a few blocks of
    // runs finds its first run's offsets by division and steps to the next run as an odometer does, rather
    // than dividing once per run (the tiny preset's 3-of-6-channel frame copy: 1.5 → 0.5 ms on 2 threads).
    const int64_t blocks = std::min<int64_t>(outer, 64);
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t row0 = outer * block / blocks, row1 = outer * (block + 1) / blocks;
      Shape idx(size_t(nd - 1));
      std::array<int64_t, N> off = locate(row0, idx.data());
      for (int64_t row = row0; row < row1; ++row) {
        f(off, inner, inner_strides);
        for (int64_t d = nd - 2; d >= 0; --d) {  // the next run: carry through the dims that wrap
          const size_t u = size_t(d);
          if (++idx[u] < sz[u]) {
            for (size_t k = 0; k < N; ++k) off[k] += st[k][u];
            break;
          }
          idx[u] = 0;
          for (size_t k = 0; k < N; ++k) off[k] -= (sz[u] - 1) * st[k][u];
        }
      }
    }
    return;
  }
  // Split a long innermost run into chunks so that one contiguous tensor still uses every thread.
  const int64_t chunk = inner > kParallelChunk ? kParallelChunk : inner;
  const int64_t chunks_per_row = (inner + chunk - 1) / chunk;
  const int64_t tasks = outer * chunks_per_row;
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t start = (task % chunks_per_row) * chunk;
    std::array<int64_t, N> off = locate(task / chunks_per_row, nullptr);
    for (size_t k = 0; k < N; ++k) off[k] += start * inner_strides[k];
    f(off, std::min(chunk, inner - start), inner_strides);
  }
}

template <typename T>
inline float to_float(T x) {
  return float(x);
}

// A float32 contiguous CPU copy of t (t itself when it already is one).
Tensor float32_contiguous(const Tensor& t);
// A contiguous copy of t with the same dtype (t itself when already contiguous).
Tensor contiguous(const Tensor& t);
// Writes src (any dtype, same shape) into dst, converting.
void copy_into(Tensor& dst, const Tensor& src);

}  // namespace vb::cpu
