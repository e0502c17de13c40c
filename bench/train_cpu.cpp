// Training benchmark: full pretraining steps of the presets, through the library's own Task and optimizer
// (train/tasks.h, train/optim.h) exactly as `videobert pretrain` runs them — the task's losses (forward and
// objectives), backward, reading every loss term as the trainer logs it, gradient clipping by global norm and
// AdamW (the clip's factor applied by AdamW's fused step, as the trainer does it: the clip_grad_norm phase is
// the norm) — on pre-generated synthetic batches of the preset's shapes, so that data loading is excluded.
// bench/torch_train_cpu.py builds the same models and step in PyTorch from the case descriptions printed
// here; scripts/bench-train.sh runs both and writes the ours/PyTorch table.
//
// Cases (the presets' own shapes unless said):
//   tiny, tiny-late, tiny-dual   batch 16, 4 frames of 64², 24 tokens, the synthetic dataset's vocabulary
//   base                         BERT-base + ResNet-50 at 224² and 64 tokens, but batch 2 and 2 frames (the
//                                preset's batch 64 × 8 frames would take minutes a step on a CPU), a
//                                bert-base-sized vocabulary of 30522 tokens
//
// One JSON line per case on stdout: {name, seconds (median seconds per step after warm-up), flops (on the
// CPU: the matrix products' FLOPs of one step as the backend counts them; else 0), bytes: 0, samples (per step), params, case: {everything the PyTorch side needs to build the same thing}}.
// With --profile, the median of each phase of the step goes to stderr, and on the CPU a table of where the
// time of `reps` more steps went, kernel by kernel (kernels/profiler.h); --profile-shapes splits that table by
// the shapes of each call's tensors (which products cost what), 40 rows instead of 25. --bf16 runs the losses
// under an AutocastGuard(bfloat16) as `videobert pretrain` does for precision = bfloat16 (on the CPU too: its
// products then run on AMX tiles where it has them).
//
// Usage: bench_train_cpu [--quick] [--profile | --profile-shapes] [--bf16] [--reps N] [--device cpu|cuda|emu] [preset ...]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "bench/synthetic_batch.h"
#include "kernels/cpu/gemm.h"
#include "kernels/profiler.h"
#include "train/config.h"
#include "train/data/synth.h"
#include "train/optim.h"
#include "train/pretrain.h"
#include "train/tasks.h"

using namespace vb;
using namespace vb::train;
using vb::bench::caption_lengths;
using vb::bench::filler_tokenizer;
using vb::bench::synthetic_batch;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  std::string preset;
  std::vector<std::string> overrides;  // key=value, as on the command line
  bool bert_base_vocab = false;        // 30522 tokens instead of the synthetic dataset's vocabulary
  int reps = 10;
};

// profile: 0 off, 1 the phases and the kernel table, 2 the kernel table split by shapes.
void run_case(const Case& k, Device device, bool quick, int profile, bool bf16, int reps_override) {
  nlohmann::json c = load_config(k.preset);
  std::vector<std::string> overrides = k.overrides;
  if (quick) overrides.insert(overrides.end(), {"batch_size=4", "frames=2"});
  apply_overrides(c, overrides);
  const WordPieceTokenizer tok =
      k.bert_base_vocab ? filler_tokenizer(30522) : WordPieceTokenizer(data::synth_vocabulary(), true, "synth vocabulary");

  manual_seed(c["seed"].get<uint64_t>());
  std::unique_ptr<Task> task = make_task(c, tok);
  nn::Module& model = task->module();
  model.to(device);
  model.train();
  // As the trainer's make_optimizer builds it for optimizer = adamw (the presets' choice).
  AdamW optimizer(decay_groups(model), c["beta1"].get<double>(), c["beta2"].get<double>(), c["eps"].get<double>(),
                  c["weight_decay"].get<double>());
  const double max_norm = c["clip_grad_norm"], lr = c["lr"];
  Generator data_gen{7, 0}, gen{c["seed"].get<uint64_t>() + 1, 0};
  const data::Batch batch = data::to_device(synthetic_batch(c, tok, data_gen), device);

  const std::vector<std::string> phases = {"losses (forward)", "backward", "loss items", "clip_grad_norm", "AdamW"};
  std::map<std::string, std::vector<double>> phase_times;
  auto sync = [&] {
    if (!device.is_cpu()) runtime(device.type).synchronize(device);
  };
  bool mark_phases = profile > 0;  // (off while the kernel profiler records: the marks are not kernels)
  auto step = [&] {
    auto t = Clock::now();
    auto mark = [&](const std::string& phase) {
      if (!mark_phases) return;
      sync();
      phase_times[phase].push_back(seconds_since(t));
      t = Clock::now();
    };
    optimizer.zero_grad();
    std::map<std::string, Tensor> losses;
    {
      std::optional<AutocastGuard> autocast;
      if (bf16) autocast.emplace(DType::BFloat16);
      // As Trainer::step does for one process and one micro-batch: the masks, then the losses.
      MicroBatch micro = task->prepare(batch, gen);
      StepScope scope;
      scope.totals = micro.counts;
      losses = task->losses(micro, scope, gen);
    }
    mark(phases[0]);
    backward(losses.at("loss"));
    mark(phases[1]);
    double total = 0;
    for (auto& [name, v] : losses) total += v.item();  // the trainer logs every term
    mark(phases[2]);
    // As Trainer::step clips: the norm here, the factor applied by the optimizer as it reads each gradient.
    const double norm = grad_norm(optimizer.params());
    const double clip = max_norm > 0 ? clip_factor(norm, max_norm) : 1.0;
    mark(phases[3]);
    optimizer.step(lr, clip);
    sync();
    mark(phases[4]);
    return total;
  };

  const int warmup = quick ? 1 : 2;
  const int reps = quick ? 1 : reps_override > 0 ? reps_override : k.reps;
  for (int i = 0; i < warmup; ++i) step();
  phase_times.clear();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = Clock::now();
    step();
    times.push_back(seconds_since(start));
  }
  // The matrix products' FLOPs of one more step, counted as the CPU backend runs them (kernels/cpu/gemm.h),
  // for the table's fraction of the machine's FMA peak. Elsewhere the products run in cuBLAS: 0 (not counted).
  double flops = 0;
  if (device.is_cpu()) {
    const auto timed_phases = phase_times;  // (the counting step is not one of the timed ones)
    cpu::gemm_count_flops(true);
    step();
    phase_times = timed_phases;
    flops = double(cpu::gemm_flops_counted());
    cpu::gemm_count_flops(false);
  }

  const int64_t b = c["batch_size"], frames = c["frames"], size = c["image_size"], len = c["max_text_len"];
  const std::string name = k.preset + " B=" + std::to_string(b) + " T=" + std::to_string(frames) + " " +
                           std::to_string(size) + "px L=" + std::to_string(len) + " train step";
  const double s = median(times);
  const models::VideoBertConfig mc = model_config(c, tok);
  nlohmann::json description = {
      {"preset", k.preset},
      {"model", c["model"]},
      {"text", c["text"]},
      {"vision", c["vision"]},
      {"frame_differences", c["frame_differences"]},
      {"batch_size", b},
      {"frames", frames},
      {"image_size", size},
      {"max_text_len", len},
      {"caption_lengths", caption_lengths(b, len)},
      {"vocab_size", tok.vocab_size()},
      {"max_position_embeddings", mc.text.max_position_embeddings},
      {"embed_dim", c["embed_dim"]},
      {"fusion_hidden", c["fusion_hidden"]},
      {"objectives", c["objectives"]},
      {"mlm_probability", c["mlm_probability"]},
      {"mfm_probability", c["mfm_probability"]},
      {"lr", lr},
      {"weight_decay", c["weight_decay"]},
      {"beta1", c["beta1"]},
      {"beta2", c["beta2"]},
      {"eps", c["eps"]},
      {"clip_grad_norm", max_norm},
      {"warmup", warmup},
      {"reps", reps},
  };
  nlohmann::json line = {{"name", name},       {"seconds", s},
                         {"flops", flops},     {"bytes", 0},
                         {"samples", b},       {"params", model.parameter_count()},
                         {"case", description}};
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%s: %.1f ms/step (min %.1f, max %.1f over %d), %.2f samples/s, %lld parameters\n", name.c_str(),
               s * 1e3, *std::min_element(times.begin(), times.end()) * 1e3,
               *std::max_element(times.begin(), times.end()) * 1e3, reps, double(b) / s,
               static_cast<long long>(model.parameter_count()));
  if (profile) {
    for (const std::string& p : phases)
      std::fprintf(stderr, "  %-18s %9.1f ms\n", p.c_str(), median(phase_times[p]) * 1e3);
    if (device.is_cpu()) {
      // Where the time of a step goes, kernel by kernel (kernels/profiler.h), over `reps` more steps.
      mark_phases = false;
      kernel_profile_start(/*shapes=*/profile == 2);
      const auto start = Clock::now();
      for (int i = 0; i < reps; ++i) step();
      const double wall = seconds_since(start);
      const std::vector<KernelTime> rows = kernel_profile_stop();
      std::fprintf(stderr, "%s, kernel by kernel (%d steps, %.1f ms per step while profiled):\n%s", name.c_str(), reps,
                   wall / reps * 1e3, kernel_profile_table(rows, wall, reps, profile == 2 ? 40 : 25).c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, bf16 = false;
  int profile = 0;
  int reps = 0;
  std::string device_name = "cpu";
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--profile") profile = std::max(profile, 1);
    else if (a == "--profile-shapes") profile = 2;
    else if (a == "--bf16") bf16 = true;
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--device" && i + 1 < argc) device_name = argv[++i];
    else if (!a.empty() && a[0] != '-') only.push_back(a);
    else {
      std::fprintf(stderr, "usage: bench_train_cpu [--quick] [--profile | --profile-shapes] [--bf16] [--reps N] [--device cpu|cuda|emu] [preset ...]\n");
      return 2;
    }
  }
  const Device device = resolve_device(device_name);
  std::fprintf(stderr, "bench_train_cpu: %d threads, device %s, %s\n", omp_get_max_threads(), device.str().c_str(),
               bf16 ? "bf16 autocast" : "float32");
  std::vector<Case> cases = {
      {"tiny", {}, false, 10},
      {"tiny-late", {}, false, 10},
      {"tiny-dual", {}, false, 10},
      {"base", {"batch_size=2", "frames=2"}, true, 3},
  };
  if (quick) cases.pop_back();
  for (const Case& k : cases) {
    if (!only.empty() && std::find(only.begin(), only.end(), k.preset) == only.end()) continue;
    run_case(k, device, quick, profile, bf16, reps);
  }
  return 0;
}
