// The caption metrics (train/caption_metrics.h) on corpora small enough to compute by hand: identical and
// disjoint captions, the brevity penalty of a short hypothesis and which reference length it takes, the
// clipping of repeated n-grams in BLEU and in CIDEr-D, ROUGE-L's F-measure, exact match, and the errors.
// Each expected value is written out from the formula in the header; tolerances are 1e-12 unless
// pycocoevalcap's smoothing constants (1e-15 / 1e-9) make the exact value differ from the round one, where
// the bound says so. tests/torch/caption_metrics_coco.cpp checks a larger corpus against pycocoevalcap.
#include <cmath>

#include "tensor/error.h"
#include "tests/support/check.h"
#include "train/caption_metrics.h"

using namespace vb;
using namespace vb::train;

namespace {

Words w(const std::string& text) {
  Words out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t j = text.find(' ', i);
    const size_t end = j == std::string::npos ? text.size() : j;
    if (end > i) out.push_back(text.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

// pycocoevalcap's brevity penalty with its guards: exp(1 − 1/ρ), ρ = (T + 10⁻¹⁵)/(R + 10⁻⁹), when ρ < 1.
double brevity(double test_len, double ref_len) {
  const double ratio = (test_len + 1e-15) / (ref_len + 1e-9);
  return ratio < 1 ? std::exp(1 - 1 / ratio) : 1.0;
}

}  // namespace

TEST_CASE("identical captions: BLEU 1, ROUGE-L 1, CIDEr-D 10, exact match 1") {
  CaptionHypotheses h{{"c1", w("a red circle moves to the left")}, {"c2", w("a blue square grows")}};
  CaptionReferences r{{"c1", {w("a red circle moves to the left")}}, {"c2", {w("a blue square grows")}}};
  const BleuScores b = bleu(h, r);
  // Each precision is (G + 10⁻¹⁵)/(G + 10⁻⁹) and the length ratio (T + 10⁻¹⁵)/(R + 10⁻⁹): 1 − O(10⁻⁹).
  for (double s : b.corpus) CHECK(s == doctest::Approx(1.0).epsilon(1e-8));
  CHECK(b.per_clip.size() == 2);
  CHECK(rouge_l(h, r).corpus == 1.0);
  // Every n-gram vector equals its reference's: each order's cosine is 1 (the shared "a" weighs 0 but other
  // unigrams remain), no length penalty, ×10.
  const CorpusScore c = cider_d(h, r);
  CHECK(c.per_clip[0] == doctest::Approx(10.0).epsilon(1e-12));
  CHECK(c.per_clip[1] == doctest::Approx(10.0).epsilon(1e-12));
  CHECK(exact_match(h, r).corpus == 1.0);
}

TEST_CASE("disjoint captions: every metric ≈ 0") {
  CaptionHypotheses h{{"c1", w("x y z w")}, {"c2", w("p q r")}};
  CaptionReferences r{{"c1", {w("a b c d")}}, {"c2", {w("e f g"), w("h i j")}}};
  const BleuScores b = bleu(h, r);
  // BLEU-1 = (0 + 10⁻¹⁵)/(7 + 10⁻⁹) · BP with BP ≈ 1: zero but for the smoothing constant.
  CHECK(b.corpus[0] == doctest::Approx(1e-15 / 7).epsilon(1e-6));
  for (double s : b.corpus) CHECK(s < 1e-12);
  CHECK(rouge_l(h, r).corpus == 0.0);
  CHECK(cider_d(h, r).corpus == 0.0);
  CHECK(exact_match(h, r).corpus == 0.0);
}

TEST_CASE("BLEU: a short hypothesis pays the brevity penalty of the closest reference length") {
  // 3 words against 5: every 1-, 2-, 3-gram matches, no 4-gram exists (0 + 10⁻¹⁵)/(0 + 10⁻⁹) = 10⁻⁶.
  const double p = (3 + 1e-15) / (3 + 1e-9), p2 = (2 + 1e-15) / (2 + 1e-9), p3 = (1 + 1e-15) / (1 + 1e-9);  // ≈ 1
  {
    CaptionHypotheses h{{"c", w("a red circle")}};
    CaptionReferences r{{"c", {w("a red circle moves left")}}};
    const BleuScores b = bleu(h, r);
    const double bp = brevity(3, 5);  // ρ ≈ 3/5 < 1: exp(1 − 5/3)
    CHECK(b.corpus[0] == doctest::Approx(p * bp).epsilon(1e-12));
    CHECK(b.corpus[1] == doctest::Approx(std::sqrt(p * p2) * bp).epsilon(1e-12));
    CHECK(b.corpus[2] == doctest::Approx(std::cbrt(p * p2 * p3) * bp).epsilon(1e-12));
    CHECK(b.corpus[3] == doctest::Approx(std::pow(p * p2 * p3 * 1e-6, 0.25) * bp).epsilon(1e-9));
    CHECK(b.per_clip[0][0] == doctest::Approx(b.corpus[0]).epsilon(1e-12));  // one clip: the same numbers
    // ROUGE-L: LCS 3, P = 1, R = 3/5: (1 + 1.44)·0.6 / (0.6 + 1.44) = 1.464 / 2.04.
    CHECK(rouge_l(h, r).corpus == doctest::Approx(1.464 / 2.04).epsilon(1e-12));
  }
  {
    // With a 4-word reference beside the 5-word one, 4 is the closest length: BP = exp(1 − 4/3).
    CaptionHypotheses h{{"c", w("a red circle")}};
    CaptionReferences r{{"c", {w("a red circle moves left"), w("a red circle moves")}}};
    CHECK(bleu(h, r).corpus[0] == doctest::Approx(p * brevity(3, 4)).epsilon(1e-12));
  }
  {
    // 2 and 4 words are equally close to 3: the shorter is taken, ρ = 3/2 ≥ 1 and there is no penalty.
    // Precisions: "a red" and "red" match of "a red circle" against "a red" / "a red circle moves".
    CaptionHypotheses h{{"c", w("a red circle")}};
    CaptionReferences r{{"c", {w("a red"), w("a red circle moves")}}};
    CHECK(bleu(h, r).corpus[0] == doctest::Approx(p).epsilon(1e-12));
  }
}

TEST_CASE("BLEU clips a repeated word at its largest count in any one reference") {
  // "the" ×4 against a reference holding it twice: 2 of 4 unigrams count. BP = exp(1 − 6/4).
  CaptionHypotheses h{{"c", w("the the the the")}};
  CaptionReferences r{{"c", {w("the cat is on the mat")}}};
  const double p1 = (2 + 1e-15) / (4 + 1e-9);
  CHECK(bleu(h, r).corpus[0] == doctest::Approx(p1 * brevity(4, 6)).epsilon(1e-12));
  // Two references holding "the" twice and once: the cap is the maximum, 2, not the sum 3.
  CaptionHypotheses h2{{"c", w("the the the")}};
  CaptionReferences r2{{"c", {w("the the dog"), w("the cat sat")}}};
  CHECK(bleu(h2, r2).corpus[0] == doctest::Approx((2 + 1e-15) / (3 + 1e-9) * brevity(3, 3)).epsilon(1e-12));
}

TEST_CASE("CIDEr-D: tf-idf over the evaluated references, clipping, Gaussian length penalty") {
  // N = 2 clips, log N = ln 2. Document frequencies over the references: "ball" in both (idf 0), every
  // other n-gram in one (idf ln 2); n-grams of no reference take df 1 (idf ln 2 as well).
  CaptionHypotheses h{{"c1", w("red red red")}, {"c2", w("blue ball")}};
  CaptionReferences r{{"c1", {w("red ball")}}, {"c2", {w("blue ball")}}};
  // c1, unigrams: w_h(red) = 3 ln 2, ‖w_h‖ = 3 ln 2; w_r(red) = ln 2, w_r(ball) = 0, ‖w_r‖ = ln 2;
  //   Σ min(w_h, w_r)·w_r = ln²2 (the min clips 3 ln 2 to ln 2) → cosine 1/3 (unclipped it would be 1).
  //   Bigrams: "red red" is not in the reference → 0. Trigrams: the reference has none (norm 0) → 0.
  //   4-grams: none. Length penalty: 2 bigrams against 1, exp(−1/72).
  const double c1 = 10 * (1.0 / 3.0) / 4 * std::exp(-1.0 / 72.0);
  // c2: identical; its unigram and bigram cosines are 1 ("ball" weighs 0 but "blue" remains), no 3-, 4-grams.
  const double c2 = 10 * 2.0 / 4;
  const CorpusScore c = cider_d(h, r);
  CHECK(c.per_clip[0] == doctest::Approx(c1).epsilon(1e-12));
  CHECK(c.per_clip[1] == doctest::Approx(c2).epsilon(1e-12));
  CHECK(c.corpus == doctest::Approx((c1 + c2) / 2).epsilon(1e-12));
  CHECK(exact_match(h, r).corpus == 0.5);
  // One clip alone: log N = 0, so every weight is 0 and so is the score (CIDEr-D needs a set to weigh by).
  CHECK(cider_d({{"c2", w("blue ball")}}, {{"c2", {w("blue ball")}}}).corpus == 0.0);
}

TEST_CASE("ROUGE-L maximises precision and recall over the references separately") {
  // LCS with "a b c d e f" is 3 (P 3/3, R 3/6); with "a b c" it is 3 (P 1, R 1) → F = 1.
  CHECK(rouge_l({{"c", w("a b c")}}, {{"c", {w("a b c d e f"), w("a b c")}}}).corpus == 1.0);
  // Against "a x b y" (LCS "a b": P 2/3, R 2/4) and "c" (LCS 1: P 1/3, R 1): P = 2/3 and R = 1 from different
  // references: F = 2.44·(2/3) / (1 + 1.44·(2/3)).
  const double p = 2.0 / 3.0, rr = 1.0;
  CHECK(rouge_l({{"c", w("a b c")}}, {{"c", {w("a x b y"), w("c")}}}).corpus ==
        doctest::Approx(2.44 * p * rr / (rr + 1.44 * p)).epsilon(1e-12));
}

TEST_CASE("an empty hypothesis scores 0 and is not an error") {
  CaptionHypotheses h{{"c1", {}}, {"c2", w("a b")}};
  CaptionReferences r{{"c1", {w("a b")}}, {"c2", {w("a b")}}};
  CHECK(rouge_l(h, r).per_clip[0] == 0.0);
  CHECK(cider_d(h, r).per_clip[0] == 0.0);
  CHECK(exact_match(h, r).per_clip[0] == 0.0);
  CHECK(bleu(h, r).per_clip[0][0] < 1e-12);
}

TEST_CASE("caption_words: lower case, punctuation dropped, split on whitespace") {
  CHECK(caption_words("A red circle moves to the LEFT.") == w("a red circle moves to the left"));
  CHECK(caption_words("  Hello,   world! (again)  ") == w("hello world again"));
  CHECK(caption_words("Café—au lait") == w("cafe au lait"));  // accents stripped; the em dash is punctuation
  CHECK(caption_words("").empty());
}

TEST_CASE("errors name the clip and what was expected") {
  CaptionHypotheses h{{"a", w("x")}};
  CHECK_THROWS_WITH_AS(bleu({}, {}), doctest::Contains("corpus is empty"), Error);
  CHECK_THROWS_WITH_AS(cider_d(h, {{"b", {w("x")}}}), doctest::Contains("clip 'a' has a hypothesis but no references"),
                       Error);
  CHECK_THROWS_WITH_AS(rouge_l(h, {{"a", {w("x")}}, {"b", {w("y")}}}),
                       doctest::Contains("clip 'b' has references but no hypothesis"), Error);
  CHECK_THROWS_WITH_AS(exact_match(h, {{"a", {}}}), doctest::Contains("clip 'a' has no reference caption"), Error);
  CHECK_THROWS_WITH_AS(bleu(h, {{"a", {w("x"), {}}}}), doctest::Contains("reference 1 is empty"), Error);
  CHECK_THROWS_WITH_AS(bleu({{"a", {"two words"}}}, {{"a", {w("x")}}}), doctest::Contains("holds whitespace"), Error);
  CHECK_THROWS_WITH_AS(caption_metrics(h, {{"a", {{"x", ""}}}}), doctest::Contains("is empty or holds whitespace"),
                       Error);
}

TEST_CASE("caption_metrics gathers every metric") {
  CaptionHypotheses h{{"c1", w("red red red")}, {"c2", w("blue ball")}};
  CaptionReferences r{{"c1", {w("red ball")}}, {"c2", {w("blue ball")}}};
  const CaptionMetrics m = caption_metrics(h, r);
  CHECK(m.clips == 2);
  CHECK(m.bleu == bleu(h, r).corpus);
  CHECK(m.rouge_l == rouge_l(h, r).corpus);
  CHECK(m.cider_d == cider_d(h, r).corpus);
  CHECK(m.exact_match == 0.5);
}
