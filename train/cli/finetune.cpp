// `videobert finetune`: a pretrained run's model with a fresh head, trained for a downstream task
// (train/finetune.h, docs/FINETUNE.md).
#include <cstdio>
#include <memory>

#include "train/cli/commands.h"
#include "train/finetune.h"

namespace vb::cli {

void add_finetune(CLI::App& app) {
  struct Args {
    std::string run, task, data = "data/synth", out, device = "auto";
    bool resume = false, strict = false, from_scratch = false;
    int64_t stop_after = -1;
    std::vector<std::string> overrides;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("finetune", "Fine-tune a pretrained run for classification, video QA, captioning or several tasks");
  cmd->add_option("--run", a->run, "The pretraining run folder (config.json, model.safetensors)")->required();
  cmd->add_option("--task", a->task, "classify, qa, caption or multi (with tasks=qa:1,classify:0.5)")->required();
  cmd->add_option("--data", a->data, "The dataset folder (manifest.jsonl with \"qa\" records for qa, vocab.txt)");
  cmd->add_option("--out", a->out, "The fine-tuning run folder")->required();
  cmd->add_option("--device", a->device, "auto, cpu, cuda or emu");
  cmd->add_flag("--resume", a->resume, "Continue from the newest complete checkpoint in the run folder");
  cmd->add_flag("--strict", a->strict, "Stop at the first unreadable sample instead of skipping it");
  cmd->add_flag("--from-scratch", a->from_scratch,
                "Random initial weights instead of the pretrained ones (the baseline pretraining should beat)");
  cmd->add_option("--stop-after", a->stop_after, "Stop with a checkpoint after this many steps (exit status 130)");
  cmd->add_option("overrides", a->overrides,
                  "key=value: label=motion, answer_vocab=1000, blind=true, tasks=qa:1,classify:0.5, steps=300, lr=3e-4 …");
  cmd->callback([a] {
    train::FinetuneOptions o;
    o.run_dir = a->run;
    o.task = a->task;
    o.data_dir = a->data;
    o.out_dir = a->out;
    o.device = a->device;
    o.overrides = a->overrides;
    o.resume = a->resume;
    o.strict = a->strict;
    o.from_scratch = a->from_scratch;
    o.stop_after = a->stop_after;
    train::TrainResult r = train::finetune(o);
    if (r.interrupted) std::exit(130);
    if (r.rank != 0) return;
    std::printf("\nloss %.4f -> %.4f over %lld steps; run folder %s\n", r.first_loss, r.last_loss,
                static_cast<long long>(r.steps), a->out.c_str());
    if (r.eval.is_object()) {
      std::printf("\n");
      for (auto it = r.eval.begin(); it != r.eval.end(); ++it)
        if (it.value().is_number())
          std::printf("%-28s %s\n", it.key().c_str(),
                      it.value().is_number_float() ? fmt::format("{:.4f}", it.value().get<double>()).c_str()
                                                   : it.value().dump().c_str());
    }
  });
}

}  // namespace vb::cli
