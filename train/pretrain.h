// `videobert pretrain`: the training loop over a video–text dataset, with checkpoints that resume
// exactly, logs (terminal, metrics.jsonl, TensorBoard), periodic evaluation and a final report.
//
// A run folder holds:
//   config.json                     the full configuration (every knob, after overrides)
//   metrics.jsonl                   one JSON object per logged step: step, loss, each term, lr, grad_norm,
//                                   loss_scale, samples_per_s (every rank's together), comm_hidden (data
//                                   parallel: the fraction of the gradients' communication hidden behind
//                                   backward); and {"eval": …} objects after evaluations
//   events.out.tfevents.*           the same scalars for TensorBoard
//   checkpoints/step_NNNNNNNN/      model.safetensors, optimizer.safetensors, state.json (written last:
//                                   a checkpoint without it is incomplete and ignored); the last K kept;
//                                   the same for any world size (train/checkpoint.h)
// Launched by mpirun, srun or a torchrun-style launcher, every rank runs this function: rank 0 writes the
// run folder and prints, every rank reads it on --resume (train/distributed.h, docs/DISTRIBUTED.md).
//   model.safetensors               the final weights
//   report.md, loss.svg, eval_<split>.json   at the end
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "train/run_loop.h"

namespace vb::train {

struct PretrainOptions {
  nlohmann::json config;  // validated
  std::string data_dir;
  std::string out_dir;
  std::string device = "auto";  // auto, cpu, cuda, emu
  bool resume = false;
  bool strict = false;
  bool quiet = false;           // no progress output (tests)
  int64_t stop_after = -1;      // stop (with a checkpoint) after this many steps of this invocation (--stop-after)
};

// The device "auto" picks: cuda when a GPU backend is present, else cpu.
Device resolve_device(const std::string& name);

TrainResult pretrain(const PretrainOptions& options);

// Loads a run's configuration and its newest complete weights (the final model.safetensors, else the
// newest checkpoint) and evaluates it; also writes eval_<split>.json into the run folder.
nlohmann::json evaluate_run(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                            const std::string& device = "auto");

// `videobert export`: a run's trained text encoder as a Hugging Face BERT folder (config.json,
// model.safetensors with BertModel's names, vocab.txt) that transformers' BertModel.from_pretrained loads;
// with vision_out also its frame encoder's ResNet as a torchvision state dict (safetensors). A pretraining
// or a fine-tuning run (its backbone). The vocabulary: the run's vocab.txt (pretrain writes it), else
// text_init's, else data_dir's. Returns the files written.
std::vector<std::string> export_run(const std::string& run_dir, const std::string& out_dir,
                                    const std::string& data_dir = "", const std::string& vision_out = "");

}  // namespace vb::train
