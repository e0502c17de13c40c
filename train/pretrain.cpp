#include "train/pretrain.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "autograd/autocast.h"
#include "kernels/backend.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/data/loader.h"
#include "train/evaluate.h"
#include "train/optim.h"
#include "train/report.h"
#include "train/tasks.h"
#include "train/tensorboard.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace vb::train {

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

// Installs SIGINT/SIGTERM handlers for the lifetime of a run and restores the previous ones after.
class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    prev_int_ = std::signal(SIGINT, on_signal);
    prev_term_ = std::signal(SIGTERM, on_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, prev_int_);
    std::signal(SIGTERM, prev_term_);
  }

 private:
  void (*prev_int_)(int);
  void (*prev_term_)(int);
};

data::LoaderOptions train_loader_options(const nlohmann::json& c) {
  data::LoaderOptions lo;
  lo.split = data::Split::Train;
  lo.train = true;
  lo.frames = c["frames"];
  lo.size = c["image_size"];
  lo.max_length = c["max_text_len"];
  lo.batch_size = c["batch_size"];
  lo.drop_last = true;  // matching pairs each row with another: keep batches full
  lo.seed = c["seed"];
  lo.workers = c["workers"];
  lo.prefetch = c["prefetch"];
  const auto& a = c["augment"];
  lo.augment.random_resized_crop = a["random_resized_crop"];
  lo.augment.scale_min = a["crop_scale_min"];
  lo.augment.flip = a["flip"];
  lo.augment.rotate = a["rotation_degrees"].get<double>() > 0;
  lo.augment.rotate_degrees = a["rotation_degrees"];
  lo.augment.scale_jitter = a["scale_jitter"].get<double>() > 0;
  lo.augment.scale_jitter_range = a["scale_jitter"];
  return lo;
}

EvalOptions eval_options(const nlohmann::json& c, data::Split split, Device device) {
  EvalOptions o;
  o.split = split;
  o.frames = c["frames"];
  o.size = c["image_size"];
  o.max_length = c["max_text_len"];
  o.workers = c["workers"];
  o.seed = c["seed"];
  o.device = device;
  return o;
}

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02d}", s / 60, s % 60);
}

}  // namespace

Device resolve_device(const std::string& name) {
  if (name != "auto") {
    Device d = Device::parse(name);
    VB_CHECK(d.is_cpu() || has_runtime(d.type), "device {}: not available in this build or on this machine", name);
    backend(d);  // an Error when no kernels are registered for it
    return d;
  }
  if (has_runtime(DeviceType::CUDA)) {
    try {
      backend(Device(DeviceType::CUDA));
      return Device(DeviceType::CUDA);
    } catch (const Error&) {
    }
  }
  return Device();
}

namespace {

// The body of pretrain() once the job is joined; `group` is null for one process.
PretrainResult run_pretraining(const PretrainOptions& opt, Device device, dist::ProcessGroup* group) {
  const nlohmann::json& c = opt.config;
  dist::Communicator* comm = group ? group->comm.get() : nullptr;
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const bool lead = rank == 0;  // rank 0 alone prints and writes the run folder
  const fs::path run(opt.out_dir);
  if (lead) fs::create_directories(run);
  auto say = [&](const std::string& line) {
    if (!opt.quiet && lead) std::cout << line << std::endl;
  };

  if (c["precision"] != "float32" && device.is_cpu())
    say(fmt::format("note: precision {} is for GPUs; the CPU runs float32", c["precision"].get<std::string>()));

  WordPieceTokenizer tokenizer = WordPieceTokenizer::load((fs::path(opt.data_dir) / "vocab.txt").string());
  data::Manifest manifest = data::load_manifest(opt.data_dir);
  manual_seed(c["seed"]);  // model initialisation draws from the default generator (rank 0's reaches all)
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  nn::Module& model = task->module();
  model.to(device);
  model.train();
  Trainer trainer(*task, c, device, comm, group ? group->store.get() : nullptr);

  data::LoaderOptions lo = train_loader_options(c);
  lo.strict = opt.strict;
  lo.rank = rank;
  lo.world = world;
  lo.pin_memory_for = device.type;  // asynchronous host → GPU copies of each batch (nothing on the CPU)
  data::DataLoader loader(manifest, tokenizer, lo);
  BatchStream stream(loader, world, c["grad_accum"]);

  int64_t step = 0;
  const fs::path metrics_path = run / "metrics.jsonl";
  if (opt.resume) {
    LoadedCheckpoint cp = load_latest_checkpoint(run);
    model.load_state_dict(cp.model);
    trainer.optimizer().set_steps(cp.state.optimizer_steps);
    trainer.optimizer().load_state_tensors(cp.optimizer);
    step = cp.state.step;
    stream.seek(cp.state.epoch, cp.state.sample);
    trainer.generator() = cp.state.gen;
    default_generator() = cp.state.default_gen;
    trainer.scaler().restore(cp.state.loss_scale, cp.state.scaler_clean_steps);
    // Keep the log of the steps the checkpoint covers; later lines belong to the interrupted attempt.
    if (lead && fs::exists(metrics_path)) {
      std::ifstream in(metrics_path);
      std::string line, kept;
      while (std::getline(in, line)) {
        try {
          auto j = nlohmann::json::parse(line);
          if (j.value("step", int64_t(0)) <= step) kept += line + "\n";
        } catch (const nlohmann::json::parse_error&) {  // a line cut short by the interruption
        }
      }
      write_text_atomic(metrics_path.string(), kept);
    }
    say(fmt::format("resumed from {} (step {}{})", cp.path.string(), step,
                    cp.state.world_size != world || cp.state.batch_size != lo.batch_size
                        ? fmt::format(", written by {} rank{} × batch {}", cp.state.world_size,
                                      cp.state.world_size == 1 ? "" : "s", cp.state.batch_size)
                        : ""));
  } else if (lead) {
    fs::remove(metrics_path);
  }
  if (lead) write_text_atomic((run / "config.json").string(), c.dump(2) + "\n");

  auto save = [&]() {
    // Every rank takes part (ZeRO gathers the optimizer's shards); rank 0 writes.
    nn::NamedTensors optimizer_state = trainer.optimizer().state_tensors();
    if (lead) {
      TrainState st;
      st.step = step;
      st.epoch = stream.epoch();
      st.sample = stream.sample();
      st.optimizer_steps = trainer.optimizer().steps();
      st.gen = trainer.generator();
      st.default_gen = default_generator();
      st.loss_scale = trainer.scaler().scale();
      st.scaler_clean_steps = trainer.scaler().clean_steps();
      st.world_size = world;
      st.batch_size = lo.batch_size;
      st.grad_accum = c["grad_accum"];
      save_checkpoint(run, st, model.state_dict(), optimizer_state, c, c["keep_checkpoints"].get<size_t>());
    }
  };

  std::optional<EventWriter> events;
  std::ofstream metrics;
  if (lead) {
    events.emplace(run.string());
    metrics.open(metrics_path, std::ios::app);
    VB_CHECK(metrics.good(), "{}: cannot open for writing", metrics_path.string());
  }
  // mpirun gives rank 0 a pseudo-terminal even when its own output goes to a file: lines, not a bar, then.
  const bool tty = ::isatty(STDOUT_FILENO) && !opt.quiet && lead && world == 1;
  const int64_t total = c["steps"], accum = c["grad_accum"], log_every = c["log_every"];
  const int64_t eval_every = c["eval_every"], checkpoint_every = c["checkpoint_every"];
  const int64_t print_every = std::max<int64_t>(log_every, total / 25);
  const int64_t batch_size = c["batch_size"];
  const std::string on = comm ? fmt::format("{} ranks × {} ({})", world, device.str(), comm->backend()) : device.str();
  say(fmt::format("pretraining {} on {}: {} parameters, {} train clips, {} steps of {}{} × {}", c["model"].get<std::string>(),
                  on, model.parameter_count(), loader.clips().size(), total, world > 1 ? fmt::format("{} × ", world) : "",
                  batch_size, accum));
  if (trainer.data_parallel()) say("data parallel: " + trainer.data_parallel()->describe());

  // Evaluation runs on rank 0 alone (see docs/DISTRIBUTED.md: retrieval ranks every caption against every
  // clip, so sharding it would gather everything anyway); the other ranks wait for it.
  auto evaluate_on_lead = [&](data::Split split) {
    nlohmann::json m;
    if (lead) m = evaluate(*task, manifest, tokenizer, eval_options(c, split, device));
    if (comm) comm->barrier();
    return m;
  };

  SignalScope signals;
  PretrainResult result;
  result.rank = rank;
  const auto start = std::chrono::steady_clock::now();
  int64_t steps_here = 0;
  while (step < total) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<data::Batch> micro = stream.next_step();
    ++step;
    ++steps_here;
    const bool stop_requested = g_signal != 0 || (opt.stop_after >= 0 && steps_here >= opt.stop_after);
    StepResult r = trainer.step(micro, step, stop_requested);
    const std::map<std::string, double>& terms = r.terms;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double samples_per_s = double(world * batch_size * accum) / dt;
    if (step == 1 || result.first_loss == 0) result.first_loss = terms.at("loss");
    result.last_loss = terms.at("loss");

    if (lead && (step % log_every == 0 || step == total)) {
      nlohmann::json row = {{"step", step}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"loss_scale", r.loss_scale},
                            {"samples_per_s", samples_per_s}, {"skipped", r.skipped}};
      for (auto& [k, v] : terms) row[k] = v;
      if (auto* dp = trainer.data_parallel()) row["comm_hidden"] = dp->last_overlap().hidden_fraction();
      metrics << row.dump() << "\n" << std::flush;
      for (auto& [k, v] : terms) events->add_scalar("train/" + k, float(v), step);
      events->add_scalar("train/lr", float(r.lr), step);
      events->add_scalar("train/grad_norm", float(r.grad_norm), step);
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / double(steps_here) * double(total - step);
    if (tty) {
      const int width = 24, filled = int(width * step / total);
      std::cout << fmt::format("\r[{}{}] {}/{} loss {:.4f} lr {:.2e} {:.1f} samples/s ETA {}  ", std::string(size_t(filled), '#'),
                               std::string(size_t(width - filled), '.'), step, total, terms.at("loss"), r.lr, samples_per_s,
                               format_duration(eta))
                << std::flush;
    } else if (!opt.quiet && lead && (step % print_every == 0 || step == 1 || step == total)) {
      std::string parts;
      for (auto& [k, v] : terms)
        if (k != "loss") parts += fmt::format(" {} {:.4f}", k, v);
      std::cout << fmt::format("step {:>6}/{} loss {:.4f}{} lr {:.2e} {:.1f} samples/s ETA {}", step, total,
                               terms.at("loss"), parts, r.lr, samples_per_s, format_duration(eta))
                << std::endl;
    }

    if ((checkpoint_every > 0 && step % checkpoint_every == 0) || step == total || r.stop) save();
    if (r.stop) {
      if (tty) std::cout << "\n";
      say(fmt::format("{}: checkpoint saved at step {}; continue with --resume",
                      g_signal ? (g_signal == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)") : "stopped",
                      step));
      if (comm) comm->barrier();
      result.steps = step;
      result.interrupted = true;
      return result;
    }
    if (eval_every > 0 && step % eval_every == 0 && step != total && manifest.split(data::Split::Val).size() >= 2) {
      nlohmann::json m = evaluate_on_lead(data::Split::Val);
      if (lead) {
        metrics << nlohmann::json{{"step", step}, {"eval", m}}.dump() << "\n" << std::flush;
        for (auto it = m.begin(); it != m.end(); ++it)
          if (it.value().is_number_float()) events->add_scalar("val/" + it.key(), it.value().get<float>(), step);
        if (tty) std::cout << "\n";
        say(fmt::format("val @ {}: t2v R@1 {:.3f} R@5 {:.3f}, v2t R@1 {:.3f}", step, m["t2v_r1"].get<double>(),
                        m["t2v_r5"].get<double>(), m["v2t_r1"].get<double>()));
      }
    }
  }
  if (tty) std::cout << "\n";
  if (loader.skipped() > 0)
    std::cerr << fmt::format("{}{} samples skipped (unreadable):\n  {}\n", rank_prefix(), loader.skipped(),
                             fmt::join(loader.skip_messages(), "\n  "));
  result.steps = step;
  if (lead) save_safetensors((run / "model.safetensors").string(), model.state_dict());
  // Retrieval needs two clips at least: the test split, else the validation split, else no final evaluation.
  const data::Split final_split = manifest.split(data::Split::Test).size() >= 2 ? data::Split::Test : data::Split::Val;
  if (manifest.split(final_split).size() < 2) {
    say(fmt::format("no final evaluation: the test and val splits of {} hold fewer than 2 clips each", manifest.path));
  } else {
    result.eval = evaluate_on_lead(final_split);
    if (lead) {
      write_text_atomic((run / fmt::format("eval_{}.json", data::split_name(final_split))).string(), result.eval.dump(2) + "\n");
      for (auto it = result.eval.begin(); it != result.eval.end(); ++it)
        if (it.value().is_number_float())
          events->add_scalar(std::string(data::split_name(final_split)) + "/" + it.key(), it.value().get<float>(), step);
    }
  }
  if (lead) write_report(run.string(), c, read_metrics(metrics_path.string()), result.eval);
  if (comm) comm->barrier();
  return result;
}

}  // namespace

PretrainResult pretrain(const PretrainOptions& opt) {
  validate_config(opt.config, "pretrain config");
  const Device device = resolve_device(opt.device);
  std::unique_ptr<dist::ProcessGroup> group = join_job(opt.config, device);
  try {
    return run_pretraining(opt, device, group.get());
  } catch (...) {
    // A failed rank must not wait for the others at MPI_Finalize or in NCCL's destroy.
    if (group) group->abort();
    throw;
  }
}

nlohmann::json evaluate_run(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                            const std::string& device_name) {
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "eval: {} is not a run folder (no config.json)", run_dir);
  nlohmann::json c = read_run_config((run / "config.json").string());
  const Device device = resolve_device(device_name);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load((fs::path(data_dir) / "vocab.txt").string());
  data::Manifest manifest = data::load_manifest(data_dir);
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  fs::path weights = run / "model.safetensors";
  if (!fs::exists(weights)) {
    auto cps = complete_checkpoints(run);
    VB_CHECK(!cps.empty(), "eval: {} has neither model.safetensors nor a complete checkpoint", run_dir);
    weights = cps.back() / "model.safetensors";
  }
  task->module().load_state_dict(load_safetensors(weights.string()).tensors);
  task->module().to(device);
  nlohmann::json m = evaluate(*task, manifest, tokenizer, eval_options(c, data::parse_split(split), device));
  write_text_atomic((run / fmt::format("eval_{}.json", split)).string(), m.dump(2) + "\n");
  return m;
}

}  // namespace vb::train
