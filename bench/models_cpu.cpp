// Model benchmark on the CPU: one training step's forward + backward (no optimizer) of BERT tiny/base and
// ResNet-18/50 in train mode, on the shapes bench/torch_models_cpu.py times in PyTorch. One JSON line per
// case: median seconds over repeated steps after a warm-up step, and the step's FLOPs (≈ 3 × forward:
// the backward costs about twice the forward), computed by the same formulas on both sides.
// scripts/bench-models.sh runs both and prints the ours/PyTorch table. Usage: bench_models_cpu [--quick]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "models/bert.h"
#include "models/resnet.h"

using namespace vb;
using namespace vb::models;

namespace {

double median_seconds(const std::function<void()>& fn, int repeats) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void report(const std::string& name, double seconds, double flops) {
  std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"flops\": %.6e, \"bytes\": 0}\n", name.c_str(), seconds, flops);
  std::fflush(stdout);
}

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
  Generator gen{1, 0};
  Tensor ids = randint(0, c.vocab_size, {b, t}, &gen);
  Tensor mask = ones({b, t}, DType::Int64);
  const double s = median_seconds(
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
  Generator gen{2, 0};
  Tensor x = randn({n, size, size, 3}, &gen);  // (N, H, W, 3)
  const double s = median_seconds(
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
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 1 : 5;
  std::fprintf(stderr, "bench_models_cpu: %d threads\n", omp_get_max_threads());
  if (quick) {
    bench_bert("tiny", 2, 8, reps);
    bench_resnet("resnet18", 2, 64, reps);
    return 0;
  }
  bench_bert("tiny", 8, 64, reps);
  bench_bert("base", 2, 32, reps);
  bench_resnet("resnet18", 2, 112, reps);
  bench_resnet("resnet50", 2, 112, reps);
  return 0;
}
