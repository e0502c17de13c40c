// The emulated NCCL (kernels/emu/nccl.h) across real processes: each test forks one process per rank
// (1 to 4) and waits for them with a deadline, killing any that hang, so that a bug fails the test
// instead of hanging it. Rank 0 calls ncclGetUniqueId and hands the id to the others through a pipe, as
// mpirun jobs pass it with MPI_Bcast: the test process itself starts no thread (the bootstrap root is
// one), since a child forked while another thread holds a lock (AddressSanitizer's allocator's, for
// one) can deadlock. A rank reports the checks that failed through a pipe.
//
//   - every collective against a hand computation, for every datatype and op, counts 0, 1 and not
//     divisible by nranks, in place and out of place, broadcast from every root; bitwise identical
//     results on every rank for inexact float sums;
//   - stream order (kernels and copies queued after a collective wait for it; events, other streams),
//     groups, non-blocking communicators, argument errors;
//   - misuse that real NCCL turns into a hang: ranks that disagree on the count, the datatype, the op,
//     the call or the sequence end with a desync error naming both ranks; a rank that exits, or
//     finalises early, is named by the others; ncclCommAbort of a communicator waiting for a stalled
//     rank returns at once, and a stalled rank is not an error by itself.
//
// Data are small integers (|x| ≤ 7), so that sums and products are exact in every type and the
// expected bits can be computed by hand; averages are divided as the library documents.
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "kernels/emu/emu.h"
#include "kernels/emu/nccl.h"
#include "kernels/emu/pending_work.h"
#include "kernels/launch.h"
#include "kernels/runtime.h"
#include "tensor/dtype.h"

namespace {

using namespace vb::nccl_emu;
namespace rt = vb::rt;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---- ranks as processes ---------------------------------------------------------------------------------

// What one rank process sees: its rank, the job, flags shared by the job's processes (zero at the start;
// for ordering ranks without sleeping), and the checks that failed.
struct Rank {
  int rank, nranks;
  ncclUniqueId id;
  std::atomic<int>* flags;
  std::string failures;

  // Waits until flags[i] reaches `value` (a check fails after 10 s).
  void wait_flag(int i, int value) {
    const auto start = Clock::now();
    while (flags[i].load() < value && seconds_since(start) < 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    check(flags[i].load() >= value, fmt::format("flag {} did not reach {}", i, value));
  }

  void check(bool ok, const std::string& what) {
    if (!ok) failures += fmt::format("rank {}: {}\n", rank, what);
  }
  // A call that must succeed (ncclInProgress is polled to completion on a non-blocking communicator).
  bool ok(ncclResult_t result, const char* call, ncclComm_t comm = nullptr) {
    if (result == ncclInProgress && comm) {
      const auto start = Clock::now();
      while (ncclCommGetAsyncError(comm, &result) == ncclSuccess && result == ncclInProgress &&
             seconds_since(start) < 10)
        std::this_thread::yield();
    }
    check(result == ncclSuccess, fmt::format("{} returned {} ({}): {}", call, int(result), ncclGetErrorString(result),
                                             ncclGetLastError(comm)));
    return result == ncclSuccess;
  }
  // A blocking communicator over the whole job.
  ncclComm_t init() {
    ncclComm_t comm = nullptr;
    ok(ncclCommInitRank(&comm, nranks, id, rank), "ncclCommInitRank");
    return comm;
  }
};

struct Job {
  std::vector<std::string> reports;  // per rank: its failed checks, or why it died
  std::vector<int> status;           // per rank: waitpid's status
  bool timed_out = false;
};

// Runs body(rank) in `nranks` forked processes that share one ncclUniqueId, and waits for them for at
// most deadline_s (then kills them). A rank's process ends when body returns (exit code 0 when its
// checks passed) or when body calls _exit itself.
Job run_ranks(int nranks, const std::function<void(Rank&)>& body, double deadline_s = 15) {
  std::fflush(stdout);
  std::fflush(stderr);
  int id_pipe[2];  // rank 0 writes the id once for every other rank; each read of 128 bytes is whole
  REQUIRE(::pipe(id_pipe) == 0);
  void* shared = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(shared != MAP_FAILED);
  auto* flags = new (shared) std::atomic<int>[16]{};
  std::vector<pid_t> pids;
  std::vector<int> pipes;
  for (int r = 0; r < nranks; ++r) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      for (int fd : pipes) ::close(fd);
      Rank rank{r, nranks, {}, flags, ""};
      try {
        if (r == 0) {
          ::close(id_pipe[0]);
          if (rank.ok(ncclGetUniqueId(&rank.id), "ncclGetUniqueId"))
            for (int k = 1; k < nranks; ++k)
              rank.check(::write(id_pipe[1], &rank.id, sizeof rank.id) == ssize_t(sizeof rank.id), "writing the id");
          ::close(id_pipe[1]);
        } else {
          ::close(id_pipe[1]);
          const ssize_t k = ::read(id_pipe[0], &rank.id, sizeof rank.id);
          ::close(id_pipe[0]);
          if (k != ssize_t(sizeof rank.id)) throw std::runtime_error("no ncclUniqueId from rank 0");
        }
        body(rank);
      } catch (const std::exception& e) {
        rank.failures += fmt::format("rank {}: threw {}\n", r, e.what());
      }
      const std::string& out = rank.failures;
      size_t done = 0;
      while (done < out.size()) {
        const ssize_t k = ::write(fds[1], out.data() + done, out.size() - done);
        if (k <= 0) break;
        done += size_t(k);
      }
      ::_exit(out.empty() ? 0 : 1);  // no atexit handlers: they belong to the test process
    }
    ::close(fds[1]);
    pids.push_back(pid);
    pipes.push_back(fds[0]);
  }
  ::close(id_pipe[0]);
  ::close(id_pipe[1]);
  struct Unmap {
    void* p;
    ~Unmap() { ::munmap(p, 4096); }
  } unmap{shared};
  Job job;
  job.reports.resize(size_t(nranks));
  job.status.assign(size_t(nranks), -1);
  const auto start = Clock::now();
  std::vector<bool> open(size_t(nranks), true);
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<int> ranks;
    for (int r = 0; r < nranks; ++r)
      if (open[size_t(r)]) {
        fds.push_back({pipes[size_t(r)], POLLIN, 0});
        ranks.push_back(r);
      }
    if (fds.empty()) break;
    const double left = deadline_s - seconds_since(start);
    if (left <= 0 || ::poll(fds.data(), fds.size(), int(left * 1000) + 1) == 0) {
      job.timed_out = seconds_since(start) >= deadline_s;
      if (job.timed_out) break;
      continue;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      char buffer[4096];
      const ssize_t k = ::read(fds[i].fd, buffer, sizeof buffer);
      if (k > 0)
        job.reports[size_t(ranks[i])].append(buffer, size_t(k));
      else
        open[size_t(ranks[i])] = false;
    }
  }
  for (int r = 0; r < nranks; ++r) {
    if (job.timed_out && open[size_t(r)]) {
      ::kill(pids[size_t(r)], SIGKILL);
      job.reports[size_t(r)] += fmt::format("rank {}: did not finish within {} s (killed)\n", r, deadline_s);
    }
    int status = 0;
    ::waitpid(pids[size_t(r)], &status, 0);
    job.status[size_t(r)] = status;
    ::close(pipes[size_t(r)]);
  }
  return job;
}

// Every rank passed its checks and exited with 0.
void expect_passed(const Job& job) {
  CHECK_FALSE(job.timed_out);
  for (size_t r = 0; r < job.reports.size(); ++r) {
    CHECK_MESSAGE(job.reports[r].empty(), job.reports[r]);
    CHECK_MESSAGE((WIFEXITED(job.status[r]) && WEXITSTATUS(job.status[r]) == 0),
                  "rank ", r, " ended with status ", job.status[r]);
  }
}

// Polls the communicator's asynchronous error until it is an error or `seconds` pass.
ncclResult_t wait_for_error(ncclComm_t comm, double seconds) {
  const auto start = Clock::now();
  ncclResult_t e = ncclSuccess;
  while (seconds_since(start) < seconds) {
    if (ncclCommGetAsyncError(comm, &e) != ncclSuccess) return ncclInternalError;
    if (e != ncclSuccess && e != ncclInProgress) return e;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return e;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- element types ------------------------------------------------------------------------------------

template <class T>
struct Type;
template <>
struct Type<float> {
  static constexpr ncclDataType_t nccl = ncclFloat32;
};
template <>
struct Type<double> {
  static constexpr ncclDataType_t nccl = ncclFloat64;
};
template <>
struct Type<vb::bf16> {
  static constexpr ncclDataType_t nccl = ncclBfloat16;
};
template <>
struct Type<vb::f16> {
  static constexpr ncclDataType_t nccl = ncclFloat16;
};
template <>
struct Type<int32_t> {
  static constexpr ncclDataType_t nccl = ncclInt32;
};
template <>
struct Type<int64_t> {
  static constexpr ncclDataType_t nccl = ncclInt64;
};
template <>
struct Type<uint8_t> {
  static constexpr ncclDataType_t nccl = ncclUint8;
};
template <>
struct Type<int8_t> {
  static constexpr ncclDataType_t nccl = ncclInt8;
};

template <class T>
constexpr bool is_half = std::is_same_v<T, vb::bf16> || std::is_same_v<T, vb::f16>;
template <class T>
using Compute = std::conditional_t<is_half<T>, float, T>;  // how the library divides an average

template <class T>
T make(double v) {
  return T(Compute<T>(v));
}
template <class T>
double value_of(T x) {
  return double(Compute<T>(x));
}

// Rank k's element i: small integers, exact in every type; products stay within int8.
double input(int k, size_t i, ncclRedOp_t op, bool is_signed) {
  if (op == ncclProd) return is_signed ? double(int((size_t(k) + 2 * i) % 5) - 2) : double((size_t(k) + 2 * i) % 3 + 1);
  return is_signed ? double(int((size_t(k) * 7 + i * 3) % 8) - 3) : double((size_t(k) * 7 + i * 3) % 8);
}

// Element i of op over every rank's inputs, as the library computes it.
template <class T>
T reduced(int nranks, size_t i, ncclRedOp_t op) {
  const bool is_signed = !std::is_same_v<T, uint8_t>;
  double acc = input(0, i, op, is_signed);
  for (int k = 1; k < nranks; ++k) {
    const double x = input(k, i, op, is_signed);
    switch (op) {
      case ncclProd: acc *= x; break;
      case ncclMax: acc = std::max(acc, x); break;
      case ncclMin: acc = std::min(acc, x); break;
      default: acc += x;
    }
  }
  if (op != ncclAvg) return make<T>(acc);
  return T(Compute<T>(make<T>(acc)) / Compute<T>(nranks));  // the sum in T, then divided
}

template <class T>
struct Buffer {  // emulated device memory, host-addressable
  explicit Buffer(size_t n) : n(n), p(static_cast<T*>(rt::emu::malloc(std::max<size_t>(n, 1) * sizeof(T)))) {}
  ~Buffer() { rt::emu::free(p); }
  Buffer(const Buffer&) = delete;
  size_t n;
  T* p;
};

template <class T>
void expect_bits(Rank& r, const T* actual, const std::vector<T>& expected, const std::string& what) {
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::memcmp(&actual[i], &expected[i], sizeof(T)) != 0) {
      r.check(false, fmt::format("{}: element {} is {} but {} was expected", what, i, value_of(actual[i]),
                                 value_of(expected[i])));
      return;
    }
  }
}

const ncclRedOp_t all_ops[] = {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg};

template <class T>
void check_all_reduce(Rank& r, ncclComm_t comm, rt::Stream stream) {
  const bool is_signed = !std::is_same_v<T, uint8_t>;
  for (ncclRedOp_t op : all_ops)
    for (size_t count : {size_t(0), size_t(1), size_t(7), size_t(1000)})
      for (bool in_place : {false, true}) {
        Buffer<T> send(count), recv(count);
        for (size_t i = 0; i < count; ++i) send.p[i] = make<T>(input(r.rank, i, op, is_signed));
        T* out = in_place ? send.p : recv.p;
        const std::string what = fmt::format("ncclAllReduce(count {}, datatype {}, op {}, {})", count,
                                             int(Type<T>::nccl), int(op), in_place ? "in place" : "out of place");
        if (!r.ok(ncclAllReduce(send.p, out, count, Type<T>::nccl, op, comm, cudaStream_t(stream.handle)),
                  what.c_str(), comm))
          return;
        rt::emu::stream_synchronize(stream);
        std::vector<T> expected(count);
        for (size_t i = 0; i < count; ++i) expected[i] = reduced<T>(r.nranks, i, op);
        expect_bits(r, out, expected, what);
      }
}

template <class T>
void check_reduce_scatter(Rank& r, ncclComm_t comm, rt::Stream stream) {
  const bool is_signed = !std::is_same_v<T, uint8_t>;
  const size_t n = size_t(r.nranks);
  for (ncclRedOp_t op : all_ops)
    for (size_t c : {size_t(0), size_t(1), size_t(5)})
      for (bool in_place : {false, true}) {
        Buffer<T> send(n * c), recv(c);
        for (size_t i = 0; i < n * c; ++i) send.p[i] = make<T>(input(r.rank, i, op, is_signed));
        T* out = in_place ? send.p + size_t(r.rank) * c : recv.p;
        const std::string what = fmt::format("ncclReduceScatter(recvcount {}, datatype {}, op {}, {})", c,
                                             int(Type<T>::nccl), int(op), in_place ? "in place" : "out of place");
        if (!r.ok(ncclReduceScatter(send.p, out, c, Type<T>::nccl, op, comm, cudaStream_t(stream.handle)),
                  what.c_str(), comm))
          return;
        rt::emu::stream_synchronize(stream);
        std::vector<T> expected(c);
        for (size_t j = 0; j < c; ++j) expected[j] = reduced<T>(r.nranks, size_t(r.rank) * c + j, op);
        expect_bits(r, out, expected, what);
      }
}

template <class T>
void check_all_gather(Rank& r, ncclComm_t comm, rt::Stream stream) {
  const size_t n = size_t(r.nranks);
  for (size_t c : {size_t(0), size_t(1), size_t(5)})
    for (bool in_place : {false, true}) {
      Buffer<T> send(c), recv(n * c);
      T* in = in_place ? recv.p + size_t(r.rank) * c : send.p;
      for (size_t j = 0; j < c; ++j) in[j] = make<T>(input(r.rank, j, ncclSum, true));
      const std::string what = fmt::format("ncclAllGather(sendcount {}, datatype {}, {})", c, int(Type<T>::nccl),
                                           in_place ? "in place" : "out of place");
      if (!r.ok(ncclAllGather(in, recv.p, c, Type<T>::nccl, comm, cudaStream_t(stream.handle)), what.c_str(), comm))
        return;
      rt::emu::stream_synchronize(stream);
      std::vector<T> expected(n * c);
      for (size_t k = 0; k < n; ++k)
        for (size_t j = 0; j < c; ++j) expected[k * c + j] = make<T>(input(int(k), j, ncclSum, true));
      expect_bits(r, recv.p, expected, what);
    }
}

template <class T>
void check_broadcast(Rank& r, ncclComm_t comm, rt::Stream stream) {
  for (int root = 0; root < r.nranks; ++root)
    for (size_t count : {size_t(0), size_t(1), size_t(7)})
      for (bool in_place : {false, true}) {
        Buffer<T> send(count), recv(count);
        for (size_t i = 0; i < count; ++i) send.p[i] = make<T>(input(r.rank, i, ncclSum, true));
        T* out = in_place ? send.p : recv.p;
        const std::string what = fmt::format("ncclBroadcast(count {}, datatype {}, root {}, {})", count,
                                             int(Type<T>::nccl), root, in_place ? "in place" : "out of place");
        if (!r.ok(ncclBroadcast(send.p, out, count, Type<T>::nccl, root, comm, cudaStream_t(stream.handle)),
                  what.c_str(), comm))
          return;
        rt::emu::stream_synchronize(stream);
        std::vector<T> expected(count);
        for (size_t i = 0; i < count; ++i) expected[i] = make<T>(input(root, i, ncclSum, true));
        expect_bits(r, out, expected, what);
      }
}

template <class T>
void check_every_collective(Rank& r, ncclComm_t comm, rt::Stream stream) {
  check_all_reduce<T>(r, comm, stream);
  check_reduce_scatter<T>(r, comm, stream);
  check_all_gather<T>(r, comm, stream);
  check_broadcast<T>(r, comm, stream);
}

void check_collectives(Rank& r) {
  ncclComm_t comm = r.init();
  if (!comm) return;
  int count = -1, rank = -1;
  r.ok(ncclCommCount(comm, &count), "ncclCommCount");
  r.ok(ncclCommUserRank(comm, &rank), "ncclCommUserRank");
  r.check(count == r.nranks && rank == r.rank, fmt::format("ncclCommCount {} and ncclCommUserRank {}", count, rank));
  const rt::Stream stream = rt::emu::stream_create();
  check_every_collective<float>(r, comm, stream);
  check_every_collective<vb::bf16>(r, comm, stream);
  check_every_collective<vb::f16>(r, comm, stream);
  check_every_collective<double>(r, comm, stream);
  check_every_collective<int32_t>(r, comm, stream);
  check_every_collective<int64_t>(r, comm, stream);
  check_every_collective<uint8_t>(r, comm, stream);
  check_every_collective<int8_t>(r, comm, stream);
  r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  rt::emu::stream_destroy(stream);
}

TEST_CASE("every collective, datatype and op against a hand computation, on 1 to 4 ranks") {
  for (int nranks : {1, 2, 3, 4}) {
    CAPTURE(nranks);
    expect_passed(run_ranks(nranks, check_collectives));
  }
}

TEST_CASE("inexact float sums are bitwise identical on every rank and close to float64") {
  expect_passed(run_ranks(3, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    const size_t count = 1001;
    auto data = [](int k) {
      std::mt19937 rng(1234u + unsigned(k));
      std::uniform_real_distribution<float> u(-1, 1);
      std::vector<float> v(count);
      for (float& x : v) x = u(rng) * std::pow(10.0f, float(int(rng() % 7) - 3));
      return v;
    };
    Buffer<float> sum(count);
    const std::vector<float> mine = data(r.rank);
    std::memcpy(sum.p, mine.data(), count * sizeof(float));
    r.ok(ncclAllReduce(sum.p, sum.p, count, ncclFloat32, ncclSum, comm, nullptr), "ncclAllReduce");
    // Every rank's result, gathered as bytes: all copies must be the same bits.
    Buffer<uint8_t> all(count * sizeof(float) * size_t(r.nranks));
    r.ok(ncclAllGather(sum.p, all.p, count * sizeof(float), ncclUint8, comm, nullptr), "ncclAllGather");
    rt::emu::stream_synchronize({});
    for (int k = 1; k < r.nranks; ++k)
      r.check(std::memcmp(all.p, all.p + size_t(k) * count * sizeof(float), count * sizeof(float)) == 0,
              fmt::format("rank {}'s sum differs from rank 0's", k));
    std::vector<double> exact(count, 0.0), magnitude(count, 0.0);
    for (int k = 0; k < r.nranks; ++k) {
      const std::vector<float> v = data(k);
      for (size_t i = 0; i < count; ++i) {
        exact[i] += double(v[i]);
        magnitude[i] += std::abs(double(v[i]));
      }
    }
    for (size_t i = 0; i < count; ++i) {
      const double bound = 2 * 0x1p-24 * magnitude[i];  // two float32 roundings of partial sums
      if (std::abs(double(sum.p[i]) - exact[i]) > bound) {
        r.check(false, fmt::format("element {}: {} vs float64 {}", i, sum.p[i], exact[i]));
        break;
      }
    }
    r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  }));
}

// ---- streams, groups, non-blocking communicators, arguments -------------------------------------------------

// x[i] *= 2, one thread per element.
__global__ void double_kernel(float* x, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) x[i] *= 2;
}

TEST_CASE("stream order: kernels, copies and other streams queued after a collective wait for it") {
  expect_passed(run_ranks(2, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    const rt::Stream comm_stream = rt::emu::stream_create(), other = rt::emu::stream_create();
    const rt::Event done = rt::emu::event_create();
    const int count = 4096;
    Buffer<float> data(count), copy(count);
    for (int i = 0; i < count; ++i) data.p[i] = float(r.rank + 1);
    const cudaStream_t s = cudaStream_t(comm_stream.handle);
    // Rank 1 calls each collective once rank 0 has seen its own pending: work queued then must wait.
    if (r.rank == 1) r.wait_flag(0, 1);
    r.ok(ncclAllReduce(data.p, data.p, count, ncclFloat32, ncclSum, comm, s), "ncclAllReduce");  // 1 + 2
    rt::emu::event_record(done, comm_stream);
    if (r.rank == 0) {
      r.check(!rt::emu::event_done(done), "event_done before the peer has even called");
      r.flags[0] = 1;
    }
    vb::launch(double_kernel, {dim3(count / 256), dim3(256), 0, comm_stream}, data.p, count);  // after the sum
    r.check(rt::emu::event_done(done), "event_done after a kernel that waited for the collective");

    if (r.rank == 1) r.wait_flag(1, 1);
    r.ok(ncclAllReduce(data.p, data.p, count, ncclFloat32, ncclSum, comm, s), "ncclAllReduce");  // 6 + 6
    rt::emu::event_record(done, comm_stream);
    if (r.rank == 0) {
      r.check(!rt::emu::event_done(done), "event_done before the peer has even called");
      r.flags[1] = 1;
    }
    rt::emu::stream_wait(other, done);
    rt::emu::copy_async(copy.p, data.p, count * sizeof(float), other);  // another stream, after the event
    for (int i = 0; i < count; ++i) {
      if (copy.p[i] != 12.0f) {
        r.check(false, fmt::format("element {}: the copy read {} instead of 12", i, copy.p[i]));
        break;
      }
    }
    rt::emu::event_destroy(done);
    rt::emu::stream_destroy(comm_stream);
    rt::emu::stream_destroy(other);
    r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  }));
}

TEST_CASE("groups: calls between ncclGroupStart and ncclGroupEnd are issued at ncclGroupEnd, in order") {
  expect_passed(run_ranks(3, [](Rank& r) {
    r.check(ncclGroupEnd() == ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
    ncclComm_t comm = r.init();
    if (!comm) return;
    const size_t n = size_t(r.nranks);
    Buffer<float> a(10), gathered(3 * n), b(4);
    for (size_t i = 0; i < 10; ++i) a.p[i] = float(r.rank * 10 + int(i));
    for (size_t i = 0; i < 4; ++i) b.p[i] = r.rank == 2 ? float(100 + i) : -1.0f;
    r.ok(ncclGroupStart(), "ncclGroupStart");
    r.ok(ncclGroupStart(), "nested ncclGroupStart");
    r.ok(ncclAllReduce(a.p, a.p, 10, ncclFloat32, ncclMax, comm, nullptr), "ncclAllReduce in a group");
    r.ok(ncclAllGather(a.p + 2, gathered.p, 3, ncclFloat32, comm, nullptr), "ncclAllGather in a group");
    r.ok(ncclBroadcast(b.p, b.p, 4, ncclFloat32, 2, comm, nullptr), "ncclBroadcast in a group");
    r.ok(ncclGroupEnd(), "inner ncclGroupEnd");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    r.check(a.p[0] == float(r.rank * 10) && std::isnan(gathered.p[0]), "a grouped call ran before ncclGroupEnd");
    r.ok(ncclGroupEnd(), "ncclGroupEnd");
    rt::emu::stream_synchronize({});
    // The all-gather was issued after the all-reduce on the same stream, so it gathers the maxima.
    for (size_t i = 0; i < 10; ++i) r.check(a.p[i] == float(20 + int(i)), fmt::format("max element {}", i));
    for (size_t i = 0; i < 3 * n; ++i) r.check(gathered.p[i] == float(22 + int(i % 3)), fmt::format("gathered {}", i));
    for (size_t i = 0; i < 4; ++i) r.check(b.p[i] == float(100 + i), fmt::format("broadcast element {}", i));
    r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  }));
}

TEST_CASE("non-blocking communicators: ncclInProgress until ncclCommGetAsyncError says otherwise") {
  expect_passed(run_ranks(2, [](Rank& r) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = nullptr;
    r.check(ncclCommInitRankConfig(&comm, r.nranks, r.id, r.rank, &config) == ncclInProgress,
            "non-blocking init returns ncclInProgress");
    if (!comm) return;
    ncclResult_t state = ncclInProgress;
    const auto start = Clock::now();
    while (state == ncclInProgress && seconds_since(start) < 10) ncclCommGetAsyncError(comm, &state);
    r.check(state == ncclSuccess, fmt::format("initialisation ended with {}", int(state)));
    Buffer<int64_t> x(5);
    for (size_t i = 0; i < 5; ++i) x.p[i] = int64_t(r.rank) * 1000000000000 + int64_t(i);
    r.check(ncclAllReduce(x.p, x.p, 5, ncclInt64, ncclSum, comm, nullptr) == ncclInProgress,
            "a collective returns ncclInProgress");
    r.check(ncclAllReduce(x.p, x.p, 5, ncclInt64, ncclSum, comm, nullptr) == ncclInvalidUsage &&
                contains(ncclGetLastError(comm), "poll ncclCommGetAsyncError"),
            std::string("a call before polling the previous one: ") + ncclGetLastError(comm));
    r.ok(ncclCommGetAsyncError(comm, &state), "ncclCommGetAsyncError");
    r.check(state == ncclSuccess, "the enqueue is complete");
    r.check(ncclCommFinalize(comm) == ncclInProgress, "a non-blocking finalize returns ncclInProgress");
    state = ncclInProgress;
    while (state == ncclInProgress && seconds_since(start) < 10) ncclCommGetAsyncError(comm, &state);
    r.check(state == ncclSuccess, fmt::format("finalize ended with {}", int(state)));
    for (size_t i = 0; i < 5; ++i) r.check(x.p[i] == 1000000000000 + 2 * int64_t(i), fmt::format("element {}", i));
    r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  }));
}

TEST_CASE("argument errors name the argument; versions and error strings") {
  int version = 0;
  CHECK(ncclGetVersion(&version) == ncclSuccess);
  CHECK(version == NCCL_VERSION_CODE);
  CHECK(std::string(ncclGetErrorString(ncclRemoteError)).find("remote process") != std::string::npos);
  CHECK(ncclAllReduce(nullptr, nullptr, 0, ncclFloat32, ncclSum, nullptr, nullptr) == ncclInvalidArgument);
  CHECK(contains(ncclGetLastError(nullptr), "ncclAllReduce: comm is NULL"));
  ncclUniqueId foreign{};
  ncclComm_t none = nullptr;
  CHECK(ncclCommInitRank(&none, 2, foreign, 0) == ncclInvalidArgument);
  CHECK(contains(ncclGetLastError(nullptr), "not made by this library"));
  CHECK(ncclCommInitRank(&none, 2, foreign, 2) == ncclInvalidArgument);
  CHECK(contains(ncclGetLastError(nullptr), "rank 2 of nranks 2"));

  expect_passed(run_ranks(1, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    Buffer<float> b(4);
    auto expect = [&](ncclResult_t got, const char* part) {
      r.check(got == ncclInvalidArgument && contains(ncclGetLastError(comm), part),
              fmt::format("{}: got {}, {}", part, int(got), ncclGetLastError(comm)));
    };
    expect(ncclAllReduce(b.p, b.p, 4, ncclDataType_t(42), ncclSum, comm, nullptr), "datatype 42");
    expect(ncclAllReduce(b.p, b.p, 4, ncclFloat32, ncclRedOp_t(9), comm, nullptr), "op 9");
    expect(ncclAllReduce(b.p, b.p, 4, ncclFloat8e4m3, ncclSum, comm, nullptr), "ncclFloat8e4m3 reductions");
    expect(ncclAllReduce(nullptr, b.p, 4, ncclFloat32, ncclSum, comm, nullptr), "sendbuff is NULL with count 4");
    expect(ncclBroadcast(b.p, b.p, 4, ncclFloat32, 1, comm, nullptr), "root 1 is not a rank");
    r.ok(ncclAllReduce(nullptr, nullptr, 0, ncclFloat32, ncclSum, comm, nullptr), "count 0 with NULL buffers");
    r.ok(ncclCommFinalize(comm), "ncclCommFinalize");
    r.check(ncclAllReduce(b.p, b.p, 4, ncclFloat32, ncclSum, comm, nullptr) == ncclInvalidUsage,
            "a collective after ncclCommFinalize");
    r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
  }));
}

// ---- misuse that NCCL turns into a hang -------------------------------------------------------------------

// Every rank runs `calls` (its own collectives after a first good one), then expects its communicator to
// fail with `code` and a message containing every string of `parts`.
void expect_failure_everywhere(int nranks, const std::function<void(Rank&, ncclComm_t, float*)>& calls,
                               ncclResult_t code, const std::vector<std::string>& parts) {
  const auto start = Clock::now();
  expect_passed(run_ranks(nranks, [&](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    Buffer<float> b(100 * size_t(r.nranks));
    for (size_t i = 0; i < b.n; ++i) b.p[i] = 1;
    r.ok(ncclAllReduce(b.p, b.p, 100, ncclFloat32, ncclSum, comm, nullptr), "the first, good collective");
    calls(r, comm, b.p);
    const ncclResult_t e = wait_for_error(comm, 5);
    const std::string message = ncclGetLastError(comm);
    r.check(e == code, fmt::format("the error is {} ({}), expected {}: {}", int(e), ncclGetErrorString(e), int(code),
                                   message));
    for (const std::string& part : parts)
      r.check(contains(message, part), fmt::format("the message lacks \"{}\": {}", part, message));
    rt::emu::stream_synchronize({});  // failed work does not hold the stream
    ncclCommAbort(comm);
  }));
  CHECK(seconds_since(start) < 5);
}

TEST_CASE("desync: ranks that disagree on the count, the datatype, the op or the call") {
  SUBCASE("count") {
    expect_failure_everywhere(3, [](Rank& r, ncclComm_t comm, float* b) {
      ncclAllReduce(b, b, r.rank == 2 ? 50 : 100, ncclFloat32, ncclSum, comm, nullptr);
    }, ncclInvalidUsage, {"desync at collective #1", "rank 2 called ncclAllReduce(count 50, ncclFloat32, ncclSum)",
                          "called ncclAllReduce(count 100, ncclFloat32, ncclSum)"});
  }
  SUBCASE("datatype") {
    expect_failure_everywhere(2, [](Rank& r, ncclComm_t comm, float* b) {
      ncclAllReduce(b, b, 100, r.rank == 1 ? ncclFloat16 : ncclFloat32, ncclSum, comm, nullptr);
    }, ncclInvalidUsage, {"desync at collective #1", "rank 0 called ncclAllReduce(count 100, ncclFloat32, ncclSum)",
                          "rank 1 called ncclAllReduce(count 100, ncclFloat16, ncclSum)"});
  }
  SUBCASE("op") {
    expect_failure_everywhere(4, [](Rank& r, ncclComm_t comm, float* b) {
      ncclAllReduce(b, b, 100, ncclFloat32, r.rank == 0 ? ncclMax : ncclSum, comm, nullptr);
    }, ncclInvalidUsage, {"desync at collective #1", "rank 0 called ncclAllReduce(count 100, ncclFloat32, ncclMax)",
                          "called ncclAllReduce(count 100, ncclFloat32, ncclSum)"});
  }
  SUBCASE("another collective") {
    expect_failure_everywhere(2, [](Rank& r, ncclComm_t comm, float* b) {
      if (r.rank == 1)
        ncclAllGather(b, b + 100, 50, ncclFloat32, comm, nullptr);
      else
        ncclAllReduce(b, b, 100, ncclFloat32, ncclSum, comm, nullptr);
    }, ncclInvalidUsage, {"desync at collective #1: rank", "ncclAllReduce(count 100, ncclFloat32, ncclSum)",
                          "rank 1 called ncclAllGather(count 50, ncclFloat32)"});
  }
  SUBCASE("a broadcast's root") {
    expect_failure_everywhere(3, [](Rank& r, ncclComm_t comm, float* b) {
      ncclBroadcast(b, b, 10, ncclFloat32, r.rank == 1 ? 1 : 0, comm, nullptr);
    }, ncclInvalidUsage, {"desync at collective #1", "rank 1 called ncclBroadcast(count 10, ncclFloat32, root 1)"});
  }
}

TEST_CASE("desync: a rank that skips a collective") {
  expect_failure_everywhere(3, [](Rank& r, ncclComm_t comm, float* b) {
    if (r.rank != 1) ncclAllReduce(b, b, 100, ncclFloat32, ncclSum, comm, nullptr);  // rank 1 skips it
    ncclBroadcast(b, b, 10, ncclFloat32, 0, comm, nullptr);
  }, ncclInvalidUsage, {"desync at collective #1", "rank 1 called ncclBroadcast(count 10, ncclFloat32, root 0)"});
}

TEST_CASE("a rank that exits in the middle of a collective is named by the others") {
  const auto start = Clock::now();
  const Job job = run_ranks(3, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    const size_t count = size_t(1) << 21;
    Buffer<float> b(count);
    for (size_t i = 0; i < count; ++i) b.p[i] = 1;
    r.ok(ncclAllReduce(b.p, b.p, 10, ncclFloat32, ncclSum, comm, nullptr), "the first, good collective");
    rt::emu::stream_synchronize({});
    if (r.rank == 1) r.wait_flag(0, 2);  // the others are inside the collective
    ncclAllReduce(b.p, b.p, count, ncclFloat32, ncclSum, comm, nullptr);
    if (r.rank == 1) ::raise(SIGKILL);  // long before its part of 8 MB has moved
    ++r.flags[0];
    const ncclResult_t e = wait_for_error(comm, 5);
    const std::string message = ncclGetLastError(comm);
    r.check(e == ncclRemoteError, fmt::format("the error is {}: {}", int(e), message));
    r.check(contains(message, "rank 1 closed its connection") &&
                contains(message, "rank 1 has exited (or was killed)") &&
                contains(message, "collective #1, ncclAllReduce(count 2097152, ncclFloat32, ncclSum)"),
            message);
    ncclCommAbort(comm);
  });
  CHECK_FALSE(job.timed_out);
  for (int r : {0, 2}) CHECK_MESSAGE(job.reports[size_t(r)].empty(), job.reports[size_t(r)]);
  CHECK(WIFSIGNALED(job.status[1]));
  CHECK(seconds_since(start) < 5);
}

TEST_CASE("a rank that finalises before the others' last collective is named with its count") {
  expect_passed(run_ranks(2, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    Buffer<float> b(8);
    r.ok(ncclAllReduce(b.p, b.p, 8, ncclFloat32, ncclSum, comm, nullptr), "the collective both call");
    if (r.rank == 1) {
      r.ok(ncclCommDestroy(comm), "ncclCommDestroy");
      return;
    }
    ncclAllReduce(b.p, b.p, 8, ncclFloat32, ncclSum, comm, nullptr);
    const ncclResult_t e = wait_for_error(comm, 5);
    const std::string message = ncclGetLastError(comm);
    r.check(e == ncclRemoteError && contains(message, "rank 1 finalised its communicator after 1 collectives while "
                                                      "rank 0 was in collective #1"),
            message);
    ncclCommAbort(comm);
  }));
}

TEST_CASE("a stalled rank is waited for; ncclCommAbort returns at once and releases the stream") {
  expect_passed(run_ranks(3, [](Rank& r) {
    ncclComm_t comm = r.init();
    if (!comm) return;
    Buffer<float> b(1000);
    const rt::Stream stream = rt::emu::stream_create();
    if (r.rank == 2) {  // stalled: calls once the others have given up
      r.wait_flag(0, 2);
      ncclAllReduce(b.p, b.p, 1000, ncclFloat32, ncclSum, comm, cudaStream_t(stream.handle));
      const ncclResult_t e = wait_for_error(comm, 5);
      const std::string message = ncclGetLastError(comm);
      r.check(e == ncclRemoteError && contains(message, "aborted its communicator (ncclCommAbort)"), message);
      rt::emu::stream_synchronize(stream);
      ncclCommAbort(comm);
      rt::emu::stream_destroy(stream);
      return;
    }
    r.ok(ncclAllReduce(b.p, b.p, 1000, ncclFloat32, ncclSum, comm, cudaStream_t(stream.handle)), "ncclAllReduce");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ncclResult_t state = ncclInternalError;
    ncclCommGetAsyncError(comm, &state);
    r.check(state == ncclSuccess, fmt::format("a stalled peer is not an error by itself (got {})", int(state)));
    std::atomic<bool> released{false};
    std::thread waiter([&] {
      rt::emu::stream_synchronize(stream);  // blocked on the collective until the abort
      released = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    r.check(!released, "stream_synchronize returned while the collective waits for rank 2");
    ++r.flags[1];  // neither aborts before both have looked
    r.wait_flag(1, 2);
    const auto start = Clock::now();
    r.ok(ncclCommAbort(comm), "ncclCommAbort");
    const double took = seconds_since(start);
    waiter.join();
    r.check(took < 0.5, fmt::format("ncclCommAbort took {} s", took));
    r.check(released, "stream_synchronize released by the abort");
    ++r.flags[0];
    rt::emu::stream_destroy(stream);
  }));
}

TEST_CASE("ranks that disagree on nranks fail at initialisation") {
  expect_passed(run_ranks(2, [](Rank& r) {
    ncclComm_t comm = nullptr;
    const ncclResult_t e = ncclCommInitRank(&comm, r.rank == 1 ? 3 : 2, r.id, r.rank);
    const std::string message = ncclGetLastError(nullptr);
    r.check(e == ncclInvalidUsage && comm == nullptr && contains(message, "nranks 2") && contains(message, "nranks 3"),
            fmt::format("{}: {}", int(e), message));
  }));
}

}  // namespace
#endif
