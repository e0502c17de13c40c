// The `videobert` command line.
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"videobert: BERT, ResNet and VideoBERT on one CPU, one GPU or many"};
  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
