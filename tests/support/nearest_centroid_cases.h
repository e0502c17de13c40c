// Backend::nearest_centroid on a device (`emu` under the kernel emulator, `cuda` on a GPU) against the CPU
// backend, written once: tests/emu/nearest_centroid.cpp and tests/gpu/nearest_centroid.cpp include this
// after their device harness (tests/support/emu_harness.h, gpu_harness.h), whose device_under_test() and
// run_orders (the op on the device, under four fiber orders or twice, the same bytes every time) it uses.
//
// Tolerance: none. The kernel and the CPU backend do the same float32 operations in the same order
// (kernels/backend.h: one fma per dim in increasing dim, centroids scanned upwards with a strict <), so
// index and distance must be bit-identical to the CPU's, NaN rows included. Allocations are poisoned
// (0xFF bytes: NaN distances, index −1), so a row the kernel leaves unwritten fails.
// Shapes are odd against the kernel's tiles (128 rows per block, 16 centroids per chunk, 32 dims per
// slice): N and K not multiples of them, one past and one short, D = 1, K = 1, N = 0; and integer data
// with duplicated centroids, whose exact ties must go to the smallest index (checked against a host
// brute force too).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/support/check.h"

namespace nearest_centroid_test {

using namespace vb;

using vb::test::bytes_of;

struct Result {
  Tensor index, distance;  // on the CPU
};

// The op on the device for x and centroids (CPU tensors, moved there; `view` applied on the device),
// under the includer's orders.
inline Result on_device(const Tensor& x, const Tensor& centroids,
                        const std::function<Tensor(const Tensor&)>& view = {}) {
  const Device dev = device_under_test();
  const Tensor dx = to(x, dev), dc = to(centroids, dev);
  const Tensor input = view ? view(dx) : dx;
  const int64_t n = input.size(0);
  const std::vector<uint8_t> bytes = run_orders([&] {
    const NearestCentroid r = nearest_centroid(input, dc);
    std::vector<uint8_t> out = bytes_of(r.index), d = bytes_of(r.distance);
    out.insert(out.end(), d.begin(), d.end());
    return out;
  });
  Result r{Tensor::empty({n}, DType::Int64), Tensor::empty({n}, DType::Float32)};
  REQUIRE(bytes.size() == size_t(n) * 12);
  if (n > 0) {
    std::memcpy(r.index.data_ptr(), bytes.data(), size_t(n) * 8);
    std::memcpy(r.distance.data_ptr(), bytes.data() + size_t(n) * 8, size_t(n) * 4);
  }
  return r;
}

// The CPU backend's answer for the same inputs.
inline Result on_cpu(const Tensor& x, const Tensor& centroids) {
  Result r{Tensor::empty({x.size(0)}, DType::Int64), Tensor::empty({x.size(0)}, DType::Float32)};
  cpu_backend().nearest_centroid(x, centroids, r.index, r.distance);
  return r;
}

inline void check_identical(const Result& got, const Result& want, const std::string& what) {
  CHECK_MESSAGE(bytes_of(got.index) == bytes_of(want.index), what, ": indices differ from the CPU backend's");
  CHECK_MESSAGE(bytes_of(got.distance) == bytes_of(want.distance), what,
                ": distances differ from the CPU backend's in some bit");
}

// Values of a normal draw, rounded to dtype (the device and the CPU see the same values).
inline Tensor normal(const Shape& shape, uint64_t seed, DType dtype) {
  Generator g{seed, 0};
  return contiguous(to(randn(shape, &g), dtype));
}

// Integers in [lo, hi] as float32.
inline Tensor integers(const Shape& shape, int64_t lo, int64_t hi, uint64_t seed) {
  Generator g{seed, 0};
  return to(randint(lo, hi + 1, shape, &g), DType::Float32);
}

}  // namespace nearest_centroid_test

using namespace nearest_centroid_test;

TEST_CASE("nearest_centroid on the device gives the CPU backend's bits, at shapes odd against its tiles") {
  struct Size {
    int64_t n, k, d;
  };
  // One past and one short of 128 rows, 16 centroids, 32 dims; D = 1; K = 1; several blocks and chunks.
  const std::vector<Size> sizes = {{1, 1, 1},     {129, 1, 7},    {130, 5, 1},   {127, 16, 32}, {129, 17, 33},
                                   {300, 40, 70}, {3, 100, 130},  {257, 31, 64}, {0, 3, 4}};
  for (DType dtype : {DType::Float32, DType::BFloat16, DType::Float16}) {
    for (const Size& s : sizes) {
      if (dtype != DType::Float32 && s.n * s.k * s.d > 100000) continue;  // the half types at a few shapes
      const std::string what = fmt::format("{} N={} K={} D={}", dtype_name(dtype), s.n, s.k, s.d);
      CAPTURE(what);
      const Tensor x = normal({s.n, s.d}, 10 + uint64_t(s.n), dtype);
      const Tensor c = normal({s.k, s.d}, 20 + uint64_t(s.k), dtype);
      check_identical(on_device(x, c), on_cpu(x, c), what);
    }
  }
}

TEST_CASE("nearest_centroid: exact ties go to the smallest index, on the device as on the CPU") {
  // Integer coordinates make every distance exact in any order, so ties are real ties: x in [−2, 2]³,
  // 20 centroids in [−1, 1]³ with rows 5 and 17 copies of rows 2 and 9.
  const int64_t n = 200, k = 20, d = 3;
  const Tensor x = integers({n, d}, -2, 2, 31);
  Tensor c = contiguous(integers({k, d}, -1, 1, 32));
  Tensor row5 = narrow(c, 0, 5, 1), row17 = narrow(c, 0, 17, 1);
  copy_(row5, narrow(c, 0, 2, 1));
  copy_(row17, narrow(c, 0, 9, 1));
  const Result got = on_device(x, c);
  check_identical(got, on_cpu(x, c), "ties");
  const std::vector<double> xv = x.to_vector(), cv = c.to_vector(), gi = got.index.to_vector(),
                            gd = got.distance.to_vector();
  int64_t tied = 0;
  for (int64_t i = 0; i < n; ++i) {
    double best = INFINITY;
    int64_t arg = -1, attaining = 0;
    for (int64_t j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t e = 0; e < d; ++e) {
        const double diff = xv[size_t(i * d + e)] - cv[size_t(j * d + e)];
        s += diff * diff;
      }
      if (s < best) {
        best = s;
        arg = j;
        attaining = 0;
      }
      attaining += s == best;
    }
    tied += attaining > 1;
    CHECK_MESSAGE(gi[size_t(i)] == double(arg), "row ", i, ": index ", gi[size_t(i)], ", expected ", arg);
    CHECK(gd[size_t(i)] == best);
  }
  CHECK(tied > 20);  // the case does exercise ties
}

TEST_CASE("nearest_centroid: NaN rows and NaN centroids, non-contiguous inputs") {
  const int64_t n = 140, k = 19, d = 9;
  Tensor x = contiguous(normal({n, d}, 41, DType::Float32));
  Tensor c = contiguous(normal({k, d}, 42, DType::Float32));
  Tensor bad_row = narrow(narrow(x, 0, 3, 1), 1, 4, 1), bad_centroid = narrow(narrow(c, 0, 0, 1), 1, 2, 1);
  fill_(bad_row, NAN);       // row 3: every distance NaN → index 0, distance NaN
  fill_(bad_centroid, NAN);  // centroid 0: never beats a number
  const Result got = on_device(x, c);
  check_identical(got, on_cpu(x, c), "NaN");
  CHECK(got.index.at({3}) == 0);
  CHECK(std::isnan(got.distance.at({3})));
  for (int64_t i = 0; i < n; ++i)
    if (i != 3) CHECK(got.index.at({i}) != 0);
  // x read through a transposed view (the backend makes it contiguous on the device).
  const Tensor xt = contiguous(transpose(x, 0, 1));  // (D, N)
  check_identical(on_device(xt, c, [](const Tensor& v) { return transpose(v, 0, 1); }), on_cpu(x, c), "transposed x");
}

TEST_CASE("nearest_centroid on the device rejects what the CPU rejects, naming the shapes") {
  const Device dev = device_under_test();
  const Tensor x = to(normal({4, 3}, 51, DType::Float32), dev);
  CHECK(test::error_of([&] { nearest_centroid(x, to(normal({0, 3}, 52, DType::Float32), dev)); })
            .find("at least one centroid") != std::string::npos);
  CHECK(test::error_of([&] { nearest_centroid(x, to(normal({2, 4}, 53, DType::Float32), dev)); })
            .find("(4, 3)") != std::string::npos);
  CHECK(test::error_of([&] { nearest_centroid(x, to(normal({2, 3}, 54, DType::BFloat16), dev)); })
            .find("one dtype") != std::string::npos);
}
