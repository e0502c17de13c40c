// `videobert data synth` (the synthetic shapes dataset) and `videobert data check` (validate a dataset).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "models/tokenizer.h"
#include "tensor/error.h"
#include "train/cli/commands.h"
#include "train/data/loader.h"
#include "train/data/manifest.h"
#include "train/data/synth.h"

namespace vb::cli {

void add_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Video–text datasets (docs/DATA.md)");
  data->require_subcommand(1);

  struct SynthArgs {
    std::string out;
    vb::data::SynthOptions options;
  };
  auto synth_args = std::make_shared<SynthArgs>();
  auto* synth = data->add_subcommand("synth", "Write the synthetic shapes dataset (frames, manifest, vocab.txt)");
  synth->add_option("--out", synth_args->out, "Dataset folder to write")->required();
  synth->add_option("--clips", synth_args->options.clips, "Number of clips")->check(CLI::PositiveNumber);
  synth->add_option("--frames", synth_args->options.frames, "Frames per clip")->check(CLI::PositiveNumber);
  synth->add_option("--size", synth_args->options.size, "Frame width and height in pixels")->check(CLI::Range(16, 4096));
  synth->add_option("--seed", synth_args->options.seed, "Random seed (the same seed writes the same files)");
  synth->callback([synth_args] {
    const auto t0 = std::chrono::steady_clock::now();
    const vb::data::SynthSummary s = vb::data::write_synthetic_dataset(synth_args->out, synth_args->options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %lld clips (train %lld, val %lld, test %lld) of %lld frames %lldx%lld and a %lld-token "
                "vocabulary to %s in %.1f s\n",
                (long long)s.clips, (long long)s.train, (long long)s.val, (long long)s.test,
                (long long)synth_args->options.frames, (long long)synth_args->options.size,
                (long long)synth_args->options.size, (long long)s.vocab_size, synth_args->out.c_str(), seconds);
  });

  struct CheckArgs {
    std::string dir, vocab;
    vb::data::LoaderOptions options;
  };
  auto check_args = std::make_shared<CheckArgs>();
  auto* check = data->add_subcommand("check", "Parse a dataset's manifest and load every clip once (evaluation "
                                              "transforms), reporting the clips that cannot be read");
  check->add_option("--data", check_args->dir, "Dataset folder (holding manifest.jsonl)")->required();
  check->add_option("--vocab", check_args->vocab, "vocab.txt (default: DIR/vocab.txt)");
  check->add_option("--frames", check_args->options.frames, "Frames per clip")->check(CLI::PositiveNumber);
  check->add_option("--size", check_args->options.size, "Frame size")->check(CLI::PositiveNumber);
  check->add_option("--workers", check_args->options.workers, "Loader threads")->check(CLI::NonNegativeNumber);
  check->callback([check_args] {
    const vb::data::Manifest manifest = vb::data::load_manifest(check_args->dir);
    const std::string vocab = check_args->vocab.empty() ? check_args->dir + "/vocab.txt" : check_args->vocab;
    const WordPieceTokenizer tokenizer = WordPieceTokenizer::load(vocab);
    int64_t total_skipped = 0;
    for (vb::data::Split split : {vb::data::Split::Train, vb::data::Split::Val, vb::data::Split::Test}) {
      std::vector<vb::data::Clip> clips = manifest.split(split);
      if (clips.empty()) continue;
      vb::data::LoaderOptions o = check_args->options;
      o.split = split;
      o.train = false;
      vb::data::DataLoader loader(std::move(clips), tokenizer, o);
      int64_t loaded = 0;
      while (auto batch = loader.next()) loaded += batch->size();
      std::printf("%-5s %6lld clips loaded, %lld skipped\n", vb::data::split_name(split), (long long)loaded,
                  (long long)loader.skipped());
      total_skipped += loader.skipped();
    }
    VB_CHECK(total_skipped == 0, "data check: {} clips of {} could not be loaded (see the warnings above)",
             total_skipped, manifest.path);
  });
}

}  // namespace vb::cli
