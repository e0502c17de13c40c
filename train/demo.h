// The CPU demo (the README's first command until pretraining lands): a two-layer MLP fitted to a toy
// regression through autograd, printing the loss as it falls.
#pragma once
#include <cstdint>
#include <functional>

namespace vb {

struct DemoOptions {
  int steps = 300;
  int samples = 512;
  int hidden = 64;
  double lr = 0.01;
  uint64_t seed = 0;
};

struct DemoResult {
  double first_loss = 0;
  double last_loss = 0;
};

// Trains y = sin(π·x0)·cos(x1) + x2·x3 / 2 from x ∈ U(−1, 1)⁴ with Adam, full batch; calls log(step, loss)
// after every step.
DemoResult run_mlp_demo(const DemoOptions& opt, const std::function<void(int, double)>& log);

}  // namespace vb
