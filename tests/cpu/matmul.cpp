// matmul and linear on the CPU: values against a triple loop in double and against a broadcast
// multiply-and-sum (a path that never touches the GEMM kernel), for PyTorch's 1-d/2-d/batched/broadcast
// rules, strided operands, size-1 and empty dims, half dtypes; float64 gradient checks; bad input.
#include <array>
#include <string>

#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;
using vb::test::uniform;

namespace {

// (M, K)·(K, N) by loops in double.
Tensor loop_matmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  std::vector<double> out(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += a.at({i, p}) * b.at({p, j});
      out[size_t(i * n + j)] = s;
    }
  return Tensor::from_vector(out, {m, n}, DType::Float64);
}

// matmul of ≥ 2-d operands as Σ_k a[…, i, k, None]·b[…, None, k, j] with broadcasting elementwise ops.
Tensor broadcast_matmul(const Tensor& a, const Tensor& b) { return sum(mul(unsqueeze(a, -1), unsqueeze(b, -3)), {-2}); }

}  // namespace

TEST_CASE("2-d products match a triple loop") {
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{3, 4, 5}, {1, 7, 1}, {6, 1, 3}, {17, 33, 9}}) {
    Tensor a = uniform({m, k}, 1), b = uniform({k, n}, 2);
    const std::string what = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    check_close(matmul(a, b), loop_matmul(a, b), 1e-13, 1e-13, what);
    check_close(to(matmul(to(a, DType::Float32), to(b, DType::Float32)), DType::Float64), loop_matmul(a, b), 1e-5,
                1e-5, what + " float32");
  }
}

TEST_CASE("strided operands: transposed views and non-unit strides") {
  Tensor at = uniform({6, 4}, 3), bt = uniform({5, 6}, 4);
  Tensor a = transpose(at, 0, 1), b = transpose(bt, 0, 1);  // (4, 6) column-major, (6, 5) column-major
  Tensor ref = loop_matmul(a, b);
  check_close(matmul(a, b), ref, 1e-13, 1e-13, "both transposed");
  check_close(matmul(contiguous(a), b), ref, 1e-13, 1e-13, "b transposed");
  check_close(matmul(a, contiguous(b)), ref, 1e-13, 1e-13, "a transposed");
  // Neither inner stride is 1: every other row and column of a larger matrix.
  Tensor big = uniform({8, 12}, 5);
  Tensor s = slice(slice(big, 0, 0, 8, 2), 1, 0, 12, 2);  // (4, 6), strides (24, 2)
  check_close(matmul(s, b), loop_matmul(s, b), 1e-13, 1e-13, "strided a");
  check_close(matmul(transpose(b, 0, 1), transpose(s, 0, 1)), loop_matmul(transpose(b, 0, 1), transpose(s, 0, 1)),
              1e-13, 1e-13, "strided b");
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    Tensor r = matmul(to(s, dt), to(b, dt));
    CHECK(r.dtype() == dt);
    // Inputs rounded to dt, product in double: only the output rounding (≤ half an ulp) remains.
    check_close(to(r, DType::Float64), loop_matmul(to(to(s, dt), DType::Float64), to(to(b, dt), DType::Float64)),
                1e-2, 1e-2, std::string(dtype_name(dt)) + " strided");
  }
}

TEST_CASE("PyTorch's rules: 1-d operands, batches and broadcast batch dims") {
  Tensor v = uniform({4}, 6), w = uniform({4}, 7), m = uniform({4, 3}, 8), mt = uniform({3, 4}, 9);
  Tensor dot = matmul(v, w);
  CHECK(dot.dim() == 0);
  double s = 0;
  for (int64_t i = 0; i < 4; ++i) s += v.at({i}) * w.at({i});
  CHECK(dot.item() == doctest::Approx(s).epsilon(1e-14));
  Tensor vm = matmul(v, m);  // (3)
  CHECK(vm.shape() == Shape{3});
  check_close(vm, reshape(loop_matmul(reshape(v, {1, 4}), m), {3}), 1e-14, 1e-14, "vector·matrix");
  Tensor mv = matmul(mt, v);  // (3)
  CHECK(mv.shape() == Shape{3});
  check_close(mv, reshape(loop_matmul(mt, reshape(v, {4, 1})), {3}), 1e-14, 1e-14, "matrix·vector");

  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 4, 5}},     // batched
      {{2, 3, 4}, {4, 5}},        // folded into one GEMM
      {{3, 4}, {2, 4, 5}},        // a broadcast over b's batch
      {{2, 1, 3, 4}, {5, 4, 2}},  // broadcast batch dims
      {{1, 3, 4}, {6, 4, 5}},
      {{2, 2, 1, 4}, {4, 1}},     // M = 1, N = 1
  };
  for (const auto& [sa, sb] : cases) {
    Tensor a = uniform(sa, 10), b = uniform(sb, 11);
    const std::string what = shape_str(sa) + "·" + shape_str(sb);
    check_close(matmul(a, b), broadcast_matmul(a, b), 1e-13, 1e-13, what);
  }
  // Batched vector cases: (2, 3, 4)·(4) → (2, 3); (4)·(2, 4, 5) → (2, 5).
  Tensor b3 = uniform({2, 3, 4}, 12), c3 = uniform({2, 4, 5}, 13);
  Tensor r1 = matmul(b3, v), r2 = matmul(v, c3);
  CHECK(r1.shape() == Shape{2, 3});
  CHECK(r2.shape() == Shape{2, 5});
  check_close(r1, sum(mul(b3, v), {-1}), 1e-14, 1e-14, "batched matrix·vector");
  check_close(r2, sum(mul(unsqueeze(v, -1), c3), {-2}), 1e-14, 1e-14, "vector·batched matrix");
}

TEST_CASE("large and many-small products take the threaded paths") {
  Tensor a = uniform({130, 257}, 14, -1, 1, DType::Float32), b = uniform({257, 190}, 15, -1, 1, DType::Float32);
  check_close(to(matmul(a, b), DType::Float64), loop_matmul(to(a, DType::Float64), to(b, DType::Float64)), 1e-4, 1e-4,
              "large float32");
  // 64 small products: one per thread; a transposed batch operand.
  Tensor x = uniform({64, 16, 12}, 16), y = transpose(uniform({64, 20, 12}, 17), 1, 2);  // (64, 12, 20)
  check_close(matmul(x, y), broadcast_matmul(x, y), 1e-13, 1e-13, "batched small");
  // Deterministic.
  CHECK(matmul(a, b).to_vector() == matmul(a, b).to_vector());
}

TEST_CASE("empty inner dim gives zeros; empty outer dims give empty results") {
  Tensor a = zeros({3, 0}, DType::Float64), b = zeros({0, 2}, DType::Float64);
  Tensor r = matmul(a, b);
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.to_vector() == std::vector<double>(6, 0.0));
  CHECK(matmul(zeros({0, 4}, DType::Float64), uniform({4, 2}, 18)).shape() == Shape{0, 2});
}

TEST_CASE("half dtypes match float32 on the same inputs") {
  for (DType dt : {DType::BFloat16, DType::Float16}) {
    Tensor a = to(uniform({2, 9, 31}, 19, -1, 1, DType::Float32), dt);
    Tensor b = to(uniform({31, 7}, 20, -1, 1, DType::Float32), dt);
    Tensor r = matmul(a, b);
    CHECK(r.dtype() == dt);
    // Only the output rounding differs: half an ulp of values up to ~sqrt(31)·(1/3).
    const double tol = dt == DType::BFloat16 ? 2e-2 : 3e-3;
    check_close(to(r, DType::Float32), matmul(to(a, DType::Float32), to(b, DType::Float32)), tol, tol,
                std::string(dtype_name(dt)));
  }
}

TEST_CASE("linear matches matmul with the transposed weight plus bias") {
  Tensor x = uniform({2, 3, 5}, 21), w = uniform({4, 5}, 22), bias = uniform({4}, 23);
  Tensor y = linear(x, w, bias);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t o = 0; o < 4; ++o) {
        double s = bias.at({o});
        for (int64_t c = 0; c < 5; ++c) s += x.at({i, t, c}) * w.at({o, c});
        CHECK(y.at({i, t, o}) == doctest::Approx(s).epsilon(1e-13));
      }
  check_close(linear(x, w), sub(y, bias), 1e-14, 1e-14, "no bias");
  CHECK(linear(uniform({5}, 24), w).shape() == Shape{4});
}

TEST_CASE("gradients of matmul and linear") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4}, {4, 5}}, {{4}, {4}},          {{4}, {4, 3}},        {{3, 4}, {4}},       {{2, 3, 4}, {2, 4, 5}},
      {{2, 3, 4}, {4, 2}}, {{3, 4}, {2, 4, 2}}, {{2, 1, 3, 4}, {3, 4, 2}}, {{1, 1}, {1, 3}}, {{2, 3, 4}, {4}},
  };
  for (const auto& [sa, sb] : cases) {
    gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {uniform(sa, 30), uniform(sb, 31)},
              "matmul " + shape_str(sa) + "·" + shape_str(sb));
  }
  // Transposed and strided operands.
  gradcheck([](const std::vector<Tensor>& in) { return matmul(transpose(in[0], 0, 1), transpose(in[1], -1, -2)); },
            {uniform({4, 3}, 32), uniform({2, 5, 4}, 33)}, "matmul transposed");
  gradcheck([](const std::vector<Tensor>& in) { return matmul(slice(in[0], 1, 0, 8, 2), in[1]); },
            {uniform({3, 8}, 34), uniform({4, 2}, 35)}, "matmul strided");
  gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
            {uniform({2, 3, 5}, 36), uniform({4, 5}, 37), uniform({4}, 38)}, "linear");
  gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, {uniform({3, 5}, 39), uniform({2, 5}, 40)},
            "linear without bias");
  // A product feeding itself: x·x.
  gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[0]); }, {uniform({3, 3}, 41)}, "x·x");
}

TEST_CASE("bad input raises errors naming the op") {
  Tensor a = uniform({3, 4}, 50), b = uniform({5, 2}, 51);
  CHECK_THROWS_WITH_AS(matmul(a, b), doctest::Contains("matmul: shapes (3, 4) and (5, 2) cannot be multiplied"),
                       vb::Error);
  CHECK_THROWS_WITH_AS(matmul(a, to(uniform({4, 2}, 52), DType::Float32)), doctest::Contains("matmul: expected one dtype"),
                       vb::Error);
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4}, {2, 2});
  CHECK_THROWS_WITH_AS(matmul(i, i), doctest::Contains("matmul"), vb::Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::scalar(1.0, DType::Float64), a), doctest::Contains("at least one dim"),
                       vb::Error);
  CHECK_THROWS_WITH_AS(matmul(uniform({2, 3, 4}, 53), uniform({3, 4, 2}, 54)),
                       doctest::Contains("matmul: shapes (2) and (3) do not broadcast"), vb::Error);
  CHECK_THROWS_WITH_AS(linear(uniform({2, 5}, 55), uniform({4, 6}, 56)), doctest::Contains("linear"), vb::Error);
  CHECK_THROWS_WITH_AS(linear(uniform({2, 5}, 55), uniform({4, 5}, 56), uniform({3}, 57)),
                       doctest::Contains("linear: bias"), vb::Error);
}
