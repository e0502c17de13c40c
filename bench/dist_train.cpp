// Data-parallel training throughput: full training steps of a preset through the Trainer
// (train/trainer.h) — prepare, forward, backward with the gradient buckets' all-reduce overlapping it,
// clipping, AdamW — exactly as `videobert pretrain` runs them, on pre-generated synthetic batches
// (bench/synthetic_batch.h) so that data loading is out of the timings. Run alone it is one process;
// run under mpirun (or another launcher) each rank takes global_batch / world samples of every step.
//
// Prints, on rank 0, one table row and a JSON line: ranks, threads per rank, the global batch, the median
// step time, samples per second, and, data parallel, the median of each step's backward time, the time
// its gradients' collectives were in flight, the part of that after backward ended (exposed), and the
// fraction hidden behind backward (train/data_parallel.h's OverlapStats, from host timestamps).
//
// Usage: [mpirun -np N] bench_dist_train [--preset tiny] [--global-batch 16] [--steps 10] [--warmup 2]
//                                        [--zero] [--bucket-mb 25] [--quick] [key=value …]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/synthetic_batch.h"
#include "kernels/dist/init.h"
#include "train/config.h"
#include "train/data/synth.h"
#include "train/trainer.h"

using namespace vb;
using namespace vb::train;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "tiny";
  int64_t global_batch = 16;
  int steps = 10, warmup = 2;
  bool zero = false, quick = false;
  double bucket_mb = 25;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_dist_train: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--preset") preset = value();
    else if (a == "--global-batch") global_batch = std::stoll(value());
    else if (a == "--steps") steps = std::stoi(value());
    else if (a == "--warmup") warmup = std::stoi(value());
    else if (a == "--bucket-mb") bucket_mb = std::stod(value());
    else if (a == "--zero") zero = true;
    else if (a == "--quick") quick = true;
    else if (a.find('=') != std::string::npos) overrides.push_back(a);
    else {
      std::fprintf(stderr, "usage: [mpirun -np N] bench_dist_train [--preset P] [--global-batch B] [--steps N] "
                           "[--warmup N] [--zero] [--bucket-mb MB] [--quick] [key=value ...]\n");
      return 2;
    }
  }
  try {
    const dist::Launch launch = dist::detect_launch();
    std::unique_ptr<dist::ProcessGroup> group;
    if (launch.distributed()) {
      dist::CommOptions o;
      o.timeout_s = 600;
      group = dist::init_process_group(launch, o);
    }
    dist::Communicator* comm = group ? group->comm.get() : nullptr;
    const int world = launch.world, rank = launch.rank;
    if (global_batch % world != 0) {
      std::fprintf(stderr, "bench_dist_train: the global batch %lld does not split over %d ranks\n",
                   static_cast<long long>(global_batch), world);
      return 2;
    }
    if (quick) {
      steps = 2;
      warmup = 1;
      overrides.insert(overrides.end(), {"frames=2", "image_size=32"});
    }
    nlohmann::json c = load_config(preset);
    overrides.push_back(fmt::format("batch_size={}", global_batch / world));
    overrides.push_back(fmt::format("zero={}", zero ? 1 : 0));
    overrides.push_back(fmt::format("bucket_cap_mb={}", bucket_mb));
    apply_overrides(c, overrides);
    const WordPieceTokenizer tok =
        c["text"] == "base" ? bench::filler_tokenizer(30522) : WordPieceTokenizer(data::synth_vocabulary(), true, "synth");

    manual_seed(c["seed"]);
    std::unique_ptr<Task> task = make_task(c, tok);
    task->module().train();
    Trainer trainer(*task, c, Device(), comm, group ? group->store.get() : nullptr);
    Generator data_gen{uint64_t(1000 + rank), 0};  // each rank its own samples
    const data::Batch batch = bench::synthetic_batch(c, tok, data_gen);

    std::vector<double> times, backward, in_flight, exposed, hidden;
    for (int s = 1; s <= warmup + steps; ++s) {
      if (comm) comm->barrier();
      const auto t0 = Clock::now();
      trainer.step({batch}, s);
      const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
      if (s <= warmup) continue;
      times.push_back(dt);
      if (auto* dp = trainer.data_parallel()) {
        const OverlapStats& o = dp->last_overlap();
        backward.push_back(o.backward_s);
        in_flight.push_back(o.comm_s);
        exposed.push_back(o.exposed_s);
        hidden.push_back(o.hidden_fraction());
      }
    }
    if (rank != 0) return 0;
    const double step_s = median(times);
    const int threads = omp_get_max_threads();
    const std::string name = fmt::format("{} {} rank{} × {} thread{}, global batch {}{}", preset, world,
                                         world == 1 ? "" : "s", threads, threads == 1 ? "" : "s", global_batch,
                                         zero && world > 1 ? ", ZeRO-1" : "");
    std::printf("| %s | %.1f ms | %.1f samples/s |", name.c_str(), step_s * 1e3, double(global_batch) / step_s);
    if (comm)
      std::printf(" %.1f ms | %.1f ms | %.1f ms | %.0f%% |", median(backward) * 1e3, median(in_flight) * 1e3,
                  median(exposed) * 1e3, 100 * median(hidden));
    else
      std::printf(" — | — | — | — |");
    std::printf("\n");
    nlohmann::json line = {{"name", name},
                           {"preset", preset},
                           {"ranks", world},
                           {"threads_per_rank", threads},
                           {"global_batch", global_batch},
                           {"seconds", step_s},
                           {"samples_per_s", double(global_batch) / step_s},
                           {"params", task->module().parameter_count()}};
    if (comm) {
      line["backward_s"] = median(backward);
      line["comm_in_flight_s"] = median(in_flight);
      line["comm_exposed_s"] = median(exposed);
      line["comm_hidden_fraction"] = median(hidden);
      line["buckets"] = trainer.data_parallel()->describe();
    }
    std::fprintf(stderr, "%s\n", line.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dist_train: error: %s\n", e.what());
    return 1;
  }
}
