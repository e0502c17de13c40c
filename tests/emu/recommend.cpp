// Recommendation search (train/recommend.h) on the emulated device: the index and the queries live on `emu`,
// the scores' matrix product goes through the CUDA backend's linear (whose cuBLASLt call the emulator serves
// with the CPU GEMM on the device buffers), the scores come back to the host for the top-k, and the hits equal
// the CPU's; so does the offline evaluation.
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <numeric>

#include "autograd/ops.h"
#include "models/videobert.h"
#include "tests/support/check.h"
#include "train/recommend.h"

using namespace vb;
using namespace vb::train;

namespace {

Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
  Generator g{seed, 0};
  return contiguous(models::l2_normalize(randn({n, d}, &g)));
}

}  // namespace

TEST_CASE("search on emu equals search on the CPU: the same hits, scores within float32 rounding") {
  const Device emu(DeviceType::EMU);
  const int64_t n = 300, d = 32, queries = 6;
  const Tensor items = unit_rows(n, d, 31);
  const Tensor q = narrow(items, 0, 10, queries);  // rows of the index, each excluding itself
  std::vector<int64_t> self(static_cast<size_t>(queries));
  std::iota(self.begin(), self.end(), 10);
  for (int64_t k : {1, 10, 299, 400}) {
    CAPTURE(k);
    const auto cpu = search(q, items, k, self);
    const auto dev = search(to(q, emu), to(items, emu), k, self);
    REQUIRE(dev.size() == cpu.size());
    // The CPU's scores of every row, to judge a hit the emulated product ranked differently.
    const std::vector<double> all = linear(q, items).to_vector();  // (queries, n)
    for (size_t i = 0; i < cpu.size(); ++i) {
      CAPTURE(i);
      REQUIRE(dev[i].size() == cpu[i].size());
      REQUIRE(cpu[i].size() == size_t(std::min<int64_t>(k, n - 1)));
      for (size_t r = 0; r < cpu[i].size(); ++r) {
        CAPTURE(r);
        CHECK(dev[i][r].row != self[i]);
        // float32 dot products of unit vectors of dimension 32 in another summation order: |Δ| ≤ 32·2^-24·2
        // ≈ 4e-6; 1e-5 allowed. A hit may differ from the CPU's only where two scores lie that close.
        const double cpu_score_of_dev_hit = all[i * size_t(n) + size_t(dev[i][r].row)];
        CHECK(std::abs(double(dev[i][r].score) - cpu_score_of_dev_hit) <= 1e-5);
        if (dev[i][r].row != cpu[i][r].row) CHECK(std::abs(cpu_score_of_dev_hit - double(cpu[i][r].score)) <= 1e-5);
      }
    }
  }
}

TEST_CASE("the offline evaluation on emu equals the CPU's") {
  const int64_t n = 24;
  EmbeddingIndex index;
  std::string manifest;
  const char* colors[] = {"red", "green", "blue"};
  const char* motions[] = {"grows", "shrinks"};
  for (int64_t i = 0; i < n; ++i) {
    index.clip_ids.push_back(fmt::format("c{}", i));
    const nlohmann::json attributes = {{"color", colors[i % 3]}, {"motion", motions[(i / 3) % 2]}};
    manifest += nlohmann::json{{"id", index.clip_ids.back()}, {"frames", "f"}, {"caption", "x"},
                               {"attributes", attributes}}.dump() + "\n";
  }
  index.video = unit_rows(n, 16, 5);
  const data::Manifest m = data::parse_manifest(manifest, std::filesystem::temp_directory_path().string(), "manifest");
  const RecommendationEval cpu = evaluate_recommendations(index, m, 5);
  const RecommendationEval emu = evaluate_recommendations(index, m, 5, 0, Device(DeviceType::EMU));
  CHECK(emu.queries == cpu.queries);
  // Random embeddings' scores are separated by far more than float32 rounding, so the rankings coincide.
  CHECK(emu.model.ndcg == doctest::Approx(cpu.model.ndcg).epsilon(1e-12));
  CHECK(emu.model.precision == doctest::Approx(cpu.model.precision).epsilon(1e-12));
  CHECK(emu.random.ndcg == doctest::Approx(cpu.random.ndcg).epsilon(1e-12));
}
#endif
