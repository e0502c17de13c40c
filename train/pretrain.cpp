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
#include "train/config.h"
#include "train/data/loader.h"
#include "train/evaluate.h"
#include "train/optim.h"
#include "train/report.h"
#include "train/tasks.h"
#include "train/tensorboard.h"

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

std::string checkpoint_name(int64_t step) { return fmt::format("step_{:08d}", step); }

// Complete checkpoints (state.json present), oldest first.
std::vector<fs::path> complete_checkpoints(const fs::path& run) {
  std::vector<fs::path> out;
  const fs::path dir = run / "checkpoints";
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("step_", 0) == 0 && fs::exists(e.path() / "state.json"))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json read_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

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

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& c, const nn::Module& model) {
  if (c["optimizer"] == "sgd")
    return std::make_unique<SGD>(decay_groups(model), c["momentum"].get<double>(), c["weight_decay"].get<double>());
  return std::make_unique<AdamW>(decay_groups(model), c["beta1"].get<double>(), c["beta2"].get<double>(),
                                 c["eps"].get<double>(), c["weight_decay"].get<double>());
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

PretrainResult pretrain(const PretrainOptions& opt) {
  const nlohmann::json& c = opt.config;
  validate_config(c, "pretrain config");
  const Device device = resolve_device(opt.device);
  const fs::path run(opt.out_dir);
  fs::create_directories(run);
  auto say = [&](const std::string& line) {
    if (!opt.quiet) std::cout << line << std::endl;
  };

  if (c["precision"] != "float32" && device.is_cpu())
    say(fmt::format("note: precision {} is for GPUs; the CPU runs float32", c["precision"].get<std::string>()));

  WordPieceTokenizer tokenizer = WordPieceTokenizer::load((fs::path(opt.data_dir) / "vocab.txt").string());
  data::Manifest manifest = data::load_manifest(opt.data_dir);
  const uint64_t seed = c["seed"];
  manual_seed(seed);  // model initialisation draws from the default generator
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  nn::Module& model = task->module();
  model.to(device);
  model.train();
  std::unique_ptr<Optimizer> optimizer = make_optimizer(c, model);
  Schedule schedule{c["lr"], c["warmup_steps"], c["steps"], c["schedule"] == "cosine", c["min_lr_ratio"]};
  LossScaler scaler;
  const bool fp16 = c["precision"] == "float16" && !device.is_cpu();
  // bfloat16 / float16: matmul, convolution and attention in the low dtype (autograd/autocast.h); the
  // weights, the optimizer, softmax, norms and losses in float32. float16 also scales the loss.
  std::optional<DType> low_precision;
  if (!device.is_cpu() && c["precision"] != "float32")
    low_precision = c["precision"] == "float16" ? DType::Float16 : DType::BFloat16;
  Generator gen{seed + 1, 0};  // masking, negatives, masked frames

  data::LoaderOptions lo = train_loader_options(c);
  lo.strict = opt.strict;
  lo.pin_memory_for = device.type;  // asynchronous host → GPU copies of each batch (nothing on the CPU)
  data::DataLoader loader(manifest, tokenizer, lo);
  VB_CHECK(loader.batches_per_epoch() > 0, "pretrain: the train split of {} has {} clips, fewer than batch_size {}",
           manifest.path, loader.clips().size(), lo.batch_size);

  int64_t step = 0, epoch = 0, batch_in_epoch = 0;
  const fs::path metrics_path = run / "metrics.jsonl";
  if (opt.resume) {
    auto cps = complete_checkpoints(run);
    VB_CHECK(!cps.empty(), "pretrain --resume: no complete checkpoint in {}", (run / "checkpoints").string());
    const fs::path cp = cps.back();
    nlohmann::json state = read_json((cp / "state.json").string());
    nn::NamedTensors weights = load_safetensors((cp / "model.safetensors").string()).tensors;
    model.load_state_dict(weights);
    optimizer->set_steps(state["optimizer_steps"]);
    optimizer->load_state_tensors(load_safetensors((cp / "optimizer.safetensors").string()).tensors);
    step = state["step"];
    epoch = state["epoch"];
    batch_in_epoch = state["batch_in_epoch"];
    gen = Generator{state["rng"]["seed"], state["rng"]["offset"]};
    default_generator() = Generator{state["default_rng"]["seed"], state["default_rng"]["offset"]};
    scaler.restore(state["loss_scale"], state["scaler_clean_steps"]);
    // Keep the log of the steps the checkpoint covers; later lines belong to the interrupted attempt.
    if (fs::exists(metrics_path)) {
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
    say(fmt::format("resumed from {} (step {})", cp.string(), step));
  } else {
    fs::remove(metrics_path);
  }
  write_text_atomic((run / "config.json").string(), c.dump(2) + "\n");

  loader.start_epoch(epoch);
  for (int64_t i = 0; i < batch_in_epoch; ++i) loader.next();  // the data position of the checkpoint

  auto next_batch = [&]() {
    while (true) {
      if (auto b = loader.next()) {
        ++batch_in_epoch;
        return data::to_device(*b, device);
      }
      loader.start_epoch(++epoch);
      batch_in_epoch = 0;
    }
  };

  auto save_checkpoint = [&]() {
    const fs::path cp = run / "checkpoints" / checkpoint_name(step);
    fs::create_directories(cp);
    fs::remove(cp / "state.json");  // rewriting this step's checkpoint: incomplete until state.json lands
    save_safetensors((cp / "model.safetensors").string(), model.state_dict());
    save_safetensors((cp / "optimizer.safetensors").string(), optimizer->state_tensors());
    nlohmann::json state = {{"step", step},
                            {"epoch", epoch},
                            {"batch_in_epoch", batch_in_epoch},
                            {"optimizer_steps", optimizer->steps()},
                            {"rng", {{"seed", gen.seed}, {"offset", gen.offset}}},
                            {"default_rng", {{"seed", default_generator().seed}, {"offset", default_generator().offset}}},
                            {"loss_scale", scaler.scale()},
                            {"scaler_clean_steps", scaler.clean_steps()},
                            {"config", c}};
    write_text_atomic((cp / "state.json").string(), state.dump(2) + "\n");
    auto cps = complete_checkpoints(run);
    const size_t keep = c["keep_checkpoints"].get<size_t>();
    for (size_t i = 0; i + keep < cps.size(); ++i) fs::remove_all(cps[i]);
  };

  EventWriter events(run.string());
  std::ofstream metrics(metrics_path, std::ios::app);
  VB_CHECK(metrics.good(), "{}: cannot open for writing", metrics_path.string());
  const bool tty = ::isatty(STDOUT_FILENO) && !opt.quiet;
  const int64_t total = c["steps"], accum = c["grad_accum"], log_every = c["log_every"];
  const int64_t eval_every = c["eval_every"], checkpoint_every = c["checkpoint_every"];
  const int64_t print_every = std::max<int64_t>(log_every, total / 25);
  const double max_norm = c["clip_grad_norm"];
  const int64_t batch_size = c["batch_size"];
  say(fmt::format("pretraining {} on {}: {} parameters, {} train clips, {} steps of {} × {}", c["model"].get<std::string>(),
                  device.str(), model.parameter_count(), loader.clips().size(), total, batch_size, accum));

  SignalScope signals;
  PretrainResult result;
  const auto start = std::chrono::steady_clock::now();
  int64_t steps_here = 0;
  while (step < total) {
    const auto t0 = std::chrono::steady_clock::now();
    optimizer->zero_grad();
    std::map<std::string, double> terms;
    for (int64_t micro = 0; micro < accum; ++micro) {
      data::Batch batch = next_batch();
      std::map<std::string, Tensor> losses;
      {
        std::optional<AutocastGuard> autocast;  // the forward pass in mixed precision on a GPU
        if (low_precision) autocast.emplace(*low_precision);
        losses = task->losses(batch, gen);
      }
      Tensor loss = mul(losses.at("loss"), (fp16 ? scaler.scale() : 1.0) / double(accum));
      backward(loss);
      for (auto& [k, v] : losses) terms[k] += v.item() / double(accum);
    }
    ++step;
    ++steps_here;
    bool skipped = false;
    if (fp16) skipped = !scaler.unscale_and_update(optimizer->params());
    const double norm = max_norm > 0 ? clip_grad_norm(optimizer->params(), max_norm) : grad_norm(optimizer->params());
    const double lr = schedule.lr(step);
    if (!skipped) optimizer->step(lr);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double samples_per_s = double(batch_size * accum) / dt;
    if (step == 1 || result.first_loss == 0) result.first_loss = terms["loss"];
    result.last_loss = terms["loss"];

    if (step % log_every == 0 || step == total) {
      nlohmann::json row = {{"step", step}, {"lr", lr}, {"grad_norm", norm}, {"loss_scale", fp16 ? scaler.scale() : 1.0},
                            {"samples_per_s", samples_per_s}, {"skipped", skipped}};
      for (auto& [k, v] : terms) row[k] = v;
      metrics << row.dump() << "\n" << std::flush;
      for (auto& [k, v] : terms) events.add_scalar("train/" + k, float(v), step);
      events.add_scalar("train/lr", float(lr), step);
      events.add_scalar("train/grad_norm", float(norm), step);
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = elapsed / double(steps_here) * double(total - step);
    if (tty) {
      const int width = 24, filled = int(width * step / total);
      std::cout << fmt::format("\r[{}{}] {}/{} loss {:.4f} lr {:.2e} {:.1f} samples/s ETA {}  ", std::string(size_t(filled), '#'),
                               std::string(size_t(width - filled), '.'), step, total, terms["loss"], lr, samples_per_s,
                               format_duration(eta))
                << std::flush;
    } else if (!opt.quiet && (step % print_every == 0 || step == 1 || step == total)) {
      std::string parts;
      for (auto& [k, v] : terms)
        if (k != "loss") parts += fmt::format(" {} {:.4f}", k, v);
      std::cout << fmt::format("step {:>6}/{} loss {:.4f}{} lr {:.2e} {:.1f} samples/s ETA {}", step, total,
                               terms["loss"], parts, lr, samples_per_s, format_duration(eta))
                << std::endl;
    }

    const bool stop_now = g_signal != 0 || (opt.stop_after >= 0 && steps_here >= opt.stop_after);
    if ((checkpoint_every > 0 && step % checkpoint_every == 0) || step == total || stop_now) save_checkpoint();
    if (stop_now) {
      if (tty) std::cout << "\n";
      say(fmt::format("{}: checkpoint saved at step {}; continue with --resume",
                      g_signal ? (g_signal == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)") : "stopped",
                      step));
      result.steps = step;
      result.interrupted = true;
      return result;
    }
    if (eval_every > 0 && step % eval_every == 0 && step != total && manifest.split(data::Split::Val).size() >= 2) {
      nlohmann::json m = evaluate(*task, manifest, tokenizer, eval_options(c, data::Split::Val, device));
      metrics << nlohmann::json{{"step", step}, {"eval", m}}.dump() << "\n" << std::flush;
      for (auto it = m.begin(); it != m.end(); ++it)
        if (it.value().is_number_float()) events.add_scalar("val/" + it.key(), it.value().get<float>(), step);
      if (tty) std::cout << "\n";
      say(fmt::format("val @ {}: t2v R@1 {:.3f} R@5 {:.3f}, v2t R@1 {:.3f}", step, m["t2v_r1"].get<double>(),
                      m["t2v_r5"].get<double>(), m["v2t_r1"].get<double>()));
    }
  }
  if (tty) std::cout << "\n";
  if (loader.skipped() > 0) say(fmt::format("{} samples skipped (unreadable):\n  {}", loader.skipped(), fmt::join(loader.skip_messages(), "\n  ")));
  save_safetensors((run / "model.safetensors").string(), model.state_dict());
  result.steps = step;
  // Retrieval needs two clips at least: the test split, else the validation split, else no final evaluation.
  const data::Split final_split = manifest.split(data::Split::Test).size() >= 2 ? data::Split::Test : data::Split::Val;
  if (manifest.split(final_split).size() < 2) {
    say(fmt::format("no final evaluation: the test and val splits of {} hold fewer than 2 clips each", manifest.path));
  } else {
    result.eval = evaluate(*task, manifest, tokenizer, eval_options(c, final_split, device));
    write_text_atomic((run / fmt::format("eval_{}.json", data::split_name(final_split))).string(), result.eval.dump(2) + "\n");
    for (auto it = result.eval.begin(); it != result.eval.end(); ++it)
      if (it.value().is_number_float()) events.add_scalar(std::string(data::split_name(final_split)) + "/" + it.key(), it.value().get<float>(), step);
  }
  write_report(run.string(), c, read_metrics(metrics_path.string()), result.eval);
  return result;
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
