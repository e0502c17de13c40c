#include "train/objectives.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace vb::train {

MaskedTokens mask_tokens(const Tensor& ids, const SpecialTokens& s, double p, Generator& gen) {
  VB_CHECK(ids.dim() == 2 && ids.dtype() == DType::Int64, "mask_tokens: expected int64 ids (B, L), got {} {}",
           shape_str(ids.shape()), ids.dtype());
  Tensor host = contiguous(to(ids, Device()));
  const int64_t n = host.numel();
  Tensor choose = rand_rows({n}, &gen, DType::Float64), action = rand_rows({n}, &gen, DType::Float64);
  Tensor random_ids = randint_rows(0, s.vocab_size, {n}, &gen);
  const double* u = choose.data<double>();
  const double* a = action.data<double>();
  const int64_t* r = random_ids.data<int64_t>();
  MaskedTokens out;
  out.ids = clone(host);
  out.labels = full(host.shape(), -100, DType::Int64);
  int64_t* x = out.ids.data<int64_t>();
  int64_t* y = out.labels.data<int64_t>();
  auto special = [&](int64_t t) { return t == s.pad || t == s.cls || t == s.sep || t == s.mask || t == s.unk; };
  for (int64_t i = 0; i < n; ++i) {
    if (special(x[i]) || u[i] >= p) continue;
    y[i] = x[i];
    ++out.count;
    if (a[i] < 0.8) {
      x[i] = s.mask;
    } else if (a[i] < 0.9) {
      int64_t t = r[i];
      while (special(t)) t = (t + 1) % s.vocab_size;  // a random ordinary token
      x[i] = t;
    }
  }
  out.ids = to(out.ids, ids.device());
  out.labels = to(out.labels, ids.device());
  return out;
}

Tensor mlm_loss(const Tensor& logits, const Tensor& labels, Reduction reduction) {
  const int64_t v = logits.size(-1);
  return cross_entropy(reshape(logits, {-1, v}), reshape(labels, {-1}), -100, 0.0, reduction);
}

namespace {
// (chosen positions, right predictions among them)
std::pair<int64_t, int64_t> mlm_hits(const Tensor& logits, const Tensor& labels) {
  NoGradGuard no_grad;
  const std::vector<double> pred = argmax(logits, -1).to_vector(), truth = labels.to_vector();
  int64_t total = 0, right = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] == -100) continue;
    ++total;
    right += pred[i] == truth[i];
  }
  return {total, right};
}
}  // namespace

double mlm_accuracy(const Tensor& logits, const Tensor& labels) {
  const auto [total, right] = mlm_hits(logits, labels);
  return total ? double(right) / double(total) : 0.0;
}

int64_t mlm_correct(const Tensor& logits, const Tensor& labels) { return mlm_hits(logits, labels).second; }

std::vector<int64_t> mismatched_partners(int64_t batch, Generator& gen) {
  VB_CHECK(batch >= 2, "matching: a batch of {} has no mismatched pair; use batch_size ≥ 2", batch);
  const int64_t shift = int64_t(randint(1, batch, {1}, &gen).item());
  std::vector<int64_t> out(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) out[size_t(i)] = (i + shift) % batch;
  return out;
}

std::vector<int64_t> hard_negative_partners(const Tensor& similarity, Generator& gen, int64_t first_row) {
  VB_CHECK(similarity.dim() == 2 && similarity.size(1) >= 2 && first_row >= 0 &&
               first_row + similarity.size(0) <= similarity.size(1),
           "hard negatives: expected rows {} … of a square similarity matrix (·, N) with N ≥ 2, got {}", first_row,
           shape_str(similarity.shape()));
  const int64_t b = similarity.size(0), n = similarity.size(1);
  const std::vector<double> s = to(detach(similarity), Device()).to_vector();
  const std::vector<double> u = rand_rows({b}, &gen, DType::Float64).to_vector();
  std::vector<int64_t> out(static_cast<size_t>(b));
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < b; ++i) {
    const int64_t self = first_row + i;
    double top = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j)
      if (j != self) top = std::max(top, s[size_t(i * n + j)]);
    double total = 0;
    for (int64_t j = 0; j < n; ++j) total += w[size_t(j)] = j == self ? 0.0 : std::exp(s[size_t(i * n + j)] - top);
    // Inverse-CDF draw; the last column ≠ self takes what rounding leaves.
    double target = u[size_t(i)] * total, run = 0;
    int64_t pick = -1;
    for (int64_t j = 0; j < n; ++j) {
      if (j == self) continue;
      pick = j;
      run += w[size_t(j)];
      if (run > target) break;
    }
    out[size_t(i)] = pick;
  }
  return out;
}

Tensor matching_loss(const Tensor& positive_logits, const Tensor& negative_logits) {
  Tensor logits = cat({reshape(positive_logits, {-1}), reshape(negative_logits, {-1})}, 0);
  Tensor labels = cat({ones({positive_logits.numel()}, logits.dtype(), logits.device()),
                       zeros({negative_logits.numel()}, logits.dtype(), logits.device())}, 0);
  return binary_cross_entropy_with_logits(logits, labels);
}

Tensor choose_frames(int64_t batch, int64_t frames, double p, Generator& gen) {
  Tensor u = rand_rows({batch, frames}, &gen, DType::Float64);
  Tensor pick = randint_rows(0, frames, {batch}, &gen);
  Tensor mask = Tensor::empty({batch, frames}, DType::Bool);
  bool* m = mask.data<bool>();
  const double* x = u.data<double>();
  for (int64_t b = 0; b < batch; ++b) {
    bool any = false;
    for (int64_t t = 0; t < frames; ++t) any |= (m[b * frames + t] = x[b * frames + t] < p);
    if (!any && p > 0) m[b * frames + int64_t(pick.at({b}))] = true;
  }
  return mask;
}

Tensor masked_frame_loss(const Tensor& predicted, const Tensor& all_features, const Tensor& target_index,
                         Reduction reduction) {
  VB_CHECK(predicted.dim() == 2 && all_features.dim() == 2 && predicted.size(1) == all_features.size(1),
           "masked_frame_loss: expected predicted (M, C) and features (N, C), got {} and {}",
           shape_str(predicted.shape()), shape_str(all_features.shape()));
  Tensor scores = matmul(predicted, transpose(detach(all_features), 0, 1));  // (M, N)
  return cross_entropy(scores, target_index, -100, 0.0, reduction);
}

Retrieval retrieval_metrics(const Tensor& scores) {
  VB_CHECK(scores.dim() == 2 && scores.size(0) == scores.size(1),
           "retrieval_metrics: expected a square score matrix, got {}", shape_str(scores.shape()));
  const int64_t n = scores.size(0);
  const std::vector<double> s = scores.to_vector();
  std::vector<double> ranks;
  for (int64_t i = 0; i < n; ++i) {
    const double mine = s[size_t(i * n + i)];
    int64_t better = 0;
    for (int64_t j = 0; j < n; ++j) better += s[size_t(i * n + j)] > mine;  // ties count in our favour
    ranks.push_back(double(better + 1));
  }
  Retrieval r;
  for (double rank : ranks) {
    r.r1 += rank <= 1;
    r.r5 += rank <= 5;
    r.r10 += rank <= 10;
  }
  r.r1 /= double(n);
  r.r5 /= double(n);
  r.r10 /= double(n);
  std::sort(ranks.begin(), ranks.end());
  r.median_rank = n % 2 ? ranks[size_t(n / 2)] : 0.5 * (ranks[size_t(n / 2 - 1)] + ranks[size_t(n / 2)]);
  return r;
}

Tensor rerank_scores(const Tensor& first_stage, int64_t k, const PairScorer& joint) {
  VB_CHECK(first_stage.dim() == 2 && k >= 0, "rerank_scores: expected a (Nt, Nv) similarity and k ≥ 0, got {} and k = {}",
           shape_str(first_stage.shape()), k);
  const int64_t nt = first_stage.size(0), nv = first_stage.size(1);
  const std::vector<double> sim = to(detach(first_stage), Device()).to_vector();
  std::vector<char> candidate(sim.size(), k == 0);
  auto mark_top = [&](int64_t lines, int64_t across, bool by_row) {
    std::vector<int64_t> order(static_cast<size_t>(across));
    const int64_t top = std::min(k, across);
    for (int64_t a = 0; a < lines; ++a) {
      auto at = [&](int64_t x) { return by_row ? size_t(a * nv + x) : size_t(x * nv + a); };
      for (int64_t x = 0; x < across; ++x) order[size_t(x)] = x;
      std::partial_sort(order.begin(), order.begin() + top, order.end(),
                        [&](int64_t p, int64_t q) { return sim[at(p)] > sim[at(q)]; });
      for (int64_t x = 0; x < top; ++x) candidate[at(order[size_t(x)])] = 1;
    }
  };
  if (k > 0) {
    mark_top(nt, nv, true);
    mark_top(nv, nt, false);
  }
  std::vector<int64_t> tr, vr;
  for (int64_t i = 0; i < nt; ++i)
    for (int64_t j = 0; j < nv; ++j)
      if (candidate[size_t(i * nv + j)]) tr.push_back(i), vr.push_back(j);
  const std::vector<double> logits = joint(tr, vr);
  VB_CHECK(logits.size() == tr.size(), "rerank_scores: the joint scorer returned {} logits for {} pairs", logits.size(),
           tr.size());
  std::vector<double> out(sim.size());
  double lowest_candidate = std::numeric_limits<double>::infinity();
  for (size_t p = 0; p < tr.size(); ++p) {
    const size_t at = size_t(tr[p] * nv + vr[p]);
    out[at] = sim[at] + logits[p];
    lowest_candidate = std::min(lowest_candidate, out[at]);
  }
  if (!sim.empty()) {
    // Shift the rest below the lowest candidate, keeping their order.
    const double shift = lowest_candidate - 1 - *std::max_element(sim.begin(), sim.end());
    for (size_t at = 0; at < sim.size(); ++at)
      if (!candidate[at]) out[at] = sim[at] + shift;
  }
  return Tensor::from_vector(out, {nt, nv}, DType::Float64);
}

}  // namespace vb::train

