#include "train/checkpoint.h"

#include <algorithm>

#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"

namespace fs = std::filesystem;

namespace vb::train {

namespace {
nlohmann::json generator_json(const Generator& g) { return {{"seed", g.seed}, {"offset", g.offset}}; }
Generator read_generator(const nlohmann::json& j) { return Generator{j.at("seed"), j.at("offset")}; }
}  // namespace

nlohmann::json TrainState::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"sample", sample},
          {"optimizer_steps", optimizer_steps},
          {"rng", generator_json(gen)},
          {"default_rng", generator_json(default_gen)},
          {"loss_scale", loss_scale},
          {"scaler_clean_steps", scaler_clean_steps},
          {"world_size", world_size},
          {"batch_size", batch_size},
          {"grad_accum", grad_accum}};
}

TrainState TrainState::from_json(const nlohmann::json& j, const std::string& source) {
  TrainState s;
  try {
    s.step = j.at("step");
    s.epoch = j.at("epoch");
    s.optimizer_steps = j.at("optimizer_steps");
    s.gen = read_generator(j.at("rng"));
    s.default_gen = read_generator(j.at("default_rng"));
    s.loss_scale = j.at("loss_scale");
    s.scaler_clean_steps = j.at("scaler_clean_steps");
    s.world_size = j.value("world_size", 1);
    s.grad_accum = j.value("grad_accum", int64_t(1));
    if (j.contains("sample")) {
      s.sample = j.at("sample");
      s.batch_size = j.at("batch_size");
    } else {  // before data parallelism: one process counted its batches
      s.batch_size = j.at("config").at("batch_size");
      s.sample = int64_t(j.at("batch_in_epoch")) * s.batch_size;
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not a checkpoint state: {}", source, e.what());
  }
  return s;
}

std::string checkpoint_name(int64_t step) { return fmt::format("step_{:08d}", step); }

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

void save_checkpoint(const fs::path& run, const TrainState& state, const nn::NamedTensors& model,
                     const nn::NamedTensors& optimizer, const nlohmann::json& config, size_t keep) {
  const fs::path cp = run / "checkpoints" / checkpoint_name(state.step);
  fs::create_directories(cp);
  fs::remove(cp / "state.json");  // rewriting this step's checkpoint: incomplete until state.json lands
  save_safetensors((cp / "model.safetensors").string(), model);
  save_safetensors((cp / "optimizer.safetensors").string(), optimizer);
  nlohmann::json j = state.to_json();
  j["config"] = config;
  write_text_atomic((cp / "state.json").string(), j.dump(2) + "\n");
  const auto cps = complete_checkpoints(run);
  for (size_t i = 0; i + keep < cps.size(); ++i) fs::remove_all(cps[i]);
}

fs::path run_weights(const fs::path& run, const std::string& who) {
  const fs::path weights = run / "model.safetensors";
  if (fs::exists(weights)) return weights;
  const auto cps = complete_checkpoints(run);
  VB_CHECK(!cps.empty(), "{}: {} has neither model.safetensors nor a complete checkpoint", who, run.string());
  return cps.back() / "model.safetensors";
}

LoadedCheckpoint load_latest_checkpoint(const fs::path& run) {
  const auto cps = complete_checkpoints(run);
  VB_CHECK(!cps.empty(), "pretrain --resume: no complete checkpoint in {}", (run / "checkpoints").string());
  LoadedCheckpoint out;
  out.path = cps.back();
  const std::string state_path = (out.path / "state.json").string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(state_path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", state_path, e.what());
  }
  out.state = TrainState::from_json(j, state_path);
  out.model = load_safetensors((out.path / "model.safetensors").string()).tensors;
  out.optimizer = load_safetensors((out.path / "optimizer.safetensors").string()).tensors;
  return out;
}

}  // namespace vb::train
