// batch_norm (channels last): forward and the running-statistics update against the formulas in double,
// gradients in training and eval against finite differences, half precision against float32, errors.
#include <cmath>
#include <random>

#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::gradcheck;

namespace {

Tensor values(const Shape& shape, uint32_t seed, double lo = -1.0, double hi = 1.0, DType dtype = DType::Float64) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& e : v) e = u(rng);
  return Tensor::from_vector(v, shape, dtype);
}

struct Stats {
  std::vector<double> mean, biased, unbiased;
};

// Per-channel statistics of x (…, C), two passes in double.
Stats channel_stats(const Tensor& x) {
  const int64_t C = x.size(-1), M = x.numel() / C;
  const std::vector<double> v = x.to_vector();
  Stats s{std::vector<double>(size_t(C), 0.0), std::vector<double>(size_t(C), 0.0), {}};
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) s.mean[size_t(c)] += v[size_t(m * C + c)] / double(M);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) {
      const double d = v[size_t(m * C + c)] - s.mean[size_t(c)];
      s.biased[size_t(c)] += d * d / double(M);
    }
  for (double b : s.biased) s.unbiased.push_back(b * double(M) / double(M - 1));
  return s;
}

// y = (x − mean)/√(var + eps)·w + b per channel (w = 1, b = 0 when undefined).
Tensor normalized(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var, const Tensor& w,
                  const Tensor& b, double eps) {
  const int64_t C = x.size(-1);
  const std::vector<double> v = x.to_vector();
  const std::vector<double> wv = w.defined() ? w.to_vector() : std::vector<double>(size_t(C), 1.0);
  const std::vector<double> bv = b.defined() ? b.to_vector() : std::vector<double>(size_t(C), 0.0);
  std::vector<double> y(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = i % size_t(C);
    y[i] = (v[i] - mean[c]) / std::sqrt(var[c] + eps) * wv[c] + bv[c];
  }
  return Tensor::from_vector(y, x.shape(), DType::Float64);
}

Tensor channels(const std::vector<double>& v) { return Tensor::from_vector(v, {int64_t(v.size())}, DType::Float64); }

template <typename F>
void throws_with(F f, const std::string& words) {
  try {
    f();
    FAIL("expected vb::Error containing: " << words);
  } catch (const vb::Error& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find("batch_norm") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(words) != std::string::npos, msg);
  }
}

}  // namespace

TEST_CASE("batch_norm training: batch statistics normalise; running stats move with the unbiased variance") {
  const double momentum = 0.3, eps = 1e-5;
  for (const Shape& shape : {Shape{2, 3, 4, 5}, Shape{7, 3}, Shape{4, 6, 2}, Shape{1, 1, 2, 4}}) {
    const int64_t C = shape.back();
    const Tensor x = values(shape, 1, -2.0, 3.0), w = values({C}, 2), b = values({C}, 3);
    const Tensor rm0 = values({C}, 4), rv0 = values({C}, 5, 0.5, 2.0);
    Tensor rm = clone(rm0), rv = clone(rv0);
    const Stats s = channel_stats(x);
    const std::string what = "shape " + shape_str(shape);
    check_close(batch_norm(x, w, b, rm, rv, true, momentum, eps), normalized(x, s.mean, s.biased, w, b, eps), 1e-12,
                1e-12, what);
    std::vector<double> want_rm, want_rv;
    for (int64_t c = 0; c < C; ++c) {
      want_rm.push_back((1 - momentum) * rm0.at({c}) + momentum * s.mean[size_t(c)]);
      want_rv.push_back((1 - momentum) * rv0.at({c}) + momentum * s.unbiased[size_t(c)]);
    }
    check_close(rm, channels(want_rm), 1e-14, 1e-14, what + " running_mean");
    check_close(rv, channels(want_rv), 1e-14, 1e-14, what + " running_var (unbiased)");

    // float32 input with float32 running statistics.
    Tensor rm32 = to(rm0, DType::Float32), rv32 = to(rv0, DType::Float32);
    const Tensor y32 = batch_norm(to(x, DType::Float32), to(w, DType::Float32), to(b, DType::Float32), rm32, rv32,
                                  true, momentum, eps);
    check_close(y32, normalized(x, s.mean, s.biased, w, b, eps), 1e-5, 1e-5, what + " float32");
    check_close(rv32, channels(want_rv), 1e-6, 1e-6, what + " float32 running_var");
  }
}

TEST_CASE("batch_norm eval uses the running statistics and leaves them unchanged") {
  const Tensor x = values({3, 4, 2, 6}, 6), w = values({6}, 7), b = values({6}, 8);
  Tensor rm = values({6}, 9), rv = values({6}, 10, 0.5, 2.0);
  const Tensor rm0 = clone(rm), rv0 = clone(rv);
  const Tensor y = batch_norm(x, w, b, rm, rv, false, 0.1, 1e-3);
  check_close(y, normalized(x, rm0.to_vector(), rv0.to_vector(), w, b, 1e-3), 1e-12, 1e-12, "eval");
  check_close(rm, rm0, 0, 0, "running_mean unchanged");
  check_close(rv, rv0, 0, 0, "running_var unchanged");
}

TEST_CASE("batch_norm without affine parameters or running statistics") {
  const Tensor x = values({5, 3, 4}, 11);
  Tensor none_m, none_v;
  const Stats s = channel_stats(x);
  check_close(batch_norm(x, {}, {}, none_m, none_v, true), normalized(x, s.mean, s.biased, {}, {}, 1e-5), 1e-12,
              1e-12, "no w, b, running stats");
}

TEST_CASE("batch_norm stays accurate in float32 for a mean much larger than the spread") {
  // float32 values near 3000 with spread ~1e-2: E[x²] − E[x]² in float32, or subtracting the mean rounded
  // to float32 (an error of up to 1.2e-4 against a std of 6e-3), would miss by far more than the tolerance.
  const Tensor x = add(values({64, 8, 4}, 12, -0.01, 0.01, DType::Float32), 3000.0);
  Tensor rm = zeros({4}), rv = ones({4});
  const Stats s = channel_stats(x);  // from the float32 values, in double
  const Tensor y = batch_norm(x, {}, {}, rm, rv, true, 1.0, 0.0);
  check_close(y, normalized(x, s.mean, s.biased, {}, {}, 0.0), 1e-4, 1e-4, "normalised");
  check_close(rv, channels(s.unbiased), 1e-9, 1e-3, "running_var");
}

TEST_CASE("batch_norm gradients match finite differences (training and eval)") {
  for (const Shape& shape : {Shape{2, 3, 3, 4}, Shape{6, 2}, Shape{3, 1, 5}}) {
    const int64_t C = shape.back();
    const Tensor x = values(shape, 21), w = values({C}, 22), b = values({C}, 23);
    Tensor rm = zeros({C}, DType::Float64), rv = ones({C}, DType::Float64);
    const std::string what = "shape " + shape_str(shape);
    gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], in[1], in[2], rm, rv, true); },
              {x, w, b}, "train " + what);
    Tensor em = values({C}, 24), ev = values({C}, 25, 0.5, 2.0);
    gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], in[1], in[2], em, ev, false); },
              {x, w, b}, "eval " + what);
    Tensor none_m, none_v;
    gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, none_m, none_v, true); }, {x},
              "train, no affine " + what);
  }
}

TEST_CASE("batch_norm gradients through a non-contiguous input and gradient") {
  const Tensor x_nchw = values({2, 3, 4, 3}, 31), w = values({3}, 32), b = values({3}, 33);
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64);
  gradcheck(
      [&](const std::vector<Tensor>& in) {
        return transpose(batch_norm(permute(in[0], {0, 2, 3, 1}), in[1], in[2], rm, rv, true), 1, 2);
      },
      {x_nchw, w, b}, "permuted input, transposed output");
}

TEST_CASE("batch_norm in bfloat16 and float16 matches float32 on the same rounded inputs") {
  const Tensor x = values({4, 5, 5, 16}, 41, -2.0, 2.0, DType::Float32);
  const Tensor w = values({16}, 42, -1.0, 1.0, DType::Float32), b = values({16}, 43, -1.0, 1.0, DType::Float32);
  for (DType half : {DType::BFloat16, DType::Float16}) {
    const Tensor xh = to(x, half), wh = to(w, half), bh = to(b, half);
    Tensor rm = zeros({16}), rv = ones({16}), rm_ref = zeros({16}), rv_ref = ones({16});
    const Tensor y = batch_norm(xh, wh, bh, rm, rv, true);
    CHECK(y.dtype() == half);
    const Tensor ref = batch_norm(to(xh, DType::Float32), to(wh, DType::Float32), to(bh, DType::Float32), rm_ref,
                                  rv_ref, true);
    const double rtol = half == DType::BFloat16 ? 1.0 / 128 : 1.0 / 1024;  // one rounding of the output
    check_close(to(y, DType::Float32), ref, 1e-2, rtol, std::string(dtype_name(half)));
    check_close(rv, rv_ref, 1e-6, 1e-6, std::string(dtype_name(half)) + " running_var");
  }
}

TEST_CASE("batch_norm rejects bad inputs, naming the op") {
  const Tensor x = values({4, 3}, 51);
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64), none;
  throws_with([&] { batch_norm(values({3}, 1), {}, {}, rm, rv, true); }, "at least 2 dims");
  throws_with([&] { batch_norm(x, values({4}, 1), {}, rm, rv, true); }, "weight must be (3)");
  throws_with([&] { batch_norm(x, {}, values({2}, 1), rm, rv, true); }, "bias must be (3)");
  Tensor rm_bad = zeros({5}, DType::Float64);
  throws_with([&] { batch_norm(x, {}, {}, rm_bad, rv, true); }, "running_mean must be (3)");
  throws_with([&] { batch_norm(x, {}, {}, none, none, false); }, "eval mode");
  throws_with([&] { batch_norm(values({1, 1, 3}, 1), {}, {}, rm, rv, true); }, "more than one value");
  throws_with([&] { batch_norm(x, values({3}, 1, -1, 1, DType::Float32), {}, rm, rv, true); }, "dtype");
}
