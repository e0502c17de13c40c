// Model benchmark on the CPU: one training step's forward + backward (no optimizer) of BERT tiny/base and
// ResNet-18/50 in train mode, on the shapes bench/torch_models_cpu.py times in PyTorch. One JSON line per
// case: median seconds over repeated steps after a warm-up step, and the step's FLOPs (≈ 3 × forward:
// the backward costs about twice the forward), computed by the same formulas on both sides.
// scripts/bench-models.sh runs both and prints the ours/PyTorch table.
// Usage: bench_models_cpu [--quick] [--device cpu|cuda|emu] [--bf16]
// On a GPU (--device cuda; bench/torch_models_cpu.py --device cuda beside it) the shapes are the GPU's
// (BERT B=32 T=128, ResNet N=32 224²), each step ends with a device synchronise, and --bf16 runs the step
// under AutocastGuard(bfloat16) as pretraining does (PyTorch: torch.autocast bfloat16). --device emu runs the
// quick shapes through the emulated CUDA backend as a smoke test, with no timing claims. On the CPU --bf16 runs
// the CPU shapes under the same guard (bfloat16 products on AMX tiles where the CPU has them).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "bench/host_timing.h"
#include "models/bert.h"
#include "models/resnet.h"

using namespace vb;
using namespace vb::models;

namespace {

Device g_device;     // where the models run
bool g_bf16 = false;  // mixed precision (bfloat16 autocast)

// The median seconds of one synchronised step, under bfloat16 autocast when asked.
double step_seconds(const std::function<void()>& step, int repeats) {
  auto fn = [&] {
    {
      std::optional<AutocastGuard> autocast;
      if (g_bf16) autocast.emplace(DType::BFloat16);
      step();
    }
    if (!g_device.is_cpu()) runtime(g_device.type).synchronize(g_device);
  };
  return bench::median_seconds(fn, repeats);
}

using bench::report;

// Forward FLOPs of BERT without the embeddings: 2·(4H² + 2·H·I) per token per layer for the matmuls,
// 4·T·H per token per layer for the attention scores and the weighted sum, plus the pooler's 2H².
double bert_forward_flops(const BertConfig& c, int64_t b, int64_t t) {
  const double h = double(c.hidden_size), i = double(c.intermediate_size), tokens = double(b * t);
  return double(c.num_hidden_layers) * tokens * (2 * (4 * h * h + 2 * h * i) + 4 * double(t) * h) + 2.0 * double(b) * h * h;
}

void bench_bert(const std::string& preset, int64_t b, int64_t t, int reps) {
  BertConfig c = BertConfig::preset(preset);
  BertModel model(c);
  model.train();
  model.to(g_device);
  Generator gen{1, 0};
  Tensor ids = to(randint(0, c.vocab_size, {b, t}, &gen), g_device);
  Tensor mask = ones({b, t}, DType::Int64, g_device);
  const double s = step_seconds(
      [&] {
        model.zero_grad();
        BertOutput o = model.forward(ids, {}, mask);
        backward(add(mean(o.last_hidden_state), mean(o.pooler_output)));
      },
      reps);
  report("bert-" + preset + " B=" + std::to_string(b) + " T=" + std::to_string(t) + " fwd+bwd", s,
         3 * bert_forward_flops(c, b, t));
}

// Forward multiply-adds at 224 × 224 as torchvision's model card counts them, scaled by the image area.
double resnet_forward_flops(const std::string& arch, int64_t n, int64_t size) {
  const double gmacs = arch == "resnet18" ? 1.814 : 4.089;
  return 2 * gmacs * 1e9 * double(n) * double(size * size) / (224.0 * 224.0);
}

void bench_resnet(const std::string& arch, int64_t n, int64_t size, int reps) {
  ResNet model(ResNetConfig::preset(arch));
  model.train();
  model.to(g_device);
  Generator gen{2, 0};
  Tensor x = to(randn({n, size, size, 3}, &gen), g_device);  // (N, H, W, 3)
  const double s = step_seconds(
      [&] {
        model.zero_grad();
        backward(mean(model.forward(x)));
      },
      reps);
  report(arch + " N=" + std::to_string(n) + " " + std::to_string(size) + "px fwd+bwd", s,
         3 * resnet_forward_flops(arch, n, size));
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--bf16") g_bf16 = true;
    else if (a == "--device" && i + 1 < argc) g_device = Device::parse(argv[++i]);
    else {
      std::fprintf(stderr, "bench_models_cpu: unknown argument '%s' (expected --quick, --device cpu|cuda|emu, --bf16)\n",
                   a.c_str());
      return 2;
    }
  }
  if (!g_device.is_cpu() && !has_runtime(g_device.type)) {
    std::fprintf(stderr, "bench_models_cpu: device %s is not available in this build or on this machine\n",
                 g_device.str().c_str());
    return 77;
  }
  const int reps = quick ? 1 : 5;
  std::fprintf(stderr, "bench_models_cpu: %s, %d CPU threads%s\n", g_device.str().c_str(), omp_get_max_threads(),
               g_bf16 ? ", bfloat16 autocast" : "");
  if (quick || g_device.type == DeviceType::EMU) {
    bench_bert("tiny", 2, 8, reps);
    bench_resnet("resnet18", 2, 64, reps);
    return 0;
  }
  if (g_device.type == DeviceType::CUDA) {
    bench_bert("base", 32, 128, 10);
    bench_resnet("resnet50", 32, 224, 10);
    return 0;
  }
  bench_bert("tiny", 8, 64, reps);
  bench_bert("base", 2, 32, reps);
  bench_resnet("resnet18", 2, 112, reps);
  bench_resnet("resnet50", 2, 112, reps);
  return 0;
}
