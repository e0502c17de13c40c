// Data parallelism over a communicator (kernels/dist/communicator.h), as PyTorch's DDP and llm.c do it:
// every rank holds the whole model, computes the gradient of its share of the batch, and the ranks average
// their gradients before the optimizer step, so that every rank takes the same step.
//
// Gradients travel in buckets: flat buffers of about bucket_cap_mb (a smaller first bucket of
// first_bucket_mb, as PyTorch), filled in reverse registration order — roughly the order in which
// backward produces gradients. Each parameter's gradient hook (Tensor::register_hook) copies its gradient
// into its bucket; a bucket whose gradients are all in starts its all-reduce (average) at once, so the
// communication of the last layers overlaps the backward of the first. Buckets start strictly in order, so
// every rank issues the same collectives in the same order. Parameters that the loss's graph does not
// reach are marked ready before backward starts (their bucket would otherwise wait for them); a
// parameter that no rank used in a step keeps no gradient, as on one process (PyTorch's
// find_unused_parameters, with the used-map all-reduced).
//
// With gradient accumulation only the last micro-step's backward communicates (begin_backward's sync):
// the earlier ones accumulate locally, as DDP's no_sync().
//
// ZeRO stage 1 (zero = 1): each bucket is reduce-scattered instead of all-reduced, so that rank r holds
// the averaged gradient of shard r of every bucket (buckets padded to a multiple of the world size); the
// AdamW moments exist only for that shard (zero_optimizer), each rank updates its shard of the parameters,
// and the buckets' parameters are all-gathered after the step. Parameters stay float32 on every rank (the
// master copy; autocast casts per op), so the moments are what is sharded: 8 of the 12 bytes per parameter
// of float32 AdamW training state.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/dist/communicator.h"
#include "kernels/dist/store.h"
#include "train/optim.h"

namespace vb::train {

struct DataParallelOptions {
  double bucket_cap_mb = 25;     // config key bucket_cap_mb
  double first_bucket_mb = 1;    // PyTorch's first bucket; min(this, bucket_cap_mb)
  int zero = 0;                  // config key zero: 0 or 1
  bool broadcast_buffers = true; // rank 0's buffers to every rank before each step (DDP's default)
};

// Host-clock timings of the last communicating backward: when it started and ended, when each bucket's
// collective started and was seen complete.
struct OverlapStats {
  double backward_s = 0;  // begin_backward → end_backward
  double comm_s = 0;      // the time during which some bucket's collective was in flight
  double exposed_s = 0;   // the part of comm_s after backward ended (what the step waited for)
  int buckets = 0;
  // The fraction of the communication time hidden behind backward.
  double hidden_fraction() const { return comm_s > 0 ? 1 - exposed_s / comm_s : 1; }
};

class DataParallel {
 public:
  // params: the model's parameters as the optimizer sees them (decay_groups), each contiguous and on the
  // communicator's device.
  DataParallel(dist::Communicator& comm, dist::Store* store, nn::Module& model, std::vector<ParamRef> params,
               DataParallelOptions options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Checks that every rank holds parameters and buffers of the same names, shapes and dtypes (an Error
  // names the first difference), then copies rank 0's values to every rank.
  void synchronize_module();
  // Rank 0's buffers (BatchNorm's running statistics) to every rank, when options.broadcast_buffers.
  void broadcast_buffers();

  // Before each micro-step's backward: sync = whether this backward ends the accumulation and
  // communicates; loss = its root (the parameters its graph does not reach are ready at once).
  void begin_backward(const Tensor& loss, bool sync);
  // After the communicating backward: waits for every bucket. Then each used parameter's grad is the
  // average over ranks (a view into its bucket), or, with ZeRO, each bucket's shard holds it.
  void end_backward();

  bool sharded() const;
  // The gradients the step reads (clipping, the loss scaler's check): every parameter's gradient, the
  // same on every rank; with ZeRO this rank's bucket shards, whose norms add up across ranks.
  std::vector<Tensor> gradients() const;
  // ZeRO-1 AdamW over this rank's shards (sharded() only). Its state_tensors() is collective (every
  // rank calls it; all get the whole state, in the unsharded format), load_state_tensors takes the
  // whole state and keeps this rank's shard.
  std::unique_ptr<Optimizer> zero_optimizer(double beta1, double beta2, double eps, double weight_decay);

  dist::Communicator& comm() const;
  const OverlapStats& last_overlap() const;
  // "4 buckets (0.9, 24.8, 24.9, 3.1 MB), all-reduce" for the start-up line.
  std::string describe() const;

  struct State;  // data_parallel.cpp: the buckets, shared with the gradient hooks (weakly) and the ZeRO optimizer

 private:
  std::shared_ptr<State> state_;
};

}  // namespace vb::train
