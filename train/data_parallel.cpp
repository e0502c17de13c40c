#include "train/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "kernels/backend.h"

namespace vb::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0, Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); }

// A contiguous 1-d view of n elements of t's storage starting at element `offset` of t.
Tensor flat_view(const Tensor& t, int64_t offset, int64_t n) { return t.as_strided({n}, {1}, t.offset() + offset); }

// The view of `shape` at element `offset` of the flat buffer.
Tensor shaped_view(const Tensor& flat, int64_t offset, const Shape& shape) {
  return flat.as_strided(shape, contiguous_strides(shape), flat.offset() + offset);
}

// Copies tensors of one dtype through a flat buffer broadcast from rank 0: one collective instead of one
// per tensor.
void broadcast_tensors(dist::Communicator& comm, std::vector<Tensor> tensors) {
  std::map<DType, std::vector<Tensor>> by_dtype;
  for (Tensor& t : tensors) by_dtype[t.dtype()].push_back(t);
  NoGradGuard no_grad;
  for (auto& [dtype, group] : by_dtype) {
    int64_t n = 0;
    for (const Tensor& t : group) n += t.numel();
    Tensor flat = Tensor::empty({n}, dtype, comm.device());
    int64_t at = 0;
    for (const Tensor& t : group) {
      Tensor dst = shaped_view(flat, at, t.shape());
      backend(flat.device()).copy(t, dst);
      at += t.numel();
    }
    comm.broadcast(flat, 0)->wait();
    at = 0;
    for (Tensor t : group) {
      copy_(t, shaped_view(flat, at, t.shape()));
      at += t.numel();
    }
  }
}

std::string describe_module(const nn::Module& model) {
  std::string out;
  for (bool params : {true, false})
    for (auto& [name, t] : params ? model.named_parameters() : model.named_buffers())
      out += fmt::format("{} {} {} {}\n", params ? "parameter" : "buffer", name, shape_str(t.shape()), t.dtype());
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    out.push_back(text.substr(start, end - start));
    start = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

std::atomic<int> g_instances{0};  // names this process's DataParallel objects in the store, alike on every rank

}  // namespace

struct DataParallel::State {
  struct Bucket {
    std::vector<size_t> params;   // indices into `params`
    std::vector<int64_t> offsets; // each parameter's first element in `flat`
    int64_t numel = 0, padded = 0;
    Tensor flat;   // (padded) gradients, the collective's input (and all-reduce's output)
    Tensor shard;  // ZeRO: (padded / world) this rank's averaged shard
    size_t pending = 0;
    std::shared_ptr<dist::Work> work;
    Clock::time_point launched, done;
    bool seen_done = false;
  };

  State(dist::Communicator& c, dist::Store* s, nn::Module& m, std::vector<ParamRef> p, DataParallelOptions o)
      : comm(c), store(s), model(m), params(std::move(p)), options(o), instance(g_instances++) {}

  dist::Communicator& comm;
  dist::Store* store;
  nn::Module& model;
  std::vector<ParamRef> params;
  DataParallelOptions options;
  int instance;
  std::vector<Bucket> buckets;
  std::vector<std::pair<size_t, size_t>> where;  // parameter → (bucket, slot)
  std::vector<char> ready, used, globally_used;
  bool sync = false;
  size_t next_launch = 0;
  Clock::time_point backward_start;
  OverlapStats overlap;

  int world() const { return comm.size(); }

  void build_buckets() {
    const double first_cap = std::min(options.first_bucket_mb, options.bucket_cap_mb) * 1e6;
    const double cap = options.bucket_cap_mb * 1e6;
    where.assign(params.size(), {0, 0});
    for (size_t k = params.size(); k-- > 0;) {  // reverse registration order
      const Tensor& p = params[k].param;
      const double bytes = double(p.numel() * p.element_size());
      const double limit = buckets.size() <= 1 ? first_cap : cap;
      const bool full = !buckets.empty() && buckets.back().numel > 0 &&
                        (double(buckets.back().numel * p.element_size()) + bytes > limit ||
                         params[buckets.back().params.front()].param.dtype() != p.dtype());
      if (buckets.empty() || full) {
        buckets.emplace_back();
      }
      Bucket& b = buckets.back();
      where[k] = {buckets.size() - 1, b.params.size()};
      b.params.push_back(k);
      b.offsets.push_back(b.numel);
      b.numel += p.numel();
    }
    for (Bucket& b : buckets) {
      const DType dtype = params[b.params.front()].param.dtype();
      b.padded = (b.numel + world() - 1) / world() * world();
      b.flat = zeros({b.padded}, dtype, comm.device());
      if (options.zero) b.shard = zeros({b.padded / world()}, dtype, comm.device());
    }
  }

  Tensor grad_slot(size_t i) const {
    const auto [k, slot] = where[i];
    return shaped_view(buckets[k].flat, buckets[k].offsets[slot], params[i].param.shape());
  }

  void poll_done() {
    for (size_t k = 0; k < next_launch; ++k) {
      Bucket& b = buckets[k];
      if (!b.seen_done && b.work->completed()) {
        b.seen_done = true;
        b.done = Clock::now();
      }
    }
  }

  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      Bucket& b = buckets[next_launch++];
      b.launched = Clock::now();
      b.seen_done = false;
      b.work = options.zero ? comm.reduce_scatter(b.flat, b.shard, dist::ReduceOp::Avg)
                            : comm.all_reduce(b.flat, dist::ReduceOp::Avg);
    }
  }

  // Parameter i's gradient of this step is final: into its bucket (zeros when it has none).
  void mark_ready(size_t i, const Tensor& g) {
    if (ready[i]) return;
    ready[i] = 1;
    NoGradGuard no_grad;
    Tensor dst = grad_slot(i);
    if (g.defined()) copy_(dst, g);
    else fill_(dst, 0.0);
    --buckets[where[i].first].pending;
    launch_ready();
  }

  void on_grad(size_t i, const Tensor& g) {
    used[i] = 1;
    if (!sync) return;
    poll_done();
    mark_ready(i, g);
  }
};

DataParallel::DataParallel(dist::Communicator& comm, dist::Store* store, nn::Module& model,
                           std::vector<ParamRef> params, DataParallelOptions options)
    : state_(std::make_shared<State>(comm, store, model, std::move(params), options)) {
  State& s = *state_;
  VB_CHECK(options.zero == 0 || options.zero == 1, "data parallel: zero = {}; stages 0 and 1 exist", options.zero);
  VB_CHECK(options.bucket_cap_mb > 0, "data parallel: bucket_cap_mb = {}, expected > 0", options.bucket_cap_mb);
  for (const ParamRef& p : s.params) {
    VB_CHECK(p.param.device() == comm.device(), "data parallel: parameter '{}' is on {}, the communicator's device is {}",
             p.name, p.param.device(), comm.device());
    VB_CHECK(p.param.is_contiguous(), "data parallel: parameter '{}' (shape {}) must be contiguous", p.name,
             shape_str(p.param.shape()));
  }
  s.build_buckets();
  s.ready.assign(s.params.size(), 0);
  s.used.assign(s.params.size(), 0);
  s.globally_used.assign(s.params.size(), 1);
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.params.size(); ++i) {
    Tensor p = s.params[i].param;
    p.register_hook([weak, i](const Tensor& g) {
      if (auto st = weak.lock()) st->on_grad(i, g);
    });
  }
}

DataParallel::~DataParallel() {
  // Collectives still in flight read our buckets: let them finish (or fail) first.
  for (auto& b : state_->buckets)
    if (b.work) try {
        b.work->wait();
      } catch (const Error&) {
      }
}

dist::Communicator& DataParallel::comm() const { return state_->comm; }
bool DataParallel::sharded() const { return state_->options.zero == 1; }
const OverlapStats& DataParallel::last_overlap() const { return state_->overlap; }

std::string DataParallel::describe() const {
  std::vector<std::string> sizes;
  for (const auto& b : state_->buckets) sizes.push_back(fmt::format("{:.1f}", double(b.numel * 4) / 1e6));
  return fmt::format("{} bucket{} ({} MB), {}", state_->buckets.size(), state_->buckets.size() == 1 ? "" : "s",
                     fmt::join(sizes, ", "), sharded() ? "reduce-scatter + ZeRO-1" : "all-reduce");
}

void DataParallel::synchronize_module() {
  State& s = *state_;
  const std::string mine = describe_module(s.model);
  if (s.store) {
    const std::string key = fmt::format("data_parallel/{}/module", s.instance);
    if (s.comm.rank() == 0) s.store->set(key, mine);
    const std::string first = s.store->get(key);
    if (first != mine) {
      const auto a = lines(first), b = lines(mine);
      size_t i = 0;
      while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
      fail("[rank {}] data parallel: this rank's model differs from rank 0's at entry {}: rank 0 has {}, rank {} has "
           "{}. Every rank must build the same model (the same configuration, vocabulary and presets)",
           s.comm.rank(), i, i < a.size() ? "'" + a[i] + "'" : "nothing more", s.comm.rank(),
           i < b.size() ? "'" + b[i] + "'" : "nothing more");
    }
  } else {
    // Without a store: compare a hash of the description (min and max over ranks agree only if all do).
    const double h = double(std::hash<std::string>{}(mine) % (uint64_t(1) << 52));
    Tensor lo = to(Tensor::from_vector(std::vector<double>{h}, {1}, DType::Float64), s.comm.device());
    Tensor hi = clone(lo);
    s.comm.all_reduce(lo, dist::ReduceOp::Min)->wait();
    s.comm.all_reduce(hi, dist::ReduceOp::Max)->wait();
    VB_CHECK(lo.item() == hi.item(), "[rank {}] data parallel: the ranks' models differ (parameter names, shapes or "
             "dtypes); every rank must build the same model", s.comm.rank());
  }
  std::vector<Tensor> all;
  for (auto& [name, t] : s.model.named_parameters()) all.push_back(t);
  for (auto& [name, t] : s.model.named_buffers()) all.push_back(t);
  broadcast_tensors(s.comm, all);
}

void DataParallel::broadcast_buffers() {
  State& s = *state_;
  if (!s.options.broadcast_buffers || s.world() == 1) return;
  std::vector<Tensor> buffers;
  for (auto& [name, t] : s.model.named_buffers()) buffers.push_back(t);
  if (!buffers.empty()) broadcast_tensors(s.comm, buffers);
}

void DataParallel::begin_backward(const Tensor& loss, bool sync) {
  State& s = *state_;
  s.sync = sync;
  if (!sync) return;
  VB_CHECK(s.next_launch == 0 || s.next_launch == s.buckets.size(),
           "data parallel: begin_backward while the previous step's buckets are still being filled");
  std::fill(s.ready.begin(), s.ready.end(), 0);
  for (auto& b : s.buckets) b.pending = b.params.size();
  s.next_launch = 0;
  s.backward_start = Clock::now();
  // Parameters this graph does not reach: their gradient (from earlier micro-steps, or none) is final now.
  std::unordered_map<TensorImpl*, size_t> index;
  for (size_t i = 0; i < s.params.size(); ++i) index[s.params[i].param.impl()] = i;
  std::vector<char> reached(s.params.size(), 0);
  for (TensorImpl* leaf : reachable_leaves(loss))
    if (auto it = index.find(leaf); it != index.end()) reached[it->second] = 1;
  for (size_t i = 0; i < s.params.size(); ++i)
    if (!reached[i]) s.mark_ready(i, s.params[i].param.grad());
}

void DataParallel::end_backward() {
  State& s = *state_;
  VB_CHECK(s.sync, "data parallel: end_backward without a communicating begin_backward");
  const Clock::time_point backward_end = Clock::now();
  // A reached parameter whose gradient never arrived (every path to it carried none).
  for (size_t i = 0; i < s.params.size(); ++i)
    if (!s.ready[i]) s.mark_ready(i, s.params[i].param.grad());
  // Which parameters any rank used in any micro-step of this step.
  std::vector<double> flags(s.used.begin(), s.used.end());
  Tensor used = to(Tensor::from_vector(flags, {int64_t(flags.size())}, DType::Float32), s.comm.device());
  auto used_work = s.comm.all_reduce(used, dist::ReduceOp::Max);
  for (auto& b : s.buckets) {
    b.work->wait();
    if (!b.seen_done) {
      b.seen_done = true;
      b.done = Clock::now();
    }
  }
  used_work->wait();
  const std::vector<double> any = used.to_vector();
  for (size_t i = 0; i < s.params.size(); ++i) s.globally_used[i] = any[i] != 0;
  std::fill(s.used.begin(), s.used.end(), 0);
  s.sync = false;

  for (size_t i = 0; i < s.params.size(); ++i) {
    Tensor p = s.params[i].param;
    p.set_grad(!sharded() && s.globally_used[i] ? s.grad_slot(i) : Tensor());
  }

  // Overlap: the union of the buckets' in-flight intervals (they run one after another), and its part
  // after backward ended.
  OverlapStats o;
  o.backward_s = seconds_since(s.backward_start, backward_end);
  o.buckets = int(s.buckets.size());
  Clock::time_point covered = s.backward_start;
  for (auto& b : s.buckets) {
    const Clock::time_point from = std::max(b.launched, covered);
    if (b.done > from) {
      o.comm_s += seconds_since(from, b.done);
      o.exposed_s += seconds_since(std::max(from, backward_end), std::max(b.done, backward_end));
      covered = b.done;
    }
  }
  s.overlap = o;
}

std::vector<Tensor> DataParallel::gradients() const {
  std::vector<Tensor> out;
  if (sharded()) {
    for (auto& b : state_->buckets) out.push_back(b.shard);
  } else {
    for (auto& p : state_->params)
      if (p.param.grad().defined()) out.push_back(p.param.grad());
  }
  return out;
}

// ---------------------------------------------------------------- ZeRO-1 AdamW

namespace {

// The part of one parameter that lies in this rank's shard of its bucket.
struct Piece {
  size_t param;             // index into params
  int64_t param_begin;      // first element within the parameter
  int64_t shard_begin;      // first element within the shard
  int64_t length;
};

class ZeroAdamW final : public Optimizer {
 public:
  ZeroAdamW(std::shared_ptr<DataParallel::State> s, double beta1, double beta2, double eps, double weight_decay);
  using Optimizer::step;
  void step(double lr, double grad_scale) override;
  nn::NamedTensors state_tensors() const override;
  void load_state_tensors(const nn::NamedTensors& state) override;

 private:
  std::shared_ptr<DataParallel::State> s_;
  double beta1_, beta2_, eps_, weight_decay_;
  std::vector<std::vector<Piece>> pieces_;  // per bucket
  std::vector<Tensor> m_, v_;               // per bucket: this rank's shard, float32
};

}  // namespace

std::unique_ptr<Optimizer> DataParallel::zero_optimizer(double beta1, double beta2, double eps, double weight_decay) {
  VB_CHECK(sharded(), "data parallel: zero_optimizer needs zero = 1");
  return std::make_unique<ZeroAdamW>(state_, beta1, beta2, eps, weight_decay);
}

namespace {

ZeroAdamW::ZeroAdamW(std::shared_ptr<DataParallel::State> s, double beta1, double beta2, double eps,
                     double weight_decay)
    : Optimizer(s->params), s_(std::move(s)), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {
  const int r = s_->comm.rank();
  for (const auto& b : s_->buckets) {
    const int64_t c = b.padded / s_->world(), lo = r * c, hi = lo + c;
    std::vector<Piece> pieces;
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      const int64_t begin = b.offsets[slot], end = begin + s_->params[b.params[slot]].param.numel();
      const int64_t from = std::max(begin, lo), to_ = std::min(end, hi);
      if (from < to_) pieces.push_back({b.params[slot], from - begin, from - lo, to_ - from});
    }
    pieces_.push_back(std::move(pieces));
    m_.push_back(zeros({c}, DType::Float32, s_->comm.device()));
    v_.push_back(zeros({c}, DType::Float32, s_->comm.device()));
  }
}

void ZeroAdamW::step(double lr, double grad_scale) {
  NoGradGuard no_grad;
  ++steps_;
  const AdamWStep h = adamw_scalars(lr, beta1_, beta2_, eps_, weight_decay_, steps_, grad_scale);
  std::vector<AdamWSlot> slots;
  for (size_t k = 0; k < s_->buckets.size(); ++k)
    for (const Piece& pc : pieces_[k]) {
      if (!s_->globally_used[pc.param]) continue;  // no gradient anywhere: no update, as on one process
      const ParamRef& p = s_->params[pc.param];
      slots.push_back({flat_view(p.param, pc.param_begin, pc.length), flat_view(s_->buckets[k].shard, pc.shard_begin, pc.length),
                       flat_view(m_[k], pc.shard_begin, pc.length), flat_view(v_[k], pc.shard_begin, pc.length), p.decay});
    }
  if (!slots.empty()) backend(s_->comm.device()).adamw(slots, h);
  // Every rank's updated shard to every rank: the parameters through each bucket's flat buffer (the
  // gradients are consumed, so it serves as the all-gather's output).
  std::vector<std::shared_ptr<dist::Work>> works;
  std::vector<Tensor> shards;
  for (size_t k = 0; k < s_->buckets.size(); ++k) {
    auto& b = s_->buckets[k];
    Tensor shard = zeros({b.padded / s_->world()}, b.flat.dtype(), b.flat.device());
    for (const Piece& pc : pieces_[k]) {
      Tensor dst = flat_view(shard, pc.shard_begin, pc.length);
      copy_(dst, flat_view(s_->params[pc.param].param, pc.param_begin, pc.length));
    }
    shards.push_back(shard);
    works.push_back(s_->comm.all_gather(shard, b.flat));
  }
  for (size_t k = 0; k < s_->buckets.size(); ++k) {
    works[k]->wait();
    auto& b = s_->buckets[k];
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      Tensor p = s_->params[b.params[slot]].param;
      copy_(p, shaped_view(b.flat, b.offsets[slot], p.shape()));
    }
  }
}

nn::NamedTensors ZeroAdamW::state_tensors() const {
  nn::NamedTensors out;
  std::vector<Tensor> m_full, v_full;
  std::vector<std::shared_ptr<dist::Work>> works;
  for (size_t k = 0; k < s_->buckets.size(); ++k) {
    m_full.push_back(Tensor::empty({s_->buckets[k].padded}, DType::Float32, s_->comm.device()));
    v_full.push_back(Tensor::empty({s_->buckets[k].padded}, DType::Float32, s_->comm.device()));
    works.push_back(s_->comm.all_gather(m_[k], m_full.back()));
    works.push_back(s_->comm.all_gather(v_[k], v_full.back()));
  }
  for (auto& w : works) w->wait();
  // In the optimizer's parameter order, named as AdamW names them: the same checkpoint for any world size.
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto [k, slot] = s_->where[i];
    const int64_t off = s_->buckets[k].offsets[slot];
    out.emplace_back(params_[i].name + ".exp_avg", clone(shaped_view(m_full[k], off, params_[i].param.shape())));
    out.emplace_back(params_[i].name + ".exp_avg_sq", clone(shaped_view(v_full[k], off, params_[i].param.shape())));
  }
  return out;
}

void ZeroAdamW::load_state_tensors(const nn::NamedTensors& state) {
  NoGradGuard no_grad;
  auto find = [&](const std::string& name, const Shape& shape) -> Tensor {
    for (auto& [n, t] : state)
      if (n == name) {
        VB_CHECK(t.shape() == shape, "optimizer state \"{}\": shape {} for a parameter of shape {}", name,
                 shape_str(t.shape()), shape_str(shape));
        return contiguous(to(to(t, DType::Float32), s_->comm.device()));
      }
    fail("optimizer state: no tensor \"{}\" in the checkpoint", name);
  };
  for (size_t k = 0; k < s_->buckets.size(); ++k)
    for (const Piece& pc : pieces_[k]) {
      const ParamRef& p = s_->params[pc.param];
      Tensor m = find(p.name + ".exp_avg", p.param.shape()), v = find(p.name + ".exp_avg_sq", p.param.shape());
      Tensor dm = flat_view(m_[k], pc.shard_begin, pc.length), dv = flat_view(v_[k], pc.shard_begin, pc.length);
      copy_(dm, flat_view(m, pc.param_begin, pc.length));
      copy_(dv, flat_view(v, pc.param_begin, pc.length));
    }
}

}  // namespace

}  // namespace vb::train
