// BLEU, ROUGE-L, CIDEr-D and exact match over pre-tokenised captions; the formulas are in caption_metrics.h.
// Each follows pycocoevalcap 1.2's arithmetic step for step (its smoothing constants, its maxima, its
// bigram length), because the point of these numbers is to be comparable with published ones.
#include "train/caption_metrics.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>

#include "models/tokenizer.h"
#include "tensor/error.h"

namespace vb::train {

namespace {

constexpr int kMaxN = 4;  // n-grams of 1 … 4 words, as every metric here uses

using NGram = std::vector<std::string>;
using NGramCounts = std::map<NGram, int64_t>;

NGramCounts ngram_counts(const Words& s) {
  NGramCounts counts;
  const int64_t len = int64_t(s.size());
  for (int64_t k = 1; k <= kMaxN; ++k)
    for (int64_t i = 0; i + k <= len; ++i) ++counts[NGram(s.begin() + i, s.begin() + i + k)];
  return counts;
}

bool has_ascii_space(const std::string& w) {
  return std::any_of(w.begin(), w.end(), [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
}

void check_words(const Words& s, const std::string& id, const std::string& which) {
  for (size_t i = 0; i < s.size(); ++i)
    VB_CHECK(!s[i].empty() && !has_ascii_space(s[i]),
             "caption metrics: clip '{}', {}: word {} ('{}') is empty or holds whitespace; pass words as "
             "caption_words() splits them",
             id, which, i, s[i]);
}

// The corpus's clips in ascending id order, after checking that both sides name the same clips.
struct Clip {
  const std::string* id;
  const Words* hypothesis;
  const std::vector<Words>* references;
};

std::vector<Clip> corpus(const CaptionHypotheses& hyps, const CaptionReferences& refs, const char* metric) {
  VB_CHECK(!hyps.empty(), "{}: the corpus is empty (no hypotheses); expected one caption per clip", metric);
  for (const auto& [id, h] : hyps)
    VB_CHECK(refs.count(id), "{}: clip '{}' has a hypothesis but no references ({} hypotheses, {} referenced clips)",
             metric, id, hyps.size(), refs.size());
  for (const auto& [id, r] : refs)
    VB_CHECK(hyps.count(id), "{}: clip '{}' has references but no hypothesis ({} hypotheses, {} referenced clips)",
             metric, id, hyps.size(), refs.size());
  std::vector<Clip> clips;
  for (const auto& [id, h] : hyps) {
    const std::vector<Words>& r = refs.at(id);
    VB_CHECK(!r.empty(), "{}: clip '{}' has no reference caption; expected at least one", metric, id);
    check_words(h, id, "hypothesis");
    for (size_t i = 0; i < r.size(); ++i) {
      VB_CHECK(!r[i].empty(), "{}: clip '{}', reference {} is empty; references must hold words", metric, id, i);
      check_words(r[i], id, "reference " + std::to_string(i));
    }
    clips.push_back({&id, &h, &r});
  }
  return clips;
}

// The length of the longest common subsequence of two word lists (dynamic programming, one row kept).
int64_t lcs_length(const Words& a, const Words& b) {
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool is_punctuation_word(const std::string& w) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(w.data());
  utf8proc_int32_t cp = 0;
  const utf8proc_ssize_t n = utf8proc_iterate(p, utf8proc_ssize_t(w.size()), &cp);
  if (n <= 0 || size_t(n) != w.size()) return false;  // punctuation comes out of pre-tokenising one by one
  if (cp < 128)  // BERT's ASCII punctuation, as models/tokenizer.cpp splits it off
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
  const utf8proc_category_t c = utf8proc_category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

// A score's corpus value: the mean of its per-clip values (ROUGE-L's and CIDEr-D's, as pycocoevalcap's).
CorpusScore with_corpus_mean(CorpusScore result) {
  double total = 0;
  for (double s : result.per_clip) total += s;
  result.corpus = total / double(result.per_clip.size());
  return result;
}

}  // namespace

Words caption_words(std::string_view text) {
  Words out;
  for (std::string& w : bert_pre_tokenize(text, true))
    if (!is_punctuation_word(w)) out.push_back(std::move(w));
  return out;
}

// ---------------------------------------------------------------- BLEU

BleuScores bleu(const CaptionHypotheses& hypotheses, const CaptionReferences& references) {
  const std::vector<Clip> clips = corpus(hypotheses, references, "BLEU");
  constexpr double tiny = 1e-15, small = 1e-9;  // pycocoevalcap's: numerator and denominator guards
  // BLEU-n for counts, with the brevity penalty of lengths (test, ref), as pycocoevalcap multiplies it out.
  auto score = [&](const std::array<double, kMaxN>& correct, const std::array<double, kMaxN>& guess, double test_len,
                   double ref_len) {
    std::array<double, kMaxN> out{};
    double product = 1;
    for (int k = 0; k < kMaxN; ++k) {
      product *= (correct[size_t(k)] + tiny) / (guess[size_t(k)] + small);
      out[size_t(k)] = std::pow(product, 1.0 / double(k + 1));
    }
    const double ratio = (test_len + tiny) / (ref_len + small);
    if (ratio < 1)
      for (double& b : out) b *= std::exp(1 - 1 / ratio);
    return out;
  };
  BleuScores result;
  std::array<double, kMaxN> total_correct{}, total_guess{};
  double total_test = 0, total_ref = 0;
  for (const Clip& c : clips) {
    const Words& h = *c.hypothesis;
    const int64_t test_len = int64_t(h.size());
    // Each n-gram's largest count in any one reference: the clip for the hypothesis's count.
    NGramCounts max_ref;
    int64_t closest = -1;
    for (const Words& r : *c.references) {
      for (const auto& [g, n] : ngram_counts(r)) max_ref[g] = std::max(max_ref[g], n);
      const int64_t len = int64_t(r.size());
      if (closest < 0 || std::abs(len - test_len) < std::abs(closest - test_len) ||
          (std::abs(len - test_len) == std::abs(closest - test_len) && len < closest))
        closest = len;
    }
    std::array<double, kMaxN> correct{}, guess{};
    for (const auto& [g, n] : ngram_counts(h)) {
      const auto it = max_ref.find(g);
      correct[g.size() - 1] += double(std::min(n, it == max_ref.end() ? int64_t(0) : it->second));
    }
    for (int k = 0; k < kMaxN; ++k) {
      guess[size_t(k)] = double(std::max<int64_t>(0, test_len - k));
      total_correct[size_t(k)] += correct[size_t(k)];
      total_guess[size_t(k)] += guess[size_t(k)];
    }
    total_test += double(test_len);
    total_ref += double(closest);
    result.per_clip.push_back(score(correct, guess, double(test_len), double(closest)));
  }
  result.corpus = score(total_correct, total_guess, total_test, total_ref);
  return result;
}

// ---------------------------------------------------------------- ROUGE-L

CorpusScore rouge_l(const CaptionHypotheses& hypotheses, const CaptionReferences& references) {
  const std::vector<Clip> clips = corpus(hypotheses, references, "ROUGE-L");
  constexpr double beta = 1.2;
  CorpusScore result;
  for (const Clip& c : clips) {
    const Words& h = *c.hypothesis;
    double precision = 0, recall = 0;
    for (const Words& r : *c.references) {
      const double lcs = double(lcs_length(r, h));
      if (!h.empty()) precision = std::max(precision, lcs / double(h.size()));
      recall = std::max(recall, lcs / double(r.size()));
    }
    double s = 0;
    if (precision != 0 && recall != 0) s = (1 + beta * beta) * precision * recall / (recall + beta * beta * precision);
    result.per_clip.push_back(s);
  }
  return with_corpus_mean(std::move(result));
}

// ---------------------------------------------------------------- CIDEr-D

CorpusScore cider_d(const CaptionHypotheses& hypotheses, const CaptionReferences& references) {
  const std::vector<Clip> clips = corpus(hypotheses, references, "CIDEr-D");
  constexpr double sigma = 6.0;
  // Document frequency: in how many clips' reference sets each n-gram occurs.
  std::map<NGram, double> df;
  for (const Clip& c : clips) {
    std::set<NGram> seen;
    for (const Words& r : *c.references)
      for (const auto& [g, n] : ngram_counts(r)) seen.insert(g);
    for (const NGram& g : seen) df[g] += 1;
  }
  const double log_n = std::log(double(clips.size()));

  // A sentence as tf-idf weights per n-gram order, their norms, and its length in bigrams.
  struct Vector {
    std::array<std::map<NGram, double>, kMaxN> weights;
    std::array<double, kMaxN> norm{};
    double length = 0;
  };
  auto vectorise = [&](const Words& s) {
    Vector v;
    for (const auto& [g, tf] : ngram_counts(s)) {
      const auto it = df.find(g);
      const double w = double(tf) * (log_n - std::log(std::max(1.0, it == df.end() ? 0.0 : it->second)));
      const size_t k = g.size() - 1;
      v.weights[k][g] = w;
      v.norm[k] += w * w;
      if (k == 1) v.length += double(tf);
    }
    for (double& n : v.norm) n = std::sqrt(n);
    return v;
  };
  CorpusScore result;
  for (const Clip& c : clips) {
    const Vector h = vectorise(*c.hypothesis);
    std::array<double, kMaxN> sum{};
    for (const Words& r : *c.references) {
      const Vector ref = vectorise(r);
      const double delta = h.length - ref.length;
      const double penalty = std::exp(-(delta * delta) / (2 * sigma * sigma));
      for (size_t k = 0; k < size_t(kMaxN); ++k) {
        double val = 0;
        for (const auto& [g, w] : h.weights[k]) {
          const auto it = ref.weights[k].find(g);
          const double wr = it == ref.weights[k].end() ? 0.0 : it->second;
          val += std::min(w, wr) * wr;
        }
        if (h.norm[k] != 0 && ref.norm[k] != 0) val /= h.norm[k] * ref.norm[k];
        sum[k] += val * penalty;
      }
    }
    double mean = 0;
    for (double s : sum) mean += s;
    mean /= double(kMaxN);
    result.per_clip.push_back(mean / double(c.references->size()) * 10.0);
  }
  return with_corpus_mean(std::move(result));
}

// ---------------------------------------------------------------- exact match

CorpusScore exact_match(const CaptionHypotheses& hypotheses, const CaptionReferences& references) {
  const std::vector<Clip> clips = corpus(hypotheses, references, "exact match");
  CorpusScore result;
  double hits = 0;
  for (const Clip& c : clips) {
    const bool hit = std::find(c.references->begin(), c.references->end(), *c.hypothesis) != c.references->end();
    result.per_clip.push_back(hit ? 1.0 : 0.0);
    hits += hit;
  }
  result.corpus = hits / double(clips.size());
  return result;
}

CaptionMetrics caption_metrics(const CaptionHypotheses& hypotheses, const CaptionReferences& references) {
  CaptionMetrics m;
  m.bleu = bleu(hypotheses, references).corpus;
  m.rouge_l = rouge_l(hypotheses, references).corpus;
  m.cider_d = cider_d(hypotheses, references).corpus;
  m.exact_match = exact_match(hypotheses, references).corpus;
  m.clips = int64_t(hypotheses.size());
  return m;
}

}  // namespace vb::train
