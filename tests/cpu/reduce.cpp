// Reductions on the CPU: values against loops in double over every subset of dims of a 3-d input
// (contiguous and permuted), long float32 sums, NaN handling, integer inputs, half dtypes, float64
// gradient checks and errors for bad input.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "autograd/op_utils.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;
using vb::test::uniform;

namespace {

enum class Kind { Sum, Mean, Amax, Amin };

// Reference reduction of a 3-d tensor over the dims whose bit is set in `mask`, keepdim shape.
Tensor reduce_ref(const Tensor& x, unsigned mask, Kind kind) {
  Shape out_shape = x.shape();
  for (int d = 0; d < 3; ++d)
    if (mask & (1u << d)) out_shape[size_t(d)] = 1;
  const int64_t n0 = out_shape[0], n1 = out_shape[1], n2 = out_shape[2];
  std::vector<double> out;
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < n2; ++k) {
        double acc = kind == Kind::Sum || kind == Kind::Mean ? 0.0
                     : kind == Kind::Amax                    ? -INFINITY
                                                             : INFINITY;
        int64_t count = 0;
        for (int64_t a = 0; a < x.size(0); ++a)
          for (int64_t b = 0; b < x.size(1); ++b)
            for (int64_t c = 0; c < x.size(2); ++c) {
              if ((!(mask & 1u) && a != i) || (!(mask & 2u) && b != j) || (!(mask & 4u) && c != k)) continue;
              const double v = x.at({a, b, c});
              if (kind == Kind::Sum || kind == Kind::Mean) acc += v;
              else if (kind == Kind::Amax) acc = std::max(acc, v);
              else acc = std::min(acc, v);
              ++count;
            }
        out.push_back(kind == Kind::Mean ? acc / double(count) : acc);
      }
  return Tensor::from_vector(out, out_shape, DType::Float64);
}

std::vector<int> dims_of(unsigned mask) {
  std::vector<int> dims;
  for (int d = 0; d < 3; ++d)
    if (mask & (1u << d)) dims.push_back(d);
  return dims;
}

Tensor run(Kind kind, const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  switch (kind) {
    case Kind::Sum: return sum(x, dims, keepdim);
    case Kind::Mean: return mean(x, dims, keepdim);
    case Kind::Amax: return amax(x, dims, keepdim);
    case Kind::Amin: return amin(x, dims, keepdim);
  }
  return {};
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Sum: return "sum";
    case Kind::Mean: return "mean";
    case Kind::Amax: return "amax";
    case Kind::Amin: return "amin";
  }
  return "?";
}

}  // namespace

TEST_CASE("reductions over every subset of dims match loops") {
  const Tensor base = uniform({3, 5, 7}, 1);
  // Contiguous, permuted (non-contiguous) and expanded (stride 0) inputs.
  const std::vector<std::pair<std::string, Tensor>> inputs = {
      {"contiguous", base},
      {"permuted", permute(uniform({7, 3, 5}, 2), {1, 2, 0})},
      {"expanded", expand(uniform({3, 1, 7}, 3), {3, 5, 7})},
      {"sliced", slice(uniform({3, 10, 7}, 4), 1, 1, 10, 2)},
  };
  for (const auto& [label, x] : inputs) {
    for (Kind kind : {Kind::Sum, Kind::Mean, Kind::Amax, Kind::Amin}) {
      for (unsigned mask = 1; mask < 8; ++mask) {
        const std::string what = std::string(kind_name(kind)) + " " + label + " mask " + std::to_string(mask);
        Tensor ref = reduce_ref(x, mask, kind);
        check_close(run(kind, x, dims_of(mask), true), ref, 1e-13, 1e-13, what);
        Tensor flat = run(kind, x, dims_of(mask), false);
        CHECK(flat.shape() == detail::reduced_shape(x.shape(), dims_of(mask), false));
        check_close(reshape(flat, ref.shape()), ref, 1e-13, 1e-13, what + " no keepdim");
        Tensor x32 = to(x, DType::Float32);
        check_close(to(run(kind, x32, dims_of(mask), true), DType::Float64), reduce_ref(x32, mask, kind), 1e-6, 1e-6,
                    what + " float32");
      }
    }
  }
  // Empty dims list and negative dims.
  check_close(sum(base), reshape(reduce_ref(base, 7, Kind::Sum), {}), 1e-13, 1e-13, "sum all");
  check_close(mean(base), reshape(reduce_ref(base, 7, Kind::Mean), {}), 1e-13, 1e-13, "mean all");
  check_close(amax(base, {-1}), reshape(reduce_ref(base, 4, Kind::Amax), {3, 5}), 0, 0, "amax -1");
  check_close(sum(base, {-3, -1}), reshape(reduce_ref(base, 5, Kind::Sum), {5}), 1e-13, 1e-13, "sum -3 -1");
  // A 0-d input reduces to itself.
  CHECK(sum(Tensor::scalar(2.5, DType::Float64)).item() == 2.5);
}

TEST_CASE("large reductions: threaded paths agree with double loops") {
  // Row, column and few-output/long-reduction paths.
  Tensor x = uniform({300, 700}, 5, -1, 1, DType::Float32);
  const std::vector<double> v = x.to_vector();
  std::vector<double> rows(300, 0), cols(700, 0);
  double total = 0;
  for (size_t i = 0; i < 300; ++i)
    for (size_t j = 0; j < 700; ++j) {
      rows[i] += v[i * 700 + j];
      cols[j] += v[i * 700 + j];
      total += v[i * 700 + j];
    }
  check_close(to(sum(x, {1}), DType::Float64), Tensor::from_vector(rows, {300}, DType::Float64), 1e-5, 1e-6, "rows");
  check_close(to(sum(x, {0}), DType::Float64), Tensor::from_vector(cols, {700}, DType::Float64), 1e-5, 1e-6, "cols");
  CHECK(std::abs(sum(x).item() - total) < 1e-3);
  check_close(to(sum(transpose(x, 0, 1), {1}), DType::Float64), Tensor::from_vector(cols, {700}, DType::Float64), 1e-5,
              1e-6, "cols via transpose");
  // The same result on repeated runs (deterministic).
  CHECK(sum(x).item() == sum(x).item());
}

TEST_CASE("float32 sums of many elements stay accurate") {
  // 2^24 + 2 ones: a float32 accumulator would stop at 2^24 (and 2^24 + 2 is representable in float32).
  const int64_t n = (int64_t(1) << 24) + 2;
  Tensor ones_f = ones({n}, DType::Float32);
  CHECK(sum(ones_f).item() == double(n));
  // 0.1 repeated: a float32 running sum would drift by far more than this.
  Tensor tenths = full({1000000}, 0.1, DType::Float32);
  CHECK(std::abs(sum(tenths).item() - 1000000 * double(0.1f)) < 0.5);
  CHECK(std::abs(mean(tenths).item() - double(0.1f)) < 1e-7);
}

TEST_CASE("NaN propagates through amax and amin; argmax picks the first maximum") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, NAN, 3, 2, 5, 5, 0, -1, -1}, {3, 3}, DType::Float64);
  Tensor mx = amax(x, {1}), mn = amin(x, {1});
  CHECK(std::isnan(mx.at({0})));
  CHECK(mx.at({1}) == 5);
  CHECK(mx.at({2}) == 0);
  CHECK(std::isnan(mn.at({0})));
  CHECK(mn.at({2}) == -1);
  Tensor am = argmax(x, 1);
  CHECK(am.dtype() == DType::Int64);
  CHECK(am.to_vector() == std::vector<double>{1, 1, 0});  // NaN counts as maximal; ties keep the first
  CHECK(argmax(x, 0).to_vector() == std::vector<double>{1, 0, 1});
  CHECK(argmax(x, 0, true).shape() == Shape{1, 3});
  // Argmax along a long dim (few outputs, chunked path) keeps the first of repeated maxima.
  Tensor big = zeros({300000}, DType::Float32);
  {
    float* p = big.data<float>();
    p[1000] = 3;
    p[250000] = 3;
  }
  CHECK(argmax(big, 0).item() == 1000);
  CHECK(amax(big, {0}).item() == 3);
}

TEST_CASE("argmax over long float32 rows (the vectorised lanes) keeps the scalar rules: first maximum, first NaN") {
  // Rows long enough for the 16-lane path, with the maximum repeated across lanes and positions, NaNs placed in
  // various lanes, and rows with only a tail past the lanes; every answer against a plain loop.
  const auto reference = [](const std::vector<float>& row) {
    int64_t best = 0;
    for (int64_t i = 1; i < int64_t(row.size()); ++i) {
      const float x = row[size_t(i)], b = row[size_t(best)];
      if (b != b) break;  // the first NaN stays
      if (x != x || x > b) best = i;
    }
    return best;
  };
  std::mt19937 rng(7);
  for (int64_t n : {int64_t(63), int64_t(64), int64_t(65), int64_t(100), int64_t(1000), int64_t(30522)}) {
    for (int variant = 0; variant < 6; ++variant) {
      CAPTURE(n);
      CAPTURE(variant);
      std::vector<float> row(static_cast<size_t>(n));
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (float& x : row) x = u(rng);
      std::uniform_int_distribution<int64_t> at(0, n - 1);
      if (variant >= 1) {  // the maximum three times, in different lanes (and perhaps the tail)
        for (int k = 0; k < 3; ++k) row[size_t(at(rng))] = 2.0f;
      }
      if (variant == 2) row[size_t(n - 1)] = 2.0f;         // a tie in the last element
      if (variant == 3) row[size_t(at(rng))] = NAN;        // one NaN
      if (variant == 4) {                                 // two NaNs, the maximum before both
        row[size_t(n / 3)] = NAN;
        row[size_t(n / 2)] = NAN;
        row[0] = 5.0f;
      }
      if (variant == 5) std::fill(row.begin(), row.end(), -INFINITY);  // all −inf: index 0
      const Tensor x = Tensor::from_vector(row, {1, n}, DType::Float32);
      CHECK(int64_t(argmax(x, 1).item()) == reference(row));
    }
  }
}

TEST_CASE("integer, bool and half inputs") {
  Tensor i = Tensor::from_vector(std::vector<int64_t>{4, -2, 9, 1, 0, 7}, {2, 3}, DType::Int32);
  Tensor s = sum(i, {1});
  CHECK(s.dtype() == DType::Int64);
  CHECK(s.to_vector() == std::vector<double>{11, 8});
  CHECK(amax(i, {0}).to_vector() == std::vector<double>{4, 0, 9});
  CHECK(amax(i, {0}).dtype() == DType::Int32);
  CHECK(amin(i, {}).item() == -2);
  CHECK(argmax(i, 1).to_vector() == std::vector<double>{2, 2});
  Tensor b = gt(i, 0.0);
  CHECK(sum(b).item() == 4);
  CHECK(sum(b).dtype() == DType::Int64);
  for (DType dt : {DType::BFloat16, DType::Float16}) {
    Tensor x = to(uniform({17, 40}, 6, -1, 1, DType::Float32), dt);
    Tensor x32 = to(x, DType::Float32);
    const double tol = dt == DType::BFloat16 ? 1e-2 : 1e-3;
    check_close(to(sum(x, {1}), DType::Float32), sum(x32, {1}), tol, tol, "half sum");
    check_close(to(mean(x, {0}), DType::Float32), mean(x32, {0}), tol, tol, "half mean");
    check_close(to(amax(x, {1}), DType::Float32), amax(x32, {1}), 0, 0, "half amax");
    CHECK(argmax(x, 1).to_vector() == argmax(x32, 1).to_vector());
  }
}

TEST_CASE("gradients of reductions") {
  const std::vector<std::vector<int>> dim_sets = {{}, {0}, {1}, {2}, {0, 2}, {-1, 1}};
  for (const auto& dims : dim_sets) {
    for (bool keepdim : {false, true}) {
      const std::string what = "dims " + std::to_string(dims.size()) + (keepdim ? " keepdim" : "");
      gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); }, {uniform({2, 3, 4}, 7)},
                "sum " + what);
      gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); }, {uniform({2, 1, 4}, 8)},
                "mean " + what);
      gradcheck([&](const std::vector<Tensor>& in) { return amax(in[0], dims, keepdim); }, {uniform({2, 3, 4}, 9)},
                "amax " + what);
      gradcheck([&](const std::vector<Tensor>& in) { return amin(in[0], dims, keepdim); }, {uniform({2, 3, 4}, 10)},
                "amin " + what);
      gradcheck([&](const std::vector<Tensor>& in) { return var(in[0], dims, true, keepdim); }, {uniform({2, 3, 4}, 11)},
                "var " + what);
    }
  }
  // Non-contiguous inputs.
  gradcheck([](const std::vector<Tensor>& in) { return sum(transpose(in[0], 0, 2), {0}); }, {uniform({2, 3, 4}, 12)},
            "sum transposed");
  gradcheck([](const std::vector<Tensor>& in) { return amax(slice(in[0], 1, 0, 4, 2), {1}); }, {uniform({3, 4}, 13)},
            "amax sliced");
  gradcheck([](const std::vector<Tensor>& in) { return var(transpose(in[0], 0, 1), {1}, false); },
            {uniform({5, 3}, 14)}, "var biased transposed");
}

TEST_CASE("amax and amin share the gradient among ties") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 3, 3, 0, 2, 2, 2, 2}, {2, 4}, DType::Float64);
  x.set_requires_grad();
  backward(sum(amax(x, {1})));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0.5, 0.5, 0, 0.25, 0.25, 0.25, 0.25});
  Tensor y = Tensor::from_vector(std::vector<double>{1, 1, 4}, {3}, DType::Float64);
  y.set_requires_grad();
  backward(amin(y, {0}));
  CHECK(y.grad().to_vector() == std::vector<double>{0.5, 0.5, 0});
}

TEST_CASE("var matches the two-pass formula") {
  Tensor x = uniform({4, 6}, 15, -2, 3);
  const std::vector<double> v = x.to_vector();
  for (int64_t r = 0; r < 4; ++r) {
    double m = 0, s = 0;
    for (int64_t c = 0; c < 6; ++c) m += v[size_t(r * 6 + c)] / 6;
    for (int64_t c = 0; c < 6; ++c) s += (v[size_t(r * 6 + c)] - m) * (v[size_t(r * 6 + c)] - m);
    CHECK(var(x, {1}).at({r}) == doctest::Approx(s / 5).epsilon(1e-12));
    CHECK(var(x, {1}, false).at({r}) == doctest::Approx(s / 6).epsilon(1e-12));
  }
}

TEST_CASE("bad input raises errors naming the op") {
  Tensor x = uniform({2, 3}, 16);
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("sum"), vb::Error);
  CHECK_THROWS_WITH_AS(sum(x, {0, -2}), doctest::Contains("sum: dim listed twice"), vb::Error);
  CHECK_THROWS_WITH_AS(argmax(x, 5), doctest::Contains("argmax"), vb::Error);
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 2}, {2});
  CHECK_THROWS_WITH_AS(mean(i), doctest::Contains("mean"), vb::Error);
  CHECK_THROWS_WITH_AS(var(i, {0}), doctest::Contains("var"), vb::Error);
  Tensor e = zeros({0, 3}, DType::Float64);
  CHECK_THROWS_WITH_AS(amax(e, {0}), doctest::Contains("amax"), vb::Error);
  CHECK(sum(e, {0}).to_vector() == std::vector<double>{0, 0, 0});
  CHECK_THROWS_WITH_AS(sum(Tensor()), doctest::Contains("sum"), vb::Error);
}
