// Collective benchmark, after nccl-tests: all_reduce (sum), reduce_scatter (sum) and all_gather swept
// from 1 KB to 256 MB in steps of 4×, through the Communicator of init_process_group (the mpi backend on
// device cpu, nccl on cuda and emu). Run it under a launcher, one process per rank:
//   mpirun -np 4 bench_dist_collectives [--device cpu|emu|cuda] [--dtype float32|bfloat16|float16|float64|int32|int64]
//                                       [--min-bytes 1024] [--max-bytes 268435456] [--iters 10] [--warmup 3]
// Each size is S bytes, the whole array (per-rank count × n for reduce_scatter's input and all_gather's
// output, the tensor itself for all_reduce). An iteration is a barrier, then the collective and its wait
// (plus a device synchronise off the CPU), timed on every rank; the time printed is the median over the
// iterations of the slowest rank's time. Bandwidths as nccl-tests' doc/PERFORMANCE.md defines them:
//   algbw = S / t
//   busbw = algbw · 2(n−1)/n   all_reduce  (each byte crosses a link 2(n−1)/n times in a ring)
//   busbw = algbw · (n−1)/n    reduce_scatter, all_gather
// busbw is the figure to hold against the hardware's link bandwidth. The first iteration of each size is
// checked against the sum computed here (exact: small integers); a wrong result says WRONG and makes the
// exit status 1. Exit status 77: the backend of --device is not in this build.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/dist/init.h"

using namespace vb;
using namespace vb::dist;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string device = "cpu";
  DType dtype = DType::Float32;
  int64_t min_bytes = 1024;
  int64_t max_bytes = int64_t(256) << 20;
  int iters = 10;
  int warmup = 3;
};

DType parse_dtype(const std::string& s) {
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Float64, DType::Int32, DType::Int64})
    if (dtype_name(t) == s) return t;
  fail("bench_dist_collectives: --dtype {} is not one of float32, bfloat16, float16, float64, int32, int64", s);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      VB_CHECK(i + 1 < argc, "bench_dist_collectives: {} needs a value", a);
      return argv[++i];
    };
    if (a == "--device") o.device = value();
    else if (a == "--dtype") o.dtype = parse_dtype(value());
    else if (a == "--min-bytes") o.min_bytes = std::stoll(value());
    else if (a == "--max-bytes") o.max_bytes = std::stoll(value());
    else if (a == "--iters") o.iters = std::stoi(value());
    else if (a == "--warmup") o.warmup = std::stoi(value());
    else fail("bench_dist_collectives: unknown option {} (see the usage at the top of bench/dist_collectives.cpp)", a);
  }
  VB_CHECK(o.iters >= 1 && o.warmup >= 0 && o.min_bytes >= 1 && o.max_bytes >= o.min_bytes,
           "bench_dist_collectives: --iters {} --warmup {} --min-bytes {} --max-bytes {}", o.iters, o.warmup,
           o.min_bytes, o.max_bytes);
  return o;
}

std::string human_bytes(int64_t b) {
  if (b >= (int64_t(1) << 30)) return fmt::format("{} GB", b >> 30);
  if (b >= (int64_t(1) << 20)) return fmt::format("{} MB", b >> 20);
  if (b >= (int64_t(1) << 10)) return fmt::format("{} KB", b >> 10);
  return fmt::format("{} B", b);
}

// Rank r's element i: small integers, so that sums over ranks are exact in every dtype (n ≤ 36 in bfloat16).
double value(int r, int64_t i) { return double((i + r) % 7); }

Tensor filled(int64_t count, int64_t first, int rank, DType t, Device d) {
  std::vector<double> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[size_t(i)] = value(rank, first + i);
  return to(Tensor::from_vector(v, {count}, t), d);
}

// "ok", or the first element that differs from want(i).
template <typename F>
std::string check(const Tensor& t, int64_t first, F&& want) {
  const std::vector<double> got = to(t, Device()).to_vector();
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = want(first + int64_t(i));
    if (got[i] != w) return fmt::format("WRONG (element {}: {} instead of {})", first + int64_t(i), got[i], w);
  }
  return "ok";
}

struct Result {
  double seconds;
  std::string check;
};

// The median over iterations of the slowest rank's time for `run`, and the check of the first iteration.
Result measure(Communicator& comm, const Options& o, const std::function<void()>& run,
               const std::function<std::string()>& check_first) {
  const Device dev = comm.device();
  auto timed = [&] {
    comm.barrier();
    const auto start = Clock::now();
    run();
    if (!dev.is_cpu()) runtime(dev.type).synchronize(dev);
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  std::vector<double> t;
  t.push_back(timed());
  const std::string verdict = check_first();
  for (int i = 0; i < o.warmup; ++i) timed();
  for (int i = 1; i < o.iters; ++i) t.push_back(timed());
  // The slowest rank sets each iteration's time.
  Tensor times = to(Tensor::from_vector(t, {int64_t(t.size())}, DType::Float64), dev);
  comm.all_reduce(times, dist::ReduceOp::Max)->wait();
  std::vector<double> slowest = to(times, Device()).to_vector();
  std::sort(slowest.begin(), slowest.end());
  return {slowest[slowest.size() / 2], verdict};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const Launch launch = detect_launch();
    Device device = Device::parse(o.device);
    if (device.type == DeviceType::CUDA) device.index = launch.local_rank;  // one GPU per rank on its node
    const std::string backend = device.is_cpu() ? "mpi" : "nccl";
    if (!has_comm_backend(backend, device.type)) {
      if (launch.rank == 0)
        std::printf("bench_dist_collectives: skipped: no %s backend for device %s in this build (it has: %s)\n",
                    backend.c_str(), o.device.c_str(), available_backends().c_str());
      return 77;
    }
    auto group = init_process_group(launch, CommOptions{backend, device, 600});
    Communicator& comm = *group->comm;
    const int n = comm.size(), me = comm.rank();
    const int64_t esize = dtype_size(o.dtype);
    bool all_ok = true;

    if (me == 0) {
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      std::printf("bench_dist_collectives: %d ranks (%s), device %s, backend %s, %s; host %s, %ld CPU cores\n", n,
                  launch.launcher.c_str(), device.str().c_str(), comm.backend().c_str(),
                  std::string(dtype_name(o.dtype)).c_str(), host, ::sysconf(_SC_NPROCESSORS_ONLN));
      std::printf("time: median of %d iterations (after %d warm-up) of the slowest rank; S = the whole array\n",
                  o.iters, o.warmup);
    }

    for (const char* name : {"all_reduce", "reduce_scatter", "all_gather"}) {
      const std::string coll = name;
      const double factor = coll == "all_reduce" ? 2.0 * (n - 1) / n : double(n - 1) / n;
      if (me == 0) {
        std::printf("\n%s%s, %d ranks\n", name, coll == "all_gather" ? "" : " (sum)", n);
        std::printf("%10s %12s %12s %14s %14s  %s\n", "size", "count", "time (us)", "algbw (GB/s)", "busbw (GB/s)",
                    "check");
      }
      for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 4) {
        // Whole-array elements, a multiple of n so that every shard is equal (nccl-tests does the same).
        const int64_t count = bytes / esize / n * n, shard = count / n;
        if (count == 0) continue;
        Result r;
        if (coll == "all_reduce") {
          Tensor x = filled(count, 0, me, o.dtype, device);
          r = measure(comm, o, [&] { comm.all_reduce(x, dist::ReduceOp::Sum)->wait(); }, [&] {
            return check(x, 0, [&](int64_t i) {
              double s = 0;
              for (int q = 0; q < n; ++q) s += value(q, i);
              return s;
            });
          });
        } else if (coll == "reduce_scatter") {
          Tensor in = filled(count, 0, me, o.dtype, device);
          Tensor out = filled(shard, 0, me, o.dtype, device);
          r = measure(comm, o, [&] { comm.reduce_scatter(in, out, dist::ReduceOp::Sum)->wait(); }, [&] {
            return check(out, me * shard, [&](int64_t i) {
              double s = 0;
              for (int q = 0; q < n; ++q) s += value(q, i);
              return s;
            });
          });
        } else {
          Tensor in = filled(shard, me * shard, me, o.dtype, device);
          Tensor out = filled(count, 0, me, o.dtype, device);
          r = measure(comm, o, [&] { comm.all_gather(in, out)->wait(); }, [&] {
            return check(out, 0, [&](int64_t i) { return value(int(i / shard), i); });
          });
        }
        // Every rank's check counts: gather the verdicts as a max of 0/1.
        Tensor bad = to(Tensor::from_vector(std::vector<double>{r.check == "ok" ? 0.0 : 1.0}, {1}, DType::Float32),
                        device);
        comm.all_reduce(bad, dist::ReduceOp::Max)->wait();
        const bool ok = to(bad, Device()).item() == 0;
        all_ok = all_ok && ok;
        if (me == 0) {
          const double s = double(count * esize), algbw = s / r.seconds / 1e9;
          const std::string verdict = r.check != "ok" ? r.check : ok ? "ok" : "WRONG on another rank";
          std::printf("%10s %12lld %12.1f %14.3f %14.3f  %s\n", human_bytes(count * esize).c_str(),
                      static_cast<long long>(count), r.seconds * 1e6, algbw, algbw * factor, verdict.c_str());
          std::fflush(stdout);
        }
      }
    }
    comm.barrier();
    return all_ok ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_dist_collectives: %s\n", e.what());
    return 2;
  }
}
