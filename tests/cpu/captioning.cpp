// Caption generation with the single-stream model (train/captioning.h, models::seq2seq_attention_mask):
//   - the seq2seq mask against one written out position by position, and its effect on the model: a caption
//     position's output ignores later caption tokens (to 1e-6) and follows the video;
//   - caption token masking (candidates, at least one per caption, per-row draws) and the loss against
//     cross-entropy computed on the host from the logits;
//   - decoding: greedy equals beam search of width 1 token for token, beam search's best caption scores at
//     least greedy's, each caption's log-probability recomputed step by step from the model, [SEP] ends a
//     caption, max_length and min_length hold, special tokens never come out;
//   - learning: a tiny single stream trained for 300 steps on a toy task (the caption names the colour and
//     the direction encoded in the frame features) drives the loss down and then writes the right caption.
// Dropout is off so that every forward pass is deterministic.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "models/videobert.h"
#include "tensor/error.h"
#include "tests/support/check.h"
#include "train/caption_metrics.h"
#include "train/captioning.h"
#include "train/optim.h"

using namespace vb;
using namespace vb::train;
using namespace vb::models;

namespace {

// The toy vocabulary: the five special tokens, then the caption words.
constexpr int64_t kPad = 0, kUnk = 1, kCls = 2, kSep = 3, kMask = 4;
constexpr int64_t kA = 5, kRed = 6, kBlue = 8, kYellow = 9, kCircle = 10, kMoves = 11, kTo = 12, kThe = 13,
                  kLeft = 14, kRight = 15, kVocab = 16;  // green (7) is kRed + 1
const SpecialTokens kSpecial{kPad, kCls, kSep, kMask, kUnk, kVocab};
const char* const kWords[kVocab] = {"[PAD]", "[UNK]",  "[CLS]",  "[SEP]", "[MASK]", "a",   "red",  "green",
                                    "blue",  "yellow", "circle", "moves", "to",     "the", "left", "right"};

constexpr int64_t Tt = 10, Tv = 3;  // [CLS] + 7 words + [SEP] + 1 padding; 3 frames

VideoBertConfig tiny_config() {
  VideoBertConfig c;
  c.text.vocab_size = kVocab;
  c.text.hidden_size = 32;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 2;
  c.text.intermediate_size = 64;
  c.text.max_position_embeddings = 16;
  c.text.hidden_dropout_prob = 0;
  c.text.attention_probs_dropout_prob = 0;
  c.text.pad_token_id = kPad;
  c.vision.width = 2;  // feature dim 16; the frame encoder is not used, the tests give features
  c.sep_token_id = kSep;
  return c;
}

const int64_t C = tiny_config().vision.feature_dim();

// The toy task: a clip's colour (4) and direction (2) are drawn; its caption is
// "a <colour> circle moves to the <left|right>". Every frame's features carry the colour as a one-hot in
// dims 0–3 and the direction as +1 (right) or −1 (left) in dim 4, over Gaussian noise of σ 0.3 everywhere.
// (A direction written as a ramp over the frames, which the model must compare across frames, was learned
// too, but only at a higher learning rate or masking rate, and not for every seed in 300 steps.)
struct Toy {
  Tensor ids, mask, features;                  // (B, Tt), (B, Tt), (B, Tv, C)
  std::vector<std::vector<int64_t>> captions;  // each caption's words, without [CLS]/[SEP]
};

Toy toy_batch(int64_t batch, uint64_t seed) {
  Generator g{seed, 0};
  const std::vector<double> attr = randint(0, 8, {batch}, &g).to_vector();
  std::vector<double> f = mul(randn({batch, Tv, C}, &g, DType::Float64), 0.3).to_vector();
  std::vector<int64_t> ids(size_t(batch * Tt), kPad), mask(size_t(batch * Tt), 0);
  Toy t;
  for (int64_t b = 0; b < batch; ++b) {
    const auto colour = int64_t(attr[size_t(b)]) % 4;
    const bool right = int64_t(attr[size_t(b)]) / 4 == 1;
    t.captions.push_back({kA, kRed + colour, kCircle, kMoves, kTo, kThe, right ? kRight : kLeft});
    std::vector<int64_t> row = {kCls};
    row.insert(row.end(), t.captions.back().begin(), t.captions.back().end());
    row.push_back(kSep);
    for (size_t k = 0; k < row.size(); ++k) {
      ids[size_t(b * Tt) + k] = row[k];
      mask[size_t(b * Tt) + k] = 1;
    }
    for (int64_t v = 0; v < Tv; ++v) {
      f[size_t((b * Tv + v) * C + colour)] += 1.0;
      f[size_t((b * Tv + v) * C + 4)] += right ? 1.0 : -1.0;
    }
  }
  t.ids = Tensor::from_vector(ids, {batch, Tt});
  t.mask = Tensor::from_vector(mask, {batch, Tt});
  t.features = Tensor::from_vector(f, {batch, Tv, C});
  return t;
}

std::unique_ptr<SingleStream> make_model(uint64_t seed) {
  manual_seed(seed);  // the initialisers draw from the default generator
  auto m = std::make_unique<SingleStream>(tiny_config());
  m->eval();
  return m;
}

DecodeOptions decode_options(int64_t beam_width = 1, double length_penalty = 0) {
  DecodeOptions o;
  o.special = kSpecial;
  o.text_len = Tt;
  o.beam_width = beam_width;
  o.length_penalty = length_penalty;
  return o;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// log P(caption | clip) recomputed from the model one position at a time, written independently of the
// decoders: position t holds [MASK] after [CLS] and the caption's first t − 1 tokens, and the special tokens
// (and [SEP] before min_length) are excluded from the softmax on the host.
double sequence_log_prob(SingleStream& model, const Tensor& features, int64_t clip, const Caption& cap,
                         int64_t min_length) {
  NoGradGuard no_grad;
  Tensor f = narrow(features, 0, clip, 1);
  double total = 0;
  const size_t steps = cap.ids.size() + (cap.finished ? 1 : 0);
  for (size_t t = 1; t <= steps; ++t) {
    std::vector<int64_t> ids(size_t(Tt), kPad), mask(size_t(Tt), 0);
    ids[0] = kCls;
    for (size_t k = 1; k < t; ++k) ids[k] = cap.ids[k - 1];
    ids[t] = kMask;
    for (size_t k = 0; k <= t; ++k) mask[k] = 1;
    SingleStreamOutput out = model.forward(Tensor::from_vector(ids, {1, Tt}), Tensor::from_vector(mask, {1, Tt}), f,
                                           {}, StreamAttention::Seq2Seq);
    const std::vector<double> logits = model.mlm_logits(select(out.text_hidden, 1, int64_t(t))).to_vector();
    const int64_t token = t <= cap.ids.size() ? cap.ids[t - 1] : kSep;
    double top = -INFINITY;
    std::vector<bool> allowed(size_t(kVocab), true);
    for (int64_t s : {kPad, kUnk, kCls, kMask}) allowed[size_t(s)] = false;
    if (int64_t(t) - 1 < min_length) allowed[size_t(kSep)] = false;
    for (int64_t v = 0; v < kVocab; ++v)
      if (allowed[size_t(v)]) top = std::max(top, logits[size_t(v)]);
    double z = 0;
    for (int64_t v = 0; v < kVocab; ++v)
      if (allowed[size_t(v)]) z += std::exp(logits[size_t(v)] - top);
    total += logits[size_t(token)] - top - std::log(z);
  }
  return total;
}

void check_ordinary(const std::vector<Caption>& caps, const std::string& what) {
  for (const Caption& c : caps)
    for (int64_t id : c.ids) CHECK_MESSAGE(id >= kA, what, ": emitted special token ", kWords[id]);
}

Words words_of(const std::vector<int64_t>& ids) {
  Words w;
  for (int64_t id : ids) w.push_back(kWords[id]);
  return w;
}

}  // namespace

TEST_CASE("seq2seq_attention_mask: text sees earlier tokens and the video, the video sees the video") {
  // Row 0: four tokens; row 1: its last text position is padding. Tt = 4, Tv = 2: N = 4 + 2 + 1.
  const Tensor text_mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0}, {2, 4});
  const Tensor m = seq2seq_attention_mask(text_mask, 2);
  REQUIRE(m.shape() == Shape{2, 7, 7});
  CHECK(m.dtype() == DType::Bool);
  const std::vector<double> got = m.to_vector(), tm = text_mask.to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t j = 0; j < 7; ++j) {
        const bool video_key = j >= 4;
        const bool expected = i < 4 ? video_key || (j <= i && tm[size_t(b * 4 + j)] == 1) : video_key;
        CAPTURE(b);
        CAPTURE(i);
        CAPTURE(j);
        CHECK((got[size_t((b * 7 + i) * 7 + j)] == 1) == expected);
      }
  CHECK_THROWS_WITH_AS(seq2seq_attention_mask(Tensor(), 2), doctest::Contains("expected text_mask (B, Tt)"), Error);
}

TEST_CASE("BERT takes a (B, T, T) attention mask: a causal mask makes each output independent of later tokens") {
  BertConfig c = tiny_config().text;
  manual_seed(2);
  BertModel bert(c);
  bert.eval();
  Generator g{3, 0};
  Tensor ids = randint(kA, kVocab, {2, 6}, &g);
  Tensor pos = arange(6);
  Tensor causal = expand(unsqueeze(le(unsqueeze(pos, 0), unsqueeze(pos, 1)), 0), {2, 6, 6});  // [i, j] = j ≤ i
  Tensor changed = clone(ids);
  changed.data<int64_t>()[4] = ids.data<int64_t>()[4] == kRed ? kBlue : kRed;  // row 0, position 4
  NoGradGuard no_grad;
  Tensor a = bert.forward(ids, {}, causal).last_hidden_state, b = bert.forward(changed, {}, causal).last_hidden_state;
  test::check_close(narrow(b, 1, 0, 4), narrow(a, 1, 0, 4), 1e-6, 0, "causal: positions before the change");
  CHECK(max_abs_diff(narrow(b, 1, 4, 2), narrow(a, 1, 4, 2)) > 1e-3);
  // An integer 0/1 mask means the same as the bool one; an all-ones (B, T, T) mask the same as none.
  test::check_close(bert.forward(ids, {}, vb::to(causal, DType::Int64)).last_hidden_state, a, 1e-6, 0, "int64 mask");
  test::check_close(bert.forward(ids, {}, ones({2, 6, 6}, DType::Int64)).last_hidden_state,
                    bert.forward(ids).last_hidden_state, 1e-6, 0, "all-ones mask");
  CHECK_THROWS_WITH_AS(bert.forward(ids, {}, ones({2, 5, 5})), doctest::Contains("does not fit the inputs"), Error);
  CHECK_THROWS_WITH_AS(bert.forward(ids, {}, ones({2, 6, 5})), doctest::Contains("(B, T) or (B, T, T)"), Error);
}

TEST_CASE("SingleStream under Seq2Seq: a caption position ignores later tokens and follows the video") {
  const auto held = make_model(3);
  SingleStream& model = *held;
  Toy b = toy_batch(2, 5);
  NoGradGuard no_grad;
  auto run = [&](const Tensor& ids, const Tensor& features, StreamAttention a) {
    return model.forward(ids, b.mask, features, {}, a);
  };
  const SingleStreamOutput base = run(b.ids, b.features, StreamAttention::Seq2Seq);
  // Change the caption at position 5 (the word "to") in both rows.
  Tensor later = clone(b.ids);
  for (int64_t r = 0; r < 2; ++r) later.data<int64_t>()[r * Tt + 5] = kYellow;
  const SingleStreamOutput changed = run(later, b.features, StreamAttention::Seq2Seq);
  test::check_close(narrow(changed.text_hidden, 1, 0, 5), narrow(base.text_hidden, 1, 0, 5), 1e-6, 0,
                    "text positions 0–4 after changing position 5");
  test::check_close(changed.video_hidden, base.video_hidden, 1e-6, 0, "video positions after changing the caption");
  CHECK(max_abs_diff(narrow(changed.text_hidden, 1, 5, Tt - 5), narrow(base.text_hidden, 1, 5, Tt - 5)) > 1e-3);
  // Another clip changes every caption position, [CLS] included.
  const SingleStreamOutput other = run(b.ids, add(b.features, 1.0), StreamAttention::Seq2Seq);
  for (int64_t t = 0; t < Tt; ++t) {
    CAPTURE(t);
    CHECK(max_abs_diff(select(other.text_hidden, 1, t), select(base.text_hidden, 1, t)) > 1e-4);
  }
  // The default stays bidirectional: there, the change at position 5 reaches position 1.
  const SingleStreamOutput bi = run(b.ids, b.features, StreamAttention::Bidirectional);
  const SingleStreamOutput bi_changed = run(later, b.features, StreamAttention::Bidirectional);
  CHECK(max_abs_diff(select(bi_changed.text_hidden, 1, 1), select(bi.text_hidden, 1, 1)) > 1e-4);
  test::check_close(model.forward(b.ids, b.mask, b.features).hidden, bi.hidden, 1e-6, 0,
                    "the default is bidirectional");
}

TEST_CASE("mask_caption_tokens: caption words and [SEP] only, at least one per caption, per-row draws") {
  Toy b = toy_batch(400, 9);
  Generator g{21, 0};
  MaskedTokens m = mask_caption_tokens(b.ids, kSpecial, 0.3, g);
  const std::vector<double> ids = b.ids.to_vector(), out = m.ids.to_vector(), labels = m.labels.to_vector();
  int64_t chosen = 0, candidates = 0;
  for (int64_t r = 0; r < 400; ++r) {
    int64_t in_row = 0;
    for (int64_t t = 0; t < Tt; ++t) {
      const size_t i = size_t(r * Tt + t);
      const bool candidate = ids[i] != kPad && ids[i] != kCls;
      candidates += candidate;
      if (labels[i] == -100) {
        CHECK(out[i] == ids[i]);
        continue;
      }
      CHECK(candidate);
      CHECK(labels[i] == ids[i]);
      CHECK(out[i] == kMask);
      ++in_row;
    }
    CHECK(in_row >= 1);
    chosen += in_row;
  }
  CHECK(chosen == m.count);
  // 8 candidates per caption: P(none drawn) = 0.7⁸ ≈ 5.8%, which the one forced adds ≈ 0.7% to.
  const double rate = double(chosen) / double(candidates);
  CHECK(rate > 0.28);
  CHECK(rate < 0.33);
  // p = 0: exactly one per caption.
  Generator g0{22, 0};
  CHECK(mask_caption_tokens(b.ids, kSpecial, 0.0, g0).count == 400);

  // Data parallel: 4 shards of 3 rows draw what 12 rows draw at once, and the generators end alike.
  Tensor twelve = narrow(b.ids, 0, 0, 12);
  Generator whole{11, 5};
  MaskedTokens all = mask_caption_tokens(twelve, kSpecial, 0.3, whole);
  for (int64_t k = 0; k < 4; ++k) {
    Generator part{11, 5, uint64_t(k), 4};
    MaskedTokens mine = mask_caption_tokens(narrow(twelve, 0, 3 * k, 3), kSpecial, 0.3, part);
    CHECK(part.offset == whole.offset);
    CHECK(mine.labels.to_vector() == narrow(all.labels, 0, 3 * k, 3).to_vector());
  }
  CHECK_THROWS_WITH_AS(mask_caption_tokens(ones({2, 3}), kSpecial, 0.3, g), doctest::Contains("int64 ids (B, Tt)"),
                       Error);
  CHECK_THROWS_WITH_AS(mask_caption_tokens(b.ids, kSpecial, 1.5, g), doctest::Contains("in [0, 1]"), Error);
}

TEST_CASE("caption_loss is the cross-entropy of the masked positions (host reference, relative 1e-5)") {
  const auto held = make_model(4);
  SingleStream& model = *held;
  Toy b = toy_batch(6, 10);
  CaptionLossOptions o;
  o.special = kSpecial;
  o.mask_probability = 0.3;
  Generator g{7, 0};
  CaptionLoss l = caption_loss(model, b.ids, b.mask, b.features, g, o);
  // The reference: the head on every text position of the model's masked input, cross-entropy on the host at
  // the positions the labels mark.
  const std::vector<double> logits = [&] {
    NoGradGuard no_grad;
    SingleStreamOutput h = model.forward(l.masked.ids, b.mask, b.features, {}, StreamAttention::Seq2Seq);
    return model.mlm_logits(h.text_hidden).to_vector();
  }();
  const std::vector<double> labels = l.masked.labels.to_vector();
  double ref = 0;
  int64_t n = 0;
  for (size_t p = 0; p < labels.size(); ++p) {
    if (labels[p] == -100) continue;
    const double* row = logits.data() + p * kVocab;
    double top = -INFINITY, z = 0;
    for (int64_t v = 0; v < kVocab; ++v) top = std::max(top, row[v]);
    for (int64_t v = 0; v < kVocab; ++v) z += std::exp(row[v] - top);
    ref += top + std::log(z) - row[size_t(labels[p])];
    ++n;
  }
  CHECK(l.logits.shape() == Shape{n, kVocab});
  CHECK(l.targets.shape() == Shape{n});
  REQUIRE(n == l.masked.count);
  CHECK(std::abs(l.loss.item() - ref / double(n)) <= 1e-5 * ref / double(n));
  // The same draws with Reduction::Sum give the sum.
  o.reduction = Reduction::Sum;
  Generator g2{7, 0};
  CHECK(std::abs(caption_loss(model, b.ids, b.mask, b.features, g2, o).loss.item() - ref) <= 1e-5 * ref);
  // Masks drawn first (a data-parallel step's preparation), the loss after: the same number.
  Generator g3{7, 0};
  const MaskedTokens drawn = mask_caption_tokens(b.ids, kSpecial, 0.3, g3);
  CHECK(caption_loss(model, drawn, b.mask, b.features).loss.item() == l.loss.item());
  // Nothing to predict: loss 0, and backward still runs.
  Tensor empty = full({2, Tt}, double(kPad), DType::Int64);
  for (int64_t r = 0; r < 2; ++r) empty.data<int64_t>()[r * Tt] = kCls;
  CaptionLoss none = caption_loss(model, empty, ones({2, Tt}, DType::Int64), narrow(b.features, 0, 0, 2), g, o);
  CHECK(none.masked.count == 0);
  CHECK(none.loss.item() == 0.0);
  CHECK(none.logits.shape() == Shape{0, kVocab});
  backward(none.loss);
  CHECK(model.cls->predictions->bias.grad().defined());
}

TEST_CASE("greedy decoding equals beam search of width 1; wider beams score at least as well") {
  const auto held = make_model(5);
  SingleStream& model = *held;
  model.train();  // the decoders switch to eval mode themselves and switch back
  Toy b = toy_batch(6, 11);
  for (double alpha : {0.0, 1.0}) {
    CAPTURE(alpha);
    const std::vector<Caption> greedy = greedy_decode(model, b.features, decode_options(1, alpha));
    CHECK(model.is_training());
    const std::vector<Caption> beam1 = beam_search(model, b.features, decode_options(1, alpha));
    REQUIRE(greedy.size() == 6);
    REQUIRE(beam1.size() == 6);
    for (size_t c = 0; c < greedy.size(); ++c) {
      CAPTURE(c);
      CHECK(beam1[c].ids == greedy[c].ids);
      CHECK(beam1[c].log_prob == greedy[c].log_prob);
      CHECK(beam1[c].score == greedy[c].score);
      CHECK(beam1[c].finished == greedy[c].finished);
    }
    check_ordinary(greedy, "greedy");
    for (int64_t width : {2, 3, 5}) {
      CAPTURE(width);
      const std::vector<Caption> beam = beam_search(model, b.features, decode_options(width, alpha));
      check_ordinary(beam, "beam");
      for (size_t c = 0; c < beam.size(); ++c) {
        CAPTURE(c);
        CHECK(beam[c].score >= greedy[c].score - 1e-9);
        const double emitted = double(beam[c].ids.size() + (beam[c].finished ? 1 : 0));
        CHECK(beam[c].score == doctest::Approx(beam[c].log_prob / std::pow(emitted, alpha)).epsilon(1e-12));
        // The beam's bookkeeping against the model itself, one position at a time.
        CHECK(beam[c].log_prob ==
              doctest::Approx(sequence_log_prob(model, b.features, int64_t(c), beam[c], 1)).epsilon(1e-4));
      }
    }
  }
}

TEST_CASE("decoding stops at [SEP], respects max_length and min_length, and emits no other special token") {
  const auto held = make_model(6);
  SingleStream& model = *held;
  Toy b = toy_batch(3, 12);
  Tensor bias = detach(model.cls->predictions->bias);
  float* logit_bias = bias.data<float>();
  // Every special token but [SEP] made overwhelmingly likely: none may come out.
  for (int64_t s : {kPad, kUnk, kCls, kMask}) logit_bias[s] = 50;
  logit_bias[kSep] = 50;  // and [SEP] too: captions end as soon as they may
  for (int64_t width : {1, 3}) {
    CAPTURE(width);
    DecodeOptions o = decode_options(width);
    o.min_length = 0;
    for (auto decode : {greedy_decode, beam_search}) {
      for (const Caption& c : decode(model, b.features, o)) {
        CHECK(c.ids.empty());
        CHECK(c.finished);
        CHECK(c.log_prob > -1e-6);
      }
    }
    o.min_length = 2;  // [SEP] only from the third step on
    for (auto decode : {greedy_decode, beam_search}) {
      const std::vector<Caption> caps = decode(model, b.features, o);
      check_ordinary(caps, "min_length 2");
      for (const Caption& c : caps) {
        CHECK(c.ids.size() == 2);
        CHECK(c.finished);
      }
      CHECK(caps[0].log_prob == doctest::Approx(sequence_log_prob(model, b.features, 0, caps[0], 2)).epsilon(1e-4));
    }
    logit_bias[kSep] = -50;  // [SEP] now practically never: max_length stops every caption
    o.min_length = 1;
    o.max_length = 5;
    for (auto decode : {greedy_decode, beam_search}) {
      const std::vector<Caption> caps = decode(model, b.features, o);
      check_ordinary(caps, "max_length 5");
      for (const Caption& c : caps) {
        CHECK(c.ids.size() == 5);
        CHECK_FALSE(c.finished);
      }
    }
    logit_bias[kSep] = 50;
  }
  DecodeOptions bad = decode_options();
  bad.text_len = 0;
  CHECK_THROWS_WITH_AS(greedy_decode(model, b.features, bad), doctest::Contains("text_len"), Error);
  bad = decode_options();
  bad.max_length = Tt;
  CHECK_THROWS_WITH_AS(beam_search(model, b.features, bad),
                       doctest::Contains("max_length 10 must be in [1, text_len − 1 = 9]"), Error);
  bad = decode_options(0);
  CHECK_THROWS_WITH_AS(beam_search(model, b.features, bad), doctest::Contains("beam_width must be ≥ 1"), Error);
  CHECK_THROWS_WITH_AS(greedy_decode(model, ones({3, C}), decode_options()), doctest::Contains("(B, Tv, C)"), Error);
}

TEST_CASE("a tiny single stream learns to caption the toy task in 300 steps") {
  // One thread: these tensors are a few thousand elements, and on a loaded 2-core machine OpenMP's second
  // thread costs more at every op's barrier than it saves (docs/TRAINING.md, "Threads"): measured on the dev
  // VM at load 6–8, this case took 38–72 s with 2 threads and 1.5 s with one.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  struct Restore {
    int n;
    ~Restore() { omp_set_num_threads(n); }
  } restore{threads};
  const auto start = std::chrono::steady_clock::now();
  manual_seed(7);
  SingleStream model(tiny_config());
  model.train();
  AdamW opt(decay_groups(model), 0.9, 0.999, 1e-8, 0.01);
  Generator gen{8, 0};
  CaptionLossOptions o;
  o.special = kSpecial;
  const int steps = 300;
  const double lr = 3e-3;
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    Toy b = toy_batch(32, 1000 + uint64_t(step));
    opt.zero_grad();
    CaptionLoss l = caption_loss(model, b.ids, b.mask, b.features, gen, o);
    backward(l.loss);
    const double warm = std::min(1.0, double(step + 1) / 20.0);
    opt.step(lr * warm);
    losses.push_back(l.loss.item());
  }
  auto mean_of = [&](int from, int to) {
    double s = 0;
    for (int i = from; i < to; ++i) s += losses[size_t(i)];
    return s / double(to - from);
  };
  const double first = mean_of(0, 20), last = mean_of(steps - 20, steps);
  MESSAGE("caption loss: first 20 steps ", first, ", last 20 steps ", last);
  CHECK(last < 0.2 * first);

  // Fresh clips: greedy captions against the references, as the metrics count them.
  Toy test = toy_batch(64, 99999);
  const std::vector<Caption> greedy = greedy_decode(model, test.features, decode_options());
  const std::vector<Caption> beam = beam_search(model, test.features, decode_options(3));
  CaptionHypotheses hyps, beam_hyps;
  CaptionReferences refs;
  for (size_t c = 0; c < greedy.size(); ++c) {
    const std::string id = std::to_string(c);
    hyps[id] = words_of(greedy[c].ids);
    beam_hyps[id] = words_of(beam[c].ids);
    refs[id] = {words_of(test.captions[c])};
    CHECK(greedy[c].finished);
    CHECK(beam[c].score >= greedy[c].score - 1e-9);
  }
  const CaptionMetrics m = caption_metrics(hyps, refs), mb = caption_metrics(beam_hyps, refs);
  // The baseline that templated captions call for: one constant caption for every clip.
  CaptionHypotheses constant;
  for (const auto& [id, h] : hyps) constant[id] = words_of({kA, kRed, kCircle, kMoves, kTo, kThe, kLeft});
  const CaptionMetrics mc = caption_metrics(constant, refs);
  MESSAGE("constant caption: exact match ", mc.exact_match, ", BLEU-4 ", mc.bleu[3], ", CIDEr-D ", mc.cider_d);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("greedy on 64 new clips: exact match ", m.exact_match, ", BLEU-4 ", m.bleu[3], ", CIDEr-D ", m.cider_d,
          "; beam 3: exact match ", mb.exact_match, "; ", seconds, " s");
  CHECK(m.exact_match >= 0.9);
  CHECK(mb.exact_match >= 0.9);
}
