// Pretraining objectives against hand computations.
#include <algorithm>
#include <cmath>
#include <set>

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

TEST_CASE("hard negatives: never the row itself, drawn in proportion to exp(similarity)") {
  // Row 0 strongly prefers column 2; row 1 is uniform over the other three; row 2 prefers 0 or 3 equally.
  const double big = 50;
  Tensor sim = Tensor::from_vector(std::vector<double>{9, 0, big, 0,   //
                                                       5, 9, 5, 5,     //
                                                       big, 0, 9, big,  //
                                                       0, 0, 0, 0},
                                   {4, 4}, DType::Float64);
  Generator g{5, 0};
  std::vector<std::vector<int64_t>> counts(4, std::vector<int64_t>(4, 0));
  const int64_t draws = 4000;
  for (int64_t d = 0; d < draws; ++d) {
    auto p = hard_negative_partners(sim, g);
    for (int64_t i = 0; i < 4; ++i) {
      REQUIRE(p[size_t(i)] != i);
      ++counts[size_t(i)][size_t(p[size_t(i)])];
    }
  }
  CHECK(counts[0][2] == draws);  // exp(50) dwarfs exp(0): the softmax probability rounds to 1
  for (int64_t j : {0, 2, 3}) CHECK(std::abs(double(counts[1][size_t(j)]) / draws - 1.0 / 3) < 0.03);
  CHECK(std::abs(double(counts[2][0]) / draws - 0.5) < 0.03);
  CHECK(counts[2][0] + counts[2][3] == draws);
  // The same generator state draws the same partners (resumable runs).
  Generator a{7, 3}, b{7, 3};
  CHECK(hard_negative_partners(sim, a) == hard_negative_partners(sim, b));
  CHECK_THROWS_WITH_AS(hard_negative_partners(zeros({3, 2}), g), doctest::Contains("square"), Error);
}

// Data parallel (train/trainer.h): a batch split into shards draws, for each row, what one draw over the
// whole batch gives it (Generator::advance_rows), and every shard's generator ends where the whole draw's
// does. Checked for each per-row draw of the objectives, with 4 shards of 3 rows against 12 rows at once.
TEST_CASE("per-row draws: shards of a batch draw what the whole batch draws, row for row") {
  SpecialTokens s{0, 1, 2, 3, 4, 1000};
  const int64_t rows = 12, l = 20, shards = 4, per = rows / shards;
  std::vector<int64_t> v(size_t(rows * l));
  for (int64_t i = 0; i < rows * l; ++i) v[size_t(i)] = i % l == 0 ? 1 : 5 + (i * 7) % 900;
  const Tensor ids = Tensor::from_vector(v, {rows, l});
  Tensor sim = randn({rows, rows}, nullptr, DType::Float64);
  struct Draws {
    std::vector<double> ids, labels, frames;
    std::vector<int64_t> partners;
  };
  auto draw = [&](Generator& g, int64_t first, int64_t n) {
    Draws d;
    MaskedTokens m = mask_tokens(narrow(ids, 0, first, n), s, 0.3, g);
    d.ids = m.ids.to_vector();
    d.labels = m.labels.to_vector();
    d.frames = choose_frames(n, 6, 0.3, g).to_vector();
    d.partners = hard_negative_partners(narrow(sim, 0, first, n), g, first);
    return d;
  };
  Generator whole_gen{11, 5};
  const Draws whole = draw(whole_gen, 0, rows);
  for (int64_t k = 0; k < shards; ++k) {
    CAPTURE(k);
    Generator g{11, 5, uint64_t(k), uint64_t(shards)};
    const Draws part = draw(g, k * per, per);
    CHECK(g.offset == whole_gen.offset);
    auto slice = [&](const std::vector<double>& all, int64_t width) {
      return std::vector<double>(all.begin() + k * per * width, all.begin() + (k + 1) * per * width);
    };
    CHECK(part.ids == slice(whole.ids, l));
    CHECK(part.labels == slice(whole.labels, l));
    CHECK(part.frames == slice(whole.frames, 6));
    CHECK(part.partners == std::vector<int64_t>(whole.partners.begin() + k * per, whole.partners.begin() + (k + 1) * per));
  }
}

TEST_CASE("two-stage retrieval: the first stage's top k re-ranked by similarity + joint logit, the rest below") {
  const int64_t nt = 5, nv = 7, k = 2;
  Generator g{11, 0};
  Tensor sim = rand({nt, nv}, &g, DType::Float64);
  const std::vector<double> s = sim.to_vector();
  // A joint scorer that strongly prefers video (text + 3) mod nv, so re-ranking changes the order.
  std::vector<std::pair<int64_t, int64_t>> asked;
  auto joint = [&](const std::vector<int64_t>& tr, const std::vector<int64_t>& vr) {
    std::vector<double> out;
    for (size_t i = 0; i < tr.size(); ++i) {
      asked.emplace_back(tr[i], vr[i]);
      out.push_back(vr[i] == (tr[i] + 3) % nv ? 10.0 : 0.0);
    }
    return out;
  };
  const std::vector<double> r = rerank_scores(sim, k, joint).to_vector();
  // Candidates: the k best columns of each row and the k best rows of each column.
  auto top = [&](std::vector<std::pair<double, int64_t>> v) {
    std::sort(v.rbegin(), v.rend());
    std::set<int64_t> out;
    for (int64_t i = 0; i < k; ++i) out.insert(v[size_t(i)].second);
    return out;
  };
  std::set<std::pair<int64_t, int64_t>> expected;
  for (int64_t i = 0; i < nt; ++i) {
    std::vector<std::pair<double, int64_t>> row;
    for (int64_t j = 0; j < nv; ++j) row.emplace_back(s[size_t(i * nv + j)], j);
    for (int64_t j : top(row)) expected.insert({i, j});
  }
  for (int64_t j = 0; j < nv; ++j) {
    std::vector<std::pair<double, int64_t>> col;
    for (int64_t i = 0; i < nt; ++i) col.emplace_back(s[size_t(i * nv + j)], i);
    for (int64_t i : top(col)) expected.insert({i, j});
  }
  CHECK(std::set<std::pair<int64_t, int64_t>>(asked.begin(), asked.end()) == expected);
  CHECK(asked.size() == expected.size());  // each candidate scored once
  double lowest_candidate = 1e300, highest_other = -1e300;
  for (int64_t i = 0; i < nt; ++i)
    for (int64_t j = 0; j < nv; ++j) {
      const size_t at = size_t(i * nv + j);
      if (expected.count({i, j})) {
        CHECK(r[at] == doctest::Approx(s[at] + (j == (i + 3) % nv ? 10.0 : 0.0)));
        lowest_candidate = std::min(lowest_candidate, r[at]);
      } else {
        highest_other = std::max(highest_other, r[at]);
        for (int64_t j2 = 0; j2 < nv; ++j2)  // non-candidates keep their first-stage order
          if (!expected.count({i, j2})) CHECK((r[at] < r[size_t(i * nv + j2)]) == (s[at] < s[size_t(i * nv + j2)]));
      }
    }
  CHECK(highest_other < lowest_candidate);
  // k = 0: every pair is scored jointly.
  asked.clear();
  const std::vector<double> all = rerank_scores(sim, 0, joint).to_vector();
  CHECK(asked.size() == size_t(nt * nv));
  for (size_t at = 0; at < all.size(); ++at) CHECK(all[at] == doctest::Approx(s[at] + (int64_t(at % nv) == (int64_t(at / nv) + 3) % nv ? 10.0 : 0.0)));
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
