// The backend-independent half of every communicator: argument checks, sequence numbers, uneven shards
// (padded to equal ones around the backend's collective) and the messages of failures.
#include "kernels/dist/communicator.h"

#include <algorithm>

#include "kernels/backend.h"
#include "kernels/dist/store.h"

namespace vb::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

ShardRange shard_range(int64_t n, int world, int rank) {
  VB_CHECK(world >= 1 && rank >= 0 && rank < world && n >= 0, "shard_range: rank {} of world {} for {} elements",
           rank, world, n);
  const int64_t c = (n + world - 1) / world;
  return {std::min(n, rank * c), std::min(n, (rank + 1) * c)};
}

std::string Communicator::Call::describe() const {
  if (std::string(name) == "barrier") return fmt::format("barrier #{}", seq);
  std::string what = fmt::format("{} #{} ({} × {}", name, seq, count, dtype_name(dtype));
  if (std::string(name) == "all_reduce" || std::string(name) == "reduce_scatter") what += fmt::format(", {}", reduce_op_name(op));
  if (std::string(name) == "broadcast") what += fmt::format(", root {}", root);
  return what + ")";
}

std::string Communicator::prefixed(const std::string& what) const { return fmt::format("[rank {}] {}", rank_, what); }

namespace {

bool reducible(DType t) {
  return t == DType::Float32 || t == DType::BFloat16 || t == DType::Float16 || t == DType::Float64 ||
         t == DType::Int32 || t == DType::Int64;
}

// A collective whose result still has to be copied into the caller's tensor (uneven shards).
class CopyOutWork final : public Work {
 public:
  CopyOutWork(std::shared_ptr<Work> inner, std::function<void()> copy_out)
      : inner_(std::move(inner)), copy_out_(std::move(copy_out)) {}
  void wait() override {
    inner_->wait();
    finish();
  }
  bool completed() override {
    if (!copied_ && inner_->completed()) finish();
    return copied_;
  }

 private:
  void finish() {
    if (copied_) return;
    copy_out_();
    copied_ = true;
  }
  std::shared_ptr<Work> inner_;
  std::function<void()> copy_out_;
  bool copied_ = false;
};

// The same memory seen as int64 where it holds float64 on a GPU-backed device: the cuda and emu backends
// copy and fill no float64, and moving bits is all that the padding below needs.
Tensor movable(const Tensor& t) {
  if (t.dtype() != DType::Float64 || t.device().is_cpu()) return t;
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl()->storage;
  impl->shape = t.shape();
  impl->strides = t.strides();
  impl->offset = t.offset();
  impl->dtype = DType::Int64;
  return Tensor(std::move(impl));
}

// dst[0, n) ← src[0, n), both contiguous on one device.
void copy_head(const Tensor& src, const Tensor& dst, int64_t n) {
  if (n == 0) return;
  Tensor head = movable(dst).as_strided({n}, {1}, dst.offset());
  backend(src.device()).copy(movable(src).as_strided({n}, {1}, src.offset()), head);
}

// A contiguous tensor of n elements whose first src.numel() are src and the rest zero, on src's device.
Tensor padded_copy(const Tensor& src, int64_t n) {
  Tensor out = Tensor::empty({n}, src.dtype(), src.device());
  Tensor bits = movable(out);
  backend(src.device()).fill(bits, 0.0);
  copy_head(src, out, src.numel());
  return out;
}

}  // namespace

Communicator::Call Communicator::next_call(const char* name, int64_t count, DType dtype, ReduceOp op, int root) {
  Call c{seq_++, name, count, dtype, op, root};
  if (store_) store_->report_progress(c.seq);
  return c;
}

#define VB_COMM_CHECK_TENSOR(t, what)                                                                              \
  do {                                                                                                            \
    VB_CHECK((t).defined(), "{}: {} is undefined", prefixed(what), #t);                                           \
    VB_CHECK((t).device() == device_, "{}: {} is on {}, but this communicator's device is {}", prefixed(what), #t, \
             (t).device(), device_);                                                                              \
    VB_CHECK((t).is_contiguous(), "{}: {} (shape {}) must be contiguous", prefixed(what), #t,                    \
             shape_str((t).shape()));                                                                             \
    VB_CHECK(reducible((t).dtype()), "{}: {} is {}; collectives take float32, bfloat16, float16, float64, int32 " \
             "or int64", prefixed(what), #t, (t).dtype());                                                        \
  } while (0)

std::shared_ptr<Work> Communicator::all_reduce(Tensor& t, ReduceOp op) {
  VB_COMM_CHECK_TENSOR(t, "all_reduce");
  return do_all_reduce(next_call("all_reduce", t.numel(), t.dtype(), op, 0), t);
}

std::shared_ptr<Work> Communicator::broadcast(Tensor& t, int root) {
  VB_COMM_CHECK_TENSOR(t, "broadcast");
  VB_CHECK(root >= 0 && root < size_, "{}: root {} is not a rank of this job (0 … {})", prefixed("broadcast"), root,
           size_ - 1);
  return do_broadcast(next_call("broadcast", t.numel(), t.dtype(), ReduceOp::Sum, root), t);
}

std::shared_ptr<Work> Communicator::reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op) {
  VB_COMM_CHECK_TENSOR(input, "reduce_scatter");
  VB_COMM_CHECK_TENSOR(output, "reduce_scatter");
  VB_CHECK(input.dtype() == output.dtype(), "{}: input is {} but output is {}", prefixed("reduce_scatter"),
           input.dtype(), output.dtype());
  const int64_t n = input.numel(), c = (n + size_ - 1) / size_;
  const ShardRange mine = shard_range(n, size_, rank_);
  VB_CHECK(output.numel() == mine.size(), "{}: rank {}'s shard of {} elements holds {} (elements [{}, {})), but the "
           "output has {}", prefixed("reduce_scatter"), rank_, n, mine.size(), mine.begin, mine.end, output.numel());
  const Call call = next_call("reduce_scatter", c, input.dtype(), op, 0);
  if (n == c * size_) return do_reduce_scatter(call, input, output);
  Tensor in = padded_copy(input, c * size_);
  Tensor out = Tensor::empty({c}, output.dtype(), device_);
  auto work = do_reduce_scatter(call, in, out);
  Tensor dst = output;
  return std::make_shared<CopyOutWork>(work, [in, out, dst] { copy_head(out, dst, dst.numel()); });
}

std::shared_ptr<Work> Communicator::all_gather(const Tensor& input, Tensor& output) {
  VB_COMM_CHECK_TENSOR(input, "all_gather");
  VB_COMM_CHECK_TENSOR(output, "all_gather");
  VB_CHECK(input.dtype() == output.dtype(), "{}: input is {} but output is {}", prefixed("all_gather"),
           input.dtype(), output.dtype());
  const int64_t n = output.numel(), c = (n + size_ - 1) / size_;
  const ShardRange mine = shard_range(n, size_, rank_);
  VB_CHECK(input.numel() == mine.size(), "{}: rank {}'s shard of {} elements holds {} (elements [{}, {})), but the "
           "input has {}", prefixed("all_gather"), rank_, n, mine.size(), mine.begin, mine.end, input.numel());
  const Call call = next_call("all_gather", c, input.dtype(), ReduceOp::Sum, 0);
  if (n == c * size_) return do_all_gather(call, input, output);
  Tensor in = padded_copy(input, c);
  Tensor out = Tensor::empty({c * size_}, output.dtype(), device_);
  auto work = do_all_gather(call, in, out);
  Tensor dst = output;
  // Shard r sits at r·c in the padded result and in the caller's layout alike: the two differ only in
  // the padding after the last element, so the first n elements are the answer.
  return std::make_shared<CopyOutWork>(work, [in, out, dst] { copy_head(out, dst, dst.numel()); });
}

void Communicator::barrier() { do_barrier(next_call("barrier", 0, DType::Float32, ReduceOp::Sum, 0))->wait(); }

std::string Communicator::ranks_behind(const Call& call) const {
  if (!store_) return "";
  try {
    std::vector<std::string> behind;
    const auto status = store_->status();
    for (size_t r = 0; r < status.size(); ++r) {
      if (status[r].exited) behind.push_back(fmt::format("rank {} has exited", r));
      else if (status[r].started < int64_t(call.seq))
        behind.push_back(fmt::format("rank {} {} (last heard from {:.1f} s ago)", r,
                                     status[r].started < 0 ? "has started no collective"
                                                           : fmt::format("last started #{}", status[r].started),
                                     status[r].seconds_silent));
    }
    return fmt::format("{}", fmt::join(behind, "; "));
  } catch (const Error&) {
    return "the rendezvous store on rank 0 does not answer (rank 0 has exited or stalled)";
  }
}

CommError Communicator::timeout_error(const Call& call) const {
  std::string what = fmt::format("{} did not complete within {} s (dist_timeout)", call.describe(), timeout_s_);
  if (store_) {
    const std::string behind = ranks_behind(call);
    what += ": " + (behind.empty() ? std::string("every rank has started it (a slow or stuck transport)") : behind);
  }
  return CommError(prefixed(what));
}

}  // namespace vb::dist
