// Fine-tuning's heads on the emulated CUDA device: a few steps of each task — qa (the open-ended MLP head
// and the multiple-choice scorer), classify, and caption (the masked-LM head under the seq2seq mask) — log
// the same losses as on the CPU, and the final evaluation gives the same metrics: the whole path through
// the CUDA backend's kernels, run by the emulator, against the CPU backend as the reference.
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <cmath>
#include <filesystem>

#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/finetune.h"
#include "train/pretrain.h"
#include "train/report.h"

namespace fs = std::filesystem;
using namespace vb;
using namespace vb::train;

namespace {

const fs::path& dataset() {
  static const fs::path dir = test::synth_dataset("vb_emu_finetune_data", 20, 2, 32);
  return dir;
}

// A pretrained single stream (a few CPU steps: the weights only need to be the same for both devices).
const fs::path& pretrained() {
  static const fs::path run = [] {
    const fs::path out = fs::temp_directory_path() / "vb_emu_finetune_pretrained";
    fs::remove_all(out);
    nlohmann::json c = load_config("tiny");
    apply_overrides(c, {"steps=2", "batch_size=4", "frames=2", "image_size=32", "max_text_len=12", "workers=0",
                        "eval_every=0", "checkpoint_every=0", "warmup_steps=1"});
    pretrain(PretrainOptions{c, dataset().string(), out.string(), "cpu", false, false, true, -1});
    return out;
  }();
  return run;
}

struct Run {
  std::vector<nlohmann::json> steps;
  nlohmann::json eval;
};

Run finetune_on(const std::string& task, const std::string& device, std::vector<std::string> overrides = {}) {
  FinetuneOptions o;
  o.run_dir = pretrained().string();
  o.task = task;
  o.data_dir = dataset().string();
  o.out_dir = (fs::temp_directory_path() / ("vb_emu_finetune_" + task + "_" + device)).string();
  fs::remove_all(o.out_dir);
  o.device = device;
  overrides.insert(overrides.end(), {"steps=3", "batch_size=8", "workers=0", "eval_every=0", "checkpoint_every=0",
                                     "warmup_steps=1", "lr=0.003"});
  o.overrides = overrides;
  o.quiet = true;
  Run r;
  r.eval = finetune(o).eval;
  for (auto& row : read_metrics((fs::path(o.out_dir) / "metrics.jsonl").string()))
    if (row.contains("loss")) r.steps.push_back(row);
  return r;
}

// Every logged loss at every step, and every evaluation metric, agree within relative 5e-4 (the bound of
// emu/pretrain_steps: the backends round differently and AdamW carries it forward). Accuracies and caption
// scores are counts of discrete outcomes: a prediction on a knife edge could flip, so they are compared
// with one example's worth of slack.
void check_same(const std::string& task, const std::vector<std::string>& overrides = {}) {
  const Run cpu = finetune_on(task, "cpu", overrides);
  const Run emu = finetune_on(task, "emu", overrides);
  REQUIRE(cpu.steps.size() == 3);
  REQUIRE(emu.steps.size() == 3);
  double worst = 0;
  for (size_t s = 0; s < cpu.steps.size(); ++s)
    for (auto it = cpu.steps[s].begin(); it != cpu.steps[s].end(); ++it) {
      const std::string k = it.key();
      if (k == "samples_per_s" || !it.value().is_number()) continue;
      INFO(task << " step " << s + 1 << " " << k);
      const double a = it.value().get<double>(), b = emu.steps[s].at(k).get<double>();
      CHECK(std::abs(a - b) <= 1e-5 + 5e-4 * std::abs(a));
      worst = std::max(worst, std::abs(a - b) / (1e-5 + std::abs(a)));
    }
  const double samples = cpu.eval.at("eval_samples").get<double>();
  for (auto it = cpu.eval.begin(); it != cpu.eval.end(); ++it) {
    if (!it.value().is_number()) continue;
    INFO(task << " " << it.key());
    const double a = it.value().get<double>(), b = emu.eval.at(it.key()).get<double>();
    const bool loss = it.key().ends_with("loss");
    CHECK(std::abs(a - b) <= (loss ? 1e-5 + 5e-4 * std::abs(a) : 1.0 / samples + 1e-9));
  }
  MESSAGE(task << ": largest relative difference of a logged loss " << worst);
}

}  // namespace

TEST_CASE("qa: the open-ended head and the multiple-choice scorer on emu match the CPU") { check_same("qa"); }
TEST_CASE("classify: the MLP head on emu matches the CPU") { check_same("classify", {"label=color"}); }
TEST_CASE("caption: the masked-LM head under the seq2seq mask on emu matches the CPU") { check_same("caption"); }

#endif
