// Checkpoints of a training run, the same whatever the world size that wrote or reads them.
//
//   checkpoints/step_NNNNNNNN/
//     model.safetensors       the parameters and buffers (identical on every rank; rank 0's)
//     optimizer.safetensors   "<param>.exp_avg", "<param>.exp_avg_sq" (AdamW) or ".momentum_buffer" (SGD), whole:
//                             ZeRO's shards are gathered before writing and re-sharded on load
//     state.json              written last: a checkpoint without it is incomplete and ignored. The step,
//                             the data position (epoch and global sample within it), the optimizer's step
//                             count, both generators, the loss scale, and the world size, batch size and
//                             accumulation that wrote it (for the record: any may change on resume)
// Rank 0 writes every file: nothing else differs between ranks (the data position counts global samples,
// the generators advance alike on every rank), so there is no per-rank part to wait for. Each file is
// written atomically (tensor/atomic_file.h).
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/philox.h"

namespace vb::train {

struct TrainState {
  int64_t step = 0;
  int64_t epoch = 0, sample = 0;  // the data position: global samples into the epoch
  int64_t optimizer_steps = 0;
  Generator gen, default_gen;
  double loss_scale = 65536;
  int64_t scaler_clean_steps = 0;
  int world_size = 1;
  int64_t batch_size = 0, grad_accum = 1;

  nlohmann::json to_json() const;
  // Reads state.json; checkpoints written before data parallelism (batch_in_epoch instead of sample) too.
  static TrainState from_json(const nlohmann::json& j, const std::string& source);
};

std::string checkpoint_name(int64_t step);  // "step_00000042"
// Complete checkpoints of a run folder (state.json present), oldest first.
std::vector<std::filesystem::path> complete_checkpoints(const std::filesystem::path& run);
// A run's newest complete weights: its final model.safetensors, else its newest complete checkpoint's.
// `who` begins the error ("eval: …") when there is neither.
std::filesystem::path run_weights(const std::filesystem::path& run, const std::string& who);

// Writes checkpoints/step_NNNNNNNN/ and keeps the newest `keep` complete ones.
void save_checkpoint(const std::filesystem::path& run, const TrainState& state, const nn::NamedTensors& model,
                     const nn::NamedTensors& optimizer, const nlohmann::json& config, size_t keep);

struct LoadedCheckpoint {
  std::filesystem::path path;
  TrainState state;
  nn::NamedTensors model, optimizer;
};
// The newest complete checkpoint of a run; an Error when there is none.
LoadedCheckpoint load_latest_checkpoint(const std::filesystem::path& run);

}  // namespace vb::train
