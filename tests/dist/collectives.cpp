// dist-ranks: 2 3 4
// Every collective of communicator.h against a hand computation, through init_process_group(detect_launch())
// under mpirun: on device cpu (the mpi backend) and on device emu (the emulated NCCL; skipped, saying so,
// while this build has none). Every dtype, sizes 0, 1 and not divisible by the world size, each reduce op,
// broadcast from every root, barrier, many collectives in flight before the first wait, and the in-place
// forms of all_gather and reduce_scatter (a rank's shard inside the flat buffer).
//
// Values are multiples of 1/4 in [-5, 5] (integers for integer dtypes, with a 2^33 offset for int64 so that
// the upper half of a 64-bit word travels too); sums over at most 4 ranks are then exact in every dtype,
// whatever the order of summation, so results are compared exactly. Avg is exact where the sum is
// divided after summing (the mpi backend); NCCL multiplies each input by 1/n first, so floating Avg is
// compared within two units in the last place of the dtype.
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "kernels/dist/init.h"
#include "tests/support/check.h"

using namespace vb;
using namespace vb::dist;

namespace {

const DType kDTypes[] = {DType::Float32, DType::BFloat16, DType::Float16, DType::Float64, DType::Int32, DType::Int64};
const dist::ReduceOp kOps[] = {dist::ReduceOp::Sum, dist::ReduceOp::Avg, dist::ReduceOp::Max, dist::ReduceOp::Min};

// Sizes for a world of n: empty, one element (shards of size 0 on every rank but the first), fewer
// elements than ranks, not a multiple of n, and a multiple of n.
std::vector<int64_t> sizes_for(int n) { return {0, 1, int64_t(n) - 1, 7 * int64_t(n) + 3, 64 * int64_t(n), 1001}; }

bool is_int(DType t) { return t == DType::Int32 || t == DType::Int64; }

// Rank r's element i.
double value(int r, int64_t i, DType t) {
  const int k = int((i * 7 + r * 13 + 5) % 41) - 20;  // [-20, 20]
  if (t == DType::Int64) return double(k) + double(int64_t(1) << 33) * (r % 2 ? 1 : -1);
  if (t == DType::Int32) return k;
  return k / 4.0;
}
// Values whose average over n ranks is exact: base + d_r with Σ d_r = 0, all positive.
double avg_value(int r, int n, int64_t i) {
  const double base = double(i % 9) + 4;
  return base + (r == 0 ? -(n - 1) : 1);
}

Tensor make(const std::vector<double>& v, DType t, Device d) {
  return to(Tensor::from_vector(v, {int64_t(v.size())}, t), d);
}
std::vector<double> read(const Tensor& t) { return to(t, Device()).to_vector(); }

// One unit in the last place at |x|, for the dtype's mantissa.
double ulp(double x, DType t) {
  const int bits = t == DType::BFloat16 ? 8 : t == DType::Float16 ? 11 : t == DType::Float32 ? 24 : 53;
  return std::ldexp(1.0, std::ilogb(std::max(std::abs(x), 1e-30)) - bits + 1);
}

// Exact equality (or within `ulps` units in the last place), reporting the first difference.
void expect_equal(const std::vector<double>& got, const std::vector<double>& want, DType t, const std::string& what,
                  double ulps = 0) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": ", got.size(), " elements, expected ", want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = ulps * ulp(want[i], t);
    if (!(std::abs(got[i] - want[i]) <= tol)) {
      FAIL_CHECK(what, ": element ", i, " is ", got[i], ", expected ", want[i]);
      return;
    }
  }
}

std::unique_ptr<ProcessGroup> join(Device device, const std::string& backend) {
  return init_process_group(detect_launch(), CommOptions{backend, device, 60});
}

std::string label(const char* what, DType t, int64_t n, const char* op = nullptr) {
  return op ? fmt::format("{} {} n={} {}", what, t, n, op) : fmt::format("{} {} n={}", what, t, n);
}

// Rank me's input of `count` elements for a reduction with `op` over n ranks, and the reduced result every
// element must equal (exact in every dtype: small integers; Avg's inputs average to an integer).
void reduction_case(int n, int me, DType t, dist::ReduceOp op, int64_t count, std::vector<double>& mine,
                    std::vector<double>& want) {
  mine.assign(size_t(count), 0);
  want.assign(size_t(count), 0);
  for (int64_t i = 0; i < count; ++i) {
    if (op == dist::ReduceOp::Avg) {
      mine[size_t(i)] = avg_value(me, n, i);
      want[size_t(i)] = double(i % 9) + 4;
      continue;
    }
    mine[size_t(i)] = value(me, i, t);
    double acc = value(0, i, t);
    for (int r = 1; r < n; ++r) {
      const double v = value(r, i, t);
      acc = op == dist::ReduceOp::Sum ? acc + v : op == dist::ReduceOp::Max ? std::max(acc, v) : std::min(acc, v);
    }
    want[size_t(i)] = acc;
  }
}

void all_reduce_cases(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DType t : kDTypes)
    for (dist::ReduceOp op : kOps)
      for (int64_t count : sizes_for(n)) {
        std::vector<double> mine, want;
        reduction_case(n, me, t, op, count, mine, want);
        Tensor x = make(mine, t, comm.device());
        comm.all_reduce(x, op)->wait();
        const double ulps = op == dist::ReduceOp::Avg && !is_int(t) ? 2 : 0;
        expect_equal(read(x), want, t, label("all_reduce", t, count, reduce_op_name(op)), ulps);
      }
}

void reduce_scatter_cases(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DType t : kDTypes)
    for (dist::ReduceOp op : kOps)
      for (int64_t count : sizes_for(n)) {
        std::vector<double> mine, full;
        reduction_case(n, me, t, op, count, mine, full);
        const ShardRange s = shard_range(count, n, me);
        Tensor in = make(mine, t, comm.device());
        Tensor out = to(Tensor::from_vector(std::vector<double>(size_t(s.size()), -99), {s.size()}, t), comm.device());
        comm.reduce_scatter(in, out, op)->wait();
        const std::vector<double> want(full.begin() + s.begin, full.begin() + s.end);
        const double ulps = op == dist::ReduceOp::Avg && !is_int(t) ? 2 : 0;
        expect_equal(read(out), want, t, label("reduce_scatter", t, count, reduce_op_name(op)), ulps);
        expect_equal(read(in), mine, t, label("reduce_scatter leaves its input", t, count));
      }
}

void all_gather_cases(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DType t : kDTypes)
    for (int64_t count : sizes_for(n)) {
      // Element i comes from the rank whose shard holds it: its value says which rank sent it.
      std::vector<double> want(static_cast<size_t>(count));
      for (int r = 0; r < n; ++r) {
        const ShardRange s = shard_range(count, n, r);
        for (int64_t i = s.begin; i < s.end; ++i) want[size_t(i)] = value(r, i, t);
      }
      const ShardRange s = shard_range(count, n, me);
      Tensor in = make(std::vector<double>(want.begin() + s.begin, want.begin() + s.end), t, comm.device());
      Tensor out = to(Tensor::from_vector(std::vector<double>(size_t(count), -99), {count}, t), comm.device());
      comm.all_gather(in, out)->wait();
      expect_equal(read(out), want, t, label("all_gather", t, count));
    }
}

void broadcast_cases(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  for (DType t : kDTypes)
    for (int64_t count : sizes_for(n))
      for (int root = 0; root < n; ++root) {
        std::vector<double> mine(static_cast<size_t>(count)), want(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {
          mine[size_t(i)] = value(me, i, t);
          want[size_t(i)] = value(root, i, t);
        }
        Tensor x = make(mine, t, comm.device());
        comm.broadcast(x, root)->wait();
        expect_equal(read(x), want, t, fmt::format("broadcast {} n={} from root {}", t, count, root));
      }
}

void barrier_case(Communicator& comm) {
  // The last rank arrives 300 ms late: everyone else's barrier must wait for it.
  const bool late = comm.rank() == comm.size() - 1;
  if (late) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  comm.barrier();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!late) CHECK_MESSAGE(waited > 0.2, "rank ", comm.rank(), " left the barrier after ", waited, " s");
  for (int i = 0; i < 5; ++i) comm.barrier();
}

void in_flight_case(Communicator& comm) {
  // 60 collectives of every kind queued before the first wait, waited for in reverse order; their
  // tensors are held only by the Works.
  const int n = comm.size(), me = comm.rank();
  struct Pending {
    std::shared_ptr<Work> work;
    Tensor result;
    std::vector<double> want;
    DType dtype;
    std::string what;
  };
  std::vector<Pending> pending;
  for (int k = 0; k < 60; ++k) {
    const DType t = kDTypes[size_t(k) % std::size(kDTypes)];
    const int64_t count = 5 + k;
    const ShardRange s = shard_range(count, n, me);
    std::vector<double> mine(static_cast<size_t>(count)), sum(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      mine[size_t(i)] = value(me, i + k, t);
      for (int r = 0; r < n; ++r) sum[size_t(i)] += value(r, i + k, t);
    }
    Pending p{nullptr, Tensor(), {}, t, fmt::format("in flight #{} ", k)};
    switch (k % 4) {
      case 0: {
        p.result = make(mine, t, comm.device());
        p.work = comm.all_reduce(p.result, dist::ReduceOp::Sum);
        p.want = sum;
        p.what += "all_reduce";
        break;
      }
      case 1: {
        p.result = to(Tensor::from_vector(std::vector<double>(size_t(s.size()), 0), {s.size()}, t), comm.device());
        p.work = comm.reduce_scatter(make(mine, t, comm.device()), p.result, dist::ReduceOp::Sum);
        p.want.assign(sum.begin() + s.begin, sum.begin() + s.end);
        p.what += "reduce_scatter";
        break;
      }
      case 2: {
        std::vector<double> full(static_cast<size_t>(count));
        for (int r = 0; r < n; ++r) {
          const ShardRange rs = shard_range(count, n, r);
          for (int64_t i = rs.begin; i < rs.end; ++i) full[size_t(i)] = value(r, i + k, t);
        }
        p.result = to(Tensor::from_vector(std::vector<double>(size_t(count), 0), {count}, t), comm.device());
        p.work = comm.all_gather(make(std::vector<double>(full.begin() + s.begin, full.begin() + s.end), t,
                                      comm.device()), p.result);
        p.want = full;
        p.what += "all_gather";
        break;
      }
      case 3: {
        const int root = k % n;
        p.result = make(mine, t, comm.device());
        p.work = comm.broadcast(p.result, root);
        p.want.resize(size_t(count));
        for (int64_t i = 0; i < count; ++i) p.want[size_t(i)] = value(root, i + k, t);
        p.what += "broadcast";
        break;
      }
    }
    pending.push_back(std::move(p));
  }
  CHECK(comm.sequence() >= 60);
  for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
    it->work->wait();
    CHECK(it->work->completed());
    expect_equal(read(it->result), it->want, it->dtype, it->what);
  }
}

void in_place_cases(Communicator& comm) {
  // ZeRO's flat buffers: all_gather whose input is this rank's shard of its output, reduce_scatter whose
  // output is this rank's shard of its input (NCCL's in-place forms), equal shards.
  const int n = comm.size(), me = comm.rank();
  for (DType t : kDTypes) {
    const int64_t shard = 5, count = shard * n;
    std::vector<double> gathered(static_cast<size_t>(count)), flat(static_cast<size_t>(count)),
        sum(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      gathered[size_t(i)] = value(int(i / shard), i, t);
      flat[size_t(i)] = i / shard == me ? gathered[size_t(i)] : -99;
      for (int r = 0; r < n; ++r) sum[size_t(i)] += value(r, i, t);
    }
    Tensor buffer = make(flat, t, comm.device());
    comm.all_gather(buffer.as_strided({shard}, {1}, me * shard), buffer)->wait();
    expect_equal(read(buffer), gathered, t, label("all_gather in place", t, count));

    std::vector<double> mine(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) mine[size_t(i)] = value(me, i, t);
    Tensor grads = make(mine, t, comm.device());
    Tensor my_shard = grads.as_strided({shard}, {1}, me * shard);
    comm.reduce_scatter(grads, my_shard, dist::ReduceOp::Sum)->wait();
    expect_equal(read(my_shard), std::vector<double>(sum.begin() + me * shard, sum.begin() + (me + 1) * shard), t,
                 label("reduce_scatter in place", t, count));
  }
}

void argument_errors(Communicator& comm) {
  // Checked before a sequence number is taken, on every rank alike, so the ranks stay in step.
  const uint64_t before = comm.sequence();
  Tensor in = make(std::vector<double>(10, 1), DType::Float32, comm.device());
  Tensor wrong = make(std::vector<double>(11, 1), DType::Float32, comm.device());
  CHECK_THROWS_WITH_AS(comm.reduce_scatter(in, wrong, dist::ReduceOp::Sum), doctest::Contains("shard of 10 elements"),
                       vb::Error);
  CHECK_THROWS_WITH_AS(comm.broadcast(in, comm.size()), doctest::Contains("is not a rank of this job"), vb::Error);
  Tensor b = make(std::vector<double>(3, 1), DType::Bool, comm.device());
  CHECK_THROWS_WITH_AS(comm.all_reduce(b, dist::ReduceOp::Sum), doctest::Contains("is bool"), vb::Error);
  CHECK(comm.sequence() == before);
}

void all_cases(Device device, const std::string& backend) {
  const auto start = std::chrono::steady_clock::now();
  auto group = join(device, backend);
  Communicator& comm = *group->comm;
  CHECK(comm.backend() == backend);
  CHECK(comm.rank() == group->launch.rank);
  CHECK(comm.size() == group->launch.world);
  all_reduce_cases(comm);
  reduce_scatter_cases(comm);
  all_gather_cases(comm);
  broadcast_cases(comm);
  barrier_case(comm);
  in_flight_case(comm);
  in_place_cases(comm);
  argument_errors(comm);
  comm.barrier();
  if (comm.rank() == 0)
    MESSAGE(fmt::format("{} on {}: {} ranks, {} collectives in {:.2f} s", backend, device, comm.size(),
                        comm.sequence(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
}

}  // namespace

TEST_CASE("collectives on device cpu (mpi backend)") {
  REQUIRE_MESSAGE(detect_launch().launcher == "mpirun", "run this test under mpirun (ctest does)");
  all_cases(Device(DeviceType::CPU), "mpi");
}

TEST_CASE("collectives on device emu (emulated nccl backend)") {
  if (!has_comm_backend("nccl", DeviceType::EMU)) {
    if (detect_launch().rank == 0)
      MESSAGE("skipped: this build has no nccl backend for device emu (available: ", available_backends(), ")");
    return;
  }
  all_cases(Device(DeviceType::EMU), "nccl");
}
