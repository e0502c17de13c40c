#include "train/tasks.h"

#include <algorithm>
#include <filesystem>
#include <limits>

#include "autograd/collectives.h"
#include "models/weights.h"
#include "tensor/safetensors.h"
#include "train/visual_vocab.h"

namespace fs = std::filesystem;

namespace vb::train {

models::VideoBertConfig model_config(const nlohmann::json& config, const WordPieceTokenizer& tokenizer) {
  models::VideoBertConfig c;
  // A preset name wins over a same-named path (a run folder called "tiny" in the working directory).
  const std::string text = config["text"], text_init = config.value("text_init", std::string());
  const bool preset = text == "tiny" || text == "base" || text == "large";
  if (!text_init.empty()) {
    // The Hugging Face folder's architecture; its vocabulary is the tokenizer's (text_vocab_path).
    const std::string file = (fs::path(text_init) / "config.json").string();
    VB_CHECK(fs::exists(file), "text_init {}: not a Hugging Face BERT folder (no config.json)", text_init);
    c.text = models::BertConfig::from_file(file);
    VB_CHECK(c.text.vocab_size == tokenizer.vocab_size(), "text_init {}: config.json says vocab_size {} but the "
             "vocabulary the run tokenises with has {} tokens (text_init's vocab.txt)", text_init, c.text.vocab_size,
             tokenizer.vocab_size());
  } else {
    c.text = preset ? models::BertConfig::preset(text) : models::BertConfig::from_file(text);
  }
  c.text.vocab_size = tokenizer.vocab_size();
  c.text.pad_token_id = tokenizer.pad_id();
  const int64_t positions = config["max_text_len"].get<int64_t>() + config["frames"].get<int64_t>() + 1;
  c.text.max_position_embeddings = std::max(c.text.max_position_embeddings, positions);
  c.vision = models::ResNetConfig::preset(config["vision"]);
  c.vision.num_classes = 0;
  c.temporal_transformer = config["temporal_transformer"];
  c.frame_differences = config["frame_differences"];
  c.fusion_hidden = config["fusion_hidden"];
  c.embed_dim = config["embed_dim"];
  c.max_frames = config["frames"];
  c.sep_token_id = tokenizer.sep_id();
  if (config.value("visual_tokens", false)) {
    const std::string file = config["visual_vocab"];
    VB_CHECK(fs::exists(file), "visual_vocab {}: no such file (write it with `videobert visual-vocab build`)", file);
    const models::VisualVocab v = load_visual_vocab(file);
    VB_CHECK(v.dim == c.vision.feature_dim(), "visual_vocab {}: its words are {}-d features, but vision {} gives {}-d "
             "frame features", file, v.dim, config["vision"].get<std::string>(), c.vision.feature_dim());
    c.visual_levels = v.levels;
    c.visual_k = v.k;
  }
  return c;
}

models::BertModel& text_encoder(nn::Module& model) {
  if (auto* m = dynamic_cast<models::SingleStream*>(&model)) return *m->bert;
  if (auto* m = dynamic_cast<models::LateFusion*>(&model)) return *m->text;
  if (auto* m = dynamic_cast<models::DualEncoder*>(&model)) return *m->text;
  fail("text_encoder: not a single_stream, late_fusion or dual_encoder model");
}

models::FrameEncoder& frame_encoder(nn::Module& model) {
  if (auto* m = dynamic_cast<models::SingleStream*>(&model)) return *m->video;
  if (auto* m = dynamic_cast<models::LateFusion*>(&model)) return *m->video;
  if (auto* m = dynamic_cast<models::DualEncoder*>(&model)) return *m->video;
  fail("frame_encoder: not a single_stream, late_fusion or dual_encoder model");
}

namespace {

// Visual words: the vocabulary's tables and centroids into the model, and the frame encoder's ResNet from
// the weights the vocabulary's features came from (its metadata "weights"), so that a frame gets the word
// its feature got when the vocabulary was built.
void load_visual_words(nn::Module& model, const std::string& file) {
  auto* single = dynamic_cast<models::SingleStream*>(&model);
  VB_CHECK(single && single->visual_tokens(), "visual_vocab {}: the model is not a single stream made with "
           "visual_tokens=true", file);
  single->init_visual_words(load_visual_vocab(file));
  const SafetensorsFile vocab = load_safetensors(file);
  auto it = vocab.metadata.find("weights");
  VB_CHECK(it != vocab.metadata.end(), "visual_vocab {}: no metadata \"weights\" (the weights its features came "
           "from; `videobert visual-vocab build` writes it)", file);
  const std::string weights = it->second;
  VB_CHECK(fs::exists(weights), "visual_vocab {}: the weights its features came from, {}, are gone; the frame "
           "encoder must be that one for the words to mean what they meant", file, weights);
  const std::string prefix = "video.backbone.";
  nn::NamedTensors backbone;
  for (auto& [name, t] : load_safetensors(weights).tensors)
    if (name.rfind(prefix, 0) == 0) backbone.emplace_back(name.substr(prefix.size()), t);
  VB_CHECK(!backbone.empty(), "visual_vocab {}: {} holds no frame encoder (no {}* tensors)", file, weights, prefix);
  try {
    single->video->backbone->load_state_dict(backbone);
  } catch (const Error& e) {
    fail("visual_vocab {}: the frame encoder of {} does not fit this run's (vision, frame_differences): {}", file,
         weights, e.what());
  }
}

}  // namespace

void load_initial_weights(nn::Module& model, const nlohmann::json& config) {
  if (config.value("visual_tokens", false)) load_visual_words(model, config["visual_vocab"]);
  const std::string text_init = config.value("text_init", std::string());
  if (!text_init.empty()) {
    const std::string file = (fs::path(text_init) / "model.safetensors").string();
    VB_CHECK(fs::exists(file), "text_init {}: no model.safetensors (save_pretrained(..., safe_serialization=True) "
             "writes it)", text_init);
    models::load_hf_bert(text_encoder(model), file);  // strict: every tensor of the encoder, shapes checked
  }
  const std::string vision_init = config.value("vision_init", std::string());
  if (!vision_init.empty()) {
    VB_CHECK(fs::exists(vision_init), "vision_init {}: no such file", vision_init);
    models::FrameEncoder& video = frame_encoder(model);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (auto& [name, t] : load_safetensors(vision_init).tensors) tensors.emplace_back(name, t);
    if (video.frame_differences) {
      // The stem reads 6 channels (the frame and its difference to the previous one); a torchvision stem
      // reads 3. The file's weights take the frame's channels and zeros the difference's, so the encoder
      // starts as exactly the pretrained ResNet on the RGB frames and learns what the differences add.
      for (auto& [name, t] : tensors)
        if (name == "conv1.weight" && t.dim() == 4 && t.size(1) == 3) t = cat({t, zeros_like(t)}, 1);
    }
    models::load_torchvision_resnet(*video.backbone, tensors, vision_init);
  }
}

TextSide Task::encode_text(const Tensor&, const Tensor&) { fail("this task has no retrieval scoring (encode_text)"); }
VideoSide Task::encode_video(const Tensor&) { fail("this task has no retrieval scoring (encode_video)"); }
Tensor Task::score(const TextSide&, const VideoSide&) { fail("this task has no retrieval scoring (score)"); }

Tensor StepScope::gather(const Tensor& local) const {
  return comm && comm->size() > 1 ? all_gather_rows(local, *comm) : local;
}

Tensor StepScope::gather_constant(const Tensor& local) const {
  if (!comm || comm->size() == 1) return local;
  NoGradGuard no_grad;
  return all_gather_rows(detach(local), *comm);
}

double StepScope::total(const std::string& key) const {
  auto it = totals.find(key);
  VB_CHECK(it != totals.end(), "step scope: no total count of '{}' (the task's prepare must count it)", key);
  return it->second;
}

Tensor StepScope::share_of_mean(const Tensor& local_sum, const std::string& key) const {
  const double n = total(key);
  VB_CHECK(n > 0, "step scope: the mean over '{}' has no items in this step", key);
  return mul(local_sum, double(shares) / n);
}

namespace {

Tensor detached_scalar(double v) { return Tensor::scalar(v); }

// The entries [first, first + n) of a partner list over the gathered batch: this rank's rows' partners.
std::vector<int64_t> own_rows(const std::vector<int64_t>& all, int64_t first, int64_t n) {
  return std::vector<int64_t>(all.begin() + first, all.begin() + first + n);
}

// The rows of t picked by idx (int64 indices on the host).
Tensor rows(const Tensor& t, const std::vector<int64_t>& idx) {
  return index_select(t, 0, to(Tensor::from_vector(idx, {int64_t(idx.size())}), t.device()));
}

struct Weights {
  double matching, mlm, mfm, contrastive, mlm_p, mfm_p;
  explicit Weights(const nlohmann::json& c)
      : matching(c["objectives"]["matching"]), mlm(c["objectives"]["mlm"]), mfm(c["objectives"]["mfm"]),
        contrastive(c["objectives"]["contrastive"]), mlm_p(c["mlm_probability"]), mfm_p(c["mfm_probability"]) {}
};

void add_term(std::map<std::string, Tensor>& out, const std::string& name, const Tensor& value, double weight) {
  out[name] = detach(value);
  Tensor weighted = mul(value, weight);
  out["loss"] = out.count("loss") ? add(out["loss"], weighted) : weighted;
}

// The symmetric InfoNCE loss of ContrastiveHead::loss, as this rank's share: its captions against every
// rank's clips and its clips against every rank's captions, averaged over its own rows. The gradient
// reduction averages the shares over the ranks, which gives the loss of the whole batch.
Tensor contrastive_rows(models::ContrastiveHead& head, const Tensor& t, const Tensor& v, const StepScope& scope) {
  if (scope.ranks() == 1) return head.loss(t, v);
  const int64_t n = t.size(0), first = scope.first_row(n);
  Tensor targets = arange(double(first), double(first + n), 1, DType::Int64, t.device());
  Tensor t2v = head.similarity(t, scope.gather(v));                    // (b, N)
  Tensor v2t = transpose(head.similarity(scope.gather(t), v), 0, 1);   // (b, N)
  return mul(add(cross_entropy(t2v, targets), cross_entropy(v2t, targets)), 0.5);
}

// ---------------------------------------------------------------- late fusion

class LateFusionTask final : public Task {
 public:
  LateFusionTask(const models::VideoBertConfig& c, const nlohmann::json& config)
      : model_(c), weights_(config) {}
  nn::Module& module() override { return model_; }

  std::map<std::string, Tensor> losses(const MicroBatch& mb, const StepScope& scope, Generator& gen) override {
    const data::Batch& b = mb.batch;
    const int64_t n = b.size(), first = scope.first_row(n);
    Tensor t = model_.text_embedding(b.input_ids, b.attention_mask);
    Tensor v = model_.video_embedding(b.frames);
    Tensor positive = model_.score(t, v);
    // Each caption against another clip of the whole (every rank's) batch.
    const std::vector<int64_t> partners = mismatched_partners(n * scope.ranks(), gen);
    Tensor negative = model_.score(t, rows(scope.gather(v), own_rows(partners, first, n)));
    std::map<std::string, Tensor> out;
    add_term(out, "matching", matching_loss(positive, negative), weights_.matching);
    return out;
  }
  TextSide encode_text(const Tensor& ids, const Tensor& mask) override {
    return {model_.text_embedding(ids, mask), {}, {}};
  }
  VideoSide encode_video(const Tensor& frames) override { return {model_.video_embedding(frames), {}}; }
  Tensor score(const TextSide& t, const VideoSide& v) override { return model_.score_all(t.embedding, v.embedding); }
  std::optional<Tensor> pair_logits(const TextSide& t, const VideoSide& v, const std::vector<int64_t>& tr,
                                    const std::vector<int64_t>& vr) override {
    return model_.score(rows(t.embedding, tr), rows(v.embedding, vr));
  }

 private:
  models::LateFusion model_;
  Weights weights_;
};

// ---------------------------------------------------------------- dual encoder

class DualEncoderTask final : public Task {
 public:
  DualEncoderTask(const models::VideoBertConfig& c, const nlohmann::json& config) : model_(c), weights_(config) {}
  nn::Module& module() override { return model_; }

  std::map<std::string, Tensor> losses(const MicroBatch& mb, const StepScope& scope, Generator&) override {
    const data::Batch& b = mb.batch;
    Tensor t = model_.text_embedding(b.input_ids, b.attention_mask);
    Tensor v = model_.video_embedding(b.frames);
    std::map<std::string, Tensor> out;
    add_term(out, "contrastive", contrastive_rows(*model_.contrast, t, v, scope), weights_.contrastive);
    return out;
  }
  TextSide encode_text(const Tensor& ids, const Tensor& mask) override {
    return {model_.text_embedding(ids, mask), {}, {}};
  }
  VideoSide encode_video(const Tensor& frames) override { return {model_.video_embedding(frames), {}}; }
  Tensor score(const TextSide& t, const VideoSide& v) override { return model_.similarity(t.embedding, v.embedding); }
  std::optional<Tensor> pair_logits(const TextSide&, const VideoSide&, const std::vector<int64_t>&,
                                    const std::vector<int64_t>&) override {
    return std::nullopt;
  }

 private:
  models::DualEncoder model_;
  Weights weights_;
};

// ---------------------------------------------------------------- single stream

class SingleStreamTask final : public Task {
 public:
  SingleStreamTask(const models::VideoBertConfig& c, const nlohmann::json& config, const WordPieceTokenizer& tok)
      : model_(c), weights_(config), rerank_k_(config["rerank_k"]), hard_negatives_(config["hard_negatives"]) {
    special_ = {tok.pad_id(), tok.cls_id(), tok.sep_id(), tok.mask_id(), tok.unk_id(), tok.vocab_size()};
  }
  nn::Module& module() override { return model_; }

  MicroBatch prepare(data::Batch b, Generator& gen) override {
    MicroBatch mb{std::move(b), {}, {}, {}, {}};
    const data::Batch& batch = mb.batch;
    mb.masked = weights_.mlm > 0 ? mask_tokens(batch.input_ids, special_, weights_.mlm_p, gen)
                                 : MaskedTokens{batch.input_ids, {}, 0};
    if (weights_.mlm > 0) mb.counts["mlm"] = double(mb.masked.count);
    if (weights_.mfm > 0) {
      const int64_t frames = batch.frames.size(1);
      Tensor mask = choose_frames(batch.size(), frames, weights_.mfm_p, gen);
      double chosen = 0;
      for (double m : mask.to_vector()) chosen += m;
      mb.counts["mfm"] = chosen;
      mb.frame_mask = to(mask, batch.frames.device());
    }
    return mb;
  }

  std::map<std::string, Tensor> losses(const MicroBatch& mb, const StepScope& scope, Generator& gen) override {
    const data::Batch& b = mb.batch;
    const MaskedTokens& masked = mb.masked;
    const Tensor& frame_mask = mb.frame_mask;
    std::map<std::string, Tensor> out;
    const int64_t batch = b.size(), first = scope.first_row(batch);
    Tensor features = model_.frame_features(b.frames);  // (B, T, C)
    const int64_t frames = features.size(1);
    // Positive pairs, with masked words and masked frames.
    models::SingleStreamOutput pos = model_.forward(masked.ids, b.attention_mask, features, frame_mask);
    // Every rank computes the masked-LM term whenever the step has masked tokens anywhere, also with none
    // of its own (a sum of nothing): the ranks' autograd graphs, and so their collectives, stay alike.
    if (weights_.mlm > 0 && scope.total("mlm") > 0) {
      Tensor logits = model_.mlm_logits(pos.text_hidden);
      add_term(out, "mlm", scope.share_of_mean(mlm_loss(logits, masked.labels, Reduction::Sum), "mlm"), weights_.mlm);
      const double correct = double(mlm_correct(logits, masked.labels));
      out["mlm_acc"] = detached_scalar(correct * double(scope.shares) / scope.total("mlm"));
    }
    if (weights_.mfm > 0 && model_.visual_tokens()) {
      // VideoBERT's objective: each masked frame's word, by cross-entropy over the K words.
      std::vector<int64_t> flat;
      const std::vector<double> m = to(frame_mask, Device()).to_vector();
      for (size_t i = 0; i < m.size(); ++i)
        if (m[i] != 0) flat.push_back(int64_t(i));
      const int64_t n = int64_t(flat.size());
      Tensor logits = rows(reshape(model_.visual_word_logits(pos.video_hidden), {batch * frames, -1}), flat);
      Tensor labels = rows(reshape(pos.visual_words, {batch * frames}), flat);
      logits = reshape(logits, {1, n, logits.size(1)});
      labels = reshape(labels, {1, n});
      add_term(out, "mfm", scope.share_of_mean(mlm_loss(logits, labels, Reduction::Sum), "mfm"), weights_.mfm);
      out["mfm_acc"] = detached_scalar(double(mlm_correct(logits, labels)) * double(scope.shares) / scope.total("mfm"));
    } else if (weights_.mfm > 0) {
      // Gather the masked positions: predictions against every frame of the (whole) batch.
      std::vector<int64_t> flat, target;
      const std::vector<double> m = to(frame_mask, Device()).to_vector();
      for (size_t i = 0; i < m.size(); ++i)
        if (m[i] != 0) {
          flat.push_back(int64_t(i));
          target.push_back(first * frames + int64_t(i));
        }
      Tensor pred = rows(reshape(model_.frame_prediction(pos.video_hidden), {batch * frames, -1}), flat);
      Tensor all = reshape(scope.gather_constant(detach(features)), {scope.ranks() * batch * frames, -1});
      Tensor target_index = to(Tensor::from_vector(target, {int64_t(target.size())}), all.device());
      add_term(out, "mfm", scope.share_of_mean(masked_frame_loss(pred, all, target_index, Reduction::Sum), "mfm"),
               weights_.mfm);
    }
    // The first stage (ALBEF's "align before fuse"): the text alone and the mean frame in one space.
    Tensor similarity;  // this rank's rows of the whole batch's (N, N) similarity
    if (weights_.contrastive > 0) {
      Tensor t = model_.text_embedding(b.input_ids, b.attention_mask);
      Tensor v = model_.video_embedding(features);
      add_term(out, "contrastive", contrastive_rows(*model_.contrast, t, v, scope), weights_.contrastive);
      if (hard_negatives_) {
        NoGradGuard no_grad;
        Tensor t_all = scope.gather_constant(detach(t)), v_all = scope.gather_constant(detach(v));
        similarity = model_.contrast->similarity(t_all, v_all);  // (N, N)
      }
    }
    if (weights_.matching > 0) {
      // Negatives both ways: each caption with another clip, each clip with another caption — random, or
      // (hard_negatives) the ones the first stage confuses — from the whole batch (every rank's rows).
      // Masked exactly like the positives, so that masking is no shortcut to telling them apart.
      const int64_t n = batch * scope.ranks();
      const bool hard = hard_negatives_ && similarity.defined();
      std::vector<int64_t> other_clip, other_caption;
      if (hard) {
        other_clip = hard_negative_partners(narrow(similarity, 0, first, batch), gen, first);
        other_caption = hard_negative_partners(narrow(transpose(similarity, 0, 1), 0, first, batch), gen, first);
      } else {
        other_clip = own_rows(mismatched_partners(n, gen), first, batch);
        other_caption = own_rows(mismatched_partners(n, gen), first, batch);
      }
      models::SingleStreamOutput neg_v =
          model_.forward(masked.ids, b.attention_mask, rows(scope.gather(features), other_clip), frame_mask);
      models::SingleStreamOutput neg_t = model_.forward(rows(scope.gather_constant(masked.ids), other_caption),
                                                        rows(scope.gather_constant(b.attention_mask), other_caption),
                                                        features, frame_mask);
      add_term(out, "matching",
               matching_loss(match_logit(pos.pooled), cat({match_logit(neg_v.pooled), match_logit(neg_t.pooled)}, 0)),
               weights_.matching);
    }
    return out;
  }

  TextSide encode_text(const Tensor& ids, const Tensor& mask) override {
    return {first_stage() ? model_.text_embedding(ids, mask) : Tensor(), ids, mask};
  }
  VideoSide encode_video(const Tensor& frames) override {
    Tensor features = model_.frame_features(frames);
    return {first_stage() ? model_.video_embedding(features) : Tensor(), features};
  }

  // Without a first stage every pair goes through the joint encoder; with one, the first stage picks the
  // candidates that the joint encoder re-ranks (rerank_scores).
  Tensor score(const TextSide& t, const VideoSide& v) override {
    if (!first_stage()) {
      const int64_t nt = t.ids.size(0), nv = v.features.size(0);
      std::vector<int64_t> tr, vr;
      for (int64_t i = 0; i < nt; ++i)
        for (int64_t j = 0; j < nv; ++j) tr.push_back(i), vr.push_back(j);
      return reshape(*pair_logits(t, v, tr, vr), {nt, nv});
    }
    return rerank_scores(model_.contrast->similarity(t.embedding, v.embedding), rerank_k_,
                         [&](const std::vector<int64_t>& ti, const std::vector<int64_t>& vi) {
                           return to(*pair_logits(t, v, ti, vi), Device()).to_vector();
                         });
  }

  std::optional<Tensor> first_stage_score(const TextSide& t, const VideoSide& v) override {
    if (!first_stage()) return std::nullopt;
    return model_.contrast->similarity(t.embedding, v.embedding);
  }

  // Joint-encoder matching logits of the listed pairs, in chunks so that memory stays bounded.
  std::optional<Tensor> pair_logits(const TextSide& t, const VideoSide& v, const std::vector<int64_t>& tr,
                                    const std::vector<int64_t>& vr) override {
    constexpr size_t chunk = 256;
    std::vector<Tensor> parts;
    for (size_t s = 0; s < tr.size(); s += chunk) {
      const size_t e = std::min(tr.size(), s + chunk);
      const std::vector<int64_t> ti(tr.begin() + long(s), tr.begin() + long(e)), vi(vr.begin() + long(s), vr.begin() + long(e));
      parts.push_back(match_logit(model_.forward(rows(t.ids, ti), rows(t.mask, ti), rows(v.features, vi)).pooled));
    }
    if (parts.empty()) return zeros({0});
    return cat(parts, 0);
  }

  std::optional<Tensor> text_mlm_logits(const Tensor& ids, const Tensor& mask, const VideoSide& video) override {
    return model_.mlm_logits(model_.forward(ids, mask, video.features).text_hidden);
  }

  std::optional<double> mlm_accuracy(const Tensor& ids, const Tensor& mask, const VideoSide& video,
                                     Generator& gen) override {
    MaskedTokens masked = mask_tokens(ids, special_, weights_.mlm_p, gen);
    if (masked.count == 0) return std::nullopt;
    models::SingleStreamOutput out = model_.forward(masked.ids, mask, video.features);
    return train::mlm_accuracy(model_.mlm_logits(out.text_hidden), masked.labels);
  }

  std::optional<MaskedWords> visual_word_accuracy(const Tensor& ids, const Tensor& mask, const VideoSide& video,
                                                  Generator& gen) override {
    if (!model_.visual_tokens()) return std::nullopt;
    const int64_t b = video.features.size(0), t = video.features.size(1);
    const Tensor frame_mask = choose_frames(b, t, weights_.mfm_p > 0 ? weights_.mfm_p : 0.15, gen);
    models::SingleStreamOutput out = model_.forward(ids, mask, video.features, to(frame_mask, video.features.device()));
    const std::vector<double> masked = frame_mask.to_vector(), words = to(out.visual_words, Device()).to_vector();
    const std::vector<double> predicted =
        to(argmax(model_.visual_word_logits(out.video_hidden), -1), Device()).to_vector();  // (B·T)
    std::map<int64_t, int64_t> frequency;
    for (double w : words) ++frequency[int64_t(w)];
    int64_t majority = 0, most = -1;
    for (auto& [w, n] : frequency)
      if (n > most) most = n, majority = w;
    MaskedWords r;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < t; ++j) {
        const size_t at = size_t(i * t + j);
        if (masked[at] == 0) continue;
        ++r.masked;
        r.accuracy += predicted[at] == words[at];
        r.majority += int64_t(words[at]) == majority;
        for (int64_t d = 1; d < t; ++d) {  // the nearest unmasked frame, the previous one first
          const int64_t prev = j - d, next = j + d;
          const int64_t near = prev >= 0 && masked[size_t(i * t + prev)] == 0 ? prev
                               : next < t && masked[size_t(i * t + next)] == 0 ? next : -1;
          if (near < 0) continue;
          r.neighbour += words[size_t(i * t + near)] == words[at];
          break;
        }
      }
    if (r.masked == 0) return std::nullopt;
    r.accuracy /= double(r.masked);
    r.majority /= double(r.masked);
    r.neighbour /= double(r.masked);
    return r;
  }

 private:
  bool first_stage() const { return weights_.contrastive > 0; }
  // The alignment head's two logits (not aligned, aligned) as one matching logit: their difference, so
  // that binary cross-entropy on it is the two-way softmax cross-entropy.
  Tensor match_logit(const Tensor& pooled) {
    Tensor l = model_.alignment_logits(pooled);  // (B, 2)
    return sub(select(l, 1, 1), select(l, 1, 0));
  }
  models::SingleStream model_;
  Weights weights_;
  int64_t rerank_k_;
  bool hard_negatives_;
  SpecialTokens special_;
};

}  // namespace

std::unique_ptr<Task> make_task(const nlohmann::json& config, const WordPieceTokenizer& tokenizer) {
  models::VideoBertConfig c = model_config(config, tokenizer);
  const std::string model = config["model"];
  if (model == "late_fusion") return std::make_unique<LateFusionTask>(c, config);
  if (model == "dual_encoder") return std::make_unique<DualEncoderTask>(c, config);
  return std::make_unique<SingleStreamTask>(c, config, tokenizer);
}

}  // namespace vb::train
