// The `videobert` command line: one subcommand per job, each registered from its own file.
#include <cstdio>

#include "tensor/error.h"
#include "train/cli/commands.h"
#include "train/distributed.h"

int main(int argc, char** argv) {
  CLI::App app{"videobert: BERT, ResNet and VideoBERT on one CPU, one GPU or many"};
  app.require_subcommand(1);
  vb::cli::add_info(app);
  vb::cli::add_demo(app);
  vb::cli::add_tokenize(app);
  vb::cli::add_vocab(app);
  vb::cli::add_data(app);
  vb::cli::add_pretrain(app);
  vb::cli::add_eval(app);
  vb::cli::add_finetune(app);
  vb::cli::add_inspect(app);
  vb::cli::add_extract(app);
  vb::cli::add_export(app);
  vb::cli::add_visual_vocab(app);
  vb::cli::add_recommend(app);
  vb::cli::add_kernels(app);
  try {
    CLI11_PARSE(app, argc, argv);
  } catch (const vb::Error& e) {
    // A rank of a data-parallel job says which it is, first (messages from the communicator begin so).
    std::string what = e.what(), prefix = vb::train::rank_prefix();
    if (what.starts_with("[rank ")) {
      const size_t end = what.find("] ");
      if (end != std::string::npos) {
        prefix = what.substr(0, end + 2);
        what = what.substr(end + 2);
      }
    }
    std::fprintf(stderr, "%svideobert: error: %s\n", prefix.c_str(), what.c_str());
    return 1;
  }
  return 0;
}
