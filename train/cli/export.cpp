// `videobert export`: a run's text encoder as a Hugging Face BERT folder, and optionally its frame
// encoder's ResNet as a torchvision state dict (train/pretrain.h, export_run).
#include <cstdio>
#include <memory>

#include "train/cli/commands.h"
#include "train/pretrain.h"

namespace vb::cli {

void add_export(CLI::App& app) {
  struct Args {
    std::string run, out, data, vision;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "export", "Write a run's text encoder as a Hugging Face BERT folder (BertModel.from_pretrained loads it)");
  cmd->add_option("--run", a->run, "The run folder (pretraining or fine-tuning)")->required();
  cmd->add_option("--out", a->out, "The folder to write: config.json, model.safetensors, vocab.txt")->required();
  cmd->add_option("--data", a->data, "The dataset whose vocab.txt the run used (only for runs without vocab.txt)");
  cmd->add_option("--vision", a->vision, "Also write the frame encoder's ResNet here, torchvision's names (.safetensors)");
  cmd->callback([a] {
    for (const std::string& f : train::export_run(a->run, a->out, a->data, a->vision)) std::printf("wrote %s\n", f.c_str());
  });
}

}  // namespace vb::cli
