// A pretraining task: one of the three VideoBERT models with the objectives it trains and the scoring
// that evaluation needs. The trainer and the evaluator talk to every model through this interface.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "models/tokenizer.h"
#include "models/videobert.h"
#include "train/data/loader.h"
#include "train/objectives.h"

namespace vb::train {

// What a model needs of a caption batch and of a clip batch for scoring: computed once, paired later.
struct TextSide {
  Tensor embedding;  // dual encoder / late fusion / single stream's first stage: (N, D)
  Tensor ids, mask;  // single stream: (N, L) ids and attention mask, paired with clips at scoring
};
struct VideoSide {
  Tensor embedding;  // dual encoder / late fusion / single stream's first stage: (N, D)
  Tensor features;   // single stream: per-frame features (N, T, C)
};

class Task {
 public:
  virtual ~Task() = default;
  virtual nn::Module& module() = 0;
  // The loss terms of one batch, weighted by the config's objective weights; "loss" is their sum. Extra
  // entries (accuracies) are detached scalars.
  virtual std::map<std::string, Tensor> losses(const data::Batch& batch, Generator& gen) = 0;
  virtual TextSide encode_text(const Tensor& ids, const Tensor& mask) = 0;
  virtual VideoSide encode_video(const Tensor& frames) = 0;
  // Retrieval scores of every caption against every clip: (Nt, Nv), higher = more likely a match.
  virtual Tensor score(const TextSide& text, const VideoSide& video) = 0;
  // The matching head's logits (> 0 means "match") for the pairs (text_rows[k], video_rows[k]): (K); nullopt
  // for a model without a matching head (the dual encoder).
  virtual std::optional<Tensor> pair_logits(const TextSide& text, const VideoSide& video,
                                            const std::vector<int64_t>& text_rows,
                                            const std::vector<int64_t>& video_rows) = 0;
  // Retrieval scores of the first stage alone (the single stream's contrastive head), when it has one.
  virtual std::optional<Tensor> first_stage_score(const TextSide&, const VideoSide&) { return std::nullopt; }
  // Masked-LM accuracy on a batch of captions paired with their clips (single stream only; else nullopt).
  virtual std::optional<double> mlm_accuracy(const Tensor& ids, const Tensor& mask, const VideoSide& video,
                                             Generator& gen) {
    return std::nullopt;
  }
};

// The VideoBertConfig a training config describes (text size from the vocabulary, positions for text +
// frames).
models::VideoBertConfig model_config(const nlohmann::json& config, const WordPieceTokenizer& tokenizer);
std::unique_ptr<Task> make_task(const nlohmann::json& config, const WordPieceTokenizer& tokenizer);

}  // namespace vb::train
