// matmul and linear on the CPU: values against a triple loop in double and against a broadcast
// multiply-and-sum (a path that never touches the GEMM kernel), for PyTorch's 1-d/2-d/batched/broadcast
// rules, strided operands, size-1 and empty dims, half dtypes; float64 gradient checks; bad input.
// The packed GEMM (kernels/cpu/gemm.cpp) gets its own cases at the edges of its blocking: sizes that are
// not multiples of its tiles and blocks, K = 1, transposed and strided views, broadcast batches, and
// bitwise-equal results on 1 and several threads.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm_parts.h"
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

// (M, K)·(K, N) by loops over the values, k ascending, accumulated in T (double: the reference; float: the
// naive float32 product whose error the GEMM's is judged against).
template <typename T>
std::vector<T> naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  std::vector<T> out(size_t(m * n), T(0));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const T x = T(av[size_t(i * k + p)]);
      for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] += x * T(bv[size_t(p * n + j)]);
    }
  return out;
}

double max_abs_diff(const std::vector<double>& x, const std::vector<double>& ref) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - ref[i]));
  return worst;
}

// The GEMM's product a·b in `dt`, checked against the float64 loop: float64 within 1e-12 (values in [−1, 1],
// K ≤ 1000: rounding stays near 1e-14); float32 within twice the error of the naive float32 loop plus
// 4·K·u, u = 2⁻²⁴ (blocked summation is no worse than sequential summation on average, but either can be
// luckier on a given shape; a sum of K products of values in [−1, 1] has a rounding error of about
// √K·u·√(K/9) = K·u/3 typically and K²·u at worst — a wrong tile or a lost block would be off by ~0.1).
void check_gemm(const Tensor& a, const Tensor& b, DType dt, const std::string& what) {
  const Tensor ad = to(a, dt), bd = to(b, dt);  // rounded inputs: both references use exactly these values
  const Tensor got = matmul(ad, bd);
  REQUIRE(got.shape() == Shape{a.size(0), b.size(1)});
  const std::vector<double> ref_in_a = naive_matmul<double>(to(ad, DType::Float64), to(bd, DType::Float64));
  const double err = max_abs_diff(got.to_vector(), ref_in_a);
  if (dt == DType::Float64) {
    CHECK_MESSAGE(err <= 1e-12, what, ": max |error| ", err);
  } else {
    const std::vector<float> naive = naive_matmul<float>(to(ad, DType::Float64), to(bd, DType::Float64));
    const double naive_err = max_abs_diff(std::vector<double>(naive.begin(), naive.end()), ref_in_a);
    const double slack = 4.0 * double(a.size(1)) * std::ldexp(1.0, -24);
    CHECK_MESSAGE(err <= 2 * naive_err + slack, what, ": max |error| ", err, " vs naive float32 ", naive_err);
  }
}

}  // namespace

TEST_CASE("GEMM block edges with transposed operands (weights read as (in, out), gradients' Aᵀ)") {
  // Column-major A and B take the packing paths that transpose: B 16 k at a time (through registers for
  // float32 with AVX-512, whole 32-column panels only) with the rest element by element, A through a tile.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1}, {13, 15, 33}, {12, 16, 32}, {13, 385, 33}, {25, 769, 65}, {7, 193, 130}, {100, 200, 700}, {3, 47, 96},
  };
  for (auto [m, k, n] : shapes) {
    for (DType dt : {DType::Float32, DType::Float64}) {
      const Tensor at = to(uniform({k, m}, uint64_t(70 + m)), dt), bt = to(uniform({n, k}, uint64_t(71 + n)), dt);
      const std::string what = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) + " " +
                               std::string(dtype_name(dt));
      const Tensor a = transpose(at, 0, 1), b = transpose(bt, 0, 1);  // (m, k) and (k, n), column-major
      REQUIRE((a.stride(0) == 1 || m == 1));
      check_gemm(a, b, dt, what + " Aᵀ·Bᵀ");
      check_gemm(contiguous(a), b, dt, what + " A·Bᵀ");
      check_gemm(a, contiguous(b), dt, what + " Aᵀ·B");
    }
  }
}

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

TEST_CASE("matmul_bias adds the bias before the one rounding of half types, over every batch") {
  // The CPU backend's definition, which the GPU's cuBLASLt bias epilogue follows: out = round(a·b + bias)
  // with the product and the sum in float32. Its bits equal float32 matmul, then add, then one rounding.
  // The GEMMs add the bias as they store the sums (the float32 micro-kernel, the bfloat16 tiles' epilogue): the
  // shapes cross their blocks (12 × 32 and 32 × 32 tiles with edges, K slices of 384 and 256 floats).
  const std::vector<std::array<int64_t, 4>> shapes = {{2, 7, 13, 6}, {1, 50, 800, 70}, {2, 33, 300, 64}};
  for (const auto& [bt, m, k, n] : shapes) {
    const Tensor a = uniform({bt, m, k}, 50), b = uniform({bt, k, n}, 51), bias = uniform({n}, 52);
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16, DType::Float64}) {
      INFO(dtype_name(dt), " ", bt, "x", m, "x", k, "x", n);
      const DType work = dt == DType::Float64 ? DType::Float64 : DType::Float32;
      const Tensor al = to(to(a, dt), work), bl = to(to(b, dt), work), biasl = to(to(bias, dt), work);
      Tensor out = Tensor::empty({bt, m, n}, dt);
      vb::cpu_backend().matmul_bias(to(al, dt), to(bl, dt), to(biasl, dt), out);
      const Tensor want = to(add(matmul(al, bl), biasl), dt);
      CHECK(to(out, DType::Float64).to_vector() == to(want, DType::Float64).to_vector());
    }
  }
  const Tensor a = uniform({2, 7, 13}, 50), b = uniform({2, 13, 6}, 51);
  Tensor out = Tensor::empty({2, 7, 6});
  CHECK_THROWS_WITH_AS(vb::cpu_backend().matmul_bias(to(a, DType::Float32), to(b, DType::Float32),
                                                     to(uniform({5}, 53), DType::Float32), out),
                       doctest::Contains("matmul_bias: bias (5)"), vb::Error);
}

TEST_CASE("matmul_add adds the product to out's values: every dtype, transposed operands and out, K slices") {
  // out += a·b (a GEMM with β = 1: the sums start from out's values), against loops in double. float32 and
  // float64 run in place; bfloat16 operands with a float32 out (the CPU's mixed precision) too; half outs and
  // a strided out go through a float32 copy and one rounding. Shapes cross the tiles and the K slices.
  const std::vector<std::array<int64_t, 4>> shapes = {{2, 7, 13, 6}, {1, 50, 800, 70}, {1, 33, 300, 64}};
  for (const auto& [bt, m, k, n] : shapes)
    for (const bool transposed_b : {false, true}) {
      const Tensor a = uniform({bt, m, k}, 54);
      const Tensor b = transposed_b ? transpose(uniform({bt, n, k}, 55), 1, 2) : uniform({bt, k, n}, 55);
      const Tensor c0 = uniform({bt, m, n}, 56);
      struct Kind {
        DType operands, out;
        double tol;
      };
      for (const Kind kind : {Kind{DType::Float64, DType::Float64, 1e-13}, Kind{DType::Float32, DType::Float32, 1e-5},
                              Kind{DType::BFloat16, DType::Float32, 1e-5}, Kind{DType::BFloat16, DType::BFloat16, 8e-3},
                              Kind{DType::Float16, DType::Float16, 1e-3}}) {
        INFO(dtype_name(kind.operands), " → ", dtype_name(kind.out), " ", bt, "x", m, "x", k, "x", n,
             transposed_b ? " (b transposed)" : "");
        const Tensor al = to(a, kind.operands), bl = to(b, kind.operands);
        Tensor out = to(c0, kind.out);
        // The reference: the rounded operands and the rounded starting values, in double.
        Tensor want = add(to(out, DType::Float64), matmul(to(al, DType::Float64), to(bl, DType::Float64)));
        vb::cpu_backend().matmul_add(al, bl, out);
        check_close(to(out, DType::Float64), want, kind.tol, kind.tol, "matmul_add");
      }
      // A strided out (a transposed view of a contiguous tensor): through a float32 copy, written back in place.
      Tensor storage = transpose(to(contiguous(transpose(c0, 1, 2)), DType::Float32), 1, 2);
      REQUIRE(!storage.is_contiguous());
      const Tensor want = add(to(storage, DType::Float64), matmul(to(a, DType::Float64), to(b, DType::Float64)));
      vb::cpu_backend().matmul_add(to(a, DType::Float32), to(b, DType::Float32), storage);
      check_close(to(storage, DType::Float64), want, 1e-5, 1e-5, "matmul_add into a transposed view");
    }
  Tensor out = Tensor::empty({2, 7, 5});
  CHECK_THROWS_WITH_AS(vb::cpu_backend().matmul_add(uniform({2, 7, 13}, 50), uniform({2, 13, 6}, 51), out),
                       doctest::Contains("cpu matmul_add: expected a (Bt, M, K), b (Bt, K, N), out (Bt, M, N)"),
                       vb::Error);
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
  gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
            {uniform({5}, 42), uniform({4, 5}, 43), uniform({4}, 44)}, "linear of a 1-d input");
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

TEST_CASE("GEMM block edges: odd sizes, K = 1, several K, M and N blocks") {
  // Tiles are 12 × 32 floats (AVX-512), K blocks 384 floats / 192 doubles, N blocks 320–672 (by the L2 size), M blocks 3072 rows.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},     {1, 385, 1},   {13, 1, 33},    {12, 384, 32},  {13, 385, 33}, {25, 769, 65},
      {7, 193, 130}, {100, 200, 700}, {3100, 7, 40}, {2, 1000, 3},  {64, 64, 1},   {31, 5, 2},
  };
  for (auto [m, k, n] : shapes) {
    const Tensor a = uniform({m, k}, uint64_t(60 + m)), b = uniform({k, n}, uint64_t(61 + n));
    const std::string what = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    for (DType dt : {DType::Float32, DType::Float64}) check_gemm(a, b, dt, what + " " + std::string(dtype_name(dt)));
  }
}

TEST_CASE("GEMM operands: transposed and strided views at block-crossing sizes") {
  // (200 rows of a transposed A: more than one group of packed panels, and a partial one.)
  for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{13, 385, 33}, {50, 9, 345}, {1, 400, 70}, {200, 37, 45}}) {
    const std::string what = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    const Tensor at = transpose(uniform({k, m}, 70), 0, 1), bt = transpose(uniform({n, k}, 71), 0, 1);
    const Tensor as = slice(uniform({m, 2 * k}, 72), 1, 0, 2 * k, 2);  // column stride 2
    const Tensor bs = slice(uniform({2 * k, n}, 73), 0, 1, 2 * k, 2);  // row stride 2·n, offset one row
    const Tensor ac = uniform({m, k}, 74), bc = uniform({k, n}, 75);
    for (DType dt : {DType::Float32, DType::Float64}) {
      const std::string d(dtype_name(dt));
      check_gemm(at, bc, dt, what + " a transposed " + d);
      check_gemm(ac, bt, dt, what + " b transposed " + d);
      check_gemm(at, bt, dt, what + " both transposed " + d);
      check_gemm(as, bs, dt, what + " both strided " + d);
      check_gemm(as, bt, dt, what + " strided · transposed " + d);
    }
  }
  // The conversions above copy (to() makes contiguous tensors); run the views themselves in float32 too.
  const Tensor big_a = uniform({40, 900}, 76, -1, 1, DType::Float32), big_bt = uniform({180, 450}, 77, -1, 1, DType::Float32);
  const Tensor a = slice(big_a, 1, 1, 900, 2);                       // (40, 450), column stride 2
  const Tensor b = slice(transpose(big_bt, 0, 1), 1, 0, 180, 2);     // (450, 90), row stride 1, column stride 900
  REQUIRE((a.size(1) == 450 && b.size(1) == 90 && b.stride(0) == 1));
  check_close(to(matmul(a, b), DType::Float64), matmul(to(a, DType::Float64), to(b, DType::Float64)), 1e-4, 1e-4,
              "float32 strided view · column view");
  const Tensor gt = uniform({450, 203}, 79, -1, 1, DType::Float32);  // a weight gradient's gYᵀ: A column-major
  check_close(to(matmul(transpose(gt, 0, 1), b), DType::Float64),
              matmul(transpose(to(gt, DType::Float64), 0, 1), to(b, DType::Float64)), 1e-4, 1e-4,
              "float32 transposed A · column view");
  const Tensor wt = uniform({70, 450}, 78, -1, 1, DType::Float32);  // a linear weight (out, in), read transposed
  check_close(to(matmul(a, transpose(wt, 0, 1)), DType::Float64),
              matmul(to(a, DType::Float64), transpose(to(wt, DType::Float64), 0, 1)), 1e-4, 1e-4,
              "float32 · transposed weight view");
}

TEST_CASE("GEMM batches: broadcast batch operands, many small and few large products") {
  // a broadcast over b's batch (stride-0 batch): small products, one per thread.
  const Tensor a = uniform({2, 1, 37, 50}, 80, -1, 1, DType::Float32), b = uniform({3, 50, 41}, 81, -1, 1, DType::Float32);
  check_close(to(matmul(a, b), DType::Float64), broadcast_matmul(to(a, DType::Float64), to(b, DType::Float64)), 1e-4,
              1e-4, "broadcast batch float32");
  // Products above the small-product limit (2^21 multiply-adds) run one after another, each threaded.
  const Tensor x = uniform({2, 150, 130}, 82, -1, 1, DType::Float32), y = uniform({130, 120}, 83, -1, 1, DType::Float32);
  const Tensor xy = matmul(x, expand(unsqueeze(y, 0), {2, 130, 120}));
  check_close(to(xy, DType::Float64), broadcast_matmul(to(x, DType::Float64), to(y, DType::Float64)), 1e-4, 1e-4,
              "large batched float32");
}

TEST_CASE("GEMM results are bitwise the same on 1 and several threads") {
  const int saved = omp_get_max_threads();
  const Tensor a = uniform({301, 777}, 90, -1, 1, DType::Float32), b = uniform({777, 650}, 91, -1, 1, DType::Float32);
  const Tensor bt = transpose(uniform({650, 777}, 92, -1, 1, DType::Float32), 0, 1);
  const Tensor at = transpose(uniform({777, 301}, 93, -1, 1, DType::Float32), 0, 1);  // packed in groups of panels
  omp_set_num_threads(1);
  const std::vector<double> one = matmul(a, b).to_vector(), one_t = matmul(a, bt).to_vector();
  const std::vector<double> one_at = matmul(at, b).to_vector();
  check_close(Tensor::from_vector(one_at, {301, 650}, DType::Float64),
              matmul(to(at, DType::Float64), to(b, DType::Float64)), 1e-4, 1e-4, "transposed A on one thread");
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    CHECK(matmul(a, b).to_vector() == one);
    CHECK(matmul(a, bt).to_vector() == one_t);
    CHECK(matmul(at, b).to_vector() == one_at);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("GEMM task grid: every tile once, blocks within L2, a whole number of tasks per thread") {
  using cpu::gemm_parts::TaskGrid;
  // 512 × 1024 × 4096 in float32 (12 × 32 tiles, 672-column blocks with a 2 MB L2) on 2 threads: 128 column
  // panels need 7 blocks; 8 blocks × 1 row range pack B once, where 7 × 2 (the earlier rule) packed it twice.
  const TaskGrid wide(2, 512, 4096, 12, 32, 672);
  CHECK(wide.n_blocks == 8);
  CHECK(wide.m_slices == 1);
  // Every grid covers each (row panel, column) exactly once, with NC a whole number of panels within nc_max.
  for (int threads : {2, 3, 4, 8})
    for (int64_t M : {1, 12, 100, 512, 2048, 25088})
      for (int64_t N : {1, 32, 64, 256, 1000, 3072, 4096})
        for (int64_t nc_max : {320, 672}) {
          const TaskGrid g(threads, M, N, 12, 32, nc_max);
          CAPTURE(threads);
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(nc_max);
          REQUIRE(g.NC % 32 == 0);
          REQUIRE(g.NC <= nc_max);
          std::vector<int> hits(size_t(g.m_panels * N), 0);
          for (int64_t t = 0; t < g.tasks; ++t) {
            const auto r = g.range(t, N);
            for (int64_t ip = r.ip0; ip < r.ip1; ++ip)
              for (int64_t j = r.jc; j < r.jc + r.nc; ++j) ++hits[size_t(ip * N + j)];
          }
          CHECK(std::count(hits.begin(), hits.end(), 1) == int64_t(hits.size()));
          // Tasks come in whole rounds of threads wherever the tiles allow at least two per thread.
          if (g.m_panels * ((N + 31) / 32) >= 4 * threads) CHECK(g.tasks % threads == 0);
        }
}

TEST_CASE("GEMM edge panels: a row's bits do not depend on how many rows share its panel") {
  // The last panel of A, with M mod 12 rows, runs a kernel of 4, 8 or 12 rows (gemm.cpp's micro_kernel_rows);
  // each element is still the same chain of FMAs, so the rows of an M-row product are bit for bit those of a
  // product in which every row sits in a full panel (24 rows), with a bias added and into existing sums too.
  // The full product is checked against loops in double (float32: K·2⁻²⁴ per unit of |a|·|b| sums, values
  // in [−1, 1]; float64: 1e-12).
  constexpr int64_t kRows = 24, K = 400, N = 70;  // K over one slice (384 floats), N over two tiles and an edge
  auto run = [](auto zero) {
    using T = decltype(zero);
    const Tensor at = uniform({kRows, K}, 110, -1, 1, DType::Float64), bt = uniform({K, N}, 111, -1, 1, DType::Float64);
    const Tensor ct = uniform({kRows, N}, 112, -1, 1, DType::Float64), biast = uniform({N}, 113, -1, 1, DType::Float64);
    std::vector<T> a, b, c0, bias;
    for (double x : at.to_vector()) a.push_back(T(x));
    for (double x : bt.to_vector()) b.push_back(T(x));
    for (double x : ct.to_vector()) c0.push_back(T(x));
    for (double x : biast.to_vector()) bias.push_back(T(x));
    const auto A = cpu::GemmOperand<T>::strided(a.data(), K, 1), B = cpu::GemmOperand<T>::strided(b.data(), N, 1);
    for (bool accumulate : {false, true})
      for (bool with_bias : {false, true}) {
        CAPTURE(accumulate);
        CAPTURE(with_bias);
        std::vector<T> full = c0;
        cpu::gemm<T>(kRows, N, K, A, B, full.data(), N, accumulate, true, with_bias ? bias.data() : nullptr);
        const double tol = std::is_same_v<T, float> ? double(K) * std::ldexp(1.0, -24) : 1e-12;
        for (int64_t i = 0; i < kRows; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double s = (accumulate ? double(c0[size_t(i * N + j)]) : 0.0) + (with_bias ? double(bias[size_t(j)]) : 0.0);
            for (int64_t p = 0; p < K; ++p) s += double(a[size_t(i * K + p)]) * double(b[size_t(p * N + j)]);
            REQUIRE(std::abs(double(full[size_t(i * N + j)]) - s) <= tol);
          }
        for (int64_t m = 1; m < kRows; ++m) {  // last panels of 1 … 11 rows, and a full one (m = 12)
          CAPTURE(m);
          std::vector<T> part(c0.begin(), c0.begin() + m * N);
          cpu::gemm<T>(m, N, K, A, B, part.data(), N, accumulate, true, with_bias ? bias.data() : nullptr);
          CHECK(std::equal(part.begin(), part.end(), full.begin()));
        }
      }
  };
  run(float(0));
  run(double(0));
}

// Values uniform in [−1, 1), drawn in float64 and rounded to T.
template <typename T>
std::vector<T> uniform_values(const std::vector<int64_t>& shape, uint64_t seed) {
  std::vector<T> v;
  for (double x : uniform(shape, seed, -1, 1, DType::Float64).to_vector()) v.push_back(T(x));
  return v;
}

// A (M, K), B (K, ldb) and C₀ (M, N) row-major, and a bias (N): uniform values from seeds seed … seed + 3.
template <typename T>
struct GemmValues {
  std::vector<T> a, b, c0, bias;
  GemmValues(int64_t M, int64_t K, int64_t N, int64_t ldb, uint64_t seed)
      : a(uniform_values<T>({M, K}, seed)),
        b(uniform_values<T>({K, ldb}, seed + 1)),
        c0(uniform_values<T>({M, N}, seed + 2)),
        bias(uniform_values<T>({N}, seed + 3)) {}
};

// A row-major matrix (rows, cols) as a GEMM operand: read where it lies, or, when `transposed`, from a
// column-major copy (A column-major: a weight gradient's gYᵀ; B column-major: a linear layer's weight).
template <typename T>
struct StoredOperand {
  std::vector<T> column_major;
  cpu::GemmOperand<T> op;
  StoredOperand(const std::vector<T>& m, int64_t rows, int64_t cols, bool transposed) {
    if (!transposed) {
      op = cpu::GemmOperand<T>::strided(m.data(), cols, 1);
      return;
    }
    column_major.resize(m.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) column_major[size_t(c * rows + r)] = m[size_t(r * cols + c)];
    op = cpu::GemmOperand<T>::strided(column_major.data(), 1, rows);
  }
  StoredOperand(const StoredOperand&) = delete;  // op points into column_major
  StoredOperand& operator=(const StoredOperand&) = delete;
};

// Calls f(threads, accumulate) on 1 and 2 OpenMP threads, each without and with accumulation into C, and
// restores the thread count.
template <typename F>
void on_1_and_2_threads(F&& f) {
  const int saved_threads = omp_get_max_threads();
  for (int threads : {1, 2})
    for (bool accumulate : {false, true}) {
      CAPTURE(threads);
      CAPTURE(accumulate);
      omp_set_num_threads(threads);
      f(threads, accumulate);
    }
  omp_set_num_threads(saved_threads);
}

// The largest |c − (c0 + bias + a·b)| over C, the reference summed in double: a (M, K) and b (K, ldb ≥ N) row-major.
template <typename T>
double gemm_error_vs_double(int64_t M, int64_t N, int64_t K, const std::vector<T>& a, const std::vector<T>& b,
                            int64_t ldb, const std::vector<T>& c0, const std::vector<T>& bias,
                            const std::vector<T>& c) {
  double worst = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = double(c0[size_t(i * N + j)]) + double(bias[size_t(j)]);
      for (int64_t p = 0; p < K; ++p) s += double(a[size_t(i * K + p)]) * double(b[size_t(p * ldb + j)]);
      worst = std::max(worst, std::abs(double(c[size_t(i * N + j)]) - s));
    }
  return worst;
}

// K rounding errors of float32 (2⁻²⁴ each, values and sums of order 1), or 1e-12 in float64.
template <typename T>
double gemm_tolerance(int64_t K) {
  return std::is_same_v<T, float> ? double(K) * std::ldexp(1.0, -24) : 1e-12;
}

TEST_CASE("GEMM with B read in place: the packed path's bits") {
  // A task of few rows reads a row-major B where it lies (gemm.cpp's g_b_in_place_rows) instead of packing it:
  // the same values in the same order, so the same bits — with panels of B whose rows are wider than the product
  // (a column slice, ldb > N), a last column block that is not whole panels (packed), several K slices, a bias and
  // accumulation, on 1 and 2 threads. One configuration is also checked against loops in double.
  auto run = [](auto zero) {
    using T = decltype(zero);
    for (auto [M, K, N, ldb] : std::vector<std::array<int64_t, 4>>{
             {134, 800, 768, 768}, {7, 1000, 96, 160}, {40, 384, 2100, 2100}, {300, 97, 64, 64}, {25, 50, 70, 70}}) {
      CAPTURE(M);
      CAPTURE(K);
      CAPTURE(N);
      CAPTURE(ldb);
      const GemmValues<T> values(M, K, N, ldb, 120);
      const auto& [a, b, c0, bias] = values;
      const auto A = cpu::GemmOperand<T>::strided(a.data(), K, 1), B = cpu::GemmOperand<T>::strided(b.data(), ldb, 1);
      on_1_and_2_threads([&](int threads, bool accumulate) {
        std::vector<T> packed = c0, in_place = c0;
        const int64_t saved = cpu::gemm_b_in_place_rows(0);
        cpu::gemm<T>(M, N, K, A, B, packed.data(), N, accumulate, true, bias.data());
        cpu::gemm_b_in_place_rows(int64_t(1) << 40);
        cpu::gemm<T>(M, N, K, A, B, in_place.data(), N, accumulate, true, bias.data());
        cpu::gemm_b_in_place_rows(saved);
        CHECK(in_place == packed);
        if (M == 134 && threads == 2 && accumulate)
          CHECK(gemm_error_vs_double(M, N, K, a, b, ldb, c0, bias, in_place) <= gemm_tolerance<T>(K));
      });
    }
  };
  run(float(0));
  run(double(0));
}

TEST_CASE("GEMM: runs of K slices and the B block's size move no bits") {
  // A narrow product takes each A panel through several K slices before the next (gemm.cpp's g_k_inner), and the
  // B block's budget (gemm_b_block_bytes) sets how many column blocks there are: neither changes any sum's order,
  // so every setting gives the bits of the plain order — with several K slices, a transposed A (packed 8 panels
  // at a time), B packed and read in place, a bias and accumulation, on 1 and 2 threads. One configuration per
  // type is also checked against loops in double.
  auto run = [](auto zero) {
    using T = decltype(zero);
    struct Case {
      int64_t M, K, N;
      bool a_transposed, b_transposed;
    };
    for (const Case& cs : std::vector<Case>{{700, 1200, 64, false, false},
                                            {300, 2000, 96, true, false},
                                            {1000, 900, 70, false, true},
                                            {130, 1500, 2100, false, false},
                                            {200, 800, 600, true, true}}) {
      const auto [M, K, N, a_t, b_t] = cs;
      CAPTURE(M);
      CAPTURE(K);
      CAPTURE(N);
      CAPTURE(a_t);
      CAPTURE(b_t);
      const GemmValues<T> values(M, K, N, N, 130);
      const auto& [a, b, c0, bias] = values;
      // The same matrices stored transposed where asked.
      const StoredOperand<T> stored_a(a, M, K, a_t), stored_b(b, K, N, b_t);
      const auto &A = stored_a.op, &B = stored_b.op;
      on_1_and_2_threads([&](int threads, bool accumulate) {
        auto product = [&](bool k_inner, int64_t block_bytes, int64_t in_place_rows) {
          std::vector<T> c = c0;
          const bool saved_k = cpu::gemm_k_inner(k_inner);
          const int64_t saved_bytes = cpu::gemm_b_block_bytes(block_bytes);
          const int64_t saved_rows = cpu::gemm_b_in_place_rows(in_place_rows);
          cpu::gemm<T>(M, N, K, A, B, c.data(), N, accumulate, true, bias.data());
          cpu::gemm_k_inner(saved_k);
          cpu::gemm_b_block_bytes(saved_bytes);
          cpu::gemm_b_in_place_rows(saved_rows);
          return c;
        };
        const std::vector<T> plain = product(false, 0, 0);
        CHECK(product(true, 0, 0) == plain);                  // runs of slices, B packed
        CHECK(product(true, 0, int64_t(1) << 40) == plain);   // runs of slices, B read where it can be
        CHECK(product(true, int64_t(64) << 10, 0) == plain);  // 64 KB blocks: more column blocks, runs of one
        CHECK(product(true, int64_t(8) << 20, 0) == plain);   // 8 MB blocks: one column block, long runs
        CHECK(product(false, int64_t(8) << 20, 1 << 30) == plain);
        if (M == 700 && threads == 2 && accumulate)
          CHECK(gemm_error_vs_double(M, N, K, a, b, N, c0, bias, product(true, 0, 0)) <= gemm_tolerance<T>(K));
      });
    }
  };
  run(float(0));
  run(double(0));
}

TEST_CASE("GEMM with B's rows gathered from pointers: gemm()'s bits for each group") {
  // cpu::gemm_gathered runs `groups` products C_g = A · B_g whose B rows are handed over as pointers (a weight
  // gradient's im2col rows, read where they lie in x). Each C_g must have the bits gemm() gives A · B_g: rows
  // pointed into a matrix with a wider row stride, rows the callback builds in scratch, rows shared by two k
  // (a pointer repeated), N not a whole number of panels, several K slices, more rows than one packed group of
  // A panels (96 with AVX-512), A row-major, transposed or given by a row generator, accumulation, panels of one
  // and of two vectors, on 1 and 2 threads; one configuration also against loops in double. K = 0 gives zeros (or
  // C unchanged when accumulating). bfloat16 operands run in float32 (gemm.h): A widened as it is packed, B's rows
  // as they are loaded, so each C_g has the bits of the float32 gemm() on the widened values (every product of two
  // bfloat16 values is exact in float32).
  auto run = [](auto zero) {
    using T = decltype(zero);
    using C = cpu::gemm_acc_t<T>;  // C's type, and the reference product's
    auto widened = [](const std::vector<T>& v) { return std::vector<C>(v.begin(), v.end()); };
    struct Case {
      int64_t M, K, N, groups;
      int a_kind;  // 0 row-major, 1 transposed (column-major), 2 a row generator
    };
    // (Panels of one vector where they compute fewer padding lanes, N = 42, 70, 33, 130, 24, or where two-vector
    // panels give a thread fewer than two units: N = 64 in one group on 2 threads, not on 1; N = 96 takes two.)
    for (const Case& cs : std::vector<Case>{{8, 1000, 42, 7, 1},
                                            {13, 400, 96, 3, 0},
                                            {150, 900, 70, 2, 1},
                                            {96, 385, 33, 1, 2},
                                            {5, 7, 130, 4, 1},
                                            {8, 500, 64, 1, 1},
                                            {16, 777, 24, 3, 2}}) {
      const auto [M, K, N, groups, a_kind] = cs;
      CAPTURE(M);
      CAPTURE(K);
      CAPTURE(N);
      CAPTURE(groups);
      CAPTURE(a_kind);
      const int64_t ldb = N + 9, padded = cpu::gemm_gathered_row_length<T>(N);
      REQUIRE(padded >= N);
      // B_g lies in one matrix of ldb-wide rows (group g's rows at g·K), with padded − N readable values past the
      // last row's N.
      const std::vector<T> store = uniform_values<T>({groups * K * ldb + padded}, 140),
                           a = uniform_values<T>({M, K}, 141);
      const std::vector<C> a_c = widened(a);
      const StoredOperand<T> stored_a(a, M, K, a_kind == 1);
      cpu::GemmOperand<T> A = stored_a.op;
      if (a_kind == 2)
        A.row = [&](int64_t i, int64_t k0, int64_t n, T* dst) { std::copy_n(a.begin() + i * K + k0, n, dst); };
      // Row k of B_g: every third row built in scratch (a copy of the stored row), every fifth the previous row
      // again, the rest read in place.
      auto source = [&](int64_t g, int64_t k) { return store.data() + (g * K + (k % 5 == 4 ? k - 1 : k)) * ldb; };
      cpu::GemmGatheredB<T> gathered;
      gathered.groups = groups;
      gathered.rows = [&](int64_t g, int64_t k0, int64_t kc, const T** dst, T* scratch) {
        for (int64_t q = 0; q < kc; ++q) {
          const T* row = source(g, k0 + q);
          if ((k0 + q) % 3 == 0) {
            std::copy(row, row + N, scratch + q * padded);
            row = scratch + q * padded;
          }
          dst[q] = row;
        }
      };
      // B_g written out (widened for bfloat16), for gemm().
      std::vector<std::vector<C>> bs(size_t(groups), std::vector<C>(size_t(K * N)));
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t k = 0; k < K; ++k) std::copy(source(g, k), source(g, k) + N, bs[size_t(g)].begin() + k * N);
      const int64_t ldc = N + 3;  // C_g side by side in rows of groups·ldc
      std::vector<C> c0 = uniform_values<C>({M * groups * ldc}, 142);
      on_1_and_2_threads([&](int threads, bool accumulate) {
        std::vector<C> c = c0;
        cpu::gemm_gathered<T>(M, N, K, A, gathered, c.data(), groups * ldc, ldc, accumulate, true);
        // gemm() of A · B_g into the same place of a copy of C, group after group: C_g's bits, and nothing
        // between the groups touched.
        std::vector<C> ref = c0;
        for (int64_t g = 0; g < groups; ++g)
          cpu::gemm<C>(M, N, K, cpu::GemmOperand<C>::strided(a_c.data(), K, 1),
                       cpu::GemmOperand<C>::strided(bs[size_t(g)].data(), N, 1), ref.data() + g * ldc, groups * ldc,
                       accumulate, true);
        CHECK(c == ref);
        if (M == 150 && threads == 2 && !accumulate) {
          std::vector<C> c1(size_t(M * N)), zeros(size_t(M * N), C(0));
          for (int64_t i = 0; i < M; ++i) std::copy_n(c.begin() + i * groups * ldc + ldc, N, c1.begin() + i * N);
          CHECK(gemm_error_vs_double(M, N, K, a_c, bs[1], N, zeros, std::vector<C>(size_t(N), C(0)), c1) <=
                gemm_tolerance<C>(K));
        }
        std::vector<C> empty = c0;
        cpu::gemm_gathered<T>(M, N, 0, A, gathered, empty.data(), groups * ldc, ldc, accumulate, true);
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < groups * ldc; ++j) {
            const bool inside = j % ldc < N;
            if (empty[size_t(i * groups * ldc + j)] !=
                (inside && !accumulate ? C(0) : c0[size_t(i * groups * ldc + j)]))
              FAIL_CHECK("K = 0 wrote " << i << ", " << j);
          }
      });
    }
  };
  run(float(0));
  run(double(0));
  run(bf16());
}

TEST_CASE("GEMM: counting a Linux CPU list (the L3 share that bounds Zen 4's B blocks)") {
  using cpu::gemm_parts::count_cpu_list;
  CHECK(count_cpu_list("0-1") == 2);
  CHECK(count_cpu_list("0") == 1);
  CHECK(count_cpu_list("0-7,16-23") == 16);
  CHECK(count_cpu_list("3,5,9-10") == 4);
  // Not lists: nothing is counted, and the default block size is used.
  CHECK(count_cpu_list("") == 0);
  CHECK(count_cpu_list("x") == 0);
  CHECK(count_cpu_list("7-2") == 0);
  CHECK(count_cpu_list("0-") == 0);
  CHECK(count_cpu_list("1;2") == 0);
  // Whatever this machine is, the budget lies between the smallest and the largest it is ever given.
  const int64_t bytes = cpu::gemm_parts::b_block_bytes_default();
  CHECK(bytes >= int64_t(256) << 10);
  CHECK(bytes <= int64_t(4) << 20);
}
