// Caption metrics on pre-tokenised text (a caption is a list of words), computed as pycocoevalcap 1.2's
// pure-Python scorers compute them (tests/torch/caption_metrics_coco.cpp runs those scorers on the same
// corpus and compares to 1e-6): corpus BLEU-1…4, ROUGE-L and CIDEr-D, plus exact match. A corpus is one
// generated caption (the hypothesis) per clip id and one or more reference captions per clip id; every
// metric is computed over the ids in ascending order (std::map's), and the per-clip lists follow that order.
//
// Words must be non-empty and free of ASCII whitespace: pycocoevalcap joins nothing and splits sentences on
// whitespace, so a word holding a space would be counted as two there. caption_words() turns a caption
// string into such words. References must be non-empty; a hypothesis may be empty (a decoder that emitted
// [SEP] first) and then scores 0 on ROUGE-L, CIDEr-D and exact match, as in pycocoevalcap.
#pragma once
#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace vb::train {

using Words = std::vector<std::string>;
using CaptionHypotheses = std::map<std::string, Words>;               // clip id → its generated caption
using CaptionReferences = std::map<std::string, std::vector<Words>>;  // clip id → its reference captions

// A caption as metric words, close to what pycocoevalcap's PTBTokenizer (Java) gives for plain English:
// BERT's basic tokenisation of the uncased vocabularies (lower case, accents stripped, each punctuation
// character its own word: models/tokenizer.h) without the words that are punctuation only, as
// PTBTokenizer's output without pycocoevalcap's punctuation list. Not identical for contractions (PTB:
// "don't" → "do n't"; here "don" "t"). Apply the same function to hypotheses and references.
Words caption_words(std::string_view text);

// BLEU (Papineni et al. 2002) at the corpus level, pycocoevalcap's Bleu(4) (option "closest"). For clip c
// with hypothesis h and references r₁…r_m, and k = 1…4:
//   correct_k(c) = Σ_{k-grams g of h} min(count_h(g), max_i count_{r_i}(g))      (clipped n-gram matches)
//   guess_k(c)   = max(0, |h| − k + 1)
//   ref_len(c)   = the |r_i| closest to |h| (on a tie the shorter)
// Corpus sums C_k = Σ_c correct_k, G_k = Σ_c guess_k, T = Σ_c |h|, R = Σ_c ref_len, then
//   BLEU-n = (Π_{k=1..n} (C_k + 10⁻¹⁵) / (G_k + 10⁻⁹))^{1/n} · BP,
//   BP = exp(1 − 1/ρ) when ρ = (T + 10⁻¹⁵) / (R + 10⁻⁹) < 1, else 1
// (the 10⁻¹⁵ and 10⁻⁹ are pycocoevalcap's: a corpus with no 4-gram match scores ≈ 10⁻⁴, not 0).
// per_clip applies the same formula to each clip's own counts (pycocoevalcap's second return value).
struct BleuScores {
  std::array<double, 4> corpus{};                // BLEU-1 … BLEU-4
  std::vector<std::array<double, 4>> per_clip;  // in ascending id order
};
BleuScores bleu(const CaptionHypotheses& hypotheses, const CaptionReferences& references);

struct CorpusScore {
  double corpus = 0;             // the mean of per_clip
  std::vector<double> per_clip;  // in ascending id order
};

// ROUGE-L (Lin 2004), pycocoevalcap's Rouge: for clip c, with LCS the longest common subsequence of words,
//   P = max_i LCS(h, r_i) / |h|,  R = max_i LCS(h, r_i) / |r_i|   (each maximised on its own)
//   ROUGE-L(c) = (1 + β²)·P·R / (R + β²·P), β = 1.2; 0 when P or R is 0
// and the corpus score is the mean over clips.
CorpusScore rouge_l(const CaptionHypotheses& hypotheses, const CaptionReferences& references);

// CIDEr-D (Vedantam et al. 2015) as pycocoevalcap's `Cider` class computes it: that class is CIDEr-D's
// formulation (clipped tf-idf similarity, Gaussian length penalty, ×10; no stemming), so it is named for
// what it computes. With N clips and n = 1…4:
//   df(g)       = the number of clips among whose references the n-gram g occurs (over the evaluated set)
//   w_s(g)      = count_s(g) · (log N − log max(1, df(g)))        the tf-idf vector of a sentence s
//   ℓ(s)        = the number of bigrams of s, max(0, |s| − 1)    (pycocoevalcap counts bigrams for the
//                                                                   length; it differs from |s| only
//                                                                   for an empty sentence)
//   sim_n(h, r) = Σ_{n-grams g of h} min(w_h(g), w_r(g)) · w_r(g) / (‖w_h‖_n ‖w_r‖_n)   (the min clips;
//                 not divided when either norm is 0) · exp(−(ℓ(h) − ℓ(r))² / (2σ²)), σ = 6
//   CIDEr-D(c)  = 10 · (1/4) Σ_n (1/m) Σ_i sim_n(h, r_i)
// and the corpus score is the mean over clips. It depends on the evaluated set through df and N: an n-gram
// in every clip's references (a template's words) weighs 0.
CorpusScore cider_d(const CaptionHypotheses& hypotheses, const CaptionReferences& references);

// The fraction of clips whose hypothesis equals one of its references word for word; per_clip is 0 or 1.
CorpusScore exact_match(const CaptionHypotheses& hypotheses, const CaptionReferences& references);

// Every metric above on one corpus.
struct CaptionMetrics {
  std::array<double, 4> bleu{};  // BLEU-1 … BLEU-4
  double rouge_l = 0, cider_d = 0, exact_match = 0;
  int64_t clips = 0;
};
CaptionMetrics caption_metrics(const CaptionHypotheses& hypotheses, const CaptionReferences& references);

}  // namespace vb::train
