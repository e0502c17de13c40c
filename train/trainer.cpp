#include "train/trainer.h"

#include <cmath>

#include "autograd/autocast.h"
#include "nn/layers.h"

namespace vb::train {

namespace {

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& c, const nn::Module& model, DataParallel* ddp) {
  const double wd = c["weight_decay"];
  if (c["optimizer"] == "sgd") {
    VB_CHECK(!ddp || !ddp->sharded(), "config: zero = 1 shards AdamW's moments; optimizer sgd has no sharded form "
             "(use optimizer=adamw or zero=0)");
    return std::make_unique<SGD>(decay_groups(model), c["momentum"].get<double>(), wd);
  }
  if (ddp && ddp->sharded()) return ddp->zero_optimizer(c["beta1"], c["beta2"], c["eps"], wd);
  return std::make_unique<AdamW>(decay_groups(model), c["beta1"].get<double>(), c["beta2"].get<double>(),
                                 c["eps"].get<double>(), wd);
}

// One all-reduce of a few host numbers (float64) over the communicator's device.
std::vector<double> all_reduce_values(dist::Communicator& comm, const std::vector<double>& values, dist::ReduceOp op) {
  if (values.empty()) return values;
  Tensor t = to(Tensor::from_vector(values, {int64_t(values.size())}, DType::Float64), comm.device());
  comm.all_reduce(t, op)->wait();
  return t.to_vector();
}

// Sets a generator's place for micro-batch m of M on rank r of w (Generator::advance_rows).
void place(Generator& g, uint64_t offset, int64_t m, int64_t micro, int rank, int world) {
  g.offset = offset;
  g.shard = uint64_t(m * world + rank);
  g.shards = uint64_t(micro * world);
}

}  // namespace

Trainer::Trainer(Task& task, const nlohmann::json& c, Device device, dist::Communicator* comm, dist::Store* store)
    : task_(task),
      device_(device),
      comm_(comm),
      schedule_{c["lr"], c["warmup_steps"], c["steps"], c["schedule"] == "cosine", c["min_lr_ratio"]},
      gen_{c["seed"].get<uint64_t>() + 1, 0},
      accum_(c["grad_accum"]),
      max_norm_(c["clip_grad_norm"]) {
  nn::Module& model = task_.module();
  nn::configure_batch_norm(model, c["sync_bn"].get<bool>() ? comm : nullptr, c["freeze_bn"]);
  if (comm_) {
    DataParallelOptions o;
    o.bucket_cap_mb = c["bucket_cap_mb"];
    o.zero = c["zero"];
    o.broadcast_buffers = !c["sync_bn"].get<bool>();  // with SyncBatchNorm every rank's statistics are alike
    ddp_ = std::make_unique<DataParallel>(*comm_, store, model, decay_groups(model), o);
    ddp_->synchronize_module();
  }
  optimizer_ = make_optimizer(c, model, ddp_.get());
  // Mixed precision: bfloat16 on any device (the CPU's products on AMX tiles where it has them), float16 on
  // a GPU only (the CPU has no fast float16 products; pretrain() says so).
  if (c["precision"] == "bfloat16" || (c["precision"] == "float16" && !device.is_cpu())) {
    low_precision_ = c["precision"] == "float16" ? DType::Float16 : DType::BFloat16;
    fp16_ = c["precision"] == "float16";
  }
}

bool Trainer::all_ranks(bool local) {
  if (!comm_ || comm_->size() == 1) return local;
  return all_reduce_values(*comm_, {local ? 1.0 : 0.0}, dist::ReduceOp::Min)[0] != 0;
}

StepResult Trainer::step(const std::vector<data::Batch>& micro_batches, int64_t step, bool stop_requested) {
  const auto micro = int64_t(micro_batches.size());
  VB_CHECK(micro >= 1, "trainer: a step needs at least one micro-batch");
  const int r = rank(), w = world();
  Generator& dropout_gen = default_generator();
  const uint64_t gen_start = gen_.offset, dropout_start = dropout_gen.offset;

  // 1. Random choices per micro-batch, and the step's item counts over every micro-batch and rank.
  std::vector<MicroBatch> prepared;
  std::vector<uint64_t> after_prepare;
  StepScope scope;
  scope.comm = comm_;
  scope.shares = micro * w;
  for (int64_t m = 0; m < micro; ++m) {
    place(gen_, gen_start, m, micro, r, w);
    prepared.push_back(task_.prepare(data::to_device(micro_batches[size_t(m)], device_), gen_));
    after_prepare.push_back(gen_.offset);
    for (auto& [k, v] : prepared.back().counts) scope.totals[k] += v;
  }
  if (comm_ && w > 1 && !scope.totals.empty()) {
    std::vector<double> counts;
    for (auto& [k, v] : scope.totals) counts.push_back(v);
    counts = all_reduce_values(*comm_, counts, dist::ReduceOp::Sum);
    size_t i = 0;
    for (auto& [k, v] : scope.totals) v = counts[i++];
  }

  // 2–3. Forward and backward of each micro-batch; the last backward communicates.
  optimizer_->zero_grad();
  if (ddp_) ddp_->broadcast_buffers();
  std::map<std::string, double> terms;
  for (int64_t m = 0; m < micro; ++m) {
    place(gen_, after_prepare[size_t(m)], m, micro, r, w);
    place(dropout_gen, dropout_start, m, micro, r, w);
    std::map<std::string, Tensor> losses;
    {
      std::optional<AutocastGuard> autocast;
      if (low_precision_) autocast.emplace(*low_precision_);
      losses = task_.losses(prepared[size_t(m)], scope, gen_);
    }
    Tensor loss = mul(losses.at("loss"), (fp16_ ? scaler_.scale() : 1.0) / double(micro));
    if (ddp_) ddp_->begin_backward(loss, m == micro - 1);
    backward(loss);
    for (auto& [k, v] : losses) terms[k] += v.item() / double(micro);
  }
  // Every micro-batch ends at the same offsets; the next step starts there, unsharded.
  for (Generator* g : {&gen_, &dropout_gen}) {
    g->shard = 0;
    g->shards = 1;
  }
  if (ddp_) ddp_->end_backward();

  StepResult result;
  result.stop = stop_requested;
  if (comm_ && w > 1) {  // the log's terms over every rank, and whether any rank stops
    std::vector<double> values;
    for (auto& [k, v] : terms) values.push_back(v);
    values.push_back(stop_requested ? 1.0 : 0.0);
    values = all_reduce_values(*comm_, values, dist::ReduceOp::Avg);
    size_t i = 0;
    for (auto& [k, v] : terms) v = values[i++];
    result.stop = values.back() > 0;
  }
  result.terms = terms;

  // 4. Loss scale, norm, clipping — over every rank's shard with ZeRO.
  std::vector<Tensor> grads;
  if (ddp_) grads = ddp_->gradients();
  else
    for (auto& p : optimizer_->params())
      if (p.param.grad().defined()) grads.push_back(p.param.grad());
  const bool sharded = ddp_ && ddp_->sharded();
  if (fp16_) {
    bool finite = scaler_.unscale(grads);
    if (sharded) finite = all_ranks(finite);
    scaler_.update(finite);
    result.skipped = !finite;
  }
  double squares = sum_of_squares(grads);
  if (sharded && w > 1) squares = all_reduce_values(*comm_, {squares}, dist::ReduceOp::Sum)[0];
  result.grad_norm = std::sqrt(squares);
  // The clip's factor goes to the optimizer, which scales each gradient as it reads it (AdamW's fused step:
  // no pass of its own over the gradients; the same bits as scaling them in place first).
  const double clip = max_norm_ > 0 ? clip_factor(result.grad_norm, max_norm_) : 1.0;

  // 5. The update.
  result.lr = schedule_.lr(step);
  if (!result.skipped) optimizer_->step(result.lr, clip);
  result.loss_scale = fp16_ ? scaler_.scale() : 1.0;
  return result;
}

BatchStream::BatchStream(data::DataLoader& loader, int world, int64_t grad_accum)
    : loader_(loader),
      accum_(grad_accum),
      per_step_(int64_t(world) * loader.options().batch_size * grad_accum),
      clips_(int64_t(loader.clips().size())) {
  VB_CHECK(per_step_ <= clips_, "training data: one step takes {} samples ({} rank{} × batch_size {} × grad_accum {}), "
           "but the train split has only {} clips", per_step_, world, world == 1 ? "" : "s", loader.options().batch_size,
           grad_accum, clips_);
}

void BatchStream::seek(int64_t epoch, int64_t sample) {
  VB_CHECK(epoch >= 0 && sample >= 0, "training data: position epoch {} sample {} is negative", epoch, sample);
  epoch_ = epoch;
  sample_ = sample;
  loader_.start_epoch(epoch_, sample_);
  started_ = true;
}

std::vector<data::Batch> BatchStream::next_step() {
  if (!started_) seek(0, 0);
  if (clips_ - sample_ < per_step_) seek(epoch_ + 1, 0);
  std::vector<data::Batch> out;
  bool refilled = false;
  while (int64_t(out.size()) < accum_) {
    if (auto b = loader_.next()) {
      out.push_back(std::move(*b));
      continue;
    }
    // This rank skipped unreadable samples and ran out before the others: it fills the step from the next
    // epoch's order (the other ranks are unaffected; the world agrees on epochs by counting samples).
    VB_CHECK(!refilled, "training data: no full batch of readable samples in epoch {} either (see the warnings "
             "above)", epoch_ + 1);
    refilled = true;
    loader_.start_epoch(epoch_ + 1, 0);
  }
  sample_ += per_step_;
  return out;
}

}  // namespace vb::train
