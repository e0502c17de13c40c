// The pretraining loop: the loss falls, an interrupted and resumed run logs exactly the losses of an
// uninterrupted one, checkpoints survive a write cut short, SIGINT saves and exits, logs are complete.
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/data/synth.h"
#include "train/pretrain.h"
#include "train/report.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;
using namespace vb;
using namespace vb::train;

namespace {

const fs::path& dataset() {
  static const fs::path dir = test::synth_dataset("vb_pretrain_test_data", 40, 4, 32);
  return dir;
}

nlohmann::json small_config(const std::string& preset, int steps) {
  nlohmann::json c = load_config(preset);
  apply_overrides(c, {"steps=" + std::to_string(steps), "batch_size=4", "frames=2", "image_size=32", "max_text_len=12",
                      "workers=1", "eval_every=0", "checkpoint_every=2", "warmup_steps=2", "lr=0.003"});
  return c;
}

std::vector<double> logged_losses(const fs::path& run) {
  std::vector<double> out;
  for (const auto& row : read_metrics((run / "metrics.jsonl").string()))
    if (row.contains("loss")) out.push_back(row["loss"].get<double>());
  return out;
}

TrainResult run(const nlohmann::json& c, const fs::path& out, bool resume = false, int64_t stop_after = -1) {
  PretrainOptions o{c, dataset().string(), out.string(), "cpu", resume, false, true, stop_after};
  return pretrain(o);
}

}  // namespace

TEST_CASE("a short pretraining on the CPU lowers the loss and writes every log") {
  const fs::path out = fs::temp_directory_path() / "vb_pretrain_falls";
  fs::remove_all(out);
  TrainResult r = run(small_config("tiny", 30), out);
  CHECK(r.steps == 30);
  const std::vector<double> l = logged_losses(out);
  REQUIRE(l.size() == 30);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += l[size_t(i)] / 5;
    last += l[l.size() - 1 - size_t(i)] / 5;
  }
  CHECK(last < first);
  const auto rows = read_metrics((out / "metrics.jsonl").string());
  for (const char* key : {"step", "loss", "matching", "mlm", "mfm", "lr", "grad_norm", "loss_scale", "samples_per_s"})
    CHECK(rows.front().contains(key));
  CHECK(fs::exists(out / "report.md"));
  CHECK(fs::exists(out / "loss.svg"));
  CHECK(fs::exists(out / "model.safetensors"));
  CHECK(fs::exists(out / "eval_test.json"));
  CHECK(r.eval.contains("t2v_r1"));
  CHECK(r.eval.contains("v2t_medr"));
  bool tb = false;
  for (const auto& e : fs::directory_iterator(out)) {
    if (e.path().filename().string().find("tfevents") == std::string::npos) continue;
    tb = true;
    CHECK(read_scalar_events(e.path().string()).size() >= 30);
  }
  CHECK(tb);
  // keep_checkpoints = 3 of the 15 written.
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(out / "checkpoints")) checkpoints += e.is_directory();
  CHECK(checkpoints == 3);
}

// precision=bfloat16 on the CPU: matmul, convolution and attention in bfloat16 (kernels/cpu/gemm_bf16.cpp, on
// AMX tiles where the machine has them), the rest float32. Step 1 (the same weights and batch as the float32
// run) gives every loss term to within bfloat16's rounding — relative 2e-2, the emulator's bound for the same
// run (tests/emu/pretrain_steps.cpp) — and is not bit-identical: the low precision really ran. float16 is a
// GPU precision: the CPU runs float32, bit for bit.
TEST_CASE("precision=bfloat16 on the CPU tracks the float32 losses; float16 runs float32") {
  auto rows_of = [](const std::string& precision) {
    nlohmann::json c = small_config("tiny", 3);
    apply_overrides(c, {"precision=" + precision, "checkpoint_every=0", "workers=0"});
    const fs::path out = fs::temp_directory_path() / ("vb_pretrain_precision_" + precision);
    fs::remove_all(out);
    run(c, out);
    std::vector<nlohmann::json> steps;
    for (auto& row : read_metrics((out / "metrics.jsonl").string()))
      if (row.contains("loss")) steps.push_back(row);
    return steps;
  };
  const auto f32 = rows_of("float32"), bf16 = rows_of("bfloat16"), f16 = rows_of("float16");
  REQUIRE(f32.size() == 3);
  REQUIRE(bf16.size() == 3);
  REQUIRE(f16.size() == 3);
  double largest = 0;
  for (auto it = f32[0].begin(); it != f32[0].end(); ++it) {
    const std::string k = it.key();
    if (k == "samples_per_s" || k == "grad_norm" || !it.value().is_number()) continue;
    INFO(k);
    const double a = it.value().get<double>(), b = bf16[0][k].get<double>();
    CHECK(std::abs(a - b) <= 1e-5 + 2e-2 * std::abs(a));
    largest = std::max(largest, std::abs(a - b) / (1e-5 + std::abs(a)));
  }
  CHECK(largest > 0);
  MESSAGE("bfloat16: step 1's largest relative difference from float32 " << largest);
  for (size_t s = 0; s < 3; ++s) {
    CHECK(std::isfinite(bf16[s]["loss"].get<double>()));
    CHECK(bf16[s]["skipped"] == false);
    CHECK(f16[s]["loss"].get<double>() == f32[s]["loss"].get<double>());
  }
}

TEST_CASE("an interrupted and resumed run logs the same loss at every step as an uninterrupted one") {
  for (const std::string preset : {"tiny", "tiny-late"}) {
    CAPTURE(preset);
    const fs::path whole = fs::temp_directory_path() / ("vb_resume_whole_" + preset);
    const fs::path parts = fs::temp_directory_path() / ("vb_resume_parts_" + preset);
    fs::remove_all(whole);
    fs::remove_all(parts);
    nlohmann::json c = small_config(preset, 8);
    apply_overrides(c, {"checkpoint_every=100"});  // only the interruption and the end write checkpoints
    run(c, whole);
    TrainResult first = run(c, parts, false, /*stop_after=*/3);
    CHECK(first.interrupted);
    CHECK(first.steps == 3);
    TrainResult second = run(c, parts, true);
    CHECK(second.steps == 8);
    const std::vector<double> a = logged_losses(whole), b = logged_losses(parts);
    REQUIRE(a.size() == 8);
    REQUIRE(b.size() == 8);
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);  // bit-identical, not approximately equal
  }
}

TEST_CASE("a checkpoint write cut short leaves the previous checkpoint loadable") {
  const fs::path out = fs::temp_directory_path() / "vb_resume_cut";
  fs::remove_all(out);
  nlohmann::json c = small_config("tiny-dual", 6);
  run(c, out, false, /*stop_after=*/4);
  // Simulate a crash while writing step 5: weights half written, no state.json, a temporary file left.
  const fs::path partial = out / "checkpoints" / "step_00000005";
  fs::create_directories(partial);
  {
    const std::string whole = read_text_file((out / "checkpoints" / "step_00000004" / "model.safetensors").string());
    std::ofstream(partial / "model.safetensors", std::ios::binary) << whole.substr(0, whole.size() / 2);
    std::ofstream(partial / ".optimizer.safetensors.tmp.1.2.3") << "partial";
  }
  TrainResult r = run(c, out, true);
  CHECK(r.steps == 6);
  const std::vector<double> l = logged_losses(out);
  CHECK(l.size() == 6);
}

TEST_CASE("SIGINT saves a checkpoint and exits cleanly") {
  const fs::path out = fs::temp_directory_path() / "vb_sigint";
  fs::remove_all(out);
  const std::string bin = std::string(VB_BUILD_DIR) + "/videobert";
  REQUIRE(fs::exists(bin));
  // Start a long run, wait for its first logged step, interrupt it, and collect its exit status.
  const std::string cmd = fmt::format(
      "{} pretrain --config tiny-dual --data {} --out {} --device cpu steps=100000 batch_size=4 frames=2 image_size=32 "
      "max_text_len=12 workers=1 checkpoint_every=1000 > {}/log.txt 2>&1 & pid=$!; "
      "for i in $(seq 600); do [ -s {}/metrics.jsonl ] && break; sleep 0.1; done; kill -INT $pid; wait $pid; exit $?",
      bin, dataset().string(), out.string(), fs::temp_directory_path().string(), out.string());
  fs::create_directories(out);
  const int status = std::system(("bash -c '" + cmd + "'").c_str());
  CHECK(WEXITSTATUS(status) == 130);
  bool found = false;
  for (const auto& e : fs::directory_iterator(out / "checkpoints")) found |= fs::exists(e.path() / "state.json");
  CHECK(found);
}

TEST_CASE("pretrain rejects bad setups with clear errors") {
  nlohmann::json c = small_config("tiny", 2);
  PretrainOptions o{c, "/nonexistent/data", (fs::temp_directory_path() / "vb_bad").string(), "cpu"};
  CHECK_THROWS_AS(pretrain(o), Error);
  PretrainOptions r{c, dataset().string(), (fs::temp_directory_path() / "vb_no_cp").string(), "cpu", true};
  fs::remove_all(r.out_dir);
  CHECK_THROWS_WITH_AS(pretrain(r), doctest::Contains("no complete checkpoint"), Error);
  CHECK_THROWS_WITH_AS(resolve_device("tpu"), doctest::Contains("tpu"), Error);
}
