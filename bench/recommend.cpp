// Recommendation search benchmark: how long `videobert similar` takes on indexes of N random unit embeddings
// of dimension D, split into its parts — reading and validating the index file, the scores' matrix product
// (1, D)·(D, N), the top-k selection (a bounded heap, O(N log k)) beside a full sort of the same scores, and
// one whole query (product + selection) — plus the throughput of batched queries (the evaluation's path).
// Median of repeated runs after a warm-up. Usage: bench_recommend [--quick] [--device cpu|emu|cuda]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "bench/host_timing.h"
#include "models/videobert.h"
#include "train/pretrain.h"
#include "train/recommend.h"

using namespace vb;
using namespace vb::train;

int main(int argc, char** argv) {
  bool quick = false;
  std::string device_name = "cpu";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) device_name = argv[++i];
  }
  const Device device = resolve_device(device_name);
  const int reps = quick ? 1 : 21;
  const int64_t k = 10, batch = 256;
  std::vector<int64_t> sizes = {1000, 10000, 100000};
  std::vector<int64_t> dims = {128, 768};
  if (quick) sizes = {1000}, dims = {128};
  const std::string path = (std::filesystem::temp_directory_path() / "vb_bench_recommend.safetensors").string();
  std::printf("bench_recommend: device %s, %d OpenMP threads, k = %lld, median of %d runs (milliseconds)\n\n",
              device.str().c_str(), omp_get_max_threads(), static_cast<long long>(k), reps);
  std::printf("%8s %5s | %9s | %9s %9s %9s | %9s | %12s\n", "N", "D", "load", "product", "top-k", "full sort",
              "1 query", "per query*");
  std::printf("%8s %5s | %9s | %9s %9s %9s | %9s | %12s\n", "", "", "index", "", "heap", "std::sort", "search()",
              "batch 256");
  for (int64_t d : dims) {
    for (int64_t n : sizes) {
      Generator g{uint64_t(n * 1000 + d), 0};
      EmbeddingIndex index;
      for (int64_t i = 0; i < n; ++i) index.clip_ids.push_back("clip_" + std::to_string(i));
      index.video = contiguous(models::l2_normalize(randn({n, d}, &g)));
      index.metadata = {{"model", "bench"}, {"embedding", "random"}};
      save_index(path, index);
      const double load = bench::median_seconds([&] { load_index(path); }, std::min(reps, 5));

      const Tensor items = to(index.video, device);
      const Tensor query = narrow(items, 0, n / 2, 1);
      const double product = bench::median_seconds(
          [&] {
            Tensor s = to(linear(query, items), Device());
            s.data<float>();
          },
          reps);
      const Tensor scores = contiguous(to(linear(query, items), Device()));
      const float* s = scores.data<float>();
      const double heap = bench::median_seconds([&] { top_k(s, n, k, n / 2); }, reps);
      std::vector<int64_t> order(static_cast<size_t>(n));
      const double full = bench::median_seconds(
          [&] {
            std::iota(order.begin(), order.end(), 0);
            std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
          },
          reps);
      const double one = bench::median_seconds([&] { search(query, items, k, {n / 2}); }, reps);
      const Tensor many = narrow(items, 0, 0, std::min(batch, n));
      const double batched = bench::median_seconds([&] { search(many, items, k); }, std::min(reps, 5)) /
                             double(std::min(batch, n));
      std::printf("%8lld %5lld | %9.3f | %9.3f %9.3f %9.3f | %9.3f | %12.4f\n", static_cast<long long>(n),
                  static_cast<long long>(d), load * 1e3, product * 1e3, heap * 1e3, full * 1e3, one * 1e3,
                  batched * 1e3);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove(path);
  std::printf("\n* %lld queries in one search() call (one matrix product per block of rows), per query.\n",
              static_cast<long long>(batch));
  return 0;
}
