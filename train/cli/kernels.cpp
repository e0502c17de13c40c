// `videobert kernels`: the kernel lab (train/kernel_lab.h).
#include <cstdio>
#include <memory>

#include "tensor/error.h"
#include "train/cli/commands.h"
#include "train/kernel_lab.h"

namespace vb::cli {

void add_kernels(CLI::App& app) {
  auto* group = app.add_subcommand("kernels", "The kernel lab: numbered kernel ladders, checked, timed and observed");
  group->require_subcommand(1);
  group->add_subcommand("list", "The ladders, their rungs and what each adds")->callback([] {
    std::printf("%s", train::kernel_list().c_str());
  });
  auto o = std::make_shared<train::KernelRunOptions>();
  auto* run = group->add_subcommand("run", "Run one rung on one device: checked against the CPU backend; timed "
                                           "on a GPU; observed access by access under the emulator (--insight)");
  run->add_option("op", o->op, "The ladder: gemm, layer_norm, attention or conv")->required();
  run->add_option("--rung", o->rung, "The rung (videobert kernels list)")->capture_default_str();
  run->add_option("--shape", o->shape, "gemm: MxNxK; layer_norm: NxC; attention: BxHxTxD; conv: NxHxWxCxOxKxS")->capture_default_str();
  run->add_option("--dtype", o->dtype,
                  "Input type, f32, bf16 or f16 (the GEMM's tensor-core rungs); by default the rung's own (videobert "
                  "kernels list)");
  run->add_option("--device", o->device, "cpu (the CPU backend, the reference), emu or cuda")->capture_default_str();
  run->add_flag("--insight", o->insight, "emu: count every global and shared access per source line "
                                         "(coalescing, bank conflicts, divergence; docs/EMULATOR.md)");
  run->add_option("--svg", o->svg, "With --insight: draw one warp's access pattern per line into this file");
  run->add_option("--repeat", o->repeat, "cuda: timed runs, the median reported (cpu: the mean)")->capture_default_str();
  run->add_option("--seed", o->seed, "Seed of the random matrices")->capture_default_str();
  run->add_flag("--no-time{false}", o->time, "cuda: run the rung once, checked but untimed (under a profiler such as "
                                             "Nsight Compute: only the rung's own kernels run)");
  run->callback([o] {
    const train::KernelRunResult r = train::run_kernel(*o);
    std::printf("%s", r.text.c_str());
    VB_CHECK(r.ok, "kernels: rung {} disagrees with the CPU backend", o->rung);
  });
}

}  // namespace vb::cli
