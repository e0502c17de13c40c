// The `videobert` command line: one subcommand per job, each registered from its own file.
#include <cstdio>

#include "tensor/error.h"
#include "train/cli/commands.h"

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
  vb::cli::add_inspect(app);
  vb::cli::add_extract(app);
  try {
    CLI11_PARSE(app, argc, argv);
  } catch (const vb::Error& e) {
    std::fprintf(stderr, "videobert: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
