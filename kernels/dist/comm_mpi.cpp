// The `mpi` communicator (communicator.h) for device cpu, over OpenMPI.
//
// A communication thread runs the collectives one after another in call order: it starts each with a
// non-blocking MPI call (MPI_Iallreduce, MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast,
// MPI_Ibarrier) on its own duplicate of MPI_COMM_WORLD and polls MPI_Test, sleeping between polls so that
// a waiting rank leaves the cores to the OpenMP threads of the ranks beside it. Polling, not MPI_Wait, is
// what lets it give up: after timeout_s (the base class's timeout_error names the ranks behind), or as soon
// as the rendezvous store reports that a rank exited. After a failure MPI is not called again (a
// collective that lost a rank cannot be cancelled); every later collective fails with the first error.
//
// bfloat16 and float16 reduce through user-defined MPI operations that convert to float32, combine and
// round once per step, as communicator.h says. Avg is Sum followed by a division by size() here (integers
// truncate towards zero).
#if defined(VB_HAVE_MPI)
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "kernels/backend.h"
#include "kernels/dist/communicator.h"
#include "kernels/dist/init.h"
#include "kernels/dist/store.h"

namespace vb::dist {

namespace {

using Clock = std::chrono::steady_clock;

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, size_t(len));
}

// --- bfloat16 and float16 reductions: float32 arithmetic, one rounding per combination.

struct Plus {
  float operator()(float a, float b) const { return a + b; }
};
struct Larger {
  float operator()(float a, float b) const { return std::isnan(a) || a > b ? a : b; }
};
struct Smaller {
  float operator()(float a, float b) const { return std::isnan(a) || a < b ? a : b; }
};

template <typename T, typename F>
void half_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T(F()(float(a[i]), float(b[i])));
}

// The user-defined operations, made once per process (MPI_Finalize frees them).
struct HalfOps {
  MPI_Op op[2][3];  // [bfloat16, float16][sum, max, min]
  HalfOps() {
    MPI_Op_create(&half_op<bf16, Plus>, 1, &op[0][0]);
    MPI_Op_create(&half_op<bf16, Larger>, 1, &op[0][1]);
    MPI_Op_create(&half_op<bf16, Smaller>, 1, &op[0][2]);
    MPI_Op_create(&half_op<f16, Plus>, 1, &op[1][0]);
    MPI_Op_create(&half_op<f16, Larger>, 1, &op[1][1]);
    MPI_Op_create(&half_op<f16, Smaller>, 1, &op[1][2]);
  }
};

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int32: return MPI_INT32_T;
    case DType::Int64: return MPI_INT64_T;
    case DType::BFloat16:
    case DType::Float16: return MPI_UINT16_T;  // bit patterns; reductions go through HalfOps
    case DType::Bool: break;
  }
  fail("mpi backend: no MPI type for {}", t);
}

// x ← x / n in place (Avg's second half).
void divide(Tensor& t, int n) {
  VB_DISPATCH(t.dtype(), "avg", {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_integral_v<T>) p[i] = T(p[i] / n);
      else if constexpr (std::is_same_v<T, double>) p[i] = p[i] / n;
      else p[i] = T(float(p[i]) / float(n));
    }
  });
}

bool overlaps(const Tensor& a, const Tensor& b) {
  const char* pa = static_cast<const char*>(a.data_ptr());
  const char* pb = static_cast<const char*>(b.data_ptr());
  const int64_t na = a.numel() * a.element_size(), nb = b.numel() * b.element_size();
  return na > 0 && nb > 0 && pa < pb + nb && pb < pa + na;
}

// Between polls of MPI_Test the communication thread yields for the first 200 µs of a collective, then
// sleeps 50 µs, and 1 ms once it has waited a second. OpenMPI moves a non-blocking collective on only
// inside MPI calls, and a sleep lasts at least ~60 µs (timer slack): sleeping from the start made a 1 KB
// all-reduce of 2 ranks take 250 µs instead of 8 µs (MPI_Allreduce) on the 2-core dev VM. From 1 MB up,
// sleeping cost nothing measurable, and a rank that waits long waits for a late rank, not for bytes.
std::chrono::microseconds poll_interval(double waited_s) {
  return std::chrono::microseconds(waited_s < 200e-6 ? 0 : waited_s < 1.0 ? 50 : 1000);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int rank, int size, Device device, double timeout_s, Store* store)
      : Communicator(rank, size, device, timeout_s, store) {
    static HalfOps ops;  // on this (the main) thread, before the communication thread exists
    half_ops_ = &ops;
    // MPI_Comm_idup rather than MPI_Comm_dup: a rank that never arrives must not hang this one.
    MPI_Request req;
    int rc = MPI_Comm_idup(MPI_COMM_WORLD, &comm_, &req);
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    int done = 0;
    while (rc == MPI_SUCCESS && !(rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE), done)) {
      VB_CHECK(Clock::now() < deadline, "{}", prefixed(fmt::format("creating the mpi communicator (MPI_Comm_idup) "
               "did not complete within {} s: a rank did not reach init_process_group", timeout_s)));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    VB_CHECK(rc == MPI_SUCCESS, "{}", prefixed("MPI_Comm_idup failed: " + mpi_error(rc)));
    // Errors come back as codes, which the thread turns into CommErrors, instead of aborting the job.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    thread_ = std::thread([this] { run(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();  // runs what is queued; each collective ends within its timeout
    // A collective that failed may still be pending inside MPI: freeing its communicator could wait for it.
    if (!aborted_ && !broken_) MPI_Comm_free(&comm_);
  }

  std::string backend() const override { return "mpi"; }

  void abort() override {
    {
      std::lock_guard lock(mu_);
      if (aborted_) return;
      aborted_ = true;
      const std::string why = "the communicator was aborted";
      if (first_error_.empty()) first_error_ = prefixed(why);
      for (auto& task : queue_) task->finish(prefixed(fmt::format("{}: not run: {}", task->call.describe(), why)));
      queue_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 protected:
  std::shared_ptr<Work> do_all_reduce(const Call& call, Tensor& t) override {
    check_count(call, call.count);
    const bool avg = call.op == ReduceOp::Avg;
    const MPI_Op op = mpi_op(call);
    return enqueue(call, {t}, [this, t, call, op](MPI_Request* req) {
      return MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), int(call.count), mpi_type(call.dtype), op, comm_, req);
    }, [this, t, avg]() mutable {
      if (avg) divide(t, size());
    });
  }

  std::shared_ptr<Work> do_reduce_scatter(const Call& call, const Tensor& input, Tensor& output) override {
    check_count(call, call.count * size());
    const bool avg = call.op == ReduceOp::Avg;
    const MPI_Op op = mpi_op(call);
    // MPI's receive buffer may not overlap the send buffer (ZeRO keeps a rank's shard inside its flat
    // buffer): reduce into a scratch tensor, then copy.
    const bool scratch = overlaps(input, output);
    Tensor out = scratch ? Tensor::empty(output.shape(), output.dtype(), output.device()) : output;
    Tensor dst = output;
    return enqueue(call, {input, output, out}, [this, input, out, call, op](MPI_Request* req) {
      return MPI_Ireduce_scatter_block(input.data_ptr(), out.data_ptr(), int(call.count), mpi_type(call.dtype), op,
                                       comm_, req);
    }, [this, out, dst, avg, scratch]() mutable {
      if (avg) divide(out, size());
      if (scratch) vb::backend(dst.device()).copy(out, dst);
    });
  }

  std::shared_ptr<Work> do_all_gather(const Call& call, const Tensor& input, Tensor& output) override {
    check_count(call, call.count * size());
    const int64_t bytes = call.count * dtype_size(call.dtype);
    // The input already in place (ZeRO's all-gather of parameters) is MPI_IN_PLACE; any other overlap is
    // copied out of the way first.
    const char* expected = static_cast<const char*>(output.data_ptr()) + rank() * bytes;
    const bool in_place = bytes > 0 && input.data_ptr() == expected;
    Tensor in = input;
    if (!in_place && overlaps(input, output)) {
      in = Tensor::empty(input.shape(), input.dtype(), input.device());
      vb::backend(in.device()).copy(input, in);
    }
    return enqueue(call, {input, output, in}, [this, in, output, call, in_place](MPI_Request* req) {
      const MPI_Datatype type = mpi_type(call.dtype);
      return MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data_ptr(), int(call.count), type, output.data_ptr(),
                            int(call.count), type, comm_, req);
    }, [] {});
  }

  std::shared_ptr<Work> do_broadcast(const Call& call, Tensor& t) override {
    check_count(call, call.count);
    return enqueue(call, {t}, [this, t, call](MPI_Request* req) {
      return MPI_Ibcast(t.data_ptr(), int(call.count), mpi_type(call.dtype), call.root, comm_, req);
    }, [] {});
  }

  std::shared_ptr<Work> do_barrier(const Call& call) override {
    return enqueue(call, {}, [this](MPI_Request* req) { return MPI_Ibarrier(comm_, req); }, [] {});
  }

 private:
  // One collective: what the thread starts, what it does after MPI completes, and who waits for it.
  class Task final : public Work {
   public:
    Task(const Call& call, std::vector<Tensor> keep, std::function<int(MPI_Request*)> start,
         std::function<void()> after)
        : call(call), keep(std::move(keep)), start(std::move(start)), after(std::move(after)) {}

    void wait() override {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return done_; });
      if (!error_.empty()) throw CommError(error_);
    }
    bool completed() override {
      std::lock_guard lock(mu_);
      if (done_ && !error_.empty()) throw CommError(error_);
      return done_;
    }
    // Marks it done: successfully when `error` is empty. The tensors are released then.
    void finish(const std::string& error = "") {
      {
        std::lock_guard lock(mu_);
        error_ = error;
        done_ = true;
      }
      cv_.notify_all();
      keep.clear();
    }

    const Call call;
    std::vector<Tensor> keep;
    std::function<int(MPI_Request*)> start;
    std::function<void()> after;

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::string error_;
  };

  void check_count(const Call& call, int64_t elements) const {
    VB_CHECK(elements <= INT_MAX, "{}", prefixed(fmt::format("{}: {} elements in one MPI call; the mpi backend takes "
             "at most {} (MPI counts are int): split the tensor", call.describe(), elements, INT_MAX)));
  }

  MPI_Op mpi_op(const Call& call) const {
    const int which = call.op == ReduceOp::Max ? 1 : call.op == ReduceOp::Min ? 2 : 0;  // Avg: a sum first
    if (call.dtype == DType::BFloat16) return half_ops_->op[0][which];
    if (call.dtype == DType::Float16) return half_ops_->op[1][which];
    return which == 1 ? MPI_MAX : which == 2 ? MPI_MIN : MPI_SUM;
  }

  std::shared_ptr<Work> enqueue(const Call& call, std::vector<Tensor> keep, std::function<int(MPI_Request*)> start,
                                std::function<void()> after) {
    auto task = std::make_shared<Task>(call, std::move(keep), std::move(start), std::move(after));
    {
      std::lock_guard lock(mu_);
      if (aborted_ || broken_)
        throw CommError(prefixed(fmt::format("{}: not started: {}", call.describe(),
                                             aborted_ ? "the communicator was aborted"
                                                      : "an earlier collective failed: " + first_error_)));
      queue_.push_back(task);
    }
    cv_.notify_all();
    return task;
  }

  void run() {
    while (true) {
      std::shared_ptr<Task> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || aborted_ || !queue_.empty(); });
        if (aborted_ || queue_.empty()) return;  // aborted, or stopped with nothing left to run
        task = queue_.front();
        queue_.pop_front();
      }
      execute(*task);
    }
  }

  void execute(Task& task) {
    MPI_Request req;
    int rc = task.start(&req);
    if (rc != MPI_SUCCESS) return fail_with(task, prefixed(fmt::format("{} failed to start in MPI: {}",
                                                                       task.call.describe(), mpi_error(rc))));
    const auto started = Clock::now();
    const auto deadline = started + std::chrono::duration<double>(timeout_s());
    Clock::time_point exit_seen{};
    while (true) {
      int done = 0;
      rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS)
        return fail_with(task, prefixed(fmt::format("{} failed in MPI: {}", task.call.describe(), mpi_error(rc))));
      if (done) break;
      const auto now = Clock::now();
      {
        std::lock_guard lock(mu_);
        if (aborted_) return task.finish(prefixed(fmt::format("{}: the communicator was aborted while it ran",
                                                              task.call.describe())));
      }
      // A rank that exited may have finished this collective first: give MPI a moment (a heartbeat) to
      // deliver what it sent before blaming it.
      const int gone = store() ? store()->exited_rank() : -1;
      if (gone >= 0 && exit_seen == Clock::time_point{}) exit_seen = now;
      if (gone >= 0 && now - exit_seen > std::chrono::milliseconds(200)) {
        const std::string how = gone == 0 && rank() != 0
                                    ? "rank 0 has exited (the rendezvous store it serves closed the connection)"
                                    : fmt::format("rank {} has exited (its connection to the rendezvous store "
                                                  "closed: killed or crashed)", gone);
        return fail_with(task, prefixed(fmt::format("{} failed: {}", task.call.describe(), how)));
      }
      if (now >= deadline) return fail_with(task, timeout_error(task.call).what());
      const auto pause = poll_interval(std::chrono::duration<double>(now - started).count());
      if (pause.count() == 0) std::this_thread::yield();
      else std::this_thread::sleep_for(pause);
    }
    try {
      task.after();
    } catch (const Error& e) {
      return fail_with(task, prefixed(fmt::format("{}: {}", task.call.describe(), e.what())));
    }
    task.finish();
  }

  // The first failure breaks the communicator: this task and every queued one fail.
  void fail_with(Task& task, const std::string& error) {
    std::deque<std::shared_ptr<Task>> dropped;
    {
      std::lock_guard lock(mu_);
      broken_ = true;
      if (first_error_.empty()) first_error_ = error;
      dropped.swap(queue_);
    }
    task.finish(error);
    for (auto& t : dropped)
      t->finish(prefixed(fmt::format("{}: not run: an earlier collective failed: {}", t->call.describe(), error)));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  const HalfOps* half_ops_ = nullptr;
  std::thread thread_;
  std::mutex mu_;  // the queue and the flags below
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> queue_;
  bool stop_ = false, aborted_ = false, broken_ = false;
  std::string first_error_;
};

std::unique_ptr<Communicator> make_mpi(const Launch& launch, const CommOptions& options, Store* store, Bootstrap&) {
  VB_CHECK(options.device.type == DeviceType::CPU, "the mpi backend serves device cpu, not {}", options.device);
  VB_CHECK(mpi_started(), "the mpi backend needs MPI started (init_process_group does it under mpirun)");
  return std::make_unique<MpiCommunicator>(launch.rank, launch.world, options.device, options.timeout_s, store);
}

[[maybe_unused]] const bool registered = [] {
  register_comm_backend("mpi", DeviceType::CPU, make_mpi);
  return true;
}();

}  // namespace

}  // namespace vb::dist

#endif  // VB_HAVE_MPI
