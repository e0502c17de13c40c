// The `videobert` command line: one subcommand per job.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "tensor/error.h"
#include "train/demo.h"
#include "train/info.h"

int main(int argc, char** argv) {
  CLI::App app{"videobert: BERT, ResNet and VideoBERT on one CPU, one GPU or many"};
  app.require_subcommand(1);

  app.add_subcommand("info", "Build options, devices, thread count and library versions")->callback([] {
    std::fputs(vb::build_info().c_str(), stdout);
  });

  vb::DemoOptions demo;
  int log_every = 25;
  auto* demo_cmd = app.add_subcommand("demo", "Train a two-layer MLP on a toy regression on the CPU");
  demo_cmd->add_option("--steps", demo.steps, "Training steps")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--hidden", demo.hidden, "Hidden units")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--lr", demo.lr, "Adam learning rate")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--seed", demo.seed, "Random seed");
  demo_cmd->add_option("--log-every", log_every, "Print the loss every N steps")->check(CLI::PositiveNumber);
  demo_cmd->callback([&] {
    std::printf("Two-layer MLP (4 -> %d -> 1), Adam lr %g, %d samples, full batch, on the CPU\n", demo.hidden,
                demo.lr, demo.samples);
    vb::DemoResult r = vb::run_mlp_demo(demo, [&](int step, double loss) {
      if (step == 1 || step % log_every == 0 || step == demo.steps) std::printf("step %5d  loss %.6f\n", step, loss);
    });
    std::printf("loss fell from %.4f to %.4f (%.1fx lower)\n", r.first_loss, r.last_loss, r.first_loss / r.last_loss);
  });

  try {
    CLI11_PARSE(app, argc, argv);
  } catch (const vb::Error& e) {
    std::fprintf(stderr, "videobert: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
