// Pretraining objectives against hand computations.
#include <cmath>

#include "tests/support/check.h"
#include "train/objectives.h"

using namespace vb;
using namespace vb::train;

TEST_CASE("BERT masking: 15% of ordinary tokens, 80/10/10, specials and padding untouched") {
  SpecialTokens s{0, 1, 2, 3, 4, 1000};
  const int64_t b = 64, l = 512;
  std::vector<int64_t> v(size_t(b * l));
  for (int64_t i = 0; i < b * l; ++i) v[size_t(i)] = (i % l == 0) ? 1 : (i % l == l - 1) ? 2 : (i % l > 500) ? 0 : 5 + i % 900;
  Tensor ids = Tensor::from_vector(v, {b, l});
  Generator g{1, 0};
  MaskedTokens m = mask_tokens(ids, s, 0.15, g);
  const auto x = m.ids.to_vector(), y = m.labels.to_vector();
  int64_t ordinary = 0, chosen = 0, to_mask = 0, kept = 0, random = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const bool special = v[i] <= 4;
    if (special) {
      REQUIRE(x[i] == double(v[i]));
      REQUIRE(y[i] == -100);
      continue;
    }
    ++ordinary;
    if (y[i] == -100) {
      REQUIRE(x[i] == double(v[i]));
      continue;
    }
    ++chosen;
    CHECK(y[i] == double(v[i]));
    if (x[i] == 3) ++to_mask;
    else if (x[i] == double(v[i])) ++kept;
    else {
      ++random;
      CHECK(x[i] > 4);  // a random ordinary token
    }
  }
  CHECK(m.count == chosen);
  CHECK(double(chosen) / double(ordinary) == doctest::Approx(0.15).epsilon(0.05));
  CHECK(double(to_mask) / double(chosen) == doctest::Approx(0.8).epsilon(0.03));
  CHECK(double(kept) / double(chosen) == doctest::Approx(0.1).epsilon(0.15));
  CHECK(double(random) / double(chosen) == doctest::Approx(0.1).epsilon(0.15));
  // Deterministic from the generator.
  Generator g2{1, 0};
  CHECK(mask_tokens(ids, s, 0.15, g2).ids.to_vector() == x);
}

TEST_CASE("MLM loss and accuracy count the chosen positions only") {
  Tensor logits = Tensor::from_vector(std::vector<double>{2, 0, 0, 0, 3, 0, 1, 1, 1}, {1, 3, 3});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, -100, 2}, {1, 3});
  const double l0 = std::log(std::exp(2) + 2) - 2;  // row 0, target 0
  const double l2 = std::log(3.0);                   // row 2, target 2
  CHECK(mlm_loss(logits, labels).item() == doctest::Approx((l0 + l2) / 2).epsilon(1e-6));
  CHECK(mlm_accuracy(logits, labels) == doctest::Approx(0.5));  // row 2 ties: argmax picks index 0
}

TEST_CASE("mismatched partners form a derangement") {
  Generator g{3, 0};
  for (int64_t b : {2, 3, 8}) {
    auto p = mismatched_partners(b, g);
    std::vector<bool> seen(size_t(b), false);
    for (int64_t i = 0; i < b; ++i) {
      CHECK(p[size_t(i)] != i);
      seen[size_t(p[size_t(i)])] = true;
    }
    for (bool s : seen) CHECK(s);
  }
  CHECK_THROWS_WITH_AS(mismatched_partners(1, g), doctest::Contains("batch_size"), Error);
}

TEST_CASE("matching loss is binary cross-entropy on positives vs negatives") {
  Tensor pos = Tensor::from_vector(std::vector<double>{1.5, -0.5}, {2});
  Tensor neg = Tensor::from_vector(std::vector<double>{0.3, -2.0}, {2});
  auto sp = [](double x) { return std::log1p(std::exp(x)); };  // softplus
  const double expected = (sp(-1.5) + sp(0.5) + sp(0.3) + sp(-2.0)) / 4;
  CHECK(matching_loss(pos, neg).item() == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("masked frame loss is cross-entropy of dot-product scores against the true frame") {
  Tensor pred = Tensor::from_vector(std::vector<double>{1, 0, 0, 1}, {2, 2});
  Tensor feats = Tensor::from_vector(std::vector<double>{2, 0, 0, 3, 1, 1}, {3, 2});
  Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
  // Row 0 scores (2, 0, 1) target 0; row 1 scores (0, 3, 1) target 1.
  const double l0 = std::log(std::exp(2) + 1 + std::exp(1)) - 2;
  const double l1 = std::log(1 + std::exp(3) + std::exp(1)) - 3;
  CHECK(masked_frame_loss(pred, feats, target).item() == doctest::Approx((l0 + l1) / 2).epsilon(1e-6));
  Generator g{5, 0};
  Tensor m = choose_frames(16, 4, 0.0001, g);
  for (int64_t b = 0; b < 16; ++b) {
    int any = 0;
    for (int64_t t = 0; t < 4; ++t) any += m.at({b, t}) != 0;
    CHECK(any >= 1);  // at least one frame per row
  }
}

TEST_CASE("retrieval metrics from a score matrix") {
  // Query 0 ranks its match 1st, query 1 ranks it 3rd, query 2 ranks it 2nd.
  Tensor s = Tensor::from_vector(std::vector<double>{9, 1, 2,  5, 1, 3,  0, 4, 3}, {3, 3});
  Retrieval r = retrieval_metrics(s);
  CHECK(r.r1 == doctest::Approx(1.0 / 3));
  CHECK(r.r5 == doctest::Approx(1.0));
  CHECK(r.median_rank == 2);
}
