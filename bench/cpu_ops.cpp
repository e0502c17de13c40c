// CPU op benchmark: times our CPU backend on the shapes bench/torch_cpu_ops.py times in PyTorch, and
// prints one JSON line per case (median seconds over repeated runs after warm-up, and the work done).
// scripts/bench-cpu.sh runs both and prints the ours/PyTorch table. Usage: bench_cpu_ops [--quick]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "bench/host_timing.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/gemm.h"

using namespace vb;

namespace {

using bench::median_seconds;
using bench::report;

// Runs f once per path our convolutions can take: the default (oneDNN's where the build has it,
// kernels/cpu/conv_onednn.h; the row is named as PyTorch's) and, with oneDNN built, kernels/cpu/conv.cpp's
// implicit-im2col product too, in a row marked " [conv.cpp]" (compare.py holds it to the same PyTorch case).
template <typename F>
void for_each_conv_path(F&& f) {
  f("");
  if (!cpu::onednn_built()) return;
  const bool was = cpu::conv_onednn(false);
  f(" [conv.cpp]");
  cpu::conv_onednn(was);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 1 : 7;
  std::fprintf(stderr, "bench_cpu_ops: %d threads\n", omp_get_max_threads());
  Generator g{1, 0};  // inputs don't require grad, so forward-only cases record nothing

  // matmul: square and BERT-base shapes (tokens × hidden · hiddenᵀ).
  std::vector<std::array<int64_t, 3>> mm = {{512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048},
                                            {2048, 768, 768}, {2048, 768, 3072}, {2048, 3072, 768}};
  if (quick) mm = {{64, 64, 64}};
  for (auto [m, k, n] : mm) {
    Tensor a = randn({m, k}, &g), b = randn({k, n}, &g);
    const double s = median_seconds([&] { matmul(a, b); }, reps);
    report(fmt::format("matmul {}x{}x{}", m, k, n), s, 2.0 * m * k * n, 4.0 * (m * k + k * n + m * n));
  }
  {
    // linear as BERT uses it: x (tokens, 768) · Wᵀ with W (3072, 768) stored (out, in).
    const int64_t t = quick ? 64 : 2048;
    Tensor x = randn({t, 768}, &g), w = randn({3072, 768}, &g), b = randn({3072}, &g);
    const double s = median_seconds([&] { linear(x, w, b); }, reps);
    report(fmt::format("linear {}x768->3072", t), s, 2.0 * t * 768 * 3072, 4.0 * (t * 768 + 3072 * 768 + t * 3072));
  }
  {
    const int64_t rows = quick ? 64 : 4096;
    Tensor x = randn({rows, 768}, &g), w = randn({768}, &g), b = randn({768}, &g);
    const double s = median_seconds([&] { layer_norm(x, 1, w, b, 1e-12); }, reps);
    report(fmt::format("layer_norm {}x768", rows), s, 8.0 * rows * 768, 8.0 * rows * 768);
  }
  {
    const int64_t rows = quick ? 64 : 4096 * 4;
    Tensor x = randn({rows, 512}, &g);
    const double s = median_seconds([&] { softmax(x, -1); }, reps);
    report(fmt::format("softmax {}x512", rows), s, 5.0 * rows * 512, 8.0 * rows * 512);
  }
  {
    const int64_t n = quick ? 4096 : 4 * 1024 * 1024;
    Tensor x = randn({n}, &g);
    const double s = median_seconds([&] { gelu(x); }, reps);
    report(fmt::format("gelu {}", n), s, 20.0 * n, 8.0 * n);
  }
  // conv2d on ResNet-50 layer shapes (batch 8), channels-last.
  // x (n, h, w, c), w (o, k, k, c), padding k / 2.
  struct ConvCase {
    int64_t n, h, w, c, o, k, stride;
    Conv2dParams params() const {
      Conv2dParams p;
      p.stride_h = p.stride_w = int(stride);
      p.pad_h = p.pad_w = int(k / 2);
      return p;
    }
    int64_t oh() const { return (h + 2 * (k / 2) - k) / stride + 1; }
    int64_t ow() const { return (w + 2 * (k / 2) - k) / stride + 1; }
    std::string shape() const { return fmt::format("n{} {}x{}x{}->{} k{} s{}", n, h, w, c, o, k, stride); }
    double flops() const { return 2.0 * n * oh() * ow() * o * k * k * c; }
    double bytes() const { return 4.0 * (n * h * w * c + o * k * k * c + n * oh() * ow() * o); }
  };
  std::vector<ConvCase> convs = {{8, 56, 56, 64, 64, 3, 1}, {8, 56, 56, 256, 64, 1, 1}, {8, 28, 28, 128, 128, 3, 1},
                                 {8, 14, 14, 256, 256, 3, 1}, {8, 112, 112, 64, 64, 3, 2}};
  if (quick) convs = {{1, 8, 8, 4, 4, 3, 1}};
  for (const ConvCase& c : convs) {
    Tensor x = randn({c.n, c.h, c.w, c.c}, &g), w = randn({c.o, c.k, c.k, c.c}, &g);
    const Conv2dParams p = c.params();
    for_each_conv_path([&](const char* path) {
      const double s = median_seconds([&] { conv2d(x, w, {}, p); }, reps);
      report("conv2d " + c.shape() + path, s, c.flops(), c.bytes());
    });
  }
  // conv2d's weight gradient, gW = gYᵀ · im2col(x), gy and x of type dt and gW float32 (for bfloat16, as under
  // autocast). Always kernels/cpu/conv.cpp (oneDNN's weight gradient changes bits with the thread count); where it
  // reads the im2col rows in place (at most 96 output channels; in bfloat16 beside VDPBF16PS, at most 16), the
  // packed im2col product too, in a row marked " [im2col]". Bytes: gy and x in dt, gW in float32.
  auto weight_grads = [&](const std::vector<ConvCase>& cases, DType dt, const std::string& name) {
    const double elem = double(dtype_size(dt));
    for (const ConvCase& c : cases) {
      const Conv2dParams p = c.params();
      Tensor x = to(randn({c.n, c.h, c.w, c.c}, &g), dt), gy = to(randn({c.n, c.oh(), c.ow(), c.o}, &g), dt);
      Tensor gw = Tensor::empty({c.o, c.k, c.k, c.c}, DType::Float32, x.device());
      auto weight_grad = [&] { backend(x.device()).conv2d_backward_weight(gy, x, p, gw); };
      const double bytes = elem * (c.n * c.h * c.w * c.c + c.n * c.oh() * c.ow() * c.o) + 4.0 * c.o * c.k * c.k * c.c;
      const uint64_t calls = cpu::conv_gathered_weight_grad_calls();
      report(name + c.shape(), median_seconds(weight_grad, reps), c.flops(), bytes);
      if (cpu::conv_gathered_weight_grad_calls() == calls) continue;
      const bool was = cpu::conv_gathered_weight_grad(false);
      report(name + c.shape() + " [im2col]", median_seconds(weight_grad, reps), c.flops(), bytes);
      cpu::conv_gathered_weight_grad(was);
    }
  };
  // ResNet-50 shapes, and the tiny preset's 7 × 7 stem over 6 channels and a 3 × 3 over 8 (batch 64 of 64-px
  // frames); in bfloat16 (PyTorch: bfloat16 tensors, its gW bfloat16) the tiny preset's two and the 56² shape.
  const std::vector<ConvCase> quick_wgrad = {{1, 8, 8, 4, 4, 3, 1}};
  weight_grads(quick ? quick_wgrad
                     : std::vector<ConvCase>{{8, 56, 56, 64, 64, 3, 1},
                                             {8, 14, 14, 256, 256, 3, 1},
                                             {8, 112, 112, 64, 64, 3, 2},
                                             {64, 64, 64, 6, 8, 7, 2},
                                             {64, 16, 16, 8, 8, 3, 1}},
               DType::Float32, "conv2d weight grad ");
  weight_grads(
      quick ? quick_wgrad
            : std::vector<ConvCase>{{8, 56, 56, 64, 64, 3, 1}, {64, 64, 64, 6, 8, 7, 2}, {64, 16, 16, 8, 8, 3, 1}},
      DType::BFloat16, "conv2d weight grad bf16 ");
  {
    // A small MLP, forward and backward: (512, 1024) → 4096 → 1024, ReLU, mean squared error.
    const int64_t batch = quick ? 8 : 512, din = quick ? 16 : 1024, hid = quick ? 32 : 4096;
    Tensor x = randn({batch, din}, &g), y = randn({batch, din}, &g);
    Tensor w1 = mul(randn({hid, din}, &g), 0.02), b1 = zeros({hid}), w2 = mul(randn({din, hid}, &g), 0.02),
           b2 = zeros({din});
    std::vector<Tensor> params = {w1, b1, w2, b2};
    for (Tensor& p : params) p.set_requires_grad();
    const double s = median_seconds(
        [&] {
          for (Tensor& p : params) p.set_grad(Tensor());
          backward(mean(pow(sub(linear(relu(linear(x, params[0], params[1])), params[2], params[3]), y), 2.0)));
        },
        reps);
    report(fmt::format("mlp fwd+bwd {}x{}->{}->{}", batch, din, hid, din), s, 6.0 * 2 * batch * din * hid, 0);
  }
  // bfloat16 (kernels/cpu/gemm_bf16.cpp: AMX tiles where the machine has them). PyTorch: bfloat16 tensors, and
  // torch.autocast("cpu", torch.bfloat16) for the autocast rows; "of limit" is against the AMX peak.
  std::vector<std::array<int64_t, 3>> mm16 = {{2048, 2048, 2048}, {2048, 768, 3072}, {2048, 3072, 768}};
  if (quick) mm16 = {{64, 64, 64}};
  for (auto [m, k, n] : mm16) {
    Tensor a = to(randn({m, k}, &g), DType::BFloat16), b = to(randn({k, n}, &g), DType::BFloat16);
    const double s = median_seconds([&] { matmul(a, b); }, reps);
    report(fmt::format("matmul bf16 {}x{}x{}", m, k, n), s, 2.0 * m * k * n, 2.0 * (m * k + k * n + m * n));
  }
  {
    const int64_t t = quick ? 64 : 2048;
    Tensor x = randn({t, 768}, &g), w = randn({3072, 768}, &g), b = randn({3072}, &g);
    const double s = median_seconds(
        [&] {
          AutocastGuard autocast(DType::BFloat16);
          linear(x, w, b);
        },
        reps);
    report(fmt::format("linear bf16 autocast {}x768->3072", t), s, 2.0 * t * 768 * 3072,
           4.0 * (t * 768 + 3072 * 768 + t * 3072));
  }
  for (const ConvCase& c : quick ? std::vector<ConvCase>{{1, 8, 8, 4, 4, 3, 1}}
                                 : std::vector<ConvCase>{{8, 56, 56, 64, 64, 3, 1}, {8, 14, 14, 256, 256, 3, 1}}) {
    Tensor x = randn({c.n, c.h, c.w, c.c}, &g), w = randn({c.o, c.k, c.k, c.c}, &g);
    const Conv2dParams p = c.params();
    for_each_conv_path([&](const char* path) {
      const double s = median_seconds(
          [&] {
            AutocastGuard autocast(DType::BFloat16);
            conv2d(x, w, {}, p);
          },
          reps);
      report("conv2d bf16 autocast " + c.shape() + path, s, c.flops(), c.bytes());
    });
  }
  std::fprintf(stderr, "bench_cpu_ops: bfloat16 products on %s\n", cpu::gemm_bf16_path_name(cpu::gemm_bf16_path()));
  std::fprintf(stderr, "bench_cpu_ops: convolutions on %s\n",
               cpu::conv_onednn_calls() > 0 ? ("oneDNN (last: " + cpu::conv_onednn_last_impl() + ")").c_str()
                                            : "kernels/cpu/conv.cpp");
  return 0;
}
