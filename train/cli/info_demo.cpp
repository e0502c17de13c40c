// `videobert info` and `videobert demo`.
#include <cstdio>
#include <memory>
#include <string>

#include "kernels/dist/launch.h"
#include "tensor/error.h"
#include "train/cli/commands.h"
#include "train/demo.h"
#include "train/info.h"

namespace vb::cli {

void add_info(CLI::App& app) {
  app.add_subcommand("info", "Build options, devices, communication backends, thread count, library versions and, "
                             "under a launcher, this rank")->callback([] {
    std::fputs(build_info().c_str(), stdout);
    // Under a launcher, where this process stands in the job: read from the environment only, so that
    // `mpirun -np 4 videobert info` shows each rank without starting MPI or any connection.
    std::string launch;
    try {
      const dist::Launch l = dist::detect_launch();
      if (l.launcher != "none") launch = l.describe();
    } catch (const Error& e) {
      launch = fmt::format("not understood: {}", e.what());
    }
    if (!launch.empty()) std::fputs(fmt::format("{:<16}{}\n", "launch:", launch).c_str(), stdout);
  });
}

void add_demo(CLI::App& app) {
  struct Args {
    DemoOptions demo;
    int log_every = 25;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("demo", "Train a two-layer MLP on a toy regression on the CPU");
  cmd->add_option("--steps", args->demo.steps, "Training steps")->check(CLI::PositiveNumber);
  cmd->add_option("--hidden", args->demo.hidden, "Hidden units")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", args->demo.lr, "Adam learning rate")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", args->demo.seed, "Random seed");
  cmd->add_option("--log-every", args->log_every, "Print the loss every N steps")->check(CLI::PositiveNumber);
  cmd->callback([args] {
    const DemoOptions& d = args->demo;
    std::printf("Two-layer MLP (4 -> %d -> 1), Adam lr %g, %d samples, full batch, on the CPU\n", d.hidden, d.lr,
                d.samples);
    DemoResult r = run_mlp_demo(d, [&](int step, double loss) {
      if (step == 1 || step % args->log_every == 0 || step == d.steps) std::printf("step %5d  loss %.6f\n", step, loss);
    });
    std::printf("loss fell from %.4f to %.4f (%.1fx lower)\n", r.first_loss, r.last_loss, r.first_loss / r.last_loss);
  });
}

}  // namespace vb::cli
