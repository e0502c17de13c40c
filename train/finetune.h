// `videobert finetune`: what a pretrained VideoBERT is for. A fresh head on a pretrained run's model
// (its backbone: the joint single-stream encoder, or the late-fusion / dual-encoder towers), trained for a
// downstream task with the same training step, checkpoints, logs and data parallelism as pretraining
// (train/trainer.h, train/run_loop.h), in the manner of Hugging Face's run_glue.py:
//
//   videobert finetune --run runs/tiny --task classify --data runs/synth --out runs/motion label=motion
//   videobert finetune --run runs/tiny --task qa --data runs/synth --out runs/qa
//   videobert finetune --run runs/tiny --task multi --data runs/synth --out runs/mt tasks=qa:1,classify:0.5
//
// Tasks (docs/FINETUNE.md):
//   classify  video classification: the clip's value of the manifest attribute `label` (on the synthetic
//             data motion as the action, shape or colour as the topic); the head reads the backbone's
//             joint representation of the clip with an empty text. Accuracy, macro-F1, confusion matrix.
//   qa        video question answering over the manifest's "qa" records: open-ended questions as
//             classification over the answer_vocab most frequent training answers (an answer outside it
//             counts as wrong), multiple-choice ones by one score per (question + choice) sequence and
//             cross-entropy over the choices. Accuracy overall and per question type. blind=true trains
//             the same model without the video (its features replaced by zeros): the question-only
//             baseline.
//   caption   caption generation with the single stream's own masked-LM head under the sequence-to-
//             sequence mask (train/captioning.h): greedy and beam-search captions scored by BLEU, ROUGE-L,
//             CIDEr-D and exact match (train/caption_metrics.h), attribute-slot accuracy on the synthetic
//             data, beside the constant caption (the train split's most frequent) and blind=true.
//   multi     several tasks at once (tasks=qa:1,classify:0.5,caption:1): every batch mixes the tasks'
//             examples in proportion to their numbers, and the loss is Σ weight × the task's mean loss over
//             its items (rows; caption tokens masked in the caption rows); metrics eval_<task>_….
//
// The run folder is a pretraining run folder (config.json, metrics.jsonl, checkpoints/, report.md, …)
// plus eval_results.json (eval_accuracy, eval_loss, eval_chance and the task's other metrics, all prefixed
// eval_), train_results.json (train_loss, train_runtime, train_samples), all_results.json (both), and
// predictions_<split>.tsv (index, clip, prediction, label).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/run_loop.h"

namespace vb::train {

struct FinetuneOptions {
  std::string run_dir;   // the pretrained run: config.json and model.safetensors (or its newest checkpoint)
  std::string task;      // classify, qa, caption or multi
  std::string data_dir;  // the dataset (its vocab.txt must be the pretrained run's vocabulary)
  std::string out_dir;
  std::string device = "auto";
  std::vector<std::string> overrides;  // key=value, over the fine-tuning defaults
  bool resume = false, strict = false, quiet = false;
  int64_t stop_after = -1;
  // The same model with random initial weights instead of the pretrained ones: the baseline that shows
  // what pretraining is worth (the weights of run_dir are not read; its configuration is).
  bool from_scratch = false;
};

// The configuration of a fine-tuning run: the pretrained run's model keys, the fine-tuning defaults of
// the training keys (steps 300, warmup 20; lr stays the pretrained run's) and the task keys (task, label, tasks, answer_vocab, blind),
// then the overrides. Validated; errors name the key.
nlohmann::json finetune_config(const std::string& run_dir, const std::string& task,
                               const std::vector<std::string>& overrides);

TrainResult finetune(const FinetuneOptions& options);

// Whether run_dir is a fine-tuning run (its config.json has a "task").
bool is_finetune_run(const std::string& run_dir);

// A fine-tuning run's evaluation on a split of a dataset, with the frames in their order, reversed or
// shuffled (eval_frames: the controls of docs/FINETUNE.md — reversal turns "moves left" into "moves
// right"; shuffling leaves colour and shape and removes direction). What `videobert eval` does for a
// fine-tuning run. The metrics are the ones eval_results.json holds; one prediction per example.
struct FinetunePrediction {
  std::string clip, text, predicted, truth;
};
struct FinetuneEval {
  nlohmann::json metrics;
  std::vector<FinetunePrediction> predictions;
};
FinetuneEval evaluate_finetuned(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                                const std::string& device = "auto", const std::string& eval_frames = "normal");

}  // namespace vb::train
