// The emulated NCCL's communicators and collectives (kernels/emu/nccl.h): NCCL's API over the sockets of
// kernels/emu/nccl_transport.cpp.
//
// A communicator is a thread and a queue. A collective call checks its arguments, enqueues itself on the
// stream as pending work (kernels/emu/pending_work.h) and on the communicator's queue, and returns. The
// thread takes the queue in order: it waits for the work pending on the stream before the collective (as
// NCCL's kernel waits for the kernels before it), exchanges a header with its ring neighbours (the
// desync check), moves and reduces the data with ring algorithms, and marks the pending work finished,
// which releases event_done, stream_synchronize and everything queued behind it on the stream.
//
//   all-reduce      n − 1 reduce-scatter steps, then n − 1 all-gather steps, over n chunks of
//                   ⌈count / n⌉ elements. Chunk k is reduced along the ring and completed on rank k,
//                   which then sends its bits to everyone: every rank ends with identical results.
//   reduce-scatter  the first phase alone, over the n blocks of recvcount elements.
//   all-gather      the second phase alone.
//   broadcast       a chain root → root+1 → … → root−1.
//
// Step s of the reduce-scatter phase on rank r sends chunk r−s−1 (its own data at s = 0, the partial sum
// it received and reduced since) and receives chunk r−s−2 (mod n), so that after n − 1 steps it holds
// chunk r complete; step s of the all-gather phase sends chunk r−s and receives chunk r−s−1.
//
// Reductions: float16 and bfloat16 are converted to float32, combined, and rounded back at every step
// (NCCL also rounds per step); integer sums and products wrap; max and min propagate NaN. ncclAvg sums,
// then the chunk's owner divides by nranks (in float32 for 16-bit types, in the type itself otherwise;
// integers truncate, as NCCL's SumPostDiv). NCCL itself multiplies each input by 1/nranks for floating
// types, so averages may differ from a GPU's in the last bit.
#include "kernels/emu/nccl.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "kernels/emu/nccl_transport.h"
#include "kernels/emu/pending_work.h"
#include "tensor/dtype.h"

namespace vb::nccl_emu {

using detail::Failure;

namespace {

enum class Kind : uint32_t { AllReduce = 1, ReduceScatter, AllGather, Broadcast };

// What neighbours compare before every collective: a difference is a desync.
struct Header {
  uint64_t seq;    // this communicator's collective number, from 0
  uint32_t kind;   // Kind
  uint32_t dtype;  // ncclDataType_t
  uint32_t op;     // ncclRedOp_t (0 where the collective has none)
  int32_t root;    // broadcast's root (0 otherwise)
  uint64_t count;  // the count argument: per rank for reduce-scatter and all-gather
};

const char* kind_name(uint32_t kind) {
  switch (Kind(kind)) {
    case Kind::AllReduce: return "ncclAllReduce";
    case Kind::ReduceScatter: return "ncclReduceScatter";
    case Kind::AllGather: return "ncclAllGather";
    case Kind::Broadcast: return "ncclBroadcast";
  }
  return "an unknown collective";
}

const char* type_name(uint32_t t) {
  static const char* names[] = {"ncclInt8",   "ncclUint8",   "ncclInt32",   "ncclUint32",
                                "ncclInt64",  "ncclUint64",  "ncclFloat16", "ncclFloat32",
                                "ncclFloat64", "ncclBfloat16", "ncclFloat8e4m3", "ncclFloat8e5m2"};
  return t < ncclNumTypes ? names[t] : "an unknown datatype";
}

const char* op_name(uint32_t op) {
  static const char* names[] = {"ncclSum", "ncclProd", "ncclMax", "ncclMin", "ncclAvg"};
  return op < ncclNumOps ? names[op] : "an unknown op";
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: return 0;
  }
}

bool has_op(Kind k) { return k == Kind::AllReduce || k == Kind::ReduceScatter; }

// "ncclAllReduce(count 100, ncclFloat32, ncclSum)", as the call was written.
std::string call_text(const Header& h) {
  std::string text = fmt::format("{}(count {}, {}", kind_name(h.kind), h.count, type_name(h.dtype));
  if (has_op(Kind(h.kind))) text += fmt::format(", {}", op_name(h.op));
  if (Kind(h.kind) == Kind::Broadcast) text += fmt::format(", root {}", h.root);
  return text + ")";
}

// "collective #5, ncclAllReduce(count 100, ncclFloat32, ncclSum)", for messages.
std::string doing_text(const Header& h) { return fmt::format("collective #{}, {}", h.seq, call_text(h)); }

std::string desync_text(int theirs_rank, const Header& theirs, int mine_rank, const Header& mine) {
  const std::string hint = " (every rank must call the same collectives, with the same count, datatype, op and "
                           "root, in the same order)";
  if (theirs.seq == mine.seq)
    return fmt::format("desync at collective #{}: rank {} called {} but rank {} called {}{}", mine.seq, theirs_rank,
                       call_text(theirs), mine_rank, call_text(mine), hint);
  return fmt::format("desync: rank {}'s collective #{} is {} but rank {}'s collective #{} is {}{}", theirs_rank,
                     theirs.seq, call_text(theirs), mine_rank, mine.seq, call_text(mine), hint);
}

// ---- reductions -------------------------------------------------------------------------------------

// How an element is computed: 16-bit floats in float32, everything else in its own type.
template <class T>
struct Compute {
  using type = T;
};
template <>
struct Compute<bf16> {
  using type = float;
};
template <>
struct Compute<f16> {
  using type = float;
};

template <class C>
C combine(C x, C y, ncclRedOp_t op) {
  if constexpr (std::is_integral_v<C>) {
    using U = std::make_unsigned_t<C>;  // sums and products wrap, as on a GPU
    switch (op) {
      case ncclSum:
      case ncclAvg: return C(U(x) + U(y));
      case ncclProd: return C(U(x) * U(y));
      case ncclMax: return std::max(x, y);
      default: return std::min(x, y);
    }
  } else {
    if (x != x) return x;  // NaN in, NaN out, whichever operand it is
    if (y != y) return y;
    switch (op) {
      case ncclSum:
      case ncclAvg: return x + y;
      case ncclProd: return x * y;
      case ncclMax: return x > y ? x : y;
      default: return x < y ? x : y;
    }
  }
}

// dst[i] = a[i] op b[i]; dst may be a or b.
template <class T>
void reduce_as(void* dst, const void* a, const void* b, size_t n, ncclRedOp_t op) {
  using C = typename Compute<T>::type;
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  T* out = static_cast<T*>(dst);
  for (size_t i = 0; i < n; ++i) out[i] = T(combine<C>(C(x[i]), C(y[i]), op));
}

template <class T>
void divide_as(void* data, size_t n, int nranks) {
  using C = typename Compute<T>::type;
  T* p = static_cast<T*>(data);
  for (size_t i = 0; i < n; ++i) p[i] = T(C(p[i]) / C(nranks));
}

template <class F>
void dispatch(ncclDataType_t t, F&& f) {
  switch (t) {
    case ncclInt8: return f(int8_t{});
    case ncclUint8: return f(uint8_t{});
    case ncclInt32: return f(int32_t{});
    case ncclUint32: return f(uint32_t{});
    case ncclInt64: return f(int64_t{});
    case ncclUint64: return f(uint64_t{});
    case ncclFloat16: return f(f16{});
    case ncclFloat32: return f(float{});
    case ncclFloat64: return f(double{});
    case ncclBfloat16: return f(bf16{});
    default: throw Failure{ncclInvalidArgument, fmt::format("{} cannot be reduced by the emulated NCCL", type_name(t))};
  }
}

void reduce(void* dst, const void* a, const void* b, size_t n, ncclDataType_t t, ncclRedOp_t op) {
  dispatch(t, [&](auto tag) { reduce_as<decltype(tag)>(dst, a, b, n, op); });
}
void divide(void* data, size_t n, ncclDataType_t t, int nranks) {
  dispatch(t, [&](auto tag) { divide_as<decltype(tag)>(data, n, nranks); });
}

// ---- errors -------------------------------------------------------------------------------------------

// The message of the last failed call that had no communicator to keep it (ncclGetLastError(NULL)).
std::mutex last_error_mutex;
std::string last_error;

ncclResult_t fail_call(ncclResult_t code, const std::string& message) {
  std::lock_guard lock(last_error_mutex);
  last_error = message;
  return code;
}

// ---- groups -----------------------------------------------------------------------------------------

struct Call {
  ncclComm_t comm;
  Header header;
  const void* send;
  void* recv;
  cudaStream_t stream;
};
thread_local int group_depth = 0;
thread_local std::vector<Call> group_calls;

}  // namespace

// ---- the communicator ----------------------------------------------------------------------------------

struct ncclComm {
  // One collective issued and not yet run.
  struct Op {
    Header header;
    const void* send;
    void* recv;
    std::shared_ptr<rt::emu::PendingWork> done;
    rt::emu::PendingList before;  // the stream's earlier work
  };

  ncclComm(int rank, int nranks, bool blocking, const detail::IdContents& id)
      : rank(rank), nranks(nranks), blocking(blocking), id(id), abort_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        queue_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), links(rank, nranks, abort_fd.get()) {}

  const int rank, nranks;
  const bool blocking;
  const detail::IdContents id;
  detail::Fd abort_fd, queue_fd;  // eventfds: abort wakes every wait; the queue wakes the idle thread
  detail::Links links;             // used by the thread only (and shut down by abort)
  std::thread thread;

  std::mutex mutex;
  std::condition_variable changed;
  // Guarded by mutex:
  std::deque<Op> queue;
  bool init_done = false;
  bool finalize_requested = false, finalized = false;
  bool stop = false;          // the thread ends once the queue is empty (destroy)
  bool call_pending = false;  // a non-blocking call returned ncclInProgress; ncclCommGetAsyncError clears it
  uint64_t issued = 0, ran = 0;
  ncclResult_t error = ncclSuccess;
  std::string error_message;

  std::atomic<bool> aborted{false};
  std::atomic<int> callers{0};  // threads inside a blocking call on this communicator (abort waits for them)
  std::vector<unsigned char> staging, partial;  // the thread's buffers for one chunk

  void wake_thread() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t k = ::write(queue_fd.get(), &one, sizeof one);
  }

  // Records the first failure (the others follow from it) and tells the other ranks, before the error
  // shows: an abort that the error prompts must not shut the connections before the report is sent.
  // Called on the communicator's thread only (the only writer of `error`).
  void fail(const Failure& f) {
    if (failed()) return;
    if (!f.from_peer && !aborted) links.report_failure(f);
    {
      std::lock_guard lock(mutex);
      error = f.code;
      error_message = f.message;
    }
    changed.notify_all();
  }

  bool failed() {
    std::lock_guard lock(mutex);
    return error != ncclSuccess;
  }

  void run() noexcept;
  void run_op(Op& op);
  // Runs work on the communicator's thread: a failure becomes the communicator's error (fail), an abort
  // ends it quietly.
  template <typename F>
  void recording_failure(F&& work) {
    try {
      work();
    } catch (const Failure& f) {
      fail(f);
    } catch (const detail::Aborted&) {
    } catch (const std::exception& e) {
      fail({ncclSystemError, e.what()});
    }
  }
  void execute(const Op& op);
  void all_reduce(const Op& op);
  void reduce_scatter(const Op& op);
  void all_gather(const Op& op);
  void broadcast(const Op& op);
  void step(const void* out, size_t out_bytes, void* in, size_t in_bytes, const std::string& doing);
};

void ncclComm::run() noexcept {
  recording_failure([&] { links.connect(id); });
  {
    std::lock_guard lock(mutex);
    init_done = true;
  }
  changed.notify_all();

  while (!aborted) {
    std::optional<Op> op;
    bool finalize_now = false, quiet = false;
    {
      std::lock_guard lock(mutex);
      quiet = error != ncclSuccess || finalized;  // nothing more to hear from the peers
      if (!queue.empty()) {
        op = std::move(queue.front());
        queue.pop_front();
      } else if (finalize_requested && !finalized) {
        finalize_now = true;
      } else if (stop) {
        break;
      }
    }
    if (op) {
      run_op(*op);
      continue;
    }
    if (finalize_now) {
      if (!failed()) {
        uint64_t count;
        {
          std::lock_guard lock(mutex);
          count = ran;
        }
        try {
          links.say_goodbye(count);
        } catch (...) {  // an abort while saying goodbye: nothing left to say
        }
      }
      {
        std::lock_guard lock(mutex);
        finalized = true;
      }
      changed.notify_all();
      continue;
    }
    // Idle: wait for a call, for a peer's report, or for abort.
    try {
      if (quiet) {
        pollfd fds[2] = {{abort_fd.get(), POLLIN, 0}, {queue_fd.get(), POLLIN, 0}};
        while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
        }
      } else if (!links.wait_idle(queue_fd.get())) {
        break;
      }
    } catch (const Failure& f) {
      fail(f);
    } catch (const std::exception& e) {
      fail({ncclSystemError, e.what()});
    }
    uint64_t count;
    [[maybe_unused]] const ssize_t k = ::read(queue_fd.get(), &count, sizeof count);
  }

  // Aborted or destroyed: whatever is still queued never runs, but its streams must go on.
  std::deque<Op> left;
  {
    std::lock_guard lock(mutex);
    left.swap(queue);
  }
  for (Op& o : left) o.done->finish();
}

void ncclComm::run_op(Op& op) {
  const bool ready = rt::emu::wait_pending(op.before, [this] { return aborted.load(); });
  if (ready && !failed()) {
    recording_failure([&] { execute(op); });
  }
  {
    std::lock_guard lock(mutex);
    ++ran;
  }
  changed.notify_all();
  op.done->finish();  // after any failure is recorded: whoever sees the work done then sees the error too
}

void ncclComm::step(const void* out, size_t out_bytes, void* in, size_t in_bytes, const std::string& doing) {
  const detail::Outgoing o{detail::kData, out, out_bytes};
  const detail::Incoming i{detail::kData, in, in_bytes};
  links.exchange(out ? &o : nullptr, in ? &i : nullptr, doing);
}

void ncclComm::execute(const Op& op) {
  const Header& mine = op.header;
  if (nranks > 1) {
    Header theirs{};
    const detail::Outgoing o{detail::kHeader, &mine, sizeof mine};
    const detail::Incoming i{detail::kHeader, &theirs, sizeof theirs};
    links.exchange(&o, &i, doing_text(mine));
    if (theirs.seq != mine.seq || theirs.kind != mine.kind || theirs.dtype != mine.dtype || theirs.op != mine.op ||
        theirs.root != mine.root || theirs.count != mine.count)
      throw Failure{ncclInvalidUsage, desync_text((rank + nranks - 1) % nranks, theirs, rank, mine)};
  }
  switch (Kind(mine.kind)) {
    case Kind::AllReduce: return all_reduce(op);
    case Kind::ReduceScatter: return reduce_scatter(op);
    case Kind::AllGather: return all_gather(op);
    case Kind::Broadcast: return broadcast(op);
  }
}

namespace {
size_t ring(long k, int n) { return size_t(((k % n) + n) % n); }
}  // namespace

void ncclComm::all_reduce(const Op& op) {
  const Header& h = op.header;
  const auto type = ncclDataType_t(h.dtype);
  const auto red = ncclRedOp_t(h.op);
  const size_t es = type_size(type), count = h.count;
  auto* data = static_cast<unsigned char*>(op.recv);
  if (op.send != op.recv && count) std::memmove(data, op.send, count * es);
  const size_t c = (count + size_t(nranks) - 1) / size_t(nranks);  // elements per chunk; the last ones shorter
  auto begin = [&](size_t k) { return std::min(count, k * c); };
  auto length = [&](size_t k) { return std::min(count, (k + 1) * c) - begin(k); };
  if (nranks > 1 && count > 0) {
    const std::string doing = doing_text(h);
    staging.resize(c * es);
    for (int s = 0; s < nranks - 1; ++s) {
      const size_t out = ring(rank - s - 1, nranks), in = ring(rank - s - 2, nranks);
      step(data + begin(out) * es, length(out) * es, staging.data(), length(in) * es, doing);
      reduce(data + begin(in) * es, staging.data(), data + begin(in) * es, length(in), type, red);
    }
    if (red == ncclAvg) divide(data + begin(size_t(rank)) * es, length(size_t(rank)), type, nranks);
    for (int s = 0; s < nranks - 1; ++s) {
      const size_t out = ring(rank - s, nranks), in = ring(rank - s - 1, nranks);
      step(data + begin(out) * es, length(out) * es, data + begin(in) * es, length(in) * es, doing);
    }
  } else if (red == ncclAvg && count > 0) {
    divide(data, count, type, nranks);
  }
}

void ncclComm::reduce_scatter(const Op& op) {
  const Header& h = op.header;
  const auto type = ncclDataType_t(h.dtype);
  const auto red = ncclRedOp_t(h.op);
  const size_t es = type_size(type), c = h.count, bytes = c * es;
  const auto* input = static_cast<const unsigned char*>(op.send);  // n blocks of c elements
  auto* output = static_cast<unsigned char*>(op.recv);
  if (c == 0) return;
  if (nranks == 1) {
    if (op.send != op.recv) std::memmove(output, input, bytes);
  } else {
    const std::string doing = doing_text(h);
    staging.resize(bytes);
    partial.resize(bytes);
    for (int s = 0; s < nranks - 1; ++s) {
      const size_t out = ring(rank - s - 1, nranks), in = ring(rank - s - 2, nranks);
      step(s == 0 ? input + out * bytes : partial.data(), bytes, staging.data(), bytes, doing);
      // The last step's block is this rank's: it lands in the output (in place: the input's own block,
      // read here for the first time).
      unsigned char* dst = s == nranks - 2 ? output : partial.data();
      reduce(dst, staging.data(), input + in * bytes, c, type, red);
    }
  }
  if (red == ncclAvg) divide(output, c, type, nranks);
}

void ncclComm::all_gather(const Op& op) {
  const Header& h = op.header;
  const size_t bytes = h.count * type_size(ncclDataType_t(h.dtype));
  auto* output = static_cast<unsigned char*>(op.recv);  // n blocks of count elements
  if (bytes == 0) return;
  if (op.send != output + size_t(rank) * bytes) std::memmove(output + size_t(rank) * bytes, op.send, bytes);
  if (nranks == 1) return;
  const std::string doing = doing_text(h);
  for (int s = 0; s < nranks - 1; ++s) {
    const size_t out = ring(rank - s, nranks), in = ring(rank - s - 1, nranks);
    step(output + out * bytes, bytes, output + in * bytes, bytes, doing);
  }
}

void ncclComm::broadcast(const Op& op) {
  const Header& h = op.header;
  const size_t bytes = h.count * type_size(ncclDataType_t(h.dtype));
  if (bytes == 0) return;
  if (rank == h.root && op.send != op.recv) std::memmove(op.recv, op.send, bytes);
  if (nranks == 1) return;
  const std::string doing = doing_text(h);
  if (rank != h.root) step(nullptr, 0, op.recv, bytes, doing);
  if ((rank + 1) % nranks != h.root) step(op.recv, bytes, nullptr, 0, doing);
}

// ---- the API ---------------------------------------------------------------------------------------------

namespace {

// Stops the thread and frees the communicator. `abort`: at once, whatever is in flight.
void tear_down(ncclComm_t comm, bool abort) {
  if (abort) {
    comm->aborted = true;
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t k = ::write(comm->abort_fd.get(), &one, sizeof one);
    rt::emu::wake_pending_waiters();
    bool connected;
    {
      std::lock_guard lock(comm->mutex);
      connected = comm->init_done;
    }
    comm->changed.notify_all();
    if (connected) {  // the links are complete and the thread no longer changes them, only their sockets
      comm->links.report_abort();
      comm->links.shut_down();
    }
  } else {
    {
      std::lock_guard lock(comm->mutex);
      comm->stop = true;
    }
    comm->wake_thread();
  }
  if (comm->thread.joinable()) comm->thread.join();
  while (comm->callers.load() > 0) std::this_thread::yield();  // blocking calls woken by the abort
  delete comm;
}

ncclResult_t init(ncclComm_t* out, int nranks, ncclUniqueId id, int rank, const ncclConfig_t* config,
                  const char* fn) {
  if (!out) return fail_call(ncclInvalidArgument, fmt::format("{}: comm is NULL", fn));
  *out = nullptr;
  if (group_depth > 0)
    return fail_call(ncclInvalidUsage, fmt::format("{} inside ncclGroupStart/ncclGroupEnd is not emulated", fn));
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return fail_call(ncclInvalidArgument, fmt::format("{}: rank {} of nranks {} (expected 0 ≤ rank < nranks)", fn,
                                                      rank, nranks));
  bool blocking = true;
  if (config) {
    if (config->magic != 0xcafebeef || config->size != sizeof(ncclConfig_t))
      return fail_call(ncclInvalidArgument, fmt::format("{}: the config was not initialised with "
                                                        "NCCL_CONFIG_INITIALIZER",
                                                        fn));
    if (config->blocking != NCCL_CONFIG_UNDEF_INT) blocking = config->blocking != 0;
  }
  ncclComm_t comm = nullptr;
  try {
    comm = new ncclComm(rank, nranks, blocking, detail::decode_id(id));
    if (!comm->abort_fd || !comm->queue_fd) throw Failure{ncclSystemError, fmt::format("{}: eventfd failed", fn)};
    comm->thread = std::thread([comm] { comm->run(); });
  } catch (const Failure& f) {
    delete comm;
    return fail_call(f.code, f.message);
  } catch (const std::exception& e) {
    delete comm;
    return fail_call(ncclSystemError, fmt::format("{}: {}", fn, e.what()));
  }
  if (!blocking) {
    *out = comm;
    return ncclInProgress;
  }
  std::unique_lock lock(comm->mutex);
  comm->changed.wait(lock, [&] { return comm->init_done; });
  if (comm->error != ncclSuccess) {
    const ncclResult_t code = comm->error;
    const std::string message = comm->error_message;
    lock.unlock();
    tear_down(comm, true);
    return fail_call(code, message);
  }
  *out = comm;
  return ncclSuccess;
}

ncclResult_t check_comm(ncclComm_t comm, const char* fn) {
  if (!comm) return fail_call(ncclInvalidArgument, fmt::format("{}: comm is NULL", fn));
  return ncclSuccess;
}

// Checks a collective's arguments (the state of the communicator is checked when it is issued).
ncclResult_t check_call(const Call& c, const char* fn) {
  if (ncclResult_t r = check_comm(c.comm, fn); r != ncclSuccess) return r;
  const Header& h = c.header;
  const Kind kind = Kind(h.kind);
  if (h.dtype >= ncclNumTypes)
    return fail_call(ncclInvalidArgument, fmt::format("{}: datatype {} is not an ncclDataType_t", fn, h.dtype));
  if (has_op(kind) && h.op >= ncclNumOps)
    return fail_call(ncclInvalidArgument, fmt::format("{}: op {} is not a built-in ncclRedOp_t (user-defined "
                                                      "ops are not emulated)",
                                                      fn, h.op));
  if (has_op(kind) && type_size(ncclDataType_t(h.dtype)) == 1 && h.dtype >= ncclFloat8e4m3)
    return fail_call(ncclInvalidArgument, fmt::format("{}: {} reductions are not emulated", fn, type_name(h.dtype)));
  if (kind == Kind::Broadcast && (h.root < 0 || h.root >= c.comm->nranks))
    return fail_call(ncclInvalidArgument, fmt::format("{}: root {} is not a rank of this communicator (0 … {})", fn,
                                                      h.root, c.comm->nranks - 1));
  if (h.count > 0) {
    const bool needs_send = kind != Kind::Broadcast || c.comm->rank == h.root;
    if (needs_send && !c.send)
      return fail_call(ncclInvalidArgument, fmt::format("{}: sendbuff is NULL with count {}", fn, h.count));
    if (!c.recv) return fail_call(ncclInvalidArgument, fmt::format("{}: recvbuff is NULL with count {}", fn, h.count));
  }
  return ncclSuccess;
}

// Checks that the communicator can take a call now (the caller holds its mutex).
ncclResult_t check_ready(ncclComm_t comm, const char* fn) {
  if (comm->error != ncclSuccess) return fail_call(comm->error, comm->error_message);
  if (!comm->init_done)
    return fail_call(ncclInvalidUsage, fmt::format("{} before the communicator's initialisation completed (poll "
                                                   "ncclCommGetAsyncError until it returns ncclSuccess)",
                                                   fn));
  if (comm->call_pending)
    return fail_call(ncclInvalidUsage, fmt::format("{} while the previous call on this non-blocking communicator is "
                                                   "in progress (poll ncclCommGetAsyncError until it returns "
                                                   "ncclSuccess before the next call)",
                                                   fn));
  if (comm->finalize_requested)
    return fail_call(ncclInvalidUsage, fmt::format("{} after ncclCommFinalize", fn));
  return ncclSuccess;
}

// Enqueues a checked call on its stream and its communicator (the caller holds the mutex).
void issue(Call& c) {
  ncclComm_t comm = c.comm;
  c.header.seq = comm->issued++;
  auto done = std::make_shared<rt::emu::PendingWork>();
  rt::emu::PendingList before = rt::emu::enqueue_pending(rt::Stream{static_cast<void*>(c.stream)}, done);
  comm->queue.push_back({c.header, c.send, c.recv, std::move(done), std::move(before)});
}

ncclResult_t collective(Call c, const char* fn) {
  if (ncclResult_t r = check_call(c, fn); r != ncclSuccess) return r;
  if (group_depth > 0) {
    group_calls.push_back(c);
    return ncclSuccess;
  }
  ncclComm_t comm = c.comm;
  {
    std::lock_guard lock(comm->mutex);
    if (ncclResult_t r = check_ready(comm, fn); r != ncclSuccess) return r;
    issue(c);
    if (!comm->blocking) comm->call_pending = true;
  }
  comm->wake_thread();
  return comm->blocking ? ncclSuccess : ncclInProgress;
}

Header header(Kind kind, size_t count, ncclDataType_t datatype, ncclRedOp_t op, int root) {
  return {0, uint32_t(kind), uint32_t(datatype), has_op(kind) ? uint32_t(op) : 0u, root, count};
}

}  // namespace

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return fail_call(ncclInvalidArgument, "ncclGetVersion: version is NULL");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (!uniqueId) return fail_call(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  try {
    *uniqueId = detail::start_bootstrap_root();
  } catch (const Failure& f) {
    return fail_call(f.code, "ncclGetUniqueId: " + f.message);
  } catch (const std::exception& e) {
    return fail_call(ncclSystemError, std::string("ncclGetUniqueId: ") + e.what());
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  return init(comm, nranks, commId, rank, nullptr, "ncclCommInitRank");
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config) {
  return init(comm, nranks, commId, rank, config, "ncclCommInitRankConfig");
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (ncclResult_t r = check_comm(comm, "ncclCommFinalize"); r != ncclSuccess) return r;
  std::unique_lock lock(comm->mutex);
  if (ncclResult_t r = check_ready(comm, "ncclCommFinalize"); r != ncclSuccess) return r;
  comm->finalize_requested = true;
  comm->wake_thread();
  if (!comm->blocking) return ncclInProgress;
  ++comm->callers;
  comm->changed.wait(lock, [&] { return comm->finalized || comm->error != ncclSuccess || comm->aborted; });
  const ncclResult_t result = comm->aborted ? ncclInvalidUsage : comm->error;
  lock.unlock();
  --comm->callers;  // last: an abort on another thread frees the communicator once this is 0
  return result;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (ncclResult_t r = check_comm(comm, "ncclCommDestroy"); r != ncclSuccess) return r;
  bool abort;
  {
    std::unique_lock lock(comm->mutex);
    // A failed communicator, or one whose initialisation has not completed, is torn down at once: waiting
    // for its peers could last forever.
    abort = comm->error != ncclSuccess || !comm->init_done;
    if (!abort) {
      if (!comm->finalize_requested) {
        comm->finalize_requested = true;
        comm->wake_thread();
      }
      ++comm->callers;
      comm->changed.wait(lock, [&] { return comm->finalized || comm->error != ncclSuccess || comm->aborted; });
      --comm->callers;
    }
  }
  tear_down(comm, abort);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclSuccess;  // as NCCL: aborting nothing is fine
  tear_down(comm, true);
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  if (ncclResult_t r = check_comm(comm, "ncclCommGetAsyncError"); r != ncclSuccess) return r;
  if (!asyncError) return fail_call(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  std::lock_guard lock(comm->mutex);
  if (comm->error != ncclSuccess) {
    *asyncError = comm->error;
  } else if (!comm->init_done || (comm->finalize_requested && !comm->finalized)) {
    *asyncError = ncclInProgress;
  } else {
    comm->call_pending = false;  // an emulated call is enqueued by the time it returns
    *asyncError = ncclSuccess;
  }
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t comm) {
  thread_local std::string text;
  if (comm) {
    std::lock_guard lock(comm->mutex);
    if (comm->error != ncclSuccess) {
      text = comm->error_message;
      return text.c_str();
    }
  }
  std::lock_guard lock(last_error_mutex);
  text = last_error;
  return text.c_str();
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (ncclResult_t r = check_comm(comm, "ncclCommCount"); r != ncclSuccess) return r;
  if (!count) return fail_call(ncclInvalidArgument, "ncclCommCount: count is NULL");
  *count = comm->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (ncclResult_t r = check_comm(comm, "ncclCommUserRank"); r != ncclSuccess) return r;
  if (!rank) return fail_call(ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  return collective({comm, header(Kind::AllReduce, count, datatype, op, 0), sendbuff, recvbuff, stream},
                    "ncclAllReduce");
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  return collective({comm, header(Kind::ReduceScatter, recvcount, datatype, op, 0), sendbuff, recvbuff, stream},
                    "ncclReduceScatter");
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream) {
  return collective({comm, header(Kind::AllGather, sendcount, datatype, ncclSum, 0), sendbuff, recvbuff, stream},
                    "ncclAllGather");
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  return collective({comm, header(Kind::Broadcast, count, datatype, ncclSum, root), sendbuff, recvbuff, stream},
                    "ncclBroadcast");
}

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

// Issues the group's calls in order. Every communicator is checked first, so that a group is issued
// whole or not at all.
ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return fail_call(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  if (--group_depth > 0) return ncclSuccess;
  std::vector<Call> calls;
  calls.swap(group_calls);
  std::vector<ncclComm_t> comms;
  for (const Call& c : calls)
    if (std::find(comms.begin(), comms.end(), c.comm) == comms.end()) comms.push_back(c.comm);
  std::vector<std::unique_lock<std::mutex>> locks;
  std::sort(comms.begin(), comms.end());  // one locking order
  for (ncclComm_t comm : comms) locks.emplace_back(comm->mutex);
  for (ncclComm_t comm : comms)
    if (ncclResult_t r = check_ready(comm, "ncclGroupEnd"); r != ncclSuccess) return r;
  bool in_progress = false;
  for (Call& c : calls) issue(c);
  for (ncclComm_t comm : comms) {
    if (!comm->blocking) {
      comm->call_pending = true;
      in_progress = true;
    }
  }
  locks.clear();
  for (ncclComm_t comm : comms) comm->wake_thread();
  return in_progress ? ncclInProgress : ncclSuccess;
}

}  // namespace vb::nccl_emu
