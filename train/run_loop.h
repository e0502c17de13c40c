// The loop of a training command, shared by `videobert pretrain` and `videobert finetune`: given the
// task, the trainer (train/trainer.h) and the loader, it trains for config["steps"] steps with
//   - resume from the newest complete checkpoint (train/checkpoint.h), also on another world size;
//   - a checkpoint every checkpoint_every steps, at the end, and when stopped (SIGINT, SIGTERM,
//     --stop-after), agreed by every rank;
//   - logs: a progress bar or lines on the terminal, metrics.jsonl and TensorBoard scalars;
//   - an evaluation every eval_every steps and a final one, on rank 0 alone while the others wait
//     (docs/DISTRIBUTED.md says why), through the command's hooks;
//   - the final weights (model.safetensors) and whatever the command writes at the end (its hook).
// Rank 0 alone prints and writes the run folder. What differs between the commands is in RunHooks.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "train/data/loader.h"
#include "train/tasks.h"
#include "train/tensorboard.h"
#include "train/trainer.h"

namespace vb::train {

struct RunOptions {
  std::string out_dir;
  bool resume = false;
  bool quiet = false;         // no progress output (tests)
  int64_t stop_after = -1;    // stop (with a checkpoint) after this many steps of this invocation
  std::string what = "pretraining";  // the start-up line: "pretraining single_stream on cpu: …"
  std::string items = "train clips";  // what the loader serves, for that line
};

struct RunHooks {
  // Metrics of an evaluation on `split` (rank 0 only). Null: no evaluation.
  std::function<nlohmann::json(data::Split split)> evaluate;
  data::Split periodic_split = data::Split::Val;  // what eval_every evaluates
  bool periodic = true;                           // whether that split can be evaluated at all
  // The terminal's line after a periodic evaluation.
  std::function<std::string(int64_t step, const nlohmann::json& metrics)> eval_line;
  // On rank 0 after the final weights are written: the final evaluation, its files and the report.
  // Returns the final metrics (null: none).
  std::function<nlohmann::json(int64_t step, EventWriter& events)> finish;
};

struct TrainResult {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;
  bool interrupted = false;
  nlohmann::json eval;  // the final evaluation (empty when interrupted, and on ranks ≠ 0)
  int rank = 0;         // this process's rank in a data-parallel job
};

// `comm`: the job's communicator, null for one process (the trainer holds the same one).
TrainResult run_training(const nlohmann::json& config, const RunOptions& options, Task& task, Trainer& trainer,
                         data::DataLoader& loader, dist::Communicator* comm, const RunHooks& hooks);

// Loader options for training from a config's data keys (frames, image_size, max_text_len, batch_size,
// seed, workers, prefetch, augment.*): this rank's share comes from rank and world.
data::LoaderOptions training_loader_options(const nlohmann::json& config, int rank, int world, Device device,
                                            bool strict);

// "1:05" or "2:03:04".
std::string format_duration(double seconds);

}  // namespace vb::train
