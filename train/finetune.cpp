#include "train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "train/caption_metrics.h"
#include "train/captioning.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/data/synth.h"
#include "train/distributed.h"
#include "train/pretrain.h"
#include "train/report.h"

namespace fs = std::filesystem;

namespace vb::train {

namespace {

// ---------------------------------------------------------------- configuration

// The task keys, and the fine-tuning defaults of the training keys (over the pretrained run's).
void add_finetune_defaults(nlohmann::json& c, const std::string& task, const std::string& run_dir) {
  c["task"] = task;
  c["label"] = "motion";       // classify: the manifest attribute to predict
  c["tasks"] = "";             // multi: "qa:1,classify:0.5"
  c["answer_vocab"] = 1000;    // qa: open-ended answers kept (the most frequent in training)
  c["blind"] = false;          // the question-only baseline: the video's features replaced by zeros
  c["eval_frames"] = "normal";  // normal, reversed or shuffled frames in evaluation (controls)
  c["pretrained"] = run_dir;   // for the record
  c["steps"] = 300;
  c["warmup_steps"] = 20;
  c["eval_every"] = 100;
  c["checkpoint_every"] = 100;
}

std::vector<std::pair<std::string, double>> parse_tasks(const std::string& spec, const std::string& source) {
  std::vector<std::pair<std::string, double>> out;
  for (const std::string& part : comma_list(spec)) {
    const size_t colon = part.find(':');
    const std::string name = part.substr(0, colon);
    double weight = 1;
    if (colon != std::string::npos) {
      try {
        size_t used = 0;
        weight = std::stod(part.substr(colon + 1), &used);
        VB_CHECK(used == part.size() - colon - 1, "");
      } catch (const std::exception&) {
        fail("{}: 'tasks': '{}' is not name:weight (e.g. qa:1,classify:0.5)", source, part);
      }
    }
    VB_CHECK(name == "classify" || name == "qa" || name == "caption", "{}: 'tasks': unknown task '{}' (classify, qa, "
             "caption)", source, name);
    VB_CHECK(weight > 0 && std::isfinite(weight), "{}: 'tasks': task {} has weight {}, expected > 0", source, name, weight);
    for (auto& [n, w] : out) VB_CHECK(n != name, "{}: 'tasks': task {} is named twice", source, name);
    out.emplace_back(name, weight);
  }
  return out;
}

void validate_finetune(const nlohmann::json& c, const std::string& source) {
  const std::string task = c.at("task").is_string() ? c["task"].get<std::string>() : "";
  VB_CHECK(task == "classify" || task == "qa" || task == "multi" || task == "caption",
           "{}: 'task' must be classify, qa, caption or multi, got {}", source, c["task"].dump());
  const bool captions = task == "caption" || (task == "multi" && c["tasks"].is_string() &&
                                                [&] {
                                                  for (auto& [n, w] : parse_tasks(c["tasks"], source))
                                                    if (n == "caption") return true;
                                                  return false;
                                                }());
  VB_CHECK(!captions || c["model"] == "single_stream", "{}: task caption generates with the single-stream "
           "model's masked-LM head (model=single_stream); this run's model is {}", source, c["model"].get<std::string>());
  VB_CHECK(c["label"].is_string() && !c["label"].get<std::string>().empty(), "{}: 'label' must name an attribute",
           source);
  VB_CHECK(c["tasks"].is_string(), "{}: 'tasks' must be a string like qa:1,classify:0.5", source);
  VB_CHECK(c["answer_vocab"].is_number_integer() && c["answer_vocab"].get<int64_t>() >= 1,
           "{}: 'answer_vocab' must be an integer ≥ 1", source);
  VB_CHECK(c["blind"].is_boolean(), "{}: 'blind' must be true or false", source);
  const std::string frames = c["eval_frames"].is_string() ? c["eval_frames"].get<std::string>() : "";
  VB_CHECK(frames == "normal" || frames == "reversed" || frames == "shuffled",
           "{}: 'eval_frames' must be normal, reversed or shuffled, got {}", source, c["eval_frames"].dump());
  if (task == "multi")
    VB_CHECK(!parse_tasks(c["tasks"], source).empty(), "{}: task multi needs tasks=name:weight,… (e.g. qa:1,classify:0.5)",
             source);
  else
    VB_CHECK(c["tasks"].get<std::string>().empty(), "{}: 'tasks' is for task multi (this run's task is {})", source, task);
}

// The (name, weight) of every task of the run.
std::vector<std::pair<std::string, double>> run_tasks(const nlohmann::json& c) {
  if (c["task"] == "multi") return parse_tasks(c["tasks"], "config");
  return {{c["task"].get<std::string>(), 1.0}};
}

// ---------------------------------------------------------------- the model: backbone and heads

// An MLP head as ClipBERT's: Linear(d, 2d) → ReLU → Linear(2d, out).
std::shared_ptr<nn::Sequential> mlp_head(int64_t in, int64_t out) {
  return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::UnaryModule>>{
      std::make_shared<nn::Linear>(in, 2 * in), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(2 * in, out)});
}

// The pretrained model (its weights' names unchanged under "backbone.") and, per task, the heads.
class FinetuneModel : public nn::Module {
 public:
  FinetuneModel(const nlohmann::json& c, const WordPieceTokenizer& tok) : config_(model_config(c, tok)) {
    kind_ = c["model"];
    if (kind_ == "single_stream") backbone_ = single_ = std::make_shared<models::SingleStream>(config_);
    else if (kind_ == "late_fusion") backbone_ = late_ = std::make_shared<models::LateFusion>(config_);
    else backbone_ = dual_ = std::make_shared<models::DualEncoder>(config_);
    register_module("backbone", backbone_);
  }
  nn::Module& backbone() { return *backbone_; }
  template <typename M>
  std::shared_ptr<M> add_head(const std::string& name, std::shared_ptr<M> head) {
    return register_module(name, head);
  }

  // What each clip contributes: the frame features (single stream), else the pooled video embedding;
  // zeros of that shape without the video (blind).
  Tensor video(const Tensor& frames, bool blind) {
    const int64_t b = frames.size(0);
    if (single_)
      return blind ? zeros({b, frames.size(1), config_.vision.feature_dim()}, DType::Float32, frames.device())
                   : single_->frame_features(frames);
    Tensor v = late_ ? late_->video_embedding(frames) : dual_->video_embedding(frames);
    return blind ? zeros_like(detach(v)) : v;
  }
  // The joint representation of each text with its clip's video: (B, joint_dim()).
  Tensor joint(const Tensor& ids, const Tensor& mask, const Tensor& video) {
    // Single stream: the final hidden state of [CLS], not BERT's pooler over it. The pooler is trained for
    // the matching objective, and its tanh leaves little for a new head to read: from a small pretrained
    // run like the test's (2 frames), open-ended colour questions reached 0.94 from the [CLS] state and
    // 0.125 from the pooler (300 steps, lr 3e-3; dev VM, 2026-12-06).
    if (single_) return reshape(narrow(single_->forward(ids, mask, video).hidden, 1, 0, 1), {ids.size(0), -1});
    Tensor t = late_ ? late_->text_embedding(ids, mask) : dual_->text_embedding(ids, mask);
    return cat({t, video}, 1);
  }
  models::SingleStream* single() { return single_.get(); }
  int64_t joint_dim() const {
    if (single_) return config_.text.hidden_size;
    if (late_) return config_.text.hidden_size + config_.vision.feature_dim();
    return 2 * config_.embed_dim;
  }

 private:
  models::VideoBertConfig config_;
  std::string kind_;
  std::shared_ptr<nn::Module> backbone_;
  std::shared_ptr<models::SingleStream> single_;
  std::shared_ptr<models::LateFusion> late_;
  std::shared_ptr<models::DualEncoder> dual_;
};

// ---------------------------------------------------------------- examples

// One training or evaluation example: a clip, the text the model reads with it, and its target.
struct Example {
  int task = 0;                      // which of the run's tasks
  size_t clip = 0;                   // index into the manifest's clips
  std::string text;                  // empty for classification; the question for qa
  std::string answer, type;          // the target's string; the question type (qa) or the attribute
  std::vector<std::string> choices;  // multiple choice
};

// A task's label space and heads.
struct TaskHeads {
  std::string name;  // classify, qa
  double weight = 1;
  std::vector<std::string> labels;  // classify: the classes; qa: the answer vocabulary
  std::map<std::string, int64_t> index;
  std::shared_ptr<nn::Sequential> open;    // joint → labels
  std::shared_ptr<nn::Sequential> choice;  // joint → one score (qa's multiple choice)
  int64_t label_of(const std::string& s) const {
    auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }
};

std::vector<Example> task_examples(const TaskHeads& t, int task_index, const data::Manifest& m, data::Split split,
                                   const std::string& attribute) {
  std::vector<Example> out;
  for (size_t i = 0; i < m.clips.size(); ++i) {
    const data::Clip& clip = m.clips[i];
    if (clip.split != split) continue;
    if (t.name == "caption") {
      out.push_back({task_index, i, "", clip.captions.front(), "caption", {}});
    } else if (t.name == "classify") {
      auto it = clip.attributes.find(attribute);
      if (it != clip.attributes.end()) out.push_back({task_index, i, "", it->second, attribute, {}});
    } else {
      for (const data::QA& q : clip.qa)
        out.push_back({task_index, i, q.question, q.answer, q.type.empty() ? "all" : q.type, q.choices});
    }
  }
  return out;
}

// ---------------------------------------------------------------- the task

// The rows idx of t, in that order.
Tensor pick_rows(const Tensor& t, const std::vector<int64_t>& idx) {
  return index_select(t, 0, to(Tensor::from_vector(idx, {int64_t(idx.size())}), t.device()));
}

// Eval-time frame order (the controls of docs/FINETUNE.md): frames (B, T, …) as they are, reversed in
// time, or each clip's frames in a random order of its own (a pure function of the seed and the clip's
// example index, so that every evaluation of a run sees the same orders).
Tensor reorder_frames(const Tensor& frames, const std::string& order, uint64_t seed, const std::vector<int64_t>& rows) {
  if (order == "normal") return frames;
  const int64_t b = frames.size(0), t = frames.size(1);
  std::vector<int64_t> idx;  // into the (B·T, …) view
  for (int64_t r = 0; r < b; ++r) {
    std::vector<int64_t> perm(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) perm[size_t(i)] = order == "reversed" ? t - 1 - i : i;
    if (order == "shuffled") {
      Generator g{seed, uint64_t(rows[size_t(r)])};
      const std::vector<double> u = rand({t}, &g, DType::Float64).to_vector();
      std::sort(perm.begin(), perm.end(), [&](int64_t x, int64_t y) { return u[size_t(x)] < u[size_t(y)]; });
    }
    for (int64_t i : perm) idx.push_back(r * t + i);
  }
  std::vector<int64_t> flat(frames.shape().begin(), frames.shape().end());
  flat.erase(flat.begin());
  flat[0] = b * t;
  const Tensor picked = index_select(reshape(frames, flat), 0, to(Tensor::from_vector(idx, {b * t}), frames.device()));
  return reshape(picked, std::vector<int64_t>(frames.shape().begin(), frames.shape().end()));
}

class FinetuneTask final : public Task {
 public:
  FinetuneTask(const nlohmann::json& c, const WordPieceTokenizer& tok, const data::Manifest& m)
      : config_(c), tok_(tok), manifest_(m), model_(std::make_shared<FinetuneModel>(c, tok)), blind_(c["blind"]) {
    mirror_ = mirror_word_pairs(c["augment"]["mirror_words"], "augment.mirror_words");
    max_len_ = c["max_text_len"];
    special_ = {tok.pad_id(), tok.cls_id(), tok.sep_id(), tok.mask_id(), tok.unk_id(), tok.vocab_size()};
    for (auto& [name, weight] : run_tasks(c)) {
      TaskHeads t;
      t.name = name;
      t.weight = weight;
      if (name == "caption") {
        caption_task_ = int(tasks_.size());  // the single stream's own masked-LM head writes captions: no new head
      } else if (name == "classify") {
        std::set<std::string> values;
        for (const auto& clip : m.clips)
          if (clip.split == data::Split::Train)
            if (auto it = clip.attributes.find(c["label"].get<std::string>()); it != clip.attributes.end())
              values.insert(it->second);
        VB_CHECK(values.size() >= 2, "finetune classify: the train split of {} has {} value{} of attribute '{}' "
                 "(label=…); a classifier needs two at least", m.path, values.size(), values.size() == 1 ? "" : "s",
                 c["label"].get<std::string>());
        t.labels.assign(values.begin(), values.end());
      } else {
        // The answer vocabulary: the most frequent open-ended training answers (ties by name).
        std::map<std::string, int64_t> freq;
        int64_t questions = 0;
        for (const auto& clip : m.clips)
          if (clip.split == data::Split::Train)
            for (const auto& q : clip.qa) {
              ++questions;
              if (!q.multiple_choice()) ++freq[q.answer];
            }
        VB_CHECK(questions > 0, "finetune qa: the train split of {} has no questions (manifest \"qa\", docs/DATA.md)",
                 m.path);
        std::vector<std::pair<std::string, int64_t>> by_count(freq.begin(), freq.end());
        std::stable_sort(by_count.begin(), by_count.end(), [](auto& a, auto& b) { return a.second > b.second; });
        const auto k = std::min<size_t>(by_count.size(), c["answer_vocab"].get<size_t>());
        for (size_t i = 0; i < k; ++i) t.labels.push_back(by_count[i].first);
        t.choice = model_->add_head(name + "_choice", mlp_head(model_->joint_dim(), 1));
      }
      for (size_t i = 0; i < t.labels.size(); ++i) t.index[t.labels[i]] = int64_t(i);
      if (!t.labels.empty()) t.open = model_->add_head(name + "_head", mlp_head(model_->joint_dim(), int64_t(t.labels.size())));
      tasks_.push_back(std::move(t));
    }
  }

  nn::Module& module() override { return *model_; }
  FinetuneModel& model() { return *model_; }
  const std::vector<TaskHeads>& tasks() const { return tasks_; }

  // The split's examples of every task, and the clips the loader serves for them (one per example, its
  // caption the text the model reads).
  std::vector<Example> examples(data::Split split) const {
    std::vector<Example> out;
    for (size_t t = 0; t < tasks_.size(); ++t) {
      auto part = task_examples(tasks_[t], int(t), manifest_, split, config_["label"]);
      out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  }
  std::vector<data::Clip> clips_of(const std::vector<Example>& examples) const {
    std::vector<data::Clip> out;
    for (const Example& e : examples) {
      data::Clip c = manifest_.clips[e.clip];
      // Captioning reads the clip's captions (one at random per epoch); the other tasks their text.
      if (e.task != caption_task_) c.captions = {e.text};
      out.push_back(std::move(c));
    }
    return out;
  }
  void set_examples(std::vector<Example> examples) { examples_ = std::move(examples); }

  // Each row's target index: the label (classify, open-ended qa; −1 when outside the label space) or the
  // right choice. A flipped clip's answer and choices are mirrored as its text was.
  MicroBatch prepare(data::Batch batch, Generator& gen) override {
    MicroBatch mb{std::move(batch), {}, {}, {}, {}};
    const std::vector<double> rows = mb.batch.clip_index.to_vector();
    if (caption_task_ >= 0) {
      // Caption tokens to predict, drawn per row (train/captioning.h); with other tasks in the batch, only
      // the caption rows keep theirs.
      mb.masked = mask_caption_tokens(mb.batch.input_ids, special_, kCaptionMaskProbability, gen);
      if (tasks_.size() > 1) mb.masked = caption_rows_only(mb.masked, mb.batch.input_ids, rows);
      mb.counts["caption"] = double(mb.masked.count);
    }
    for (auto& t : tasks_)
      if (t.name != "caption") mb.counts[t.name] = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      const Example& e = examples_.at(size_t(rows[r]));
      if (e.task == caption_task_) {
        mb.targets.push_back(-1);  // the caption's masked tokens are its targets
        continue;
      }
      const TaskHeads& t = tasks_[size_t(e.task)];
      const bool flip = !mb.batch.flipped.empty() && mb.batch.flipped[r];
      const std::string answer = flip ? data::mirror_text(e.answer, mirror_) : e.answer;
      int64_t target = -1;
      if (e.choices.empty()) {
        target = t.label_of(answer);
      } else {
        for (size_t k = 0; k < e.choices.size(); ++k)
          if ((flip ? data::mirror_text(e.choices[k], mirror_) : e.choices[k]) == answer) target = int64_t(k);
      }
      mb.targets.push_back(target);
      if (target >= 0) mb.counts[t.name] += 1;
    }
    return mb;
  }

  // Caption masking kept on the caption task's rows only: the other rows get their ids back and no labels.
  // The draws stay those of the whole batch (per row), so a caption row is masked alike whatever else
  // the batch holds.
  MaskedTokens caption_rows_only(const MaskedTokens& masked, const Tensor& ids, const std::vector<double>& rows) const {
    const int64_t b = ids.size(0), len = ids.size(1);
    const std::vector<double> original = to(ids, Device()).to_vector(), in = to(masked.ids, Device()).to_vector(),
                              labels = to(masked.labels, Device()).to_vector();
    std::vector<int64_t> out_ids(size_t(b * len)), out_labels(size_t(b * len));
    MaskedTokens out;
    for (int64_t r = 0; r < b; ++r) {
      const bool caption = examples_.at(size_t(rows[size_t(r)])).task == caption_task_;
      for (int64_t j = 0; j < len; ++j) {
        const size_t at = size_t(r * len + j);
        out_ids[at] = int64_t(caption ? in[at] : original[at]);
        out_labels[at] = caption ? int64_t(labels[at]) : -100;
        out.count += out_labels[at] != -100;
      }
    }
    out.ids = to(Tensor::from_vector(out_ids, {b, len}), ids.device());
    out.labels = to(Tensor::from_vector(out_labels, {b, len}), ids.device());
    return out;
  }

  // Per row: the logits over its candidates (labels, or choices) — what training and evaluation share.
  struct Scores {
    std::vector<Tensor> rows;  // each (candidates), differentiable
  };
  // video: model_->video of the batch's frames. Caption rows get no scores (their loss is caption_loss).
  Scores score_rows(const data::Batch& b, const std::vector<int64_t>& example_rows, const Tensor& video) {
    const int64_t n = b.size();
    Scores s;
    s.rows.resize(size_t(n));
    // Rows without choices: one joint representation each, through their task's label head.
    std::vector<int64_t> open_rows, choice_rows;
    for (int64_t r = 0; r < n; ++r) {
      const Example& e = examples_.at(size_t(example_rows[size_t(r)]));
      if (e.task != caption_task_) (e.choices.empty() ? open_rows : choice_rows).push_back(r);
    }
    auto pick = pick_rows;
    if (!open_rows.empty()) {
      Tensor joint = model_->joint(pick(b.input_ids, open_rows), pick(b.attention_mask, open_rows), pick(video, open_rows));
      for (size_t i = 0; i < open_rows.size(); ++i) {
        const Example& e = examples_.at(size_t(example_rows[size_t(open_rows[i])]));
        const TaskHeads& t = tasks_[size_t(e.task)];
        s.rows[size_t(open_rows[i])] = reshape((*t.open)(narrow(joint, 0, int64_t(i), 1)), {-1});
      }
    }
    if (!choice_rows.empty()) {
      // One sequence per (question, choice): [CLS] question choice [SEP], each with its clip's video.
      std::vector<int64_t> ids, mask, video_rows;
      std::vector<int64_t> count;
      for (int64_t r : choice_rows) {
        const Example& e = examples_.at(size_t(example_rows[size_t(r)]));
        const bool flip = !b.flipped.empty() && b.flipped[size_t(r)];
        for (const std::string& choice : e.choices) {
          const Encoding enc = tok_.encode(b.captions[size_t(r)] + " " + (flip ? data::mirror_text(choice, mirror_) : choice),
                                           EncodeOptions{.add_special = true, .max_length = max_len_, .pad_to = max_len_});
          ids.insert(ids.end(), enc.ids.begin(), enc.ids.end());
          mask.insert(mask.end(), enc.attention_mask.begin(), enc.attention_mask.end());
          video_rows.push_back(r);
        }
        count.push_back(int64_t(e.choices.size()));
      }
      const auto seqs = int64_t(video_rows.size());
      const Device d = video.device();
      Tensor joint = model_->joint(to(Tensor::from_vector(ids, {seqs, max_len_}), d),
                                   to(Tensor::from_vector(mask, {seqs, max_len_}), d), pick(video, video_rows));
      int64_t at = 0;
      for (size_t i = 0; i < choice_rows.size(); ++i) {
        const Example& e = examples_.at(size_t(example_rows[size_t(choice_rows[i])]));
        const TaskHeads& t = tasks_[size_t(e.task)];
        s.rows[size_t(choice_rows[i])] = reshape((*t.choice)(narrow(joint, 0, at, count[i])), {-1});
        at += count[i];
      }
    }
    return s;
  }

  std::map<std::string, Tensor> losses(const MicroBatch& mb, const StepScope& scope, Generator&) override {
    const data::Batch& b = mb.batch;
    std::vector<int64_t> example_rows;
    for (double v : b.clip_index.to_vector()) example_rows.push_back(int64_t(v));
    const Tensor video = model_->video(b.frames, blind_);
    std::map<std::string, Tensor> out;
    // Each task's mean loss over its items (over the whole step: StepScope) times its weight.
    auto add_task_term = [&](const TaskHeads& t, const Tensor& local_sum) {
      Tensor term = scope.share_of_mean(local_sum, t.name);
      out[t.name] = detach(term);
      Tensor weighted = mul(term, t.weight);
      out["loss"] = out.count("loss") ? add(out["loss"], weighted) : weighted;
    };
    if (caption_task_ >= 0 && scope.total("caption") > 0) {
      std::vector<int64_t> rows;
      for (size_t r = 0; r < example_rows.size(); ++r)
        if (examples_.at(size_t(example_rows[r])).task == caption_task_) rows.push_back(int64_t(r));
      Tensor local_sum;
      if (rows.empty()) {
        local_sum = mul(sum(model_->parameters().front()), 0.0);  // no caption row here: zero, in the graph
      } else if (int64_t(rows.size()) == b.size()) {
        local_sum = caption_loss(*model_->single(), mb.masked, b.attention_mask, video, Reduction::Sum).loss;
      } else {
        const MaskedTokens masked{pick_rows(mb.masked.ids, rows), pick_rows(mb.masked.labels, rows), mb.masked.count};
        local_sum = caption_loss(*model_->single(), masked, pick_rows(b.attention_mask, rows), pick_rows(video, rows),
                                 Reduction::Sum).loss;
      }
      add_task_term(tasks_[size_t(caption_task_)], local_sum);
    }
    const Scores s = score_rows(b, example_rows, video);
    // Each other task's mean cross-entropy over its rows with a target.
    std::map<std::string, Tensor> sums;
    for (size_t r = 0; r < s.rows.size(); ++r) {
      if (!s.rows[r].defined()) continue;  // a caption row
      const TaskHeads& t = tasks_[size_t(examples_.at(size_t(example_rows[r])).task)];
      const int64_t target = mb.targets[r];
      Tensor ce = target >= 0 ? cross_entropy(reshape(s.rows[r], {1, -1}),
                                              to(Tensor::from_vector(std::vector<int64_t>{target}, {1}), s.rows[r].device()),
                                              -100, 0.0, Reduction::Sum)
                              : mul(sum(s.rows[r]), 0.0);  // no target: in the graph, no contribution
      sums[t.name] = sums.count(t.name) ? add(sums[t.name], ce) : ce;
    }
    for (const TaskHeads& t : tasks_) {
      if (t.name == "caption" || scope.total(t.name) == 0) continue;
      // A rank may hold no row of a task in this micro-batch; its share is then zero, still in the graph
      // through the head's parameters, so every rank's autograd graph stays alike.
      add_task_term(t, sums.count(t.name) ? sums[t.name]
                                          : mul(sum(t.open ? t.open->parameters().front() : t.choice->parameters().front()), 0.0));
    }
    if (!out.count("loss")) {
      Tensor zero = mul(sum(model_->parameters().front()), 0.0);
      out["loss"] = zero;
    }
    return out;
  }

  // Evaluation of `split`: metrics (eval_ prefixed) and one prediction per example.
  struct Prediction {
    size_t example;
    std::string predicted, truth;
  };
  nlohmann::json evaluate(data::Split split, Device device, std::vector<Prediction>* predictions) {
    const bool multi = tasks_.size() > 1;
    if (caption_task_ >= 0 && !multi) return evaluate_captions(split, device, predictions, "eval_");
    NoGradGuard no_grad;
    const bool was_training = model_->is_training();
    model_->eval();
    const std::vector<Example> saved = examples_;
    examples_ = examples(split);
    // The examples scored here: every task's but captioning's (evaluate_captions below), by their index
    // in examples_ (what predictions name).
    std::vector<int64_t> scored;
    std::vector<Example> scored_examples;
    for (size_t i = 0; i < examples_.size(); ++i)
      if (examples_[i].task != caption_task_) {
        scored.push_back(int64_t(i));
        scored_examples.push_back(examples_[i]);
      }
    VB_CHECK(!scored.empty(), "finetune: the {} split of {} has no examples for this task",
             data::split_name(split), manifest_.path);
    data::DataLoader loader(clips_of(scored_examples), tok_, eval_loader_options(split));
    const std::string order = config_["eval_frames"];
    // Per task: right, total, loss sum, per type (right, total), confusion (truth, predicted) → count.
    struct Tally {
      int64_t right = 0, total = 0, scored = 0;
      double loss = 0, chance = 0;
      std::map<std::string, std::pair<int64_t, int64_t>> by_type;
      std::map<std::pair<int64_t, int64_t>, int64_t> confusion;
    };
    std::vector<Tally> tally(tasks_.size());
    while (auto batch = loader.next()) {
      data::Batch b = data::to_device(*batch, device);
      std::vector<int64_t> rows;  // into examples_
      for (double v : b.clip_index.to_vector()) rows.push_back(scored[size_t(v)]);
      const Scores s = score_rows(
          b, rows, model_->video(reorder_frames(b.frames, order, config_["seed"].get<uint64_t>() + 7, rows), blind_));
      for (size_t r = 0; r < rows.size(); ++r) {
        const Example& e = examples_[size_t(rows[r])];
        const TaskHeads& t = tasks_[size_t(e.task)];
        Tally& y = tally[size_t(e.task)];
        const std::vector<double> logits = to(s.rows[r], Device()).to_vector();
        const int64_t best = int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const std::vector<std::string>& candidates = e.choices.empty() ? t.labels : e.choices;
        const std::string predicted = candidates[size_t(best)];
        int64_t target = -1;
        for (size_t k = 0; k < candidates.size(); ++k)
          if (candidates[k] == e.answer) target = int64_t(k);
        const bool right = predicted == e.answer;
        ++y.total;
        y.right += right;
        y.chance += 1.0 / double(candidates.size());
        y.by_type[e.type].first += right;
        y.by_type[e.type].second += 1;
        if (target >= 0) {
          // Cross-entropy: log-sum-exp minus the target's logit.
          const double top = logits[size_t(best)];
          double z = 0;
          for (double l : logits) z += std::exp(l - top);
          y.loss += top + std::log(z) - logits[size_t(target)];
          ++y.scored;
        }
        if (t.name == "classify") y.confusion[{target, best}] += 1;
        if (predictions) predictions->push_back({size_t(rows[r]), predicted, e.answer});
      }
    }
    nlohmann::json m;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      if (int(i) == caption_task_) continue;
      const Tally& y = tally[i];
      const std::string p = multi ? "eval_" + tasks_[i].name + "_" : "eval_";
      m[p + "accuracy"] = y.total ? double(y.right) / double(y.total) : 0.0;
      m[p + "loss"] = y.scored ? y.loss / double(y.scored) : 0.0;
      m[p + "chance"] = y.total ? y.chance / double(y.total) : 0.0;
      m[p + "samples"] = y.total;
      if (tasks_[i].name == "qa")
        for (auto& [type, rt] : y.by_type) m[p + "accuracy_" + type] = double(rt.first) / double(rt.second);
      if (tasks_[i].name == "classify") {
        // Macro-F1 over the classes; the confusion matrix, rows = truth, columns = prediction.
        const auto k = int64_t(tasks_[i].labels.size());
        double f1 = 0;
        nlohmann::json matrix = nlohmann::json::array();
        for (int64_t c = 0; c < k; ++c) {
          int64_t tp = 0, fp = 0, fn = 0;
          nlohmann::json row = nlohmann::json::array();
          for (int64_t d = 0; d < k; ++d) {
            const auto it = y.confusion.find({c, d});
            const int64_t n = it == y.confusion.end() ? 0 : it->second;
            row.push_back(n);
            if (c == d) tp += n;
            else fn += n;
          }
          for (int64_t d = 0; d < k; ++d)
            if (d != c)
              if (auto it = y.confusion.find({d, c}); it != y.confusion.end()) fp += it->second;
          matrix.push_back(row);
          f1 += tp + fp + fn ? 2.0 * double(tp) / double(2 * tp + fp + fn) : 0.0;
        }
        m[p + "macro_f1"] = f1 / double(k);
        m[p + "confusion"] = {{"labels", tasks_[i].labels}, {"matrix", matrix}};
      }
    }
    examples_ = saved;
    model_->train(was_training);
    if (caption_task_ >= 0) m.update(evaluate_captions(split, device, predictions, "eval_caption_"));
    return m;
  }

  const std::vector<Example>& current_examples() const { return examples_; }

  // An evaluation's loader: the split's clips in order, the centre crop, batches of 32.
  data::LoaderOptions eval_loader_options(data::Split split) const {
    data::LoaderOptions lo;
    lo.split = split;
    lo.train = false;
    lo.shuffle = false;
    lo.frames = config_["frames"];
    lo.size = config_["image_size"];
    lo.max_length = max_len_;
    lo.batch_size = 32;
    lo.workers = config_["workers"];
    lo.seed = config_["seed"];
    lo.quiet = true;
    return lo;
  }

  // Captioning's evaluation: greedy and beam-search captions of every clip of the split against all its
  // captions (BLEU, ROUGE-L, CIDEr-D, exact match: train/caption_metrics.h), the attribute slots the greedy
  // caption gets right (synthetic data), the masked-caption loss, and the same metrics for the constant
  // caption a model without the video could write: the most frequent first caption of the train split.
  // Every key is prefixed with `prefix` (eval_, or eval_caption_ beside other tasks).
  nlohmann::json evaluate_captions(data::Split split, Device device, std::vector<Prediction>* predictions,
                                   const std::string& prefix) {
    NoGradGuard no_grad;
    models::SingleStream& model = *model_->single();
    const bool was_training = model_->is_training();
    model_->eval();
    const std::vector<Example> all = this->examples(split);
    std::vector<Example> examples;
    std::vector<size_t> index;  // each caption example's index in `all` (what predictions name)
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i].task == caption_task_) {
        examples.push_back(all[i]);
        index.push_back(i);
      }
    VB_CHECK(!examples.empty(), "finetune: the {} split of {} has no clips", data::split_name(split), manifest_.path);
    data::DataLoader loader(clips_of(examples), tok_, eval_loader_options(split));
    DecodeOptions greedy_options{.special = special_, .text_len = max_len_};
    DecodeOptions beam_options = greedy_options;
    beam_options.beam_width = 4;
    CaptionHypotheses greedy, beam;
    CaptionReferences refs;
    std::map<std::string, std::string> greedy_text;
    double loss = 0;
    int64_t masked = 0;
    Generator gen{config_["seed"].get<uint64_t>() + 11, 0};  // the same masks at every evaluation
    const std::string order = config_["eval_frames"];
    while (auto batch = loader.next()) {
      data::Batch b = data::to_device(*batch, device);
      std::vector<int64_t> rows;
      for (double v : b.clip_index.to_vector()) rows.push_back(int64_t(v));
      const Tensor features = model_->video(reorder_frames(b.frames, order, config_["seed"].get<uint64_t>() + 7, rows), blind_);
      const CaptionLoss cl = caption_loss(model, b.input_ids, b.attention_mask, features, gen,
                                          {special_, kCaptionMaskProbability, Reduction::Sum});
      loss += cl.loss.item();
      masked += cl.masked.count;
      const std::vector<Caption> g = greedy_decode(model, features, greedy_options);
      const std::vector<Caption> bs = beam_search(model, features, beam_options);
      for (size_t r = 0; r < rows.size(); ++r) {
        const data::Clip& clip = manifest_.clips[examples[size_t(rows[r])].clip];
        greedy_text[clip.id] = tok_.decode(g[r].ids, true);
        greedy[clip.id] = caption_words(greedy_text[clip.id]);
        beam[clip.id] = caption_words(tok_.decode(bs[r].ids, true));
        for (const std::string& c : clip.captions) refs[clip.id].push_back(caption_words(c));
      }
    }
    // The constant caption: the most frequent first caption of the train split (ties: the first in order).
    std::map<std::string, int64_t> freq;
    std::string constant;
    for (const data::Clip& clip : manifest_.clips)
      if (clip.split == data::Split::Train && ++freq[clip.captions.front()] > freq[constant]) constant = clip.captions.front();
    CaptionHypotheses fixed;
    for (const auto& [id, words] : greedy) fixed[id] = caption_words(constant);
    nlohmann::json m;
    auto put = [&](const std::string& prefix, const CaptionMetrics& cm) {
      m[prefix + "bleu1"] = cm.bleu[0];
      m[prefix + "bleu4"] = cm.bleu[3];
      m[prefix + "rouge_l"] = cm.rouge_l;
      m[prefix + "cider_d"] = cm.cider_d;
      m[prefix + "exact_match"] = cm.exact_match;
    };
    put(prefix, caption_metrics(greedy, refs));
    put(prefix + "beam_", caption_metrics(beam, refs));
    put(prefix + "constant_", caption_metrics(fixed, refs));
    m[prefix + "loss"] = masked ? loss / double(masked) : 0.0;
    m[prefix + "samples"] = int64_t(greedy.size());
    // Attribute slots (synthetic data): a slot is right when the caption names the clip's value (any of its
    // synonyms, as whole words) and no other value of that attribute.
    const auto& g = data::synth_grammar();
    std::map<std::string, std::map<std::string, std::vector<std::string>>> phrases;
    for (const auto& c : g.colors) phrases["color"][c] = {c};
    phrases["shape"] = g.shape_words;
    phrases["size"] = g.size_words;
    phrases["motion"] = g.motion_phrases;
    auto names = [&](const std::string& text, const std::vector<std::string>& ps) {
      const std::string padded = " " + text + " ";
      for (const auto& p : ps)
        if (padded.find(" " + p + " ") != std::string::npos) return true;
      return false;
    };
    auto slot_accuracy = [&](const std::map<std::string, std::string>& texts, const std::string& prefix) {
      int64_t right_all = 0, total_all = 0;
      for (const auto& [attr, values] : phrases) {
        int64_t right = 0, total = 0;
        for (const data::Clip& clip : manifest_.clips) {
          auto t = texts.find(clip.id);
          auto a = clip.attributes.find(attr);
          if (t == texts.end() || a == clip.attributes.end() || !values.count(a->second)) continue;
          bool ok = names(t->second, values.at(a->second));
          for (const auto& [v, ps] : values)
            if (v != a->second && names(t->second, ps)) ok = false;
          ++total;
          right += ok;
        }
        if (total) m[prefix + "slot_" + attr] = double(right) / double(total);
        right_all += right;
        total_all += total;
      }
      if (total_all) m[prefix + "slot_accuracy"] = double(right_all) / double(total_all);
    };
    slot_accuracy(greedy_text, prefix);
    std::map<std::string, std::string> constant_text;
    for (const auto& [id, t] : greedy_text) constant_text[id] = constant;
    slot_accuracy(constant_text, prefix + "constant_");
    if (predictions)
      for (size_t i = 0; i < examples.size(); ++i) {
        const data::Clip& clip = manifest_.clips[examples[i].clip];
        predictions->push_back({index[i], greedy_text[clip.id], clip.captions.front()});
      }
    model_->train(was_training);
    return m;
  }

 private:
  nlohmann::json config_;
  WordPieceTokenizer tok_;
  const data::Manifest& manifest_;
  std::shared_ptr<FinetuneModel> model_;
  std::vector<TaskHeads> tasks_;
  std::vector<Example> examples_;
  std::vector<std::pair<std::string, std::string>> mirror_;
  int64_t max_len_ = 24;
  bool blind_ = false;
  int caption_task_ = -1;  // the caption task's index in tasks_, or −1
  SpecialTokens special_;
};

// ---------------------------------------------------------------- outputs

// A confusion matrix as an SVG heat map (rows: truth, columns: prediction).
std::string confusion_svg(const nlohmann::json& confusion) {
  const auto& labels = confusion["labels"];
  const auto& matrix = confusion["matrix"];
  const auto k = int64_t(labels.size());
  const double cell = 36, left = 110, top = 110;
  int64_t peak = 1;
  for (const auto& row : matrix)
    for (const auto& v : row) peak = std::max(peak, v.get<int64_t>());
  std::string svg = fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
                                "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
                                "fill=\"white\"/>\n",
                                left + cell * double(k) + 10, top + cell * double(k) + 30);
  for (int64_t i = 0; i < k; ++i) {
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6,
                       top + cell * double(i) + cell / 2 + 4, labels[size_t(i)].get<std::string>());
    svg += fmt::format("<text transform=\"translate({},{}) rotate(-60)\">{}</text>\n", left + cell * double(i) + cell / 2,
                       top - 6, labels[size_t(i)].get<std::string>());
    for (int64_t j = 0; j < k; ++j) {
      const int64_t v = matrix[size_t(i)][size_t(j)];
      const int shade = int(255 - 200.0 * double(v) / double(peak));
      svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},255)\" stroke=\"#ccc\"/>\n"
                         "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                         left + cell * double(j), top + cell * double(i), cell, cell, shade, shade,
                         left + cell * double(j) + cell / 2, top + cell * double(i) + cell / 2 + 4, v);
    }
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">predicted</text>\n",
                     left + cell * double(k) / 2, top + cell * double(k) + 20);
  return svg + "</svg>\n";
}

void write_outputs(const fs::path& run, const nlohmann::json& c, FinetuneTask& task, const std::vector<Example>& examples,
                   const data::Manifest& manifest, data::Split split, const nlohmann::json& eval,
                   const std::vector<FinetuneTask::Prediction>& predictions, double runtime_s) {
  // predictions_<split>.tsv: index, clip, question (qa), prediction, label.
  std::string tsv = "index\tclip\ttext\tprediction\tlabel\n";
  for (size_t i = 0; i < predictions.size(); ++i) {
    const Example& e = examples[predictions[i].example];
    tsv += fmt::format("{}\t{}\t{}\t{}\t{}\n", i, manifest.clips[e.clip].id, e.text, predictions[i].predicted,
                       predictions[i].truth);
  }
  write_text_atomic((run / fmt::format("predictions_{}.tsv", data::split_name(split))).string(), tsv);
  nlohmann::json results = eval;
  for (auto it = results.begin(); it != results.end();)
    it = it.key().ends_with("confusion") ? results.erase(it) : std::next(it);
  write_text_atomic((run / "eval_results.json").string(), results.dump(2) + "\n");
  const std::vector<nlohmann::json> metrics = read_metrics((run / "metrics.jsonl").string());
  double loss = 0;
  int64_t rows = 0, steps = 0;
  for (const auto& row : metrics)
    if (row.contains("loss") && !row.contains("eval")) {
      loss += row["loss"].get<double>();
      ++rows;
      steps = row["step"];
    }
  nlohmann::json train_results = {{"train_loss", rows ? loss / double(rows) : 0.0},
                                  {"train_runtime", runtime_s},
                                  {"train_steps", steps},
                                  {"train_samples", int64_t(task.current_examples().size())}};
  write_text_atomic((run / "train_results.json").string(), train_results.dump(2) + "\n");
  nlohmann::json all = train_results;
  all.update(results);
  write_text_atomic((run / "all_results.json").string(), all.dump(2) + "\n");

  // report.md: the task, the loss curves, the metrics, the confusion matrices.
  write_text_atomic((run / "loss.svg").string(), loss_curves_svg(metrics));
  std::string md = fmt::format("# Fine-tuning report\n\nTask `{}` on the `{}` model pretrained in `{}`, {} steps.\n\n",
                               c["task"] == "multi" ? "multi: " + c["tasks"].get<std::string>() : c["task"].get<std::string>(),
                               c["model"].get<std::string>(), c["pretrained"].get<std::string>(), steps);
  md += "## Loss curves\n\n![loss curves](loss.svg)\n\n";
  md += fmt::format("## Evaluation ({} split)\n\n| metric | value |\n|---|---:|\n", data::split_name(split));
  for (auto it = results.begin(); it != results.end(); ++it)
    md += fmt::format("| {} | {} |\n", it.key(), it.value().is_number_float() ? fmt::format("{:.4f}", it.value().get<double>())
                                                                              : it.value().dump());
  for (auto it = eval.begin(); it != eval.end(); ++it)
    if (it.key().ends_with("confusion")) {
      const std::string file = it.key() + ".svg";
      write_text_atomic((run / file).string(), confusion_svg(it.value()));
      md += fmt::format("\n## Confusion matrix\n\nRows: the true class; columns: the predicted one.\n\n![{}]({})\n", it.key(), file);
    }
  md += "\n## Configuration\n\n```json\n" + c.dump(2) + "\n```\n";
  write_text_atomic((run / "report.md").string(), md);
}

}  // namespace

nlohmann::json finetune_config(const std::string& run_dir, const std::string& task,
                               const std::vector<std::string>& overrides) {
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "finetune --run {}: not a pretraining run folder (no config.json)", run_dir);
  nlohmann::json c = read_run_config((run / "config.json").string());
  VB_CHECK(!c.contains("task"), "finetune --run {}: this is a fine-tuning run; start from the pretraining run it came "
           "from ({})", run_dir, c.value("pretrained", std::string("?")));
  add_finetune_defaults(c, task, run_dir);
  apply_overrides(c, overrides);
  validate_finetune(c, "finetune");
  return c;
}

namespace {

// The body of finetune() once the job is joined.
TrainResult run_finetuning(const FinetuneOptions& o, const nlohmann::json& c, Device device, dist::ProcessGroup* group) {
  dist::Communicator* comm = group ? group->comm.get() : nullptr;
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(text_vocab_path(c, o.data_dir));
  data::Manifest manifest = data::load_manifest(o.data_dir);
  manual_seed(c["seed"]);
  FinetuneTask task(c, tokenizer, manifest);
  if (!o.resume && o.from_scratch) load_initial_weights(task.model().backbone(), c);  // text_init, vision_init
  if (!o.resume && !o.from_scratch) {
    // The pretrained weights: the final model, else the newest checkpoint.
    const fs::path weights = run_weights(o.run_dir, "finetune --run");
    const nn::NamedTensors state = load_safetensors(weights.string()).tensors;
    for (auto& [name, t] : state)
      if (name == "bert.embeddings.word_embeddings.weight" || name == "text.embeddings.word_embeddings.weight")
        VB_CHECK(t.size(0) == tokenizer.vocab_size(), "finetune: {} has a vocabulary of {} tokens, but {}'s vocab.txt "
                 "has {}: fine-tune on a dataset with the pretrained run's vocabulary", weights.string(), t.size(0),
                 o.data_dir, tokenizer.vocab_size());
    task.model().backbone().load_state_dict(state);
  }
  task.module().to(device);
  task.module().train();
  Trainer trainer(task, c, device, comm, group ? group->store.get() : nullptr);

  std::vector<Example> train_examples = task.examples(data::Split::Train);
  VB_CHECK(!train_examples.empty(), "finetune: the train split of {} has no examples for task {}", manifest.path,
           c["task"].get<std::string>());
  task.set_examples(train_examples);
  data::LoaderOptions lo = training_loader_options(c, rank, world, device, o.strict);
  // Label-preserving augmentation: crops and zoom change how big a shape looks, so they are off when a
  // label speaks of size (classify label=size, and qa, whose questions include size); a flip mirrors the
  // text and the answers (mirror_words), which keeps direction labels true.
  const bool size_labels = c["task"] != "classify" || c["label"] == "size";
  if (size_labels) {
    lo.augment.random_resized_crop = false;
    lo.augment.scale_jitter = false;
  }
  data::DataLoader loader(task.clips_of(train_examples), tokenizer, lo);

  const fs::path out(o.out_dir);
  const data::Split final_split = manifest.split(data::Split::Test).empty() ? data::Split::Val : data::Split::Test;
  const auto started = std::chrono::steady_clock::now();
  RunHooks hooks;
  hooks.evaluate = [&](data::Split split) { return task.evaluate(split, device, nullptr); };
  hooks.periodic = !task.examples(data::Split::Val).empty();
  hooks.eval_line = [&](int64_t step, const nlohmann::json& m) {
    std::string line = fmt::format("val @ {}:", step);
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.key().ends_with("accuracy")) line += fmt::format(" {} {:.3f}", it.key(), it.value().get<double>());
    return line;
  };
  hooks.finish = [&](int64_t step, EventWriter& events) {
    std::vector<FinetuneTask::Prediction> predictions;
    const nlohmann::json m = task.evaluate(final_split, device, &predictions);
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.value().is_number_float()) events.add_scalar(std::string(data::split_name(final_split)) + "/" + it.key(),
                                                         it.value().get<float>(), step);
    const double runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    write_outputs(out, c, task, task.examples(final_split), manifest, final_split, m, predictions, runtime);
    return m;
  };
  RunOptions ro;
  ro.out_dir = o.out_dir;
  ro.resume = o.resume;
  ro.quiet = o.quiet;
  ro.stop_after = o.stop_after;
  ro.what = "fine-tuning (" + (c["task"] == "multi" ? c["tasks"].get<std::string>() : c["task"].get<std::string>()) + ")";
  ro.items = "training examples";
  return run_training(c, ro, task, trainer, loader, comm, hooks);
}

}  // namespace

TrainResult finetune(const FinetuneOptions& o) {
  nlohmann::json c;
  const fs::path saved = fs::path(o.out_dir) / "config.json";
  if (o.resume && fs::exists(saved)) {
    // The run's own configuration, then any overrides (a new batch_size with a new world size, say).
    nlohmann::json base = read_run_config((fs::path(o.run_dir) / "config.json").string());
    add_finetune_defaults(base, "classify", o.run_dir);
    c = merge_config(base, read_json_object(saved.string()), saved.string());
    apply_overrides(c, o.overrides);
    validate_finetune(c, saved.string());
  } else {
    c = finetune_config(o.run_dir, o.task, o.overrides);
  }
  validate_config(c, "finetune config");
  const Device device = resolve_device(o.device);
  std::unique_ptr<dist::ProcessGroup> group = join_job(c, device);
  try {
    return run_finetuning(o, c, device, group.get());
  } catch (...) {
    if (group) group->abort();
    throw;
  }
}

bool is_finetune_run(const std::string& run_dir) {
  const fs::path config = fs::path(run_dir) / "config.json";
  return fs::exists(config) && read_json_object(config.string()).contains("task");
}

FinetuneEval evaluate_finetuned(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                                const std::string& device_name, const std::string& eval_frames) {
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "eval: {} is not a fine-tuning run folder (no config.json with a task)",
           run_dir);
  nlohmann::json c = read_json_object((run / "config.json").string());  // a fine-tuning run's: every key
  VB_CHECK(c.contains("task"), "eval: {} is not a fine-tuning run folder (no config.json with a task)", run_dir);
  c["eval_frames"] = eval_frames;
  validate_finetune(c, (run / "config.json").string() + " (with eval_frames=" + eval_frames + ")");
  const Device device = resolve_device(device_name);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(text_vocab_path(c, data_dir));
  data::Manifest manifest = data::load_manifest(data_dir);
  FinetuneTask task(c, tokenizer, manifest);
  const fs::path weights = run_weights(run, "eval");
  task.module().load_state_dict(load_safetensors(weights.string()).tensors);
  task.module().to(device);
  const data::Split s = data::parse_split(split);
  std::vector<FinetuneTask::Prediction> raw;
  FinetuneEval out;
  out.metrics = task.evaluate(s, device, &raw);
  const std::vector<Example> examples = task.examples(s);
  for (const auto& p : raw) {
    const Example& e = examples[p.example];
    out.predictions.push_back({manifest.clips[e.clip].id, e.text, p.predicted, p.truth});
  }
  return out;
}

}  // namespace vb::train
