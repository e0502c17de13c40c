// Caption training and decoding over the single-stream model (see captioning.h for what each computes).
//
// Decoding lays out every step's input as training does: ids (R, Tt) = [CLS] y₁ … y_{t−1} [MASK] [PAD]…,
// with text_mask 1 on positions 0 … t, the frames after the Tt text positions. Under the seq2seq mask the
// [MASK] at position t sees the clip and positions 0 … t only, so the padding after it changes nothing, and
// the frames keep the position embeddings they had in training. Each step runs the whole model again (no
// key/value cache): a step costs one forward pass over Tt + Tv + 1 positions for each unfinished caption or
// beam, which for captions of a few tokens is cheaper to read than it is worth optimising.
#include "train/captioning.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace vb::train {

// ---------------------------------------------------------------- training

MaskedTokens mask_caption_tokens(const Tensor& ids, const SpecialTokens& s, double p, Generator& gen) {
  VB_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::Int64,
           "mask_caption_tokens: expected int64 ids (B, Tt), got {}",
           ids.defined() ? fmt::format("{} {}", shape_str(ids.shape()), ids.dtype()) : "an undefined tensor");
  VB_CHECK(p >= 0 && p <= 1, "mask_caption_tokens: the masking probability must be in [0, 1], got {}", p);
  Tensor host = contiguous(to(ids, Device()));
  const int64_t b = host.size(0), l = host.size(1);
  const Tensor choose = rand_rows({b, l}, &gen, DType::Float64);  // one draw per position
  const Tensor fallback = rand_rows({b}, &gen, DType::Float64);   // which candidate when none was chosen
  const double* u = choose.data<double>();
  const double* f = fallback.data<double>();
  MaskedTokens out;
  out.ids = clone(host);
  out.labels = full(host.shape(), -100, DType::Int64);
  int64_t* x = out.ids.data<int64_t>();
  int64_t* y = out.labels.data<int64_t>();
  std::vector<int64_t> candidates;
  for (int64_t r = 0; r < b; ++r) {
    candidates.clear();
    int64_t chosen = 0;
    for (int64_t i = r * l; i < (r + 1) * l; ++i) {
      const int64_t t = x[i];
      if (t == s.pad || t == s.cls || t == s.mask || t == s.unk) continue;  // [SEP] stays a candidate
      candidates.push_back(i);
      if (u[i] < p) {
        y[i] = t;
        ++chosen;
      }
    }
    if (chosen == 0 && !candidates.empty()) {
      const auto k = std::min(size_t(f[r] * double(candidates.size())), candidates.size() - 1);
      y[candidates[k]] = x[candidates[k]];
      chosen = 1;
    }
    out.count += chosen;
  }
  for (int64_t i = 0; i < b * l; ++i)
    if (y[i] != -100) x[i] = s.mask;
  out.ids = to(out.ids, ids.device());
  out.labels = to(out.labels, ids.device());
  return out;
}

CaptionLoss caption_loss(models::SingleStream& model, const Tensor& ids, const Tensor& text_mask,
                         const Tensor& features, Generator& gen, const CaptionLossOptions& options) {
  return caption_loss(model, mask_caption_tokens(ids, options.special, options.mask_probability, gen), text_mask,
                      features, options.reduction);
}

CaptionLoss caption_loss(models::SingleStream& model, const MaskedTokens& masked, const Tensor& text_mask,
                         const Tensor& features, Reduction reduction) {
  VB_CHECK(masked.ids.defined() && masked.labels.defined() && masked.ids.shape() == masked.labels.shape(),
           "caption_loss: expected masked ids and labels of one shape (B, Tt) from mask_caption_tokens");
  CaptionLoss out;
  out.masked = masked;
  models::SingleStreamOutput h =
      model.forward(out.masked.ids, text_mask, features, {}, models::StreamAttention::Seq2Seq);
  const int64_t b = h.text_hidden.size(0), tt = h.text_hidden.size(1), hidden = h.text_hidden.size(2);
  // The head runs on the masked positions only: with a 30k vocabulary, logits at every text position would
  // be (B, Tt, 30522) floats for a few tokens each caption.
  std::vector<int64_t> rows, targets;
  const std::vector<double> labels = to(out.masked.labels, Device()).to_vector();
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] != -100) rows.push_back(int64_t(i)), targets.push_back(int64_t(labels[i]));
  const Device device = h.text_hidden.device();
  if (rows.empty()) {
    // Nothing to predict: a zero that still reaches the head's and the encoder's weights, so that every rank
    // of a data-parallel step gives the same parameters a (zero) gradient.
    const Tensor head = model.mlm_logits(select(h.text_hidden, 1, 0));  // (B, V)
    out.loss = mul(sum(head), 0.0);
    out.logits = zeros({0, head.size(-1)}, head.dtype(), device);
    out.targets = zeros({0}, DType::Int64, device);
    return out;
  }
  const int64_t m = int64_t(rows.size());
  const Tensor at = to(Tensor::from_vector(rows, {m}), device);
  out.logits = model.mlm_logits(index_select(reshape(h.text_hidden, {b * tt, hidden}), 0, at));  // (M, V)
  out.targets = to(Tensor::from_vector(targets, {m}), device);
  out.loss = cross_entropy(out.logits, out.targets, -100, 0.0, reduction);
  return out;
}

// ---------------------------------------------------------------- decoding

namespace {

// Puts the model in eval mode (no dropout) for the scope and restores its mode after.
class EvalScope {
 public:
  explicit EvalScope(nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalScope() { m_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  nn::Module& m_;
  bool was_training_;
};

struct Resolved {
  int64_t text_len, max_length, min_length, vocab;
};

Resolved check_options(const models::SingleStream& model, const Tensor& features, const DecodeOptions& o,
                       const char* who) {
  VB_CHECK(features.defined() && features.dim() == 3 && features.size(0) > 0,
           "{}: expected frame features (B, Tv, C) with B ≥ 1, got {}", who,
           features.defined() ? shape_str(features.shape()) : "undefined");
  const int64_t vocab = model.config.text.vocab_size;
  VB_CHECK(o.text_len >= 2, "{}: DecodeOptions.text_len must be the padded text length the model was trained with "
           "(max_text_len, ≥ 2), got {}", who, o.text_len);
  Resolved r{o.text_len, o.max_length > 0 ? o.max_length : o.text_len - 2, o.min_length, vocab};
  VB_CHECK(r.max_length >= 1 && r.max_length <= o.text_len - 1,
           "{}: max_length {} must be in [1, text_len − 1 = {}] (the last [MASK] must fit in the text)", who,
           r.max_length, o.text_len - 1);
  VB_CHECK(r.min_length >= 0 && r.min_length <= r.max_length, "{}: min_length {} must be in [0, max_length = {}]",
           who, r.min_length, r.max_length);
  const SpecialTokens& s = o.special;
  for (int64_t id : {s.pad, s.cls, s.sep, s.mask, s.unk})
    VB_CHECK(id >= 0 && id < vocab, "{}: special token id {} outside the model's vocabulary of {}", who, id, vocab);
  const int64_t positions = o.text_len + features.size(1) + 1;
  VB_CHECK(positions <= model.config.text.max_position_embeddings,
           "{}: text_len {} + {} frames + [SEP] exceed max_position_embeddings {}", who, o.text_len, features.size(1),
           model.config.text.max_position_embeddings);
  return r;
}

// (V) float32 on `device`: 0 for the tokens a caption may hold at a step, −∞ for the special tokens (and
// for [SEP] when it is not yet allowed).
Tensor banned_logits(const Resolved& r, const SpecialTokens& s, bool allow_sep, Device device) {
  std::vector<float> bias(size_t(r.vocab), 0.0f);
  for (int64_t id : {s.pad, s.cls, s.mask, s.unk}) bias[size_t(id)] = -std::numeric_limits<float>::infinity();
  if (!allow_sep) bias[size_t(s.sep)] = -std::numeric_limits<float>::infinity();
  return to(Tensor::from_vector(bias, {r.vocab}), device);
}

// The log-probabilities (R, V) of the token at position `step` for R partial captions (each `step` − 1
// tokens long) of the clips `clip_of_row`.
Tensor next_token_log_probs(models::SingleStream& model, const Tensor& features,
                            const std::vector<std::vector<int64_t>>& prefixes, const std::vector<int64_t>& clip_of_row,
                            int64_t step, const Resolved& r, const SpecialTokens& s) {
  const int64_t rows = int64_t(prefixes.size()), tt = r.text_len;
  const Device device = features.device();
  std::vector<int64_t> ids(size_t(rows * tt), s.pad), mask(size_t(rows * tt), 0);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t* row = ids.data() + i * tt;
    row[0] = s.cls;
    for (int64_t k = 0; k < step - 1; ++k) row[k + 1] = prefixes[size_t(i)][size_t(k)];
    row[step] = s.mask;
    std::fill(mask.begin() + i * tt, mask.begin() + i * tt + step + 1, 1);
  }
  bool all_clips = rows == features.size(0);
  for (int64_t i = 0; all_clips && i < rows; ++i) all_clips = clip_of_row[size_t(i)] == i;
  const Tensor feats =
      all_clips ? features : index_select(features, 0, to(Tensor::from_vector(clip_of_row, {rows}), device));
  models::SingleStreamOutput out =
      model.forward(to(Tensor::from_vector(ids, {rows, tt}), device), to(Tensor::from_vector(mask, {rows, tt}), device),
                    feats, {}, models::StreamAttention::Seq2Seq);
  Tensor logits = model.mlm_logits(select(out.text_hidden, 1, step));  // (R, V)
  return log_softmax(add(logits, banned_logits(r, s, step - 1 >= r.min_length, device)), -1);
}

double ranked_score(double log_prob, int64_t emitted, double alpha) {
  return alpha == 0 || emitted == 0 ? log_prob : log_prob / std::pow(double(emitted), alpha);
}

}  // namespace

std::vector<Caption> greedy_decode(models::SingleStream& model, const Tensor& features, const DecodeOptions& options) {
  const Resolved r = check_options(model, features, options, "greedy_decode");
  EvalScope eval(model);
  NoGradGuard no_grad;
  const int64_t clips = features.size(0);
  std::vector<Caption> out(static_cast<size_t>(clips));
  std::vector<int64_t> active(static_cast<size_t>(clips));
  for (int64_t c = 0; c < clips; ++c) active[size_t(c)] = c;
  for (int64_t step = 1; step <= r.max_length && !active.empty(); ++step) {
    std::vector<std::vector<int64_t>> prefixes;
    for (int64_t c : active) prefixes.push_back(out[size_t(c)].ids);
    Tensor logp = next_token_log_probs(model, features, prefixes, active, step, r, options.special);
    Tensor pick = argmax(logp, -1);                                          // (R)
    const std::vector<double> tokens = pick.to_vector();
    const std::vector<double> lp = gather(logp, 1, unsqueeze(pick, 1)).to_vector();  // (R, 1)
    std::vector<int64_t> still;
    for (size_t i = 0; i < active.size(); ++i) {
      Caption& cap = out[size_t(active[i])];
      const auto token = int64_t(tokens[i]);
      cap.log_prob += lp[i];
      if (token == options.special.sep) {
        cap.finished = true;
      } else {
        cap.ids.push_back(token);
        still.push_back(active[i]);
      }
    }
    active = std::move(still);
  }
  for (Caption& cap : out)
    cap.score = ranked_score(cap.log_prob, int64_t(cap.ids.size()) + cap.finished, options.length_penalty);
  return out;
}

std::vector<Caption> beam_search(models::SingleStream& model, const Tensor& features, const DecodeOptions& options) {
  const Resolved r = check_options(model, features, options, "beam_search");
  const int64_t width = options.beam_width;
  VB_CHECK(width >= 1, "beam_search: beam_width must be ≥ 1, got {}", width);
  const double alpha = options.length_penalty;
  VB_CHECK(alpha >= 0, "beam_search: length_penalty must be ≥ 0, got {}", alpha);
  EvalScope eval(model);
  NoGradGuard no_grad;
  const int64_t clips = features.size(0);
  // Each clip's beams, best first; a clip is done when no beam of it needs another step.
  std::vector<std::vector<Caption>> beams(size_t(clips), std::vector<Caption>(1));
  std::vector<bool> done(size_t(clips), false);
  const double minus_inf = -std::numeric_limits<double>::infinity();
  for (int64_t step = 1; step <= r.max_length; ++step) {
    // The unfinished beams of the clips still running, one model row each.
    std::vector<std::vector<int64_t>> prefixes;
    std::vector<int64_t> clip_of_row, beam_of_row;
    for (int64_t c = 0; c < clips; ++c) {
      if (done[size_t(c)]) continue;
      for (size_t k = 0; k < beams[size_t(c)].size(); ++k) {
        if (beams[size_t(c)][k].finished) continue;
        prefixes.push_back(beams[size_t(c)][k].ids);
        clip_of_row.push_back(c);
        beam_of_row.push_back(int64_t(k));
      }
    }
    if (prefixes.empty()) break;
    const int64_t rows = int64_t(prefixes.size());
    Tensor logp = next_token_log_probs(model, features, prefixes, clip_of_row, step, r, options.special);  // (R, V)
    // Each row's `width` best tokens: any of the clip's `width` best candidates is among them. Found by
    // repeated arg-max on the device so that only (R, width) numbers come back to the host.
    std::vector<Tensor> top_ids, top_lp;
    Tensor rest = logp;
    const Tensor vocab_ids = unsqueeze(arange(r.vocab, DType::Int64, logp.device()), 0);  // (1, V)
    for (int64_t j = 0; j < std::min(width, r.vocab); ++j) {
      Tensor pick = unsqueeze(argmax(rest, -1), 1);  // (R, 1)
      top_ids.push_back(pick);
      top_lp.push_back(gather(rest, 1, pick));
      rest = masked_fill(rest, eq(vocab_ids, pick), minus_inf);
    }
    const std::vector<double> cand_ids = cat(top_ids, 1).to_vector(), cand_lp = cat(top_lp, 1).to_vector();
    const int64_t per_row = int64_t(top_ids.size());

    // Per clip: its finished beams as they are, and every extension of its unfinished beams.
    std::vector<std::vector<Caption>> candidates(static_cast<size_t>(clips));
    for (int64_t c = 0; c < clips; ++c)
      if (!done[size_t(c)])
        for (const Caption& b : beams[size_t(c)])
          if (b.finished) candidates[size_t(c)].push_back(b);
    for (int64_t i = 0; i < rows; ++i) {
      const Caption& parent = beams[size_t(clip_of_row[size_t(i)])][size_t(beam_of_row[size_t(i)])];
      for (int64_t j = 0; j < per_row; ++j) {
        const double lp = cand_lp[size_t(i * per_row + j)];
        if (lp == minus_inf) continue;  // fewer allowed tokens than beams
        Caption next = parent;
        const auto token = int64_t(cand_ids[size_t(i * per_row + j)]);
        next.log_prob += lp;
        if (token == options.special.sep) next.finished = true;
        else next.ids.push_back(token);
        next.score = ranked_score(next.log_prob, int64_t(next.ids.size()) + next.finished, alpha);
        candidates[size_t(clip_of_row[size_t(i)])].push_back(std::move(next));
      }
    }
    for (int64_t c = 0; c < clips; ++c) {
      if (done[size_t(c)]) continue;
      std::vector<Caption>& cand = candidates[size_t(c)];
      // Stable: among equal scores the earlier beam and its more probable token first, as arg-max breaks ties.
      std::stable_sort(cand.begin(), cand.end(), [](const Caption& a, const Caption& b) { return a.score > b.score; });
      if (int64_t(cand.size()) > width) cand.resize(size_t(width));
      beams[size_t(c)] = std::move(cand);
      const bool all_finished = std::all_of(beams[size_t(c)].begin(), beams[size_t(c)].end(),
                                            [](const Caption& b) { return b.finished; });
      done[size_t(c)] = all_finished || (alpha == 0 && beams[size_t(c)].front().finished);
    }
  }
  std::vector<Caption> out;
  for (int64_t c = 0; c < clips; ++c) out.push_back(beams[size_t(c)].front());
  return out;
}

}  // namespace vb::train
