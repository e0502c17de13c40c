// The training step that every command which trains shares (pretraining today, fine-tuning next), and
// the stream of micro-batches it eats.
//
// A step, in order (Trainer::step):
//   1. prepare   each micro-batch's random choices are drawn (masks), per row, so that a row gets the same
//                draws whichever rank and micro-batch hold it (Generator::advance_rows), and the items of
//                per-item means (masked tokens, masked frames) are counted over the whole step — every
//                micro-batch, every rank (one all-reduce);
//   2. forward   in mixed precision when configured (autograd/autocast.h), each micro-batch's loss as its
//                share of the step's mean (train/tasks.h, StepScope);
//   3. backward  per micro-batch; data parallel, the last one's gradients are averaged across ranks in
//                buckets while it runs (train/data_parallel.h);
//   4. float16's loss scale is taken out (a step with a non-finite gradient is skipped), the gradient
//      norm is measured (across ranks for ZeRO's shards) and clipped;
//   5. the optimizer steps (ZeRO: on this rank's shard, then the parameters are all-gathered).
// The step's loss terms are averaged over ranks for the log, in the same all-reduce that tells every rank
// whether any was asked to stop (a signal), so that all stop after the same step.
//
// On one process without a communicator this is plain (accumulated) training, and with N ranks × batch b
// it computes what one process computes with batch N·b, up to float rounding (docs/DISTRIBUTED.md).
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kernels/dist/communicator.h"
#include "kernels/dist/store.h"
#include "train/data/loader.h"
#include "train/data_parallel.h"
#include "train/optim.h"
#include "train/tasks.h"

namespace vb::train {

struct StepResult {
  std::map<std::string, double> terms;  // the step's mean loss terms over the whole batch (every rank)
  double lr = 0, grad_norm = 0, loss_scale = 1;
  bool skipped = false;  // float16: a non-finite gradient skipped the optimizer step
  bool stop = false;     // some rank was asked to stop: every rank stops after this step
};

class Trainer {
 public:
  // config: the training keys (optimizer, lr, schedule, grad_accum, clip_grad_norm, precision, seed, and
  // the data-parallel keys bucket_cap_mb, zero, sync_bn, freeze_bn). comm: null for one process; otherwise
  // the job's communicator (also of world size 1), and store its rendezvous store (may be null).
  Trainer(Task& task, const nlohmann::json& config, Device device, dist::Communicator* comm = nullptr,
          dist::Store* store = nullptr);

  // One step on this rank's micro-batches (grad_accum of them, on the host or the device). `step` counts
  // from 1 (the learning-rate schedule's step); stop_requested: this rank wants to stop after it.
  StepResult step(const std::vector<data::Batch>& micro_batches, int64_t step, bool stop_requested = false);

  Optimizer& optimizer() { return *optimizer_; }
  Device device() const { return device_; }
  LossScaler& scaler() { return scaler_; }
  Generator& generator() { return gen_; }  // masks and negatives (the model's dropout uses the default one)
  DataParallel* data_parallel() { return ddp_.get(); }
  dist::Communicator* comm() { return comm_; }
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int world() const { return comm_ ? comm_->size() : 1; }
  // Whether `local` holds on every rank (one all-reduce; no communication on one process).
  bool all_ranks(bool local);

 private:
  Task& task_;
  Device device_;
  dist::Communicator* comm_;
  std::unique_ptr<DataParallel> ddp_;
  std::unique_ptr<Optimizer> optimizer_;
  Schedule schedule_;
  LossScaler scaler_;
  Generator gen_;
  std::optional<DType> low_precision_;
  bool fp16_ = false;
  int64_t accum_;
  double max_norm_;
};

// The micro-batches of successive steps, epoch after epoch. The position is counted in global samples
// (every rank's) from the start of the epoch, so that a checkpoint written by one world size and batch
// size resumes on another: the loader deals blocks from there (train/data/loader.h). An epoch ends when
// fewer samples are left than one step takes (world × batch_size × grad_accum); the rest are dropped, as
// drop_last does.
class BatchStream {
 public:
  BatchStream(data::DataLoader& loader, int world, int64_t grad_accum);
  // Continues at global sample `sample` of epoch `epoch` (a resumed run).
  void seek(int64_t epoch, int64_t sample);
  // This rank's grad_accum micro-batches of the next step.
  std::vector<data::Batch> next_step();
  int64_t epoch() const { return epoch_; }
  int64_t sample() const { return sample_; }  // the position after the last step
  int64_t samples_per_step() const { return per_step_; }

 private:
  data::DataLoader& loader_;
  int64_t accum_, per_step_, clips_;
  int64_t epoch_ = 0, sample_ = 0;
  bool started_ = false;
};

}  // namespace vb::train
