// The three VideoBERT models on a tiny batch: output shapes, losses finite and going down over a few SGD
// steps, retrieval embeddings of the right shape with unit rows, and the masked-frame path of the single
// stream. Dropout is off so that each run is deterministic.
#include <cmath>
#include <functional>

#include "models/videobert.h"
#include "models/visual_words.h"
#include "tests/support/check.h"

using namespace vb;
using namespace vb::models;

namespace {

VideoBertConfig tiny_config() {
  VideoBertConfig c;
  c.text.vocab_size = 40;
  c.text.hidden_size = 16;
  c.text.num_attention_heads = 2;
  c.text.intermediate_size = 32;
  c.text.max_position_embeddings = 24;
  c.text.hidden_dropout_prob = 0;
  c.text.attention_probs_dropout_prob = 0;
  c.vision.width = 4;  // feature dim 32
  c.fusion_hidden = 24;
  c.embed_dim = 8;
  c.sep_token_id = 3;
  return c;
}

constexpr int64_t B = 2, Tt = 5, Tv = 3, S = 32;

struct Batch {
  Tensor ids, mask, frames;
};

Batch tiny_batch() {
  Generator gen{7, 0};
  Batch b;
  b.ids = randint(4, 40, {B, Tt}, &gen);
  std::vector<int64_t> mask = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};  // the second row padded
  b.mask = Tensor::from_vector(mask, {B, Tt});
  b.frames = randn({B, Tv, S, S, 3}, &gen);
  return b;
}

// Plain SGD on every parameter with a gradient; returns the loss before each step.
std::vector<double> sgd(nn::Module& model, const std::function<Tensor()>& loss_fn, int steps, double lr) {
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    model.zero_grad();
    Tensor loss = loss_fn();
    losses.push_back(loss.item());
    backward(loss);
    NoGradGuard no_grad;
    for (Tensor& p : model.parameters()) {
      if (!p.grad().defined()) continue;
      Tensor data = detach(p);
      copy_(data, sub(data, mul(p.grad(), lr)));
    }
  }
  return losses;
}

void check_descends(const std::vector<double>& losses, const std::string& what) {
  for (double l : losses) CHECK_MESSAGE(std::isfinite(l), what, ": loss ", l);
  CHECK_MESSAGE(losses.back() < 0.9 * losses.front(), what, ": loss ", losses.front(), " → ", losses.back());
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

void check_unit_rows(const Tensor& e, const std::string& what) {
  Tensor norms = sqrt(sum(mul(e, e), {-1}));
  test::check_close(norms, ones({e.size(0)}), 1e-5, 0, what + " row norms");
}

}  // namespace

TEST_CASE("LateFusion: shapes, score_all against score, BCE going down") {
  LateFusion model(tiny_config());
  Batch b = tiny_batch();
  Tensor text = model.text_embedding(b.ids, b.mask);
  Tensor video = model.video_embedding(b.frames);
  CHECK(text.shape() == Shape{B, 16});
  CHECK(video.shape() == Shape{B, 32});
  Tensor logits = model.forward(b.ids, b.mask, b.frames);
  CHECK(logits.shape() == Shape{B});
  Tensor all = model.score_all(text, video);
  CHECK(all.shape() == Shape{B, B});
  // score_all's diagonal is the aligned score; off-diagonal pairs are scored the same way.
  for (int64_t i = 0; i < B; ++i) CHECK(all.at({i, i}) == doctest::Approx(logits.at({i})).epsilon(1e-5));
  Tensor labels = Tensor::from_vector(std::vector<float>{1, 0}, {B});
  check_descends(sgd(model, [&] { return LateFusion::loss(model.forward(b.ids, b.mask, b.frames), labels); }, 6, 0.05),
                 "late fusion");
}

TEST_CASE("SingleStream: shapes of every head, masked frames ignore their features, losses going down") {
  VideoBertConfig c = tiny_config();
  SingleStream model(c);
  Batch b = tiny_batch();
  Tensor features = model.frame_features(b.frames);
  CHECK(features.shape() == Shape{B, Tv, 32});
  SingleStreamOutput out = model.forward(b.ids, b.mask, features);
  CHECK(out.hidden.shape() == Shape{B, Tt + Tv + 1, 16});
  CHECK(out.text_hidden.shape() == Shape{B, Tt, 16});
  CHECK(out.video_hidden.shape() == Shape{B, Tv, 16});
  CHECK(out.pooled.shape() == Shape{B, 16});
  CHECK(model.mlm_logits(out.text_hidden).shape() == Shape{B, Tt, 40});
  CHECK(model.frame_prediction(out.video_hidden).shape() == Shape{B, Tv, 32});
  CHECK(model.alignment_logits(out.pooled).shape() == Shape{B, 2});

  // A masked frame is replaced by the learned [MASK] frame: what its features were cannot matter.
  model.eval();
  Tensor frame_mask = Tensor::from_vector(std::vector<double>{0, 1, 0, 0, 0, 1}, {B, Tv}, DType::Bool);
  Tensor changed = clone(detach(features));
  {
    NoGradGuard no_grad;
    Tensor f = select(select(changed, 0, 0), 0, 1);
    fill_(f, 5.0);
  }
  SingleStreamOutput m1 = model.forward(b.ids, b.mask, detach(features), frame_mask);
  SingleStreamOutput m2 = model.forward(b.ids, b.mask, changed, frame_mask);
  test::check_close(m2.hidden, m1.hidden, 1e-6, 1e-6, "masked frame's features ignored");
  SingleStreamOutput unmasked = model.forward(b.ids, b.mask, changed);
  CHECK(max_abs_diff(unmasked.hidden, m1.hidden) > 1e-3);

  model.train();
  Tensor mlm_targets = Tensor::from_vector(std::vector<int64_t>{-100, 7, -100, 9, -100, -100, 11, -100, -100, -100}, {B, Tt});
  Tensor align_targets = Tensor::from_vector(std::vector<int64_t>{1, 0}, {B});
  auto loss_fn = [&] {
    Tensor f = model.frame_features(b.frames);
    SingleStreamOutput o = model.forward(b.ids, b.mask, f, frame_mask);
    Tensor mlm = cross_entropy(model.mlm_logits(o.text_hidden), mlm_targets);
    Tensor diff = sub(model.frame_prediction(o.video_hidden), detach(f));
    Tensor mfm = mean(mul(diff, diff));
    Tensor align = cross_entropy(model.alignment_logits(o.pooled), align_targets);
    return add(add(mlm, mfm), align);
  };
  check_descends(sgd(model, loss_fn, 6, 0.05), "single stream");
}

TEST_CASE("SingleStream with visual words: a frozen encoder, the words of the tree descent, tied word logits") {
  VideoBertConfig c = tiny_config();
  c.visual_levels = 2;
  c.visual_k = 3;
  SingleStream model(c);
  REQUIRE(model.visual_tokens());
  // A vocabulary: random tables of 3 and 9 rows (the tree's tables need not be means for the descent).
  VisualVocab v;
  v.levels = 2;
  v.k = 3;
  v.dim = 32;
  v.level_centroids = {mul(test::uniform({3, 32}, 11, 0, 1, DType::Float32), 2.0),
                       mul(test::uniform({9, 32}, 12, 0, 1, DType::Float32), 2.0)};
  model.init_visual_words(v);
  bool level_1 = false, centroids = false;
  for (auto& [name, t] : model.state_dict()) {
    if (name == "visual_vocab.level_1") level_1 = max_abs_diff(t, v.level_centroids[0]) == 0;
    if (name == "visual_vocab.centroids") centroids = max_abs_diff(t, v.centroids()) == 0;
  }
  CHECK(level_1);
  CHECK(centroids);
  CHECK(max_abs_diff(model.visual_words->weight, v.centroids()) == 0);  // the embeddings start at the centroids

  // frame_features: the encoder in evaluation mode, no gradient, and the model's mode left as it was.
  Batch b = tiny_batch();
  model.train();
  Tensor features = model.frame_features(b.frames);
  CHECK(!features.requires_grad());
  CHECK(model.video->is_training());
  model.video->eval();
  Tensor eval_features;
  {
    NoGradGuard no_grad;
    eval_features = model.video->frame_features(b.frames);
  }
  model.video->train();
  CHECK(max_abs_diff(features, eval_features) == 0);

  // The words read are the tree descent's, and the model reads nothing else of the features: the same
  // weights without visual words, given each frame's word embedding as its feature, give the same states.
  model.eval();
  SingleStreamOutput out = model.forward(b.ids, b.mask, features);
  REQUIRE(out.visual_words.defined());
  CHECK(out.visual_words.shape() == Shape{B, Tv});
  CHECK(max_abs_diff(reshape(out.visual_words, {B * Tv}), v.assign(reshape(features, {B * Tv, 32}))) == 0);
  VideoBertConfig plain_config = tiny_config();
  SingleStream plain(plain_config);
  const nn::Module::LoadReport report = plain.load_state_dict(model.state_dict(), false);
  for (const std::string& name : report.unexpected) CHECK_MESSAGE(name.rfind("visual_", 0) == 0, name);
  CHECK(report.missing.empty());
  plain.eval();
  Tensor embedded = index_select(model.visual_words->weight, 0, reshape(out.visual_words, {B * Tv}));
  SingleStreamOutput same = plain.forward(b.ids, b.mask, reshape(detach(embedded), {B, Tv, 32}));
  CHECK(max_abs_diff(same.hidden, out.hidden) == 0);

  // Word logits tied to the embeddings: frame_head(h) · Eᵀ + bias, against a float64 computation.
  Tensor h = test::uniform({B, Tv, 16}, 13, -1, 1, DType::Float32);
  {
    NoGradGuard no_grad;
    fill_(model.visual_word_bias, 0.25);
  }
  Tensor logits = model.visual_word_logits(h);
  CHECK(logits.shape() == Shape{B, Tv, 9});
  const std::vector<double> hv = h.to_vector(), w = model.frame_head->weight.to_vector(),
                            bias = model.frame_head->bias.to_vector(), e = model.visual_words->weight.to_vector(),
                            got = logits.to_vector();
  double worst = 0;
  for (int64_t r = 0; r < B * Tv; ++r)
    for (int64_t k = 0; k < 9; ++k) {
      double s = 0.25;
      for (int64_t d = 0; d < 32; ++d) {
        double f = bias[size_t(d)];
        for (int64_t j = 0; j < 16; ++j) f += hv[size_t(r * 16 + j)] * w[size_t(d * 16 + j)];
        s += f * e[size_t(k * 32 + d)];
      }
      worst = std::max(worst, std::abs(s - got[size_t(r * 9 + k)]) / (1 + std::abs(s)));
    }
  CHECK(worst < 1e-5);

  // Training predicts masked words: the word embeddings, head and bias get gradients, the frozen encoder none.
  model.train();
  Tensor frame_mask = Tensor::from_vector(std::vector<double>{0, 1, 0, 0, 0, 1}, {B, Tv}, DType::Bool);
  model.zero_grad();
  SingleStreamOutput o = model.forward(b.ids, b.mask, model.frame_features(b.frames), frame_mask);
  backward(cross_entropy(reshape(model.visual_word_logits(o.video_hidden), {B * Tv, 9}),
                         reshape(o.visual_words, {B * Tv})));
  CHECK(model.visual_words->weight.grad().defined());
  CHECK(model.visual_word_bias.grad().defined());
  for (auto& [name, p] : model.video->named_parameters()) CHECK_MESSAGE(!p.grad().defined(), name);

  // A vocabulary of another shape is refused, naming both.
  VisualVocab other = v;
  other.k = 4;
  CHECK(test::error_of([&] { model.init_visual_words(other); }).find("k 4") != std::string::npos);
}

TEST_CASE("SingleStream first stage: the text alone through the shared BERT and the mean frame, unit norm") {
  SingleStream model(tiny_config());
  model.eval();
  Batch b = tiny_batch();
  Tensor features = model.frame_features(b.frames);
  Tensor text = model.text_embedding(b.ids, b.mask);
  Tensor video = model.video_embedding(features);
  CHECK(text.shape() == Shape{B, 8});
  CHECK(video.shape() == Shape{B, 8});
  check_unit_rows(text, "text");
  check_unit_rows(video, "video");
  // Reference: the masked mean of BERT's states over the real tokens, and the mean over frames, projected.
  Tensor h = model.bert->forward(b.ids, {}, b.mask).last_hidden_state;  // (B, Tt, H)
  for (int64_t i = 0; i < B; ++i) {
    int64_t real = 0;
    for (int64_t t = 0; t < Tt; ++t) real += b.mask.at({i, t}) != 0;
    Tensor pooled = mean(narrow(narrow(h, 0, i, 1), 1, 0, real), {1});  // (1, H)
    test::check_close(narrow(text, 0, i, 1), l2_normalize((*model.contrast->text_projection)(pooled)), 1e-5, 1e-5,
                      "text embedding = projected masked mean");
  }
  test::check_close(video, l2_normalize((*model.contrast->video_projection)(mean(features, {1}))), 1e-5, 1e-5,
                    "video embedding = projected mean frame");
  // The contrastive head trains the text encoder, the frame encoder and the projections.
  model.train();
  check_descends(sgd(model, [&] { return model.contrast->loss(model.text_embedding(b.ids, b.mask),
                                                               model.video_embedding(model.frame_features(b.frames))); },
                     6, 0.05),
                 "single stream first stage");
}

TEST_CASE("ContrastiveHead: symmetric InfoNCE against a hand computation, temperature clamped at 100") {
  ContrastiveHead head(4, 3, 2);
  // Unit embeddings chosen by hand: 3 texts, 3 videos in 2-d.
  const double c = std::sqrt(0.5);
  Tensor t = Tensor::from_vector(std::vector<double>{1, 0, 0, 1, c, c}, {3, 2});
  Tensor v = Tensor::from_vector(std::vector<double>{c, c, 0, 1, 1, 0}, {3, 2});
  auto reference = [&](double scale) {
    double s[3][3], total = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) s[i][j] = scale * (t.at({i, 0}) * v.at({j, 0}) + t.at({i, 1}) * v.at({j, 1}));
    for (int i = 0; i < 3; ++i) {  // text → video: row i's softmax at column i; video → text: column i's
      double row = 0, col = 0;
      for (int j = 0; j < 3; ++j) {
        row += std::exp(s[i][j]);
        col += std::exp(s[j][i]);
      }
      total += (std::log(row) - s[i][i]) + (std::log(col) - s[i][i]);
    }
    return total / 6;  // the mean over rows of each direction, then the mean of the two
  };
  CHECK(head.loss(t, v).item() == doctest::Approx(reference(1 / 0.07)).epsilon(1e-5));
  {
    NoGradGuard no_grad;
    fill_(head.logit_scale, std::log(500.0));  // beyond the clamp: used as 100
  }
  CHECK(head.loss(t, v).item() == doctest::Approx(reference(100)).epsilon(1e-5));
}

TEST_CASE("DualEncoder: unit embeddings, similarity with the temperature, InfoNCE going down") {
  manual_seed(0);  // fixed weights whatever ran before: 6 SGD steps at lr 0.05 descend from most starts, not all
  DualEncoder model(tiny_config());
  Batch b = tiny_batch();
  Tensor text = model.text_embedding(b.ids, b.mask);
  Tensor video = model.video_embedding(b.frames);
  CHECK(text.shape() == Shape{B, 8});
  CHECK(video.shape() == Shape{B, 8});
  check_unit_rows(text, "text");
  check_unit_rows(video, "video");
  Tensor sim = model.similarity(text, video);
  CHECK(sim.shape() == Shape{B, B});
  const double scale = 1 / 0.07;
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < 8; ++k) dot += text.at({i, k}) * video.at({j, k});
      CHECK(sim.at({i, j}) == doctest::Approx(scale * dot).epsilon(1e-4));
    }
  // Retrieval: a bigger gallery of videos embedded once, scored against every text.
  Generator gen{9, 0};
  Tensor gallery = model.video_embedding(randn({3, Tv, S, S, 3}, &gen));
  CHECK(model.similarity(text, gallery).shape() == Shape{B, 3});
  check_descends(sgd(model, [&] { return model.contrastive_loss(model.text_embedding(b.ids, b.mask),
                                                                  model.video_embedding(b.frames)); },
                     6, 0.05),
                 "dual encoder");
  CHECK_THROWS_WITH_AS(model.contrastive_loss(text, gallery), doctest::Contains("pairs must align"), Error);
}

TEST_CASE("FrameEncoder with frame differences: x_t and x_t - x_{t-1} on the channels, order-aware") {
  VideoBertConfig c = tiny_config();
  FrameEncoder with(c.vision, false, 64, true), without(c.vision, false, 64, false);
  with.eval();
  without.eval();
  CHECK(with.backbone->conv1->weight.size(3) == 6);
  CHECK(without.backbone->conv1->weight.size(3) == 3);
  const Batch b = tiny_batch();  // frames (B, Tv, S, S, 3)

  // The reference input, element by element: channels 0-2 the frame, 3-5 its difference to the previous.
  const std::vector<double> x = b.frames.to_vector();
  std::vector<double> in(size_t(B * Tv * S * S * 6));
  const int64_t pixel = S * S;
  for (int64_t clip = 0; clip < B; ++clip)
    for (int64_t t = 0; t < Tv; ++t)
      for (int64_t p = 0; p < pixel; ++p)
        for (int64_t ch = 0; ch < 3; ++ch) {
          const size_t at = size_t(((clip * Tv + t) * pixel + p) * 3 + ch);
          const size_t prev = size_t(((clip * Tv + t - 1) * pixel + p) * 3 + ch);
          const size_t out = size_t(((clip * Tv + t) * pixel + p) * 6);
          in[out + size_t(ch)] = x[at];
          in[out + 3 + size_t(ch)] = t == 0 ? 0.0 : x[at] - x[prev];
        }
  Tensor expected = reshape(with.backbone->features(Tensor::from_vector(in, {B * Tv, S, S, 6})), {B, Tv, -1});
  test::check_close(with.frame_features(b.frames), expected, 1e-5, 1e-5, "frame_features with differences");

  // Reversing a clip's frames: without differences the mean frame feature stays (a mean over the same
  // frames); with them it changes, which is what lets a model tell "grows" from "shrinks".
  std::vector<int64_t> reverse;
  for (int64_t t = Tv - 1; t >= 0; --t) reverse.push_back(t);
  Tensor reversed = index_select(b.frames, 1, Tensor::from_vector(reverse, {Tv}));
  test::check_close(mean(without.frame_features(reversed), {1}), mean(without.frame_features(b.frames), {1}), 1e-5,
                    1e-5, "mean feature without differences, frames reversed");
  CHECK(max_abs_diff(mean(with.frame_features(reversed), {1}), mean(with.frame_features(b.frames), {1})) > 1e-3);

  // Gradients reach the frames through both channel groups (float64 central differences).
  FrameEncoder small(c.vision, false, 64, true);
  small.eval();
  small.to(DType::Float64);
  test::gradcheck([&](const std::vector<Tensor>& v) { return small.frame_features(v[0]); },
                  {test::uniform({1, 3, 8, 8, 3}, 5)}, "FrameEncoder frame differences");

  CHECK_THROWS_WITH_AS(with.backbone->features(select(b.frames, 1, 0)), doctest::Contains("(N, H, W, 6)"), vb::Error);
}

TEST_CASE("l2_normalize: unit rows, zero rows stay finite") {
  Tensor x = Tensor::from_vector(std::vector<double>{3, 4, 0, 0}, {2, 2});
  Tensor y = l2_normalize(x);
  CHECK(y.at({0, 0}) == doctest::Approx(0.6));
  CHECK(y.at({0, 1}) == doctest::Approx(0.8));
  CHECK(y.at({1, 0}) == 0.0);
  test::gradcheck([](const std::vector<Tensor>& in) { return l2_normalize(in[0]); }, {test::uniform({3, 4}, 1)},
                  "l2_normalize");
}
