// A pretraining task: one of the three VideoBERT models with the objectives it trains and the scoring
// that evaluation needs. The trainer and the evaluator talk to every model through this interface.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kernels/dist/communicator.h"
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

// A micro-batch with the random choices drawn for it before any forward pass (which tokens and frames
// are masked), and how many items each per-item objective counts in it.
struct MicroBatch {
  data::Batch batch;
  MaskedTokens masked;                   // masked-LM: the ids with [MASK] and the labels
  Tensor frame_mask;                     // masked frames: (B, T) bool on the batch's device
  std::map<std::string, double> counts;  // "mlm": masked tokens, "mfm": masked frames
  std::vector<int64_t> targets;          // fine-tuning: each row's target (−1: none), train/finetune.cpp
};

// The training step a micro-batch belongs to, as its losses see it.
//
// A step's gradient is that of the mean loss over the step's whole batch: `shares` equal parts (the
// micro-batches of every rank, Trainer::step). So that this holds whatever the world size and the
// accumulation, each micro-batch's losses are written as its share of that mean:
//   - a mean over items (masked tokens, masked frames) is this micro-batch's sum · shares / the step's
//     total count (share_of_mean), the totals having been summed over every micro-batch and rank first;
//   - losses with in-batch negatives (contrastive, matching, masked frames) compare this rank's rows with
//     every rank's rows of the current micro-batch (gather: autograd all-gather, each rank's rows at
//     [rank·b, (rank+1)·b)), so that N ranks × batch b compute what one process computes with batch N·b.
// Without a communicator (one process) gather is the identity.
struct StepScope {
  dist::Communicator* comm = nullptr;
  int64_t shares = 1;
  std::map<std::string, double> totals;

  int rank() const { return comm ? comm->rank() : 0; }
  int ranks() const { return comm ? comm->size() : 1; }
  // Every rank's rows of `local` (b, …) → (ranks·b, …), differentiable.
  Tensor gather(const Tensor& local) const;
  // The same for tensors without gradient (ids, masks, detached features).
  Tensor gather_constant(const Tensor& local) const;
  // The global index of this rank's first row when each rank holds `local_rows`.
  int64_t first_row(int64_t local_rows) const { return int64_t(rank()) * local_rows; }
  // This micro-batch's share of the step's mean over `key` items: local_sum · shares / totals[key].
  Tensor share_of_mean(const Tensor& local_sum, const std::string& key) const;
  double total(const std::string& key) const;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual nn::Module& module() = 0;
  // Draws the batch's random choices (per row: Generator::advance_rows) and counts its items.
  virtual MicroBatch prepare(data::Batch batch, Generator& gen) { return MicroBatch{std::move(batch), {}, {}, {}, {}}; }
  // The loss terms of one micro-batch, weighted by the config's objective weights; "loss" is their sum.
  // Extra entries (accuracies) are detached scalars, shares of the step's value like the losses.
  virtual std::map<std::string, Tensor> losses(const MicroBatch& batch, const StepScope& scope, Generator& gen) = 0;
  // Retrieval (train/evaluate.h): the pretraining tasks implement these; a task without retrieval scoring
  // (fine-tuning heads) keeps the defaults, which say so.
  virtual TextSide encode_text(const Tensor& ids, const Tensor& mask);
  virtual VideoSide encode_video(const Tensor& frames);
  // Retrieval scores of every caption against every clip: (Nt, Nv), higher = more likely a match.
  virtual Tensor score(const TextSide& text, const VideoSide& video);
  // The matching head's logits (> 0 means "match") for the pairs (text_rows[k], video_rows[k]): (K); nullopt
  // for a model without a matching head (the dual encoder).
  virtual std::optional<Tensor> pair_logits(const TextSide& text, const VideoSide& video,
                                            const std::vector<int64_t>& text_rows,
                                            const std::vector<int64_t>& video_rows) {
    return std::nullopt;
  }
  // Retrieval scores of the first stage alone (the single stream's contrastive head), when it has one.
  virtual std::optional<Tensor> first_stage_score(const TextSide&, const VideoSide&) { return std::nullopt; }
  // Masked-LM accuracy on a batch of captions paired with their clips (single stream only; else nullopt).
  // The masked-LM head's logits (B, Tt, V) at every text position of ids read with the clips' video
  // (single stream only; else nullopt): what template filling reads (train/evaluate.h).
  virtual std::optional<Tensor> text_mlm_logits(const Tensor& ids, const Tensor& mask, const VideoSide& video) {
    return std::nullopt;
  }
  virtual std::optional<double> mlm_accuracy(const Tensor& ids, const Tensor& mask, const VideoSide& video,
                                             Generator& gen) {
    return std::nullopt;
  }
  // Masked visual words (single stream with visual_tokens only; else nullopt): frames masked as in
  // training (choose_frames with mfm_probability), each clip read with its caption, and the share of
  // masked frames whose word the model predicts, beside two baselines that see no model: the most frequent
  // word of these clips, and the word of the nearest unmasked frame of the same clip (the previous one at a
  // tie; wrong when every frame is masked).
  struct MaskedWords {
    double accuracy = 0, majority = 0, neighbour = 0;
    int64_t masked = 0;
  };
  virtual std::optional<MaskedWords> visual_word_accuracy(const Tensor& ids, const Tensor& mask, const VideoSide& video,
                                                          Generator& gen) {
    return std::nullopt;
  }
};

// The VideoBertConfig a training config describes (text size from the vocabulary, positions for text +
// frames).
models::VideoBertConfig model_config(const nlohmann::json& config, const WordPieceTokenizer& tokenizer);
std::unique_ptr<Task> make_task(const nlohmann::json& config, const WordPieceTokenizer& tokenizer);

// The text encoder and the frame encoder of a single-stream, late-fusion or dual-encoder model.
models::BertModel& text_encoder(nn::Module& model);
models::FrameEncoder& frame_encoder(nn::Module& model);

// Loads the weights a run starts from into a newly made model: text_init's Hugging Face BERT (config.json,
// vocab.txt, model.safetensors; extra buffers such as embeddings.position_ids and the pretraining heads
// cls.* are skipped) into the text encoder, and vision_init's torchvision ResNet into the frame encoder's
// ResNet (with frame_differences, the difference channels of the stem start at zero); with visual_tokens,
// visual_vocab's tree and centroids, and the frame encoder its features came from. Nothing when none of
// these is set. Errors name the file and every missing, unexpected or misshapen tensor.
void load_initial_weights(nn::Module& model, const nlohmann::json& config);

}  // namespace vb::train
