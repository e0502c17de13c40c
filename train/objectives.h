// The pretraining objectives, each a function of model outputs so that every model combines the ones it
// has. Random choices draw from a Generator so that a run is reproducible and resumable.
#pragma once
#include <functional>
#include <vector>

#include "autograd/ops.h"

namespace vb::train {

struct SpecialTokens {
  int64_t pad = 0, cls = 101, sep = 102, mask = 103, unk = 100;
  int64_t vocab_size = 30522;
};

struct MaskedTokens {
  Tensor ids;     // (B, L) with the chosen positions replaced
  Tensor labels;  // (B, L) original ids at chosen positions, −100 elsewhere (cross_entropy's ignore_index)
  int64_t count = 0;
};

// BERT's masking: each non-special, non-padding token is chosen with probability p; a chosen token becomes
// [MASK] with probability 0.8, a random non-special token with 0.1, and stays with 0.1. Loss on chosen only.
// The draws are per row (Generator::advance_rows): a row is masked alike whichever rank holds it.
MaskedTokens mask_tokens(const Tensor& ids, const SpecialTokens& special, double p, Generator& gen);

// Masked language modelling: cross-entropy over chosen positions (their mean, or with Reduction::Sum their
// sum). logits (B, L, V), labels (B, L).
Tensor mlm_loss(const Tensor& logits, const Tensor& labels, Reduction reduction = Reduction::Mean);
// Accuracy of the arg-max prediction on chosen positions (a number in [0, 1]; 0 when none are chosen).
double mlm_accuracy(const Tensor& logits, const Tensor& labels);
// How many chosen positions the arg-max predicts right.
int64_t mlm_correct(const Tensor& logits, const Tensor& labels);

// For each row i, the index of another row to pair it with (a derangement: never i), drawn as a random
// non-zero cyclic shift of the batch. B = 1 has no mismatched partner: an Error.
std::vector<int64_t> mismatched_partners(int64_t batch, Generator& gen);

// Hard negatives as ALBEF mines them: for each row i of a similarity matrix (B, N), a partner column
// j ≠ first_row + i drawn with probability ∝ exp(sim[i][j]) among the other columns, so that the pairs the
// contrastive stage confuses are the ones the matching head learns to tell apart. The rows are rows
// first_row … of the batch's square (N, N) matrix (all of them on one process; a rank's own rows in data
// parallel, drawn per row). sim is read, not differentiated.
std::vector<int64_t> hard_negative_partners(const Tensor& similarity, Generator& gen, int64_t first_row = 0);

// Video–text matching: binary cross-entropy of positive-pair logits against label 1 and mismatched-pair
// logits against label 0, averaged over both.
Tensor matching_loss(const Tensor& positive_logits, const Tensor& negative_logits);

// Which frames to mask: (B, T) bool, each true with probability p, at least one per row when p > 0.
// Drawn per row, like mask_tokens.
Tensor choose_frames(int64_t batch, int64_t frames, double p, Generator& gen);

// Masked frame modelling, contrastive: for each masked frame, its predicted feature (M, C) must score its
// true feature highest among all frames of the batch (N, C), by dot product. target_index (M) gives the
// row of each masked frame's true feature. Targets are treated as constants (no gradient). The mean over
// the M masked frames, or with Reduction::Sum their sum.
Tensor masked_frame_loss(const Tensor& predicted, const Tensor& all_features, const Tensor& target_index,
                         Reduction reduction = Reduction::Mean);

// Retrieval metrics from a score matrix (Nq, Nc) where query i's match is candidate i.
struct Retrieval {
  double r1 = 0, r5 = 0, r10 = 0, median_rank = 0;  // recalls as fractions; rank 1 = best
};
Retrieval retrieval_metrics(const Tensor& scores);

// Two-stage retrieval scores, as ALBEF retrieves: a first stage's similarity (Nt, Nv) ranks every pair; the
// k best candidates of each caption (row) and of each clip (column) are scored by `joint` — given pair
// indices (text_rows[i], video_rows[i]) it returns one logit per pair — and get similarity + joint logit.
// Every other pair stays below all candidates, in first-stage order. k = 0 or k ≥ N: every pair is a
// candidate. Returns (Nt, Nv) float64 on the host.
using PairScorer = std::function<std::vector<double>(const std::vector<int64_t>& text_rows,
                                                     const std::vector<int64_t>& video_rows)>;
Tensor rerank_scores(const Tensor& first_stage, int64_t k, const PairScorer& joint);

}  // namespace vb::train
