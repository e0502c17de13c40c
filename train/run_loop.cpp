#include "train/run_loop.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/distributed.h"

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

}  // namespace

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02d}", s / 60, s % 60);
}

data::LoaderOptions training_loader_options(const nlohmann::json& c, int rank, int world, Device device, bool strict) {
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
  lo.mirror_words = mirror_word_pairs(a["mirror_words"], "augment.mirror_words");
  lo.rank = rank;
  lo.world = world;
  lo.strict = strict;
  lo.pin_memory_for = device.type;  // asynchronous host → GPU copies of each batch (nothing on the CPU)
  return lo;
}

TrainResult run_training(const nlohmann::json& c, const RunOptions& opt, Task& task, Trainer& trainer,
                         data::DataLoader& loader, dist::Communicator* comm, const RunHooks& hooks) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const bool lead = rank == 0;  // rank 0 alone prints and writes the run folder
  const fs::path run(opt.out_dir);
  if (lead) fs::create_directories(run);
  auto say = [&](const std::string& line) {
    if (!opt.quiet && lead) std::cout << line << std::endl;
  };
  nn::Module& model = task.module();
  const Device device = trainer.device();
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
                    cp.state.world_size != world || cp.state.batch_size != loader.options().batch_size
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
      st.batch_size = loader.options().batch_size;
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
  say(fmt::format("{} {} on {}: {} parameters, {} {}, {} steps of {}{} × {}", opt.what, c["model"].get<std::string>(),
                  on, model.parameter_count(), loader.clips().size(), opt.items, total,
                  world > 1 ? fmt::format("{} × ", world) : "", batch_size, accum));
  if (trainer.data_parallel()) say("data parallel: " + trainer.data_parallel()->describe());


  SignalScope signals;
  TrainResult result;
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
    if (hooks.evaluate && hooks.periodic && eval_every > 0 && step % eval_every == 0 && step != total) {
      // On rank 0 alone while the others wait (docs/DISTRIBUTED.md).
      nlohmann::json m;
      if (lead) {
        m = hooks.evaluate(hooks.periodic_split);
        const std::string split = data::split_name(hooks.periodic_split);
        metrics << nlohmann::json{{"step", step}, {"eval", m}}.dump() << "\n" << std::flush;
        for (auto it = m.begin(); it != m.end(); ++it)
          if (it.value().is_number()) events->add_scalar(split + "/" + it.key(), it.value().get<float>(), step);
        if (tty) std::cout << "\n";
        if (hooks.eval_line) say(hooks.eval_line(step, m));
      }
      if (comm) comm->barrier();
    }
  }
  if (tty) std::cout << "\n";
  if (loader.skipped() > 0)
    std::cerr << fmt::format("{}{} samples skipped (unreadable):\n  {}\n", rank_prefix(), loader.skipped(),
                             fmt::join(loader.skip_messages(), "\n  "));
  result.steps = step;
  if (lead) {
    save_safetensors((run / "model.safetensors").string(), model.state_dict());
    if (hooks.finish) result.eval = hooks.finish(step, *events);
  }
  if (comm) comm->barrier();
  return result;
}

}  // namespace vb::train
