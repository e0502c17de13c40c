// `videobert visual-vocab build`: VideoBERT's visual words for a run (train/visual_vocab.h).
#include <cstdio>
#include <memory>

#include "train/cli/commands.h"
#include "train/visual_vocab.h"

namespace vb::cli {

void add_visual_vocab(CLI::App& app) {
  auto* group = app.add_subcommand("visual-vocab", "VideoBERT's visual words: hierarchical k-means of frame features");
  group->require_subcommand(1);
  auto c = std::make_shared<train::VisualVocabCommand>();
  auto* build = group->add_subcommand(
      "build", "Cluster the per-frame features of a run's frame encoder into k^levels visual words");
  build->add_option("--run", c->run, "The run folder (config.json and its weights)")->required();
  build->add_option("--data", c->data, "The dataset folder (manifest.jsonl, vocab.txt)")->required();
  build->add_option("--out", c->out, "The safetensors file to write (default RUN/visual_vocab.safetensors)");
  build->add_option("--split", c->split, "The split whose clips are clustered: train, val or test")
      ->capture_default_str();
  build->add_option("--levels", c->vocab.levels,
                    "Levels of the tree (the paper: 4; default 2, for the small synthetic dataset)")
      ->capture_default_str();
  build->add_option("--k", c->vocab.k, "Children per node (the paper: 12; default 8)")->capture_default_str();
  build->add_option("--iterations", c->vocab.max_iterations, "At most this many Lloyd iterations per k-means")
      ->capture_default_str();
  build->add_option("--tolerance", c->vocab.tolerance,
                    "Stop a k-means when its inertia falls by less than this fraction in an iteration")
      ->capture_default_str();
  build->add_option("--seed", c->vocab.seed, "Seed of the k-means++ draws")->capture_default_str();
  build->add_option("--device", c->device, "auto, cpu, cuda or emu")->capture_default_str();
  build->callback([c] {
    const train::VisualVocabReport r = train::build_visual_vocab_for_run(*c);
    std::printf("%s", train::format_visual_vocab_report(r).c_str());
  });
}

}  // namespace vb::cli
