// `videobert pretrain` and `videobert eval`.
#include <cstdio>
#include <iostream>
#include <filesystem>
#include <memory>

#include "tensor/atomic_file.h"
#include "train/cli/commands.h"
#include "train/config.h"
#include "train/evaluate.h"
#include "train/finetune.h"
#include "train/pretrain.h"

namespace vb::cli {

void add_pretrain(CLI::App& app) {
  struct Args {
    std::string config = "tiny", data = "data/synth", out = "runs/tiny", device = "auto";
    bool resume = false, strict = false;
    int64_t stop_after = -1;
    std::vector<std::string> overrides;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("pretrain", "Pretrain a VideoBERT model on a video–text dataset");
  cmd->add_option("--config", a->config, "A preset (tiny, tiny-late, tiny-dual, base) or a JSON file");
  cmd->add_option("--data", a->data, "The dataset folder (manifest.jsonl, vocab.txt)");
  cmd->add_option("--out", a->out, "The run folder");
  cmd->add_option("--device", a->device, "auto, cpu, cuda or emu");
  cmd->add_flag("--resume", a->resume, "Continue from the newest complete checkpoint in the run folder");
  cmd->add_flag("--strict", a->strict, "Stop at the first unreadable sample instead of skipping it");
  cmd->add_option("--stop-after", a->stop_after,
                  "Stop with a checkpoint after this many steps of this invocation, as an interruption would "
                  "(exit status 130; continue with --resume)");
  cmd->add_option("overrides", a->overrides, "key=value overrides, e.g. steps=100 lr=3e-4 augment.flip=true");
  cmd->callback([a] {
    nlohmann::json config;
    if (a->resume && a->config == "tiny" && std::filesystem::exists(a->out + "/config.json")) {
      config = train::read_run_config(a->out + "/config.json");  // the run's own configuration
    } else {
      config = train::load_config(a->config);
    }
    train::apply_overrides(config, a->overrides);
    train::PretrainOptions o{config, a->data, a->out, a->device, a->resume, a->strict, false, a->stop_after};
    train::TrainResult r = train::pretrain(o);
    if (r.interrupted) std::exit(130);
    if (r.rank != 0) return;  // rank 0 reports for the job
    std::printf("\nloss %.4f -> %.4f over %lld steps; run folder %s\n", r.first_loss, r.last_loss,
                static_cast<long long>(r.steps), a->out.c_str());
    if (!r.eval.is_null()) std::printf("\n%s", train::format_eval_table(r.eval).c_str());
  });
}

void add_eval(CLI::App& app) {
  struct Args {
    std::string run, data, split = "test", json, device = "auto", frames = "normal";
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a run: retrieval, matching, masked LM, zero-shot attributes");
  cmd->add_option("--run", a->run, "The run folder")->required();
  cmd->add_option("--data", a->data, "The dataset folder")->required();
  cmd->add_option("--split", a->split, "train, val or test");
  cmd->add_option("--json", a->json, "Also write the metrics to this JSON file");
  cmd->add_option("--device", a->device, "auto, cpu, cuda or emu");
  cmd->add_option("--frames", a->frames,
                  "A fine-tuning run's controls: normal, reversed or shuffled frames (docs/FINETUNE.md)");
  cmd->callback([a] {
    if (train::is_finetune_run(a->run)) {
      const train::FinetuneEval e = train::evaluate_finetuned(a->run, a->data, a->split, a->device, a->frames);
      std::printf("%s split, %s frames\n", a->split.c_str(), a->frames.c_str());
      for (auto it = e.metrics.begin(); it != e.metrics.end(); ++it)
        if (it.value().is_number())
          std::printf("%-28s %s\n", it.key().c_str(),
                      it.value().is_number_float() ? fmt::format("{:.4f}", it.value().get<double>()).c_str()
                                                   : it.value().dump().c_str());
      if (!a->json.empty()) write_text_atomic(a->json, e.metrics.dump(2) + "\n");
      return;
    }
    VB_CHECK(a->frames == "normal", "eval --frames {}: frame-order controls are for fine-tuning runs; {} is a "
             "pretraining run", a->frames, a->run);
    nlohmann::json m = train::evaluate_run(a->run, a->data, a->split, a->device);
    std::printf("%s", train::format_eval_table(m).c_str());
    if (!a->json.empty()) write_text_atomic(a->json, m.dump(2) + "\n");
  });
}

}  // namespace vb::cli
