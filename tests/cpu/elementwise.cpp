// Elementwise ops on the CPU: forward values against formulas evaluated in double, half dtypes against
// float32, integer and bool ops, float64 gradient checks (broadcasting, non-contiguous, size-1 dims) and
// errors for bad input.
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/loops.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;
using vb::test::uniform;

namespace {

// Applies ref to every element of x (read as double) into a float64 tensor of x's shape.
Tensor map_ref(const Tensor& x, const std::function<double(double)>& ref) {
  std::vector<double> v = x.to_vector();
  for (double& e : v) e = ref(e);
  return Tensor::from_vector(v, x.shape(), DType::Float64);
}

double gelu_erf_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;  // input domain
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -3, 3},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.1, 4},
      {"log1p", [](const Tensor& x) { return log1p(x); }, [](double x) { return std::log1p(x); }, -0.5, 4},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.1, 4},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0.1, 4},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::fabs(x); }, -3, 3},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -6, 6},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, -3, 3},
      {"gelu", [](const Tensor& x) { return gelu(x); }, gelu_erf_ref, -4, 4},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, gelu_tanh_ref, -4, 4},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.1, 3},
      {"pow2", [](const Tensor& x) { return pow(x, 2.0); }, [](double x) { return x * x; }, -3, 3},
      {"pow-1", [](const Tensor& x) { return pow(x, -1.0); }, [](double x) { return 1 / x; }, 0.5, 3},
      {"add_scalar", [](const Tensor& x) { return x + 1.5; }, [](double x) { return x + 1.5; }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return x * -2.5; }, [](double x) { return x * -2.5; }, -3, 3},
      {"rsub", [](const Tensor& x) { return 2.0 - x; }, [](double x) { return 2 - x; }, -3, 3},
      {"div_scalar", [](const Tensor& x) { return x / 4.0; }, [](double x) { return x / 4; }, -3, 3},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(std::max(x, -0.5), 0.7); }, -2, 2},
      {"clamp_min", [](const Tensor& x) { return clamp(x, 0.3, std::nullopt); },
       [](double x) { return std::max(x, 0.3); }, -2, 2},
      {"clamp_max", [](const Tensor& x) { return clamp(x, std::nullopt, 0.3); },
       [](double x) { return std::min(x, 0.3); }, -2, 2},
  };
}

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
  double lo, hi;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; }, -2, 2},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; }, -2, 2},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; }, -2, 2},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; }, 0.5, 2},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double a, double b) { return std::max(a, b); }, -2, 2},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double a, double b) { return std::min(a, b); }, -2, 2},
  };
}

// out[i, j, k] of a (3, 1, 4) and b (5, 1) broadcast to (3, 5, 4), by explicit index arithmetic.
Tensor broadcast_ref(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& ref) {
  std::vector<double> v;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 4; ++k) v.push_back(ref(a.at({i, 0, k}), b.at({j, 0})));
  return Tensor::from_vector(v, {3, 5, 4}, DType::Float64);
}

}  // namespace

TEST_CASE("unary ops match their formulas in float64 and float32") {
  for (const UnaryCase& c : unary_cases()) {
    Tensor x = uniform({7, 33}, 1, c.lo, c.hi);
    check_close(c.op(x), map_ref(x, c.ref), 1e-12, 1e-12, c.name + " float64");
    Tensor x32 = to(x, DType::Float32);
    check_close(to(c.op(x32), DType::Float64), map_ref(x32, c.ref), 1e-6, 1e-5, c.name + " float32");
    // A transposed (non-contiguous) input gives the transposed result.
    check_close(c.op(transpose(x, 0, 1)), transpose(map_ref(x, c.ref), 0, 1), 1e-12, 1e-12, c.name + " transposed");
  }
}

TEST_CASE("gelu matches known values") {
  Tensor x = Tensor::from_vector(std::vector<double>{-3, -1, 0, 0.5, 1, 3}, {6}, DType::Float64);
  // Φ(1) = 0.8413447460685429; tanh form at 1: 0.8411919906082768.
  check_close(slice(gelu(x), 0, 4, 5), Tensor::from_vector(std::vector<double>{0.8413447460685429}, {1}, DType::Float64),
              1e-15, 0, "gelu(1)");
  check_close(slice(gelu(x, true), 0, 4, 5),
              Tensor::from_vector(std::vector<double>{0.8411919906082768}, {1}, DType::Float64), 1e-15, 0,
              "gelu_tanh(1)");
  check_close(gelu(x), map_ref(x, gelu_erf_ref), 1e-15, 1e-14, "gelu erf");
  check_close(gelu(x, true), map_ref(x, gelu_tanh_ref), 1e-15, 1e-14, "gelu tanh");
}

TEST_CASE("float32 exp, sigmoid, tanh and gelu stay accurate over their whole range") {
  // exp: relative error within a few float32 ulps from deep underflow to overflow.
  Tensor x = Tensor::from_vector(std::vector<double>{-200, -104, -87.5, -20, -1e-3, 0, 1e-3, 1, 20, 88.5, 88.8, 100,
                                                     INFINITY, -INFINITY, NAN},
                                 {15}, DType::Float64);
  Tensor x32 = to(x, DType::Float32);
  Tensor e = exp(x32);
  const std::vector<double> xs = x32.to_vector(), es = e.to_vector();
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = std::exp(xs[i]);
    if (std::isnan(want)) CHECK(std::isnan(es[i]));
    else if (std::isinf(want) || want > 3.4028234e38) CHECK(std::isinf(es[i]));
    else if (want < 1.2e-38) CHECK(std::abs(es[i]) < 1.2e-38);  // float32 subnormal range: flushing is fine
    else CHECK_MESSAGE(std::abs(es[i] - want) <= 4e-7 * want, "exp(", xs[i], ") = ", es[i], " vs ", want);
  }
  Tensor dense = uniform({20001}, 70, -87, 88, DType::Float32);
  check_close(exp(dense), map_ref(dense, [](double v) { return std::exp(v); }), 0, 4e-7, "exp dense");
  Tensor s = uniform({20001}, 71, -30, 30, DType::Float32);
  check_close(sigmoid(s), map_ref(s, [](double v) { return 1 / (1 + std::exp(-v)); }), 1e-37, 5e-7, "sigmoid");
  check_close(gelu(s), map_ref(s, gelu_erf_ref), 2e-7, 2e-6, "gelu float32");
  check_close(gelu(s, true), map_ref(s, gelu_tanh_ref), 2e-7, 2e-6, "gelu tanh float32");
  Tensor t = uniform({20001}, 72, -10, 10, DType::Float32);
  check_close(tanh(t), map_ref(t, [](double v) { return std::tanh(v); }), 1e-37, 4e-7, "tanh");
  Tensor small = uniform({2001}, 73, -1e-3, 1e-3, DType::Float32);
  check_close(tanh(small), map_ref(small, [](double v) { return std::tanh(v); }), 0, 2.5e-7, "tanh near 0");
}

TEST_CASE("float32 gelu's table holds Φ to 2e-7 relative on [-6, 6], across its piece boundaries") {
  // kernels/cpu/normal_cdf_table.h: 32 pieces of width 3/16 on [−6, 0] (scripts/fit_normal_cdf.py reports
  // 1.36e-7 for Φ itself; x·Φ's rounding adds up to 6e-8). 200,001 evenly spaced points, and the 65 piece
  // boundaries with their float32 neighbours (the piece index is computed in float32 and may take the
  // neighbouring piece there), both paths, bit for bit equal.
  std::vector<double> xs;
  for (int k = 0; k <= 200000; ++k) xs.push_back(-6.0 + 12.0 * k / 200000);
  for (int b = 0; b <= 32; ++b)
    for (const float edge : {-6.0f + 0.1875f * float(b), 6.0f - 0.1875f * float(b)})
      for (const float e : {std::nextafter(edge, -INFINITY), edge, std::nextafter(edge, INFINITY)}) xs.push_back(e);
  const Tensor x = to(Tensor::from_vector(xs, {int64_t(xs.size())}, DType::Float64), DType::Float32);
  const int64_t n = x.numel();
  const Tensor strided = transpose(expand(reshape(x, {n, 1}), {n, 2}), 0, 1);
  const std::vector<double> xf = x.to_vector(), fast = gelu(x).to_vector(),
                            slow = slice(gelu(strided), 0, 0, 1).to_vector();
  double worst = 0, worst_x = 0, between = 0;
  for (size_t i = 0; i < xf.size(); ++i) {
    if (std::abs(xf[i]) < 1e-30 || xf[i] < -6) continue;  // x·Φ of a subnormal x underflows
    const double phi = 0.5 * std::erfc(-xf[i] / std::sqrt(2.0));
    const double e = std::max(std::abs(fast[i] / xf[i] - phi), std::abs(slow[i] / xf[i] - phi)) / phi;
    if (e > worst) worst = e, worst_x = xf[i];
    between = std::max(between, std::abs(fast[i] - slow[i]));
  }
  CHECK_MESSAGE(worst <= 2e-7, "worst relative error of Φ ", worst, " at x = ", worst_x);
  CHECK_MESSAGE(between == 0, "vector against scalar path: ", between);
}

TEST_CASE("float32 gelu keeps Φ's relative accuracy in the left tail, on the vector path and the strided one") {
  // gelu(x)/x = Φ(x) against float64 from x = −13 (Φ ≈ 6e-39, the last normal floats) to 8, within
  // 4e-7 + 2.5·2⁻²⁴·x² relative. On [−6, 6] the fitted table gives 2e-7 (the next case); below −6 the erfc form
  // adds float32's rounding of the exponent −z², which exp turns into relative error (seen: 8.8e-6 at x = −12).
  // 0.5·(1 + erf) would lose every digit below x ≈ −5. Contiguous float32 takes the 16-wide AVX-512 form (where
  // built), a strided view the scalar one: both are held to the bound, and to each other bit for bit (the vector
  // form repeats the scalar one's operations, so that switching paths moves no training run).
  const Tensor x = uniform({4001}, 74, -13, 8, DType::Float32);
  const std::vector<double> xs = x.to_vector();
  const Tensor strided = transpose(expand(reshape(x, {4001, 1}), {4001, 2}), 0, 1);  // x twice, strides (0, 1)
  REQUIRE_FALSE(strided.is_contiguous());
  const std::vector<double> fast = gelu(x).to_vector(), slow = slice(gelu(strided), 0, 0, 1).to_vector();
  double worst = -1, worst_between = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] == 0) continue;
    const double phi = 0.5 * std::erfc(-xs[i] / std::sqrt(2.0));
    const double bound = 4e-7 + 2.5 * std::ldexp(1.0, -24) * xs[i] * xs[i];
    worst = std::max({worst, std::abs(fast[i] / xs[i] - phi) / phi - bound, std::abs(slow[i] / xs[i] - phi) / phi - bound});
    worst_between = std::max(worst_between, std::abs(fast[i] - slow[i]) / std::max(std::abs(slow[i]), 1e-38));
  }
  CHECK_MESSAGE(worst <= 0, "worst relative error of Φ past the bound: ", worst);
  CHECK_MESSAGE(worst_between == 0, "vector against scalar path: ", worst_between);
  // Special values, as the scalar form gives them: gelu(+inf) = inf, gelu(NaN) = NaN, gelu(−inf) = −inf·0 = NaN,
  // and very negative x underflow to (−)0.
  const std::vector<double> special =
      gelu(to(Tensor::from_vector(std::vector<double>{INFINITY, NAN, -INFINITY, -40, -1e30, 40, 1e30, 0}, {8},
                                  DType::Float64),
              DType::Float32))
          .to_vector();
  CHECK(std::isinf(special[0]));
  CHECK(special[0] > 0);
  CHECK(std::isnan(special[1]));
  CHECK(std::isnan(special[2]));
  CHECK(std::abs(special[3]) < 1e-30);
  CHECK(std::abs(special[4]) < 1e-30);
  CHECK(special[5] == doctest::Approx(40));
  CHECK(special[6] == doctest::Approx(1e30));
  CHECK(special[7] == 0);
}

TEST_CASE("half dtypes match float32 on the same inputs") {
  for (DType dt : {DType::BFloat16, DType::Float16}) {
    const double tol = dt == DType::BFloat16 ? 1.6e-2 : 2e-3;  // about two ulps of the output format
    const std::string name(dtype_name(dt));
    for (const UnaryCase& c : unary_cases()) {
      Tensor xh = to(uniform({5, 40}, 2, c.lo, c.hi, DType::Float32), dt);
      Tensor expected = c.op(to(xh, DType::Float32));
      Tensor got = c.op(xh);
      REQUIRE(got.dtype() == dt);
      check_close(to(got, DType::Float32), expected, tol, tol, c.name + " " + name);
    }
    for (const BinaryCase& c : binary_cases()) {
      Tensor a = to(uniform({3, 1, 4}, 3, c.lo, c.hi, DType::Float32), dt);
      Tensor b = to(uniform({5, 1}, 4, c.lo, c.hi, DType::Float32), dt);
      check_close(to(c.op(a, b), DType::Float32), c.op(to(a, DType::Float32), to(b, DType::Float32)), tol, tol,
                  c.name + " " + name);
    }
  }
}

TEST_CASE("binary ops broadcast like PyTorch") {
  for (const BinaryCase& c : binary_cases()) {
    Tensor a = uniform({3, 1, 4}, 5, c.lo, c.hi), b = uniform({5, 1}, 6, c.lo, c.hi);
    check_close(c.op(a, b), broadcast_ref(a, b, c.ref), 1e-14, 1e-14, c.name);
    // A scalar (0-d) operand on either side.
    Tensor s = Tensor::scalar(1.25, DType::Float64);
    check_close(c.op(a, s), map_ref(a, [&](double v) { return c.ref(v, 1.25); }), 1e-14, 1e-14, c.name + " scalar");
    // Non-contiguous operands: a permuted view and a strided slice.
    Tensor big = uniform({4, 10}, 7, c.lo, c.hi);
    Tensor bt = transpose(uniform({4, 5}, 8, c.lo, c.hi), 0, 1);  // (5, 4)
    Tensor sl = slice(big, 1, 0, 10, 2);                           // (4, 5), stride 2
    Tensor sl_t = transpose(sl, 0, 1);                             // (5, 4)
    std::vector<double> v;
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 4; ++j) v.push_back(c.ref(sl_t.at({i, j}), bt.at({i, j})));
    check_close(c.op(sl_t, bt), Tensor::from_vector(v, {5, 4}, DType::Float64), 1e-14, 1e-14, c.name + " strided");
  }
  // A large contiguous case takes the threaded path.
  Tensor a = uniform({300, 257}, 9), b = uniform({257}, 10);
  check_close(sub(a + b, b), a, 1e-15, 0, "threaded add");
  CHECK(broadcast_shapes({2, 1, 3}, {4, 1}, "t") == Shape{2, 4, 3});
}

TEST_CASE("maximum, minimum and clamp propagate NaN") {
  Tensor a = Tensor::from_vector(std::vector<double>{NAN, 1, 2}, {3}, DType::Float64);
  Tensor b = Tensor::from_vector(std::vector<double>{0, NAN, 1}, {3}, DType::Float64);
  Tensor mx = maximum(a, b), mn = minimum(a, b);
  CHECK(std::isnan(mx.at({0})));
  CHECK(std::isnan(mx.at({1})));
  CHECK(mx.at({2}) == 2);
  CHECK(std::isnan(mn.at({0})));
  CHECK(std::isnan(mn.at({1})));
  CHECK(mn.at({2}) == 1);
  Tensor c = clamp(a, 0.0, 1.5);
  CHECK(std::isnan(c.at({0})));
  CHECK(c.at({2}) == 1.5);
  CHECK(std::isnan(relu(a).at({0})));
}

TEST_CASE("integer and bool ops") {
  Tensor a = Tensor::from_vector(std::vector<int64_t>{-3, 0, 7, 2}, {4}, DType::Int64);
  Tensor b = Tensor::from_vector(std::vector<int64_t>{2, 5, -1, 2}, {4}, DType::Int64);
  CHECK((a + b).to_vector() == std::vector<double>{-1, 5, 6, 4});
  CHECK((a - b).to_vector() == std::vector<double>{-5, -5, 8, 0});
  CHECK((a * b).to_vector() == std::vector<double>{-6, 0, -7, 4});
  CHECK((a * b).dtype() == DType::Int64);
  CHECK(maximum(a, b).to_vector() == std::vector<double>{2, 5, 7, 2});
  CHECK(minimum(a, b).to_vector() == std::vector<double>{-3, 0, -1, 2});
  CHECK(neg(a).to_vector() == std::vector<double>{3, 0, -7, -2});
  CHECK(abs(a).to_vector() == std::vector<double>{3, 0, 7, 2});
  CHECK(sign(a).to_vector() == std::vector<double>{-1, 0, 1, 1});
  CHECK(relu(a).to_vector() == std::vector<double>{0, 0, 7, 2});
  CHECK((a + 2.0).to_vector() == std::vector<double>{-1, 2, 9, 4});
  CHECK(clamp(a, 0.0, 5.0).to_vector() == std::vector<double>{0, 0, 5, 2});
  Tensor a32 = to(a, DType::Int32), b32 = to(b, DType::Int32);
  CHECK((a32 * b32).dtype() == DType::Int32);
  CHECK((a32 * b32).to_vector() == std::vector<double>{-6, 0, -7, 4});

  CHECK(eq(a, b).to_vector() == std::vector<double>{0, 0, 0, 1});
  CHECK(ne(a, b).to_vector() == std::vector<double>{1, 1, 1, 0});
  CHECK(lt(a, b).to_vector() == std::vector<double>{1, 1, 0, 0});
  CHECK(le(a, b).to_vector() == std::vector<double>{1, 1, 0, 1});
  CHECK(gt(a, b).to_vector() == std::vector<double>{0, 0, 1, 0});
  CHECK(ge(a, b).to_vector() == std::vector<double>{0, 0, 1, 1});
  CHECK(gt(a, b).dtype() == DType::Bool);
  CHECK(eq(a, 7.0).to_vector() == std::vector<double>{0, 0, 1, 0});
  CHECK(gt(a, 0.0).to_vector() == std::vector<double>{0, 0, 1, 1});
  CHECK(lt(a, 0.0).to_vector() == std::vector<double>{1, 0, 0, 0});

  Tensor p = gt(a, 0.0), q = lt(b, 3.0);  // {0,0,1,1}, {1,0,1,1}
  CHECK(logical_and(p, q).to_vector() == std::vector<double>{0, 0, 1, 1});
  CHECK(logical_or(p, q).to_vector() == std::vector<double>{1, 0, 1, 1});
  CHECK(logical_not(p).to_vector() == std::vector<double>{1, 1, 0, 0});
  CHECK(logical_not(p).dtype() == DType::Bool);
  CHECK(where(p, a, b).to_vector() == std::vector<double>{2, 5, 7, 2});
  CHECK(masked_fill(a, p, -9).to_vector() == std::vector<double>{-3, 0, -9, -9});
  // Comparisons of floats with broadcasting, and of halves.
  Tensor f = Tensor::from_vector(std::vector<double>{0.5, 1.5}, {2, 1}, DType::Float32);
  Tensor g = Tensor::from_vector(std::vector<double>{1.0, 0.5, 2.0}, {3}, DType::Float32);
  CHECK(lt(f, g).to_vector() == std::vector<double>{1, 0, 1, 0, 0, 1});
  CHECK(lt(to(f, DType::BFloat16), to(g, DType::BFloat16)).to_vector() == std::vector<double>{1, 0, 1, 0, 0, 1});
}

TEST_CASE("where and masked_fill broadcast") {
  Tensor cond = gt(uniform({3, 1}, 11), 0.0);
  Tensor a = uniform({1, 4}, 12), b = uniform({3, 4}, 13);
  Tensor w = where(cond, a, b);
  REQUIRE(w.shape() == Shape{3, 4});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(w.at({i, j}) == (cond.at({i, 0}) != 0 ? a.at({0, j}) : b.at({i, j})));
  Tensor m = masked_fill(b, cond, 5.0);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(m.at({i, j}) == (cond.at({i, 0}) != 0 ? 5.0 : b.at({i, j})));
}

TEST_CASE("gradients of unary ops") {
  for (const UnaryCase& c : unary_cases()) {
    if (c.name == "relu" || c.name == "abs" || c.name.rfind("clamp", 0) == 0) continue;  // kinks: below
    auto f = [&](const std::vector<Tensor>& in) { return c.op(in[0]); };
    gradcheck(f, {uniform({3, 4}, 20, c.lo, c.hi)}, c.name);
    gradcheck([&](const std::vector<Tensor>& in) { return c.op(transpose(in[0], 0, 1)); },
              {uniform({4, 1, 3}, 21, c.lo, c.hi)}, c.name + " non-contiguous");
  }
  // Kinked functions: inputs kept away from the kinks (|x| ≥ 0.1, away from the clamp bounds).
  Tensor x = Tensor::from_vector(std::vector<double>{-1.3, -0.7, -0.2, 0.15, 0.4, 0.9, 1.2, -0.45}, {2, 4},
                                 DType::Float64);
  gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x}, "relu");
  gradcheck([](const std::vector<Tensor>& in) { return abs(in[0]); }, {x}, "abs");
  gradcheck([](const std::vector<Tensor>& in) { return clamp(in[0], -0.5, 0.7); }, {x}, "clamp");
  gradcheck([](const std::vector<Tensor>& in) { return clamp(in[0], 0.3, std::nullopt); }, {x}, "clamp min");
  gradcheck([](const std::vector<Tensor>& in) { return sign(in[0]) * in[0]; }, {x}, "sign");
  gradcheck([](const std::vector<Tensor>& in) { return -in[0]; }, {x}, "neg");
}

TEST_CASE("gradients of binary ops with broadcasting") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {3, 4}}, {{3, 1, 4}, {5, 1}}, {{4}, {2, 3, 4}}, {{1}, {3, 2}}, {{}, {2, 3}}, {{2, 1}, {1, 1}}};
  for (const BinaryCase& c : binary_cases()) {
    for (const auto& [sa, sb] : shapes) {
      auto f = [&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); };
      gradcheck(f, {uniform(sa, 30, c.lo, c.hi), uniform(sb, 31, c.lo, c.hi)},
                c.name + " " + shape_str(sa) + " " + shape_str(sb));
    }
    // Non-contiguous operands.
    gradcheck([&](const std::vector<Tensor>& in) { return c.op(transpose(in[0], 0, 1), slice(in[1], 1, 0, 6, 2)); },
              {uniform({3, 4}, 32, c.lo, c.hi), uniform({4, 6}, 33, c.lo, c.hi)}, c.name + " non-contiguous");
    // The same tensor on both sides.
    gradcheck([&](const std::vector<Tensor>& in) { return c.op(in[0], in[0] * 1.5); },
              {uniform({2, 3}, 34, std::max(c.lo, 0.5), c.hi)}, c.name + " shared input");
  }
}

TEST_CASE("maximum and minimum split tied gradients half and half") {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}, DType::Float64).set_requires_grad();
  Tensor b = Tensor::from_vector(std::vector<double>{1, 5, 0}, {3}, DType::Float64).set_requires_grad();
  backward(sum(maximum(a, b)));
  CHECK(a.grad().to_vector() == std::vector<double>{0.5, 0, 1});
  CHECK(b.grad().to_vector() == std::vector<double>{0.5, 1, 0});
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}, DType::Float64).set_requires_grad();
  backward(sum(minimum(c, b)));
  CHECK(c.grad().to_vector() == std::vector<double>{0.5, 1, 0});
}

TEST_CASE("gradients of where and masked_fill") {
  Tensor cond = gt(uniform({3, 1}, 40), 0.0);
  gradcheck([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
            {uniform({1, 4}, 41), uniform({3, 4}, 42)}, "where");
  gradcheck([&](const std::vector<Tensor>& in) { return masked_fill(in[0], cond, 2.0); }, {uniform({3, 4}, 43)},
            "masked_fill");
}

TEST_CASE("activation gradients use the fused kernels correctly for float32") {
  // float32 backward against float64 backward of the same inputs.
  for (int which = 0; which < 4; ++which) {
    auto act = [which](const Tensor& x) {
      switch (which) {
        case 0: return gelu(x);
        case 1: return gelu(x, true);
        case 2: return sigmoid(x);
        default: return tanh(x);
      }
    };
    Tensor x64 = uniform({50}, 50, -4, 4).set_requires_grad();
    Tensor x32 = to(detach(x64), DType::Float32).set_requires_grad();
    backward(sum(act(x64)));
    backward(sum(act(x32)));
    check_close(to(x32.grad(), DType::Float64), x64.grad(), 1e-6, 1e-5, "activation " + std::to_string(which));
  }
}

TEST_CASE("bad input raises errors naming the op") {
  Tensor a = uniform({2, 3}, 60), b = uniform({4}, 61);
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("add: shapes (2, 3) and (4) do not broadcast"), vb::Error);
  CHECK_THROWS_WITH_AS(mul(a, to(a, DType::Float32)), doctest::Contains("mul: expected one dtype"), vb::Error);
  CHECK_THROWS_WITH_AS(add(a, Tensor()), doctest::Contains("add: second input is an undefined"), vb::Error);
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 2}, {2});
  CHECK_THROWS_WITH_AS(exp(i), doctest::Contains("exp"), vb::Error);
  CHECK_THROWS_WITH_AS(div(i, i), doctest::Contains("div"), vb::Error);
  Tensor bl = gt(a, 0.0);
  CHECK_THROWS_WITH_AS(sub(bl, bl), doctest::Contains("sub: not defined for bool"), vb::Error);
  CHECK_THROWS_WITH_AS(where(a, a, a), doctest::Contains("where: condition must be bool"), vb::Error);
  CHECK_THROWS_WITH_AS(masked_fill(b, gt(a, 0.0), 1.0), doctest::Contains("masked_fill"), vb::Error);
  CHECK_THROWS_WITH_AS(clamp(a, std::nullopt, std::nullopt), doctest::Contains("clamp"), vb::Error);
  CHECK_THROWS_WITH_AS(neg(bl), doctest::Contains("bool"), vb::Error);
}

TEST_CASE("the parallel grain follows OMP_WAIT_POLICY as libgomp reads it, and never changes the bits") {
  // 32768 elements while the workers spin, 8× that when they sleep between regions (kernels/cpu/loops.h).
  CHECK(cpu::parallel_grain_for(nullptr) == 32768);
  CHECK(cpu::parallel_grain_for("active") == 32768);
  CHECK(cpu::parallel_grain_for("") == 32768);
  CHECK(cpu::parallel_grain_for("passiveX") == 32768);
  for (const char* passive : {"passive", "PASSIVE", "Passive", " passive\t"})
    CHECK(cpu::parallel_grain_for(passive) == 8 * 32768);
  CHECK(cpu::kParallelGrain == cpu::parallel_grain_for(std::getenv("OMP_WAIT_POLICY")));
  // Sizes on either side of both grains: the same bits on 1 and 2 threads (so the grain is only about time).
  const int saved = omp_get_max_threads();
  for (int64_t n : {int64_t(20000), int64_t(100000), int64_t(300000)}) {
    CAPTURE(n);
    const Tensor a = uniform({n}, 40, -3, 3, DType::Float32), b = uniform({n}, 41, -3, 3, DType::Float32);
    omp_set_num_threads(1);
    const std::vector<double> one = add(gelu(a), mul(a, b)).to_vector(), s1 = sum(mul(a, b)).to_vector();
    omp_set_num_threads(2);
    CHECK(add(gelu(a), mul(a, b)).to_vector() == one);
    CHECK(sum(mul(a, b)).to_vector() == s1);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("copies and binary ops over views of many short runs reach every element once, on 1 and 2 threads") {
  // cpu::for_each_strided hands out runs shorter than kShortRun in blocks, stepping from run to run like an
  // odometer (carries through several dims) instead of dividing per run. Each view's copy and a binary op on two
  // views are checked against the index arithmetic written out, element by element, with enough elements to go
  // parallel (kParallelGrain) and with runs of 1, 3, 7 and 255 values.
  const Tensor base = arange(0, 6 * 5 * 40 * 6 * 64, 1, DType::Float64);  // element i holds i
  struct View {
    const char* name;
    Shape shape, strides;
  };
  const std::vector<View> views = {
      {"3 of 6 channels", {6, 5, 40, 64, 3}, {5 * 40 * 64 * 6, 40 * 64 * 6, 64 * 6, 6, 1}},
      {"every other row, 7 of 64", {6, 5, 20, 6, 7}, {5 * 40 * 6 * 64, 40 * 6 * 64, 2 * 6 * 64, 64, 1}},
      {"transposed: runs of 1", {64, 6, 40}, {1, 64, 6 * 64}},
      {"255 of 256", {1800, 255}, {256, 1}},
  };
  const std::vector<double> all = base.to_vector();
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const View& v : views) {
      CAPTURE(v.name);
      CAPTURE(threads);
      const Tensor view = base.as_strided(v.shape, v.strides, 0);
      // The value at each index of the view, by its strides.
      std::vector<double> expect(size_t(shape_numel(v.shape)));
      for (int64_t i = 0; i < int64_t(expect.size()); ++i) {
        int64_t rest = i, off = 0;
        for (int64_t d = int64_t(v.shape.size()) - 1; d >= 0; --d) {
          off += rest % v.shape[size_t(d)] * v.strides[size_t(d)];
          rest /= v.shape[size_t(d)];
        }
        expect[size_t(i)] = all[size_t(off)];
      }
      CHECK(contiguous(view).to_vector() == expect);
      const Tensor twice = add(view, view);
      std::vector<double> doubled = expect;
      for (double& e : doubled) e *= 2;
      CHECK(twice.to_vector() == doubled);
    }
  }
  omp_set_num_threads(saved);
}
