// The neural-network functions on the CPU: forward values against loops in double written here, float64
// gradient checks, half-precision results against float32, and the errors users see.
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tensor/philox.h"
#include "tests/support/check.h"
#include "tests/support/kernel_calls.h"

using namespace vb;
using vb::test::check_close;
using vb::test::error_of;
using vb::test::gradcheck;
using vb::test::uniform;

namespace {

// Row-major strides of a shape, for the reference loops.
std::vector<int64_t> strides_of(const Shape& s) { return contiguous_strides(s); }

// softmax / log_softmax of x (values v, shape s) over dim d, in double.
std::vector<double> softmax_reference(const std::vector<double>& v, const Shape& s, int d, bool log) {
  const std::vector<int64_t> st = strides_of(s);
  const int64_t n = s[size_t(d)], step = st[size_t(d)];
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if ((int64_t(i) / step) % n != 0) continue;  // visit each line along d once, from its first element
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, v[size_t(int64_t(i) + j * step)]);
    for (int64_t j = 0; j < n; ++j) sum += std::exp(v[size_t(int64_t(i) + j * step)] - m);
    for (int64_t j = 0; j < n; ++j) {
      const double x = v[size_t(int64_t(i) + j * step)];
      out[size_t(int64_t(i) + j * step)] = log ? x - m - std::log(sum) : std::exp(x - m) / sum;
    }
  }
  return out;
}

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::Float64); }
Tensor ids_tensor(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::Int64); }

}  // namespace

// ---------------------------------------------------------------- softmax

TEST_CASE("softmax and log_softmax match a double reference over every dim") {
  const Shape s = {3, 4, 5};
  const Tensor x = uniform(s, 1, -3, 3);
  for (int d = 0; d < 3; ++d) {
    for (bool log : {false, true}) {
      const Tensor y = log ? log_softmax(x, d) : softmax(x, d);
      check_close(y, f64(softmax_reference(x.to_vector(), s, d, log), s), 1e-12, 1e-12,
                  fmt::format("{} dim {}", log ? "log_softmax" : "softmax", d));
    }
  }
  // Large logits do not overflow (the max is subtracted first).
  const Tensor big = f64({1000, 1001, 1002}, {3});
  check_close(softmax(big), f64(softmax_reference({1000, 1001, 1002}, {3}, 0, false), {3}), 1e-12, 1e-12, "big");
  check_close(softmax(to(big, DType::Float32)), to(softmax(big), DType::Float32), 1e-6, 1e-5, "big float32");
}

TEST_CASE("softmax and log_softmax gradients") {
  for (bool log : {false, true}) {
    const std::string name = log ? "log_softmax" : "softmax";
    auto op = [log](const Tensor& x, int d) { return log ? log_softmax(x, d) : softmax(x, d); };
    for (int d : {0, 1, -1}) {
      gradcheck([&](const std::vector<Tensor>& in) { return op(in[0], d); }, {uniform({3, 4, 5}, 2)},
                fmt::format("{} dim {}", name, d));
    }
    // Non-contiguous input, and a size-1 dim.
    gradcheck([&](const std::vector<Tensor>& in) { return op(transpose(in[0], 0, 1), -1); }, {uniform({5, 3}, 3)},
              name + " of a transpose");
    gradcheck([&](const std::vector<Tensor>& in) { return op(in[0], 1); }, {uniform({4, 1, 3}, 4)},
              name + " over a size-1 dim");
    gradcheck([&](const std::vector<Tensor>& in) { return op(in[0], 0); }, {uniform({7}, 5)}, name + " 1-d");
  }
}

TEST_CASE("softmax in bfloat16 and float16 follows float32") {
  const Tensor x = uniform({8, 33}, 6, -4, 4, DType::Float32);
  const Tensor ref = softmax(x, -1);
  check_close(to(softmax(to(x, DType::BFloat16), -1), DType::Float32), ref, 1e-3, 1e-2, "softmax bf16");
  check_close(to(softmax(to(x, DType::Float16), -1), DType::Float32), ref, 1e-4, 2e-3, "softmax f16");
  check_close(to(log_softmax(to(x, DType::BFloat16), -1), DType::Float32), log_softmax(x, -1), 5e-2, 1e-2,
              "log_softmax bf16");
}

TEST_CASE("softmax rejects integer input") {
  CHECK_THROWS_AS(softmax(ids_tensor({1, 2}, {2})), Error);
  CHECK(error_of([] { softmax(uniform({2, 3}, 1), 2); }).find("softmax") != std::string::npos);
}

// ---------------------------------------------------------------- layer norm

namespace {
std::vector<double> layer_norm_reference(const Tensor& x, int64_t cols, const Tensor& w, const Tensor& b,
                                         double eps) {
  const std::vector<double> v = x.to_vector();
  const std::vector<double> wv = w.defined() ? w.to_vector() : std::vector<double>(size_t(cols), 1.0);
  const std::vector<double> bv = b.defined() ? b.to_vector() : std::vector<double>(size_t(cols), 0.0);
  std::vector<double> out(v.size());
  for (size_t r = 0; r < v.size() / size_t(cols); ++r) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < cols; ++j) mu += v[r * size_t(cols) + size_t(j)];
    mu /= double(cols);
    for (int64_t j = 0; j < cols; ++j) var += std::pow(v[r * size_t(cols) + size_t(j)] - mu, 2);
    var /= double(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = r * size_t(cols) + size_t(j);
      out[i] = (v[i] - mu) / std::sqrt(var + eps) * wv[size_t(j)] + bv[size_t(j)];
    }
  }
  return out;
}
}  // namespace

TEST_CASE("layer_norm forward matches the definition") {
  const Tensor x = uniform({2, 3, 8}, 10, -2, 3);
  const Tensor w = uniform({8}, 11), b = uniform({8}, 12);
  check_close(layer_norm(x, 1, w, b), f64(layer_norm_reference(x, 8, w, b, 1e-5), x.shape()), 1e-12, 1e-10,
              "affine");
  check_close(layer_norm(x, 1, {}, {}, 1e-3), f64(layer_norm_reference(x, 8, {}, {}, 1e-3), x.shape()), 1e-12,
              1e-10, "no affine");
  const Tensor w2 = uniform({3, 8}, 13), b2 = uniform({3, 8}, 14);
  check_close(layer_norm(x, 2, w2, b2), f64(layer_norm_reference(x, 24, w2, b2, 1e-5), x.shape()), 1e-12, 1e-10,
              "two normalised dims");
  // float32, and half types against float32.
  const Tensor xf = to(x, DType::Float32), wf = to(w, DType::Float32), bf = to(b, DType::Float32);
  const Tensor ref = layer_norm(xf, 1, wf, bf);
  check_close(ref, to(layer_norm(x, 1, w, b), DType::Float32), 1e-5, 1e-5, "float32");
  check_close(to(layer_norm(to(xf, DType::BFloat16), 1, to(wf, DType::BFloat16), to(bf, DType::BFloat16)),
                 DType::Float32),
              ref, 3e-2, 2e-2, "bfloat16");
}

TEST_CASE("layer_norm gradients") {
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], 1, in[1], in[2]); },
            {uniform({4, 6}, 20), uniform({6}, 21), uniform({6}, 22)}, "layer_norm affine");
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], 1, {}, {}); }, {uniform({3, 5}, 23)},
            "layer_norm no affine");
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], 1, in[1], {}); },
            {uniform({3, 5}, 24), uniform({5}, 25)}, "layer_norm weight only");
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], 2, in[1], in[2]); },
            {uniform({2, 3, 4}, 26), uniform({3, 4}, 27), uniform({3, 4}, 28)}, "layer_norm over two dims");
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(transpose(in[0], 0, 1), 1, in[1], in[2]); },
            {uniform({5, 3}, 29), uniform({5}, 30), uniform({5}, 31)}, "layer_norm of a transpose");
  // Enough rows for several row blocks in the weight/bias reduction.
  gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], 1, in[1], in[2]); },
            {uniform({70, 3}, 32), uniform({3}, 33), uniform({3}, 34)}, "layer_norm many rows");
}

TEST_CASE("layer_norm checks shapes") {
  const Tensor x = uniform({2, 4}, 1);
  CHECK(error_of([&] { layer_norm(x, 1, uniform({3}, 2), {}); }).find("weight has shape (3)") != std::string::npos);
  CHECK(error_of([&] { layer_norm(x, 3, {}, {}); }).find("normalized_dims") != std::string::npos);
  CHECK_THROWS_AS(layer_norm(x, 1, uniform({4}, 2, -1, 1, DType::Float32), {}), Error);
}

// ---------------------------------------------------------------- embedding

TEST_CASE("embedding looks up rows for ids of any shape") {
  const Tensor w = uniform({5, 3}, 40);
  const Tensor ids = ids_tensor({4, 0, 4, 2, 1, 4}, {2, 3});
  const Tensor y = embedding(w, ids);
  REQUIRE(y.shape() == Shape{2, 3, 3});
  const std::vector<int64_t> iv = {4, 0, 4, 2, 1, 4};
  for (size_t i = 0; i < iv.size(); ++i) {
    for (int64_t h = 0; h < 3; ++h) CHECK(y.at_linear(int64_t(i) * 3 + h) == w.at({iv[i], h}));
  }
  const Tensor y32 = embedding(w, to(ids, DType::Int32));
  check_close(y32, y, 0, 0, "int32 ids");
}

TEST_CASE("embedding gradient: repeated ids add up, padding_idx stays zero") {
  const Tensor ids = ids_tensor({1, 3, 1, 1, 0, 3}, {3, 2});
  gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], ids); }, {uniform({4, 3}, 41)},
            "embedding repeated ids");
  gradcheck([&](const std::vector<Tensor>& in) { return embedding(transpose(in[0], 0, 1), ids); },
            {uniform({3, 4}, 42)}, "embedding of a transposed weight");

  Tensor w = uniform({4, 3}, 43);
  w.set_requires_grad(true);
  const Tensor g = uniform({3, 2, 3}, 44);
  backward(embedding(w, ids, /*padding_idx=*/1), g);
  const std::vector<int64_t> iv = {1, 3, 1, 1, 0, 3};
  for (int64_t v = 0; v < 4; ++v) {
    for (int64_t h = 0; h < 3; ++h) {
      double expected = 0;
      for (size_t i = 0; i < iv.size(); ++i)
        if (iv[i] == v && v != 1) expected += g.at_linear(int64_t(i) * 3 + h);
      CHECK(w.grad().at({v, h}) == doctest::Approx(expected).epsilon(1e-14));
    }
  }
}

TEST_CASE("a weight looked up by several passes: the later ones add their rows into the gradient sum") {
  // Four lookups of one weight (int64 ids; int32 ids with a padding_idx; index_select twice): the first
  // gradient to reach the weight is written out dense, the other three are added into that sum row by row
  // (Node::into; the kernel profiler counts which kernels ran). Values against loops in double, and
  // float64 finite differences.
  const std::vector<int64_t> i1 = {1, 3, 1, 4}, i2 = {0, 3, 3, 2, 1}, i3 = {4, 4, 0}, i4 = {2, 4};
  const Tensor ids1 = ids_tensor(i1, {4}), ids2 = to(ids_tensor(i2, {5}), DType::Int32), ids3 = ids_tensor(i3, {3});
  const Tensor ids4 = ids_tensor(i4, {2});
  const Tensor g1 = uniform({4, 3}, 45), g2 = uniform({5, 3}, 46), g3 = uniform({3, 3}, 47), g4 = uniform({2, 3}, 50);
  auto f = [&](const std::vector<Tensor>& in, int64_t padding_idx) {
    return add(add(sum(mul(embedding(in[0], ids1), g1)), sum(mul(embedding(in[0], ids2, padding_idx), g2))),
               add(sum(mul(index_select(in[0], 0, ids3), g3)), sum(mul(index_select(in[0], 0, ids4), g4))));
  };
  Tensor w = uniform({5, 3}, 48);
  w.set_requires_grad(true);
  const Tensor loss = f({w}, /*padding_idx=*/3);
  std::map<std::string, int64_t> calls = vb::test::kernel_calls([&] { backward(loss); });
  // Dense: an embedding_backward, or index_select's zeros (a fill: the other fill is backward's seed 1) and
  // index_add; added into the sum: one index_add each.
  const int64_t dense_embedding = calls["embedding_backward float64"], dense_select = calls["fill float64"] - 1;
  CHECK(dense_embedding + dense_select == 1);
  CHECK(calls["index_add float64"] == 3 + dense_select);
  for (int64_t v = 0; v < 5; ++v)
    for (int64_t h = 0; h < 3; ++h) {
      double expected = 0;
      for (size_t i = 0; i < i1.size(); ++i) expected += i1[i] == v ? g1.at({int64_t(i), h}) : 0.0;
      for (size_t i = 0; i < i2.size(); ++i) expected += i2[i] == v && v != 3 ? g2.at({int64_t(i), h}) : 0.0;
      for (size_t i = 0; i < i3.size(); ++i) expected += i3[i] == v ? g3.at({int64_t(i), h}) : 0.0;
      for (size_t i = 0; i < i4.size(); ++i) expected += i4[i] == v ? g4.at({int64_t(i), h}) : 0.0;
      CHECK(w.grad().at({v, h}) == doctest::Approx(expected).epsilon(1e-14));
    }
  // (Finite differences see the padding row's use, which padding_idx keeps out of the gradient: none here.)
  gradcheck([&](const std::vector<Tensor>& in) { return f(in, -1); }, {uniform({5, 3}, 49)},
            "four lookups of one weight");
}

TEST_CASE("embedding errors name the id and V") {
  const Tensor w = uniform({5, 3}, 45);
  const std::string msg = error_of([&] { embedding(w, ids_tensor({0, 9, 1}, {3})); });
  CHECK(msg.find("id 9") != std::string::npos);
  CHECK(msg.find("V = 5") != std::string::npos);
  CHECK_THROWS_AS(embedding(w, ids_tensor({-1}, {1})), Error);
  CHECK(error_of([&] { embedding(w, f64({1}, {1})); }).find("int32 or int64") != std::string::npos);
  CHECK(error_of([&] { embedding(uniform({5}, 1), ids_tensor({0}, {1})); }).find("(V, H)") != std::string::npos);
  CHECK(error_of([&] { embedding(w, ids_tensor({0}, {1}), 7); }).find("padding_idx") != std::string::npos);
}

// ---------------------------------------------------------------- cross-entropy

namespace {
// Per-row loss as PyTorch defines it: −Σ_j q_j·log_softmax_j, q = (1 − s)·onehot(t) + s/C.
std::vector<double> cross_entropy_reference(const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore,
                                            double s) {
  const int64_t c = logits.size(-1);
  const std::vector<double> v = logits.to_vector();
  std::vector<double> out;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore) {
      out.push_back(0);
      continue;
    }
    const std::vector<double> row(v.begin() + int64_t(r) * c, v.begin() + int64_t(r + 1) * c);
    const std::vector<double> ls = softmax_reference(row, {c}, 0, true);
    double loss = 0;
    for (int64_t j = 0; j < c; ++j) loss -= ((j == t[r] ? 1 - s : 0) + s / double(c)) * ls[size_t(j)];
    out.push_back(loss);
  }
  return out;
}
}  // namespace

TEST_CASE("cross_entropy forward: reductions, ignore_index, label smoothing") {
  const Tensor logits = uniform({6, 5}, 50, -3, 3);
  const std::vector<int64_t> t = {0, 4, -100, 2, 2, 1};
  const Tensor target = ids_tensor(t, {6});
  for (double s : {0.0, 0.1}) {
    const std::vector<double> ref = cross_entropy_reference(logits, t, -100, s);
    double total = 0;
    for (double l : ref) total += l;
    check_close(cross_entropy(logits, target, -100, s, Reduction::None), f64(ref, {6}), 1e-12, 1e-12, "none");
    check_close(cross_entropy(logits, target, -100, s, Reduction::Sum), f64({total}, {}), 1e-12, 1e-12, "sum");
    check_close(cross_entropy(logits, target, -100, s, Reduction::Mean), f64({total / 5}, {}), 1e-12, 1e-12,
                "mean over the 5 non-ignored rows");
  }
  // (…, C) logits with a target of the leading shape, and a custom ignore_index.
  const Tensor l3 = reshape(logits, {2, 3, 5});
  const std::vector<double> ref3 = cross_entropy_reference(logits, {0, 4, 3, 2, 3, 1}, 3, 0.0);
  check_close(cross_entropy(l3, ids_tensor({0, 4, 3, 2, 3, 1}, {2, 3}), 3, 0.0, Reduction::None), f64(ref3, {2, 3}),
              1e-12, 1e-12, "3-d");
  // Every target ignored: the mean is 0/0 = NaN, as in PyTorch.
  CHECK(std::isnan(cross_entropy(logits, ids_tensor(std::vector<int64_t>(6, -100), {6})).item()));
  // float32 and bfloat16 against float64.
  const Tensor ref = cross_entropy(logits, target, -100, 0.1);
  check_close(to(cross_entropy(to(logits, DType::Float32), target, -100, 0.1), DType::Float64), ref, 1e-6, 1e-5,
              "float32");
  check_close(to(cross_entropy(to(logits, DType::BFloat16), target, -100, 0.1), DType::Float64), ref, 2e-2, 2e-2,
              "bfloat16");
}

TEST_CASE("cross_entropy gradients") {
  const Tensor target = ids_tensor({0, 4, -100, 2, 2, 1}, {6});
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    for (double s : {0.0, 0.2}) {
      gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, -100, s, r); },
                {uniform({6, 5}, 51)}, fmt::format("cross_entropy reduction {} smoothing {}", int(r), s));
    }
  }
  gradcheck([&](const std::vector<Tensor>& in) {
    return cross_entropy(transpose(in[0], 0, 1), ids_tensor({1, 0, 2}, {3}), -100, 0.1);
  }, {uniform({4, 3}, 52)}, "cross_entropy of transposed logits");
  gradcheck([&](const std::vector<Tensor>& in) {
    return cross_entropy(in[0], ids_tensor({1, 0, 2, 2}, {2, 2}), 2, 0.0, Reduction::Mean);
  }, {uniform({2, 2, 3}, 53)}, "cross_entropy 3-d with ignore_index 2");
}

TEST_CASE("cross_entropy errors") {
  const Tensor logits = uniform({4, 3}, 54);
  CHECK(error_of([&] { cross_entropy(logits, ids_tensor({0, 1, 2}, {3})); }).find("expected (4)") !=
        std::string::npos);
  CHECK(error_of([&] { cross_entropy(logits, ids_tensor({0, 1, 5, 2}, {4})); }).find("target 5") !=
        std::string::npos);
  CHECK(error_of([&] { cross_entropy(logits, f64({0, 1, 2, 0}, {4})); }).find("int64") != std::string::npos);
  CHECK_THROWS_AS(cross_entropy(logits, ids_tensor({0, 1, 2, 0}, {4}), -100, 1.5), Error);
}

// ---------------------------------------------------------------- binary cross-entropy with logits

TEST_CASE("binary_cross_entropy_with_logits forward and gradients") {
  const Tensor x = uniform({3, 4}, 60, -5, 5), y = uniform({3, 4}, 61, 0, 1), pw = uniform({4}, 62, 0.5, 3);
  const std::vector<double> xv = x.to_vector(), yv = y.to_vector(), pv = pw.to_vector();
  std::vector<double> plain, weighted;
  for (size_t i = 0; i < xv.size(); ++i) {
    const double sig = 1 / (1 + std::exp(-xv[i])), p = pv[i % 4];
    plain.push_back(-(yv[i] * std::log(sig) + (1 - yv[i]) * std::log(1 - sig)));
    weighted.push_back(-(p * yv[i] * std::log(sig) + (1 - yv[i]) * std::log(1 - sig)));
  }
  check_close(binary_cross_entropy_with_logits(x, y, Reduction::None), f64(plain, {3, 4}), 1e-12, 1e-10, "plain");
  check_close(binary_cross_entropy_with_logits(x, y, Reduction::None, pw), f64(weighted, {3, 4}), 1e-12, 1e-10,
              "pos_weight");
  double total = 0;
  for (double v : plain) total += v;
  check_close(binary_cross_entropy_with_logits(x, y), f64({total / 12}, {}), 1e-12, 1e-10, "mean");
  check_close(binary_cross_entropy_with_logits(x, y, Reduction::Sum), f64({total}, {}), 1e-12, 1e-10, "sum");
  // Large logits stay finite.
  CHECK(std::isfinite(binary_cross_entropy_with_logits(f64({800, -800}, {2}), f64({0, 1}, {2})).item()));

  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    gradcheck([&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], r); },
              {x, y}, fmt::format("bce reduction {}", int(r)));
    gradcheck([&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], r, in[2]); },
              {x, y, pw}, fmt::format("bce pos_weight reduction {}", int(r)));
  }
  CHECK(error_of([&] { binary_cross_entropy_with_logits(x, uniform({4, 3}, 1)); }).find("target has shape") !=
        std::string::npos);
}

// ---------------------------------------------------------------- dropout

TEST_CASE("dropout: one mask per (seed, offset), fraction p, exact scaling") {
  const int64_t n = 1 << 20;
  const Tensor x = ones({n}, DType::Float32);
  for (double p : {0.1, 0.5, 0.9}) {
    Generator g1{7, 100}, g2{7, 100};
    const Tensor a = dropout(x, p, true, &g1), b = dropout(x, p, true, &g2);
    CHECK(g1.offset == 100 + uint64_t(n));
    check_close(a, b, 0, 0, "same seed and offset");
    const std::vector<double> v = a.to_vector();
    const double scale = double(float(1.0 / (1.0 - p)));
    int64_t dropped = 0;
    bool exact = true;
    for (double e : v) {
      if (e == 0) ++dropped;
      else exact = exact && e == scale;
    }
    CHECK(exact);
    // Binomial(n, p): 5 standard deviations.
    CHECK(std::abs(double(dropped) / double(n) - p) < 5 * std::sqrt(p * (1 - p) / double(n)));
    // The mask is the Philox stream: element i kept iff uniform(seed, offset + i) ≥ p.
    for (int64_t i : {int64_t(0), int64_t(1), int64_t(12345), n - 1}) {
      const bool keep = philox_uniform(7, 100 + uint64_t(i)) >= float(p);
      CHECK((v[size_t(i)] != 0) == keep);
    }
  }
  // A different offset gives a different mask.
  Generator g3{7, 0}, g4{7, 1};
  CHECK(dropout(x, 0.5, true, &g3).to_vector() != dropout(x, 0.5, true, &g4).to_vector());
}

// A batch split into shards (data parallel, tensor/philox.h's advance_rows): each shard's rows get the mask
// one dropout over the whole batch gives them, for dropout and for attention's dropout (batch outermost).
TEST_CASE("dropout and attention dropout: shards of a batch get the whole batch's masks, row for row") {
  const int64_t rows = 6, shards = 3, per = rows / shards;
  const Tensor x = ones({rows, 5, 7});
  const Tensor q = uniform({rows, 2, 4, 8}, 71), k = uniform({rows, 2, 5, 8}, 72), v = uniform({rows, 2, 5, 8}, 73);
  Generator whole{9, 40};
  const Tensor dx = dropout(x, 0.5, true, &whole);
  const Tensor att = scaled_dot_product_attention(q, k, v, {}, 0.3, std::nullopt, &whole);
  for (int64_t s = 0; s < shards; ++s) {
    CAPTURE(s);
    Generator g{9, 40, uint64_t(s), uint64_t(shards)};
    check_close(dropout(narrow(x, 0, s * per, per), 0.5, true, &g), narrow(dx, 0, s * per, per), 0, 0, "dropout rows");
    const Tensor part = scaled_dot_product_attention(narrow(q, 0, s * per, per), narrow(k, 0, s * per, per),
                                                     narrow(v, 0, s * per, per), {}, 0.3, std::nullopt, &g);
    check_close(part, narrow(att, 0, s * per, per), 0, 0, "attention dropout rows");
    CHECK(g.offset == whole.offset);
  }
}

TEST_CASE("dropout: identity, zeros, half types, gradients") {
  const Tensor x = uniform({4, 5}, 70);
  Generator g{1, 0};
  CHECK(dropout(x, 0.0, true, &g).same(x));
  CHECK(dropout(x, 0.7, false, &g).same(x));
  CHECK(g.offset == 0);
  check_close(dropout(x, 1.0, true, &g), zeros({4, 5}, DType::Float64), 0, 0, "p = 1");
  // bfloat16 uses the same mask as float32.
  const Tensor xf = uniform({64}, 71, -1, 1, DType::Float32);
  Generator ga{3, 5}, gb{3, 5};
  check_close(to(dropout(to(xf, DType::BFloat16), 0.3, true, &ga), DType::Float32), dropout(xf, 0.3, true, &gb),
              1e-2, 1e-2, "bfloat16");
  // A fresh generator each call makes f deterministic, so finite differences apply.
  gradcheck([](const std::vector<Tensor>& in) {
    Generator gen{42, 7};
    return dropout(in[0], 0.4, true, &gen);
  }, {uniform({5, 6}, 72)}, "dropout");
  gradcheck([](const std::vector<Tensor>& in) {
    Generator gen{43, 0};
    return dropout(transpose(in[0], 0, 1), 0.25, true, &gen);
  }, {uniform({3, 4}, 73)}, "dropout of a transpose");
  CHECK_THROWS_AS(dropout(x, 1.5), Error);
  CHECK_THROWS_AS(dropout(ids_tensor({1}, {1}), 0.5), Error);
}

// ---------------------------------------------------------------- index_select and gather

TEST_CASE("index_select forward, gradient and errors") {
  const Tensor x = uniform({4, 3, 2}, 80);
  const Tensor idx = ids_tensor({2, 0, 2, 3, 2}, {5});
  const std::vector<int64_t> iv = {2, 0, 2, 3, 2};
  const Tensor y = index_select(x, 0, idx);
  REQUIRE(y.shape() == Shape{5, 3, 2});
  for (int64_t j = 0; j < 5; ++j)
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t b = 0; b < 2; ++b) CHECK(y.at({j, a, b}) == x.at({iv[size_t(j)], a, b}));
  const Tensor y1 = index_select(x, 1, ids_tensor({1, 1}, {2}));
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t b = 0; b < 2; ++b) CHECK(y1.at({i, 1, b}) == x.at({i, 1, b}));
  for (int d : {0, 1, 2}) {
    const Tensor id = ids_tensor({1, 0, 1}, {3});
    gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], d, id); }, {x},
              fmt::format("index_select dim {}", d));
  }
  gradcheck([&](const std::vector<Tensor>& in) { return index_select(transpose(in[0], 0, 2), 0, idx); },
            {uniform({2, 3, 4}, 81)}, "index_select of a transpose");
  // Integer tensors are indexed too.
  check_close(index_select(ids_tensor({5, 6, 7}, {3}), 0, ids_tensor({2, 0}, {2})), ids_tensor({7, 5}, {2}), 0, 0,
              "int64 input");
  CHECK(error_of([&] { index_select(x, 0, ids_tensor({4}, {1})); }).find("index 4") != std::string::npos);
  CHECK(error_of([&] { index_select(x, 0, ids_tensor({0, 1}, {1, 2})); }).find("1-d int64") != std::string::npos);
}

TEST_CASE("gather forward, gradient and errors") {
  const Tensor x = uniform({3, 4}, 90);
  const Tensor idx = ids_tensor({3, 3, 0, 1, 2, 2, 0, 0}, {2, 4});
  const Tensor y = gather(x, 1, idx);  // y[i][j] = x[i][idx[i][j]]
  REQUIRE(y.shape() == Shape{2, 4});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j) CHECK(y.at({i, j}) == x.at({i, int64_t(idx.at({i, j}))}));
  const Tensor y0 = gather(x, 0, ids_tensor({2, 0, 1, 2, 0, 0}, {2, 3}));  // y[i][j] = x[idx[i][j]][j]
  CHECK(y0.at({0, 2}) == x.at({1, 2}));
  CHECK(y0.at({1, 0}) == x.at({2, 0}));
  gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx); }, {x}, "gather dim 1");
  gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 0, ids_tensor({2, 0, 1, 2, 2, 2}, {2, 3})); },
            {x}, "gather dim 0 with repeats");
  gradcheck([&](const std::vector<Tensor>& in) { return gather(transpose(in[0], 0, 1), 1, ids_tensor({1, 1, 0, 2}, {2, 2})); },
            {uniform({3, 4}, 91)}, "gather of a transpose");
  CHECK(error_of([&] { gather(x, 1, ids_tensor({4}, {1, 1})); }).find("index 4") != std::string::npos);
  CHECK_THROWS_AS(gather(x, 1, ids_tensor({0}, {1})), Error);                  // fewer dims
  CHECK_THROWS_AS(gather(x, 1, ids_tensor({0, 0, 0, 0}, {4, 1})), Error);      // larger than x in dim 0
}

// ---------------------------------------------------------------- large shapes (the parallel paths), half types

namespace {
// Gradients of sum(f(x)·w) for the leaves made from `inputs` converted to dtype t (returned as float64).
std::vector<Tensor> grads_in(DType t, const std::vector<Tensor>& inputs,
                             const std::function<Tensor(const std::vector<Tensor>&)>& f, const Tensor& w) {
  std::vector<Tensor> leaves;
  for (const Tensor& x : inputs) {
    leaves.push_back(detach(to(x, t)));
    leaves.back().set_requires_grad(true);
  }
  backward(sum(mul(to(f(leaves), DType::Float64), w)));
  std::vector<Tensor> out;
  for (const Tensor& x : leaves) out.push_back(to(x.grad(), DType::Float64));
  return out;
}
}  // namespace

TEST_CASE("large shapes and half types: float32/bfloat16 gradients follow float64") {
  struct Case {
    const char* name;
    std::vector<Tensor> inputs;
    std::function<Tensor(const std::vector<Tensor>&)> f;
    Shape out_shape;
    double bf16_tol;
  };
  const Tensor ids = randint(0, 50, {600}, nullptr, DType::Int64);
  const Tensor target = randint(0, 100, {300}, nullptr, DType::Int64);
  std::vector<Case> cases = {
      {"softmax", {uniform({256, 200}, 100, -3, 3)}, [](const auto& in) { return softmax(in[0], -1); }, {256, 200},
       2e-2},
      {"layer_norm", {uniform({300, 256}, 101, -2, 2), uniform({256}, 102), uniform({256}, 103)},
       [](const auto& in) { return layer_norm(in[0], 1, in[1], in[2]); }, {300, 256}, 5e-2},
      {"embedding", {uniform({50, 128}, 104)}, [&](const auto& in) { return embedding(in[0], ids); }, {600, 128},
       2e-2},
      {"cross_entropy", {uniform({300, 100}, 105, -3, 3)},
       [&](const auto& in) { return cross_entropy(in[0], target, -100, 0.1, Reduction::None); }, {300}, 2e-2},
  };
  for (const Case& c : cases) {
    const Tensor w = uniform(c.out_shape, 106);
    const std::vector<Tensor> g64 = grads_in(DType::Float64, c.inputs, c.f, w);
    const std::vector<Tensor> g32 = grads_in(DType::Float32, c.inputs, c.f, w);
    const std::vector<Tensor> g32b = grads_in(DType::Float32, c.inputs, c.f, w);
    const std::vector<Tensor> gbf = grads_in(DType::BFloat16, c.inputs, c.f, w);
    for (size_t i = 0; i < g64.size(); ++i) {
      const double scale = amax(abs(g64[i]), {}).item();
      check_close(g32[i], g64[i], 1e-5 * scale, 1e-4, fmt::format("{} float32 gradient {}", c.name, i));
      check_close(g32b[i], g32[i], 0, 0, fmt::format("{} float32 gradient {} is deterministic", c.name, i));
      check_close(gbf[i], g64[i], c.bf16_tol * scale, c.bf16_tol, fmt::format("{} bfloat16 gradient {}", c.name, i));
    }
  }
}
