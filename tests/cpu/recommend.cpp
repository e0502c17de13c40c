// Video recommendation (train/recommend.h): top-k selection and search against a brute-force sort, the
// query's exclusion, k beyond the index, the index file's validation and its errors, P@k and nDCG@k against
// hand-computed cases, the evaluation against a brute-force re-computation (its random baseline against the
// mean over seeded random rankings), and embed → search → evaluate on tiny pretrained runs, in process and
// through the `videobert` program.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <tuple>

#include "autograd/ops.h"
#include "models/videobert.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/pretrain.h"
#include "train/recommend.h"

namespace fs = std::filesystem;
using namespace vb;
using namespace vb::train;

namespace {

// n random unit rows of dimension d, float32.
Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
  Generator g{seed, 0};
  return contiguous(models::l2_normalize(randn({n, d}, &g)));
}

// The reference ranking: every row's score in float64 from the float32 vectors, fully sorted (score
// descending, then row ascending), `exclude` left out.
std::vector<Hit> brute_force(const Tensor& items, const Tensor& query, int64_t exclude) {
  const std::vector<double> it = items.to_vector(), q = query.to_vector();
  const int64_t n = items.size(0), d = items.size(1);
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t i = 0; i < n; ++i) {
    if (i == exclude) continue;
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += it[size_t(i * d + j)] * q[size_t(j)];
    all.emplace_back(s, i);
  }
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  std::vector<Hit> out;
  for (auto& [s, i] : all) out.push_back({i, float(s)});
  return out;
}

// A search result agrees with the reference when each rank's hit scores (by the reference) what the
// reference's hit at that rank scores, within `tol`: float32 products may swap near-ties, never more.
void check_ranking(const std::vector<Hit>& got, const std::vector<Hit>& ref, size_t k, double tol) {
  REQUIRE(got.size() == std::min(k, ref.size()));
  std::map<int64_t, double> ref_score;
  for (const Hit& h : ref) ref_score[h.row] = h.score;
  std::set<int64_t> rows;
  for (size_t r = 0; r < got.size(); ++r) {
    CAPTURE(r);
    REQUIRE(ref_score.count(got[r].row));  // not the excluded row, not outside the index
    CHECK(rows.insert(got[r].row).second);
    CHECK(std::abs(ref_score[got[r].row] - double(ref[r].score)) <= tol);
    CHECK(std::abs(double(got[r].score) - ref_score[got[r].row]) <= tol);
  }
}

const fs::path& dataset() {
  static const fs::path dir = test::synth_dataset("vb_recommend_test_data", 40, 2, 32);
  return dir;
}

// A tiny run of `preset` pretrained for a few steps in this process (once per preset).
fs::path tiny_run(const std::string& preset) {
  static std::map<std::string, fs::path> runs;
  if (runs.count(preset)) return runs[preset];
  const fs::path out = fs::temp_directory_path() / ("vb_recommend_run_" + preset);
  fs::remove_all(out);
  nlohmann::json c = load_config(preset);
  apply_overrides(c, {"steps=4", "batch_size=8", "frames=2", "image_size=32", "max_text_len=12", "workers=1",
                      "eval_every=0", "checkpoint_every=0", "warmup_steps=1", "lr=0.003"});
  PretrainOptions o{c, dataset().string(), out.string(), "cpu", false, false, true};
  pretrain(o);
  return runs[preset] = out;
}

EmbeddingIndex embed(const std::string& preset, const std::string& split = "all") {
  EmbedOptions o;
  o.run_dir = tiny_run(preset).string();
  o.data_dir = dataset().string();
  o.split = split;
  o.device = "cpu";
  o.quiet = true;
  return embed_clips(o);
}

// A small valid index, written to `path`.
EmbeddingIndex small_index(const fs::path& path, int64_t n = 6, int64_t d = 4) {
  EmbeddingIndex index;
  for (int64_t i = 0; i < n; ++i) index.clip_ids.push_back(fmt::format("clip_{}", i));
  index.video = unit_rows(n, d, 3);
  index.text = unit_rows(n, d, 4);
  index.metadata = {{"model", "dual_encoder"}, {"embedding", "contrastive"}};
  save_index(path.string(), index);
  return index;
}

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("vb_recommend_" + std::to_string(::getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  fs::path operator/(const std::string& f) const { return dir / f; }
};

}  // namespace

TEST_CASE("top_k equals a full sort, ties by lower row, the excluded row skipped, k beyond n") {
  std::mt19937 rng(7);
  for (int64_t n : {1, 2, 17, 500}) {
    // Scores on a coarse grid (multiples of 1/8 in [−1, 1]): many exact ties, which must go to the lower row.
    std::vector<float> s(static_cast<size_t>(n));
    for (float& x : s) x = float(int(rng() % 17) - 8) / 8.0f;
    for (int64_t exclude : {int64_t(-1), int64_t(0), n - 1, n / 2}) {
      std::vector<Hit> all;
      for (int64_t i = 0; i < n; ++i)
        if (i != exclude) all.push_back({i, s[size_t(i)]});
      std::sort(all.begin(), all.end(),
                [](const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.row < b.row); });
      for (int64_t k : {int64_t(0), int64_t(1), int64_t(5), n - 1, n, n + 10}) {
        CAPTURE(n);
        CAPTURE(exclude);
        CAPTURE(k);
        const std::vector<Hit> got = top_k(s.data(), n, k, exclude);
        const std::vector<Hit> want(all.begin(), all.begin() + std::min<int64_t>(std::max<int64_t>(k, 0), int64_t(all.size())));
        CHECK(got == want);
      }
    }
  }
  CHECK_THROWS_WITH_AS(top_k(nullptr, 0, -1), doctest::Contains("k = -1"), Error);
  const float with_nan[] = {0.5f, NAN, 0.1f};
  CHECK_THROWS_WITH_AS(top_k(with_nan, 3, 2), doctest::Contains("row 1 is NaN"), Error);
}

TEST_CASE("search on random unit vectors equals a float64 brute-force sort, the query excluded") {
  const Tensor items = unit_rows(1000, 32, 11), queries = unit_rows(7, 32, 12);
  for (int64_t k : {1, 10, 999, 1000, 5000}) {
    CAPTURE(k);
    // Queries from outside the index (nothing excluded) and rows of the index (each excluding itself).
    const auto outside = search(queries, items, k);
    const Tensor inside_q = narrow(items, 0, 100, 7);
    std::vector<int64_t> self(7);
    std::iota(self.begin(), self.end(), 100);
    const auto inside = search(inside_q, items, k, self);
    REQUIRE(outside.size() == 7);
    REQUIRE(inside.size() == 7);
    for (int64_t q = 0; q < 7; ++q) {
      CAPTURE(q);
      // float32 products of unit vectors of dimension 32: |error| ≤ 32 · 2^-24 · 1 ≈ 2e-6; 1e-5 allowed.
      check_ranking(outside[size_t(q)], brute_force(items, select(queries, 0, q), -1), size_t(k), 1e-5);
      check_ranking(inside[size_t(q)], brute_force(items, select(inside_q, 0, q), 100 + q), size_t(k), 1e-5);
      for (const Hit& h : inside[size_t(q)]) CHECK(h.row != 100 + q);
    }
  }
  CHECK(search(queries, items, 3).front().size() == 3);
  CHECK_THROWS_WITH_AS(search(queries, unit_rows(5, 16, 1), 3), doctest::Contains("(Q, D) and (N, D)"), Error);
  CHECK_THROWS_WITH_AS(search(queries, items, 3, {1, 2}), doctest::Contains("2 excluded rows for 7 queries"), Error);
}

TEST_CASE("an index survives writing and reading; a malformed one is refused with the file and the fault") {
  Scratch s;
  const EmbeddingIndex index = small_index(s / "good.safetensors");
  const EmbeddingIndex back = load_index((s / "good.safetensors").string());
  CHECK(back.clip_ids == index.clip_ids);
  CHECK(back.video.to_vector() == index.video.to_vector());
  CHECK(back.text.to_vector() == index.text.to_vector());
  CHECK(back.meta("model") == "dual_encoder");
  CHECK(back.meta("text_search") == "true");
  CHECK(back.row("clip_3") == 3);
  const std::string good = (s / "good.safetensors").string();
  CHECK_THROWS_WITH_AS(back.row("clip_99"), doctest::Contains("no clip \"clip_99\""), Error);
  CHECK_THROWS_WITH_AS(back.row("clip_99"), doctest::Contains(good.c_str()), Error);

  // Each file differs from a valid index in one way; the message names the file and what is wrong.
  auto refused = [&](const std::string& name, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     std::map<std::string, std::string> meta, const std::string& expected) {
    CAPTURE(name);
    const std::string path = (s / name).string();
    save_safetensors(path, tensors, meta);
    const std::string message = test::error_of([&] { load_index(path); });
    CHECK_MESSAGE(message.find(path) != std::string::npos, message);
    CHECK_MESSAGE(message.find(expected) != std::string::npos, message);
  };
  const std::string ids = nlohmann::json(index.clip_ids).dump();
  const std::map<std::string, std::string> ok = {{"videobert.index", "1"}, {"clip_ids", ids}};
  const Tensor v = index.video;
  refused("no_marker.safetensors", {{"video", v}}, {{"clip_ids", ids}}, "not a videobert embedding index");
  refused("version.safetensors", {{"video", v}}, {{"videobert.index", "7"}, {"clip_ids", ids}}, "version \"7\"");
  refused("no_video.safetensors", {{"text", v}}, ok, "no tensor \"video\"");
  refused("extra.safetensors", {{"video", v}, {"labels", v}}, ok, "unexpected tensor \"labels\"");
  refused("dtype.safetensors", {{"video", to(v, DType::Float64)}}, ok, "expected (N, D) float32");
  refused("no_ids.safetensors", {{"video", v}}, {{"videobert.index", "1"}}, "no \"clip_ids\"");
  refused("ids_json.safetensors", {{"video", v}}, {{"videobert.index", "1"}, {"clip_ids", "[\"a\", 3"}},
          "not a JSON array");
  refused("ids_count.safetensors", {{"video", v}}, {{"videobert.index", "1"}, {"clip_ids", "[\"a\", \"b\"]"}},
          "2 clip ids for 6 rows");
  refused("ids_twice.safetensors", {{"video", narrow(v, 0, 0, 2)}},
          {{"videobert.index", "1"}, {"clip_ids", "[\"a\", \"a\"]"}}, "clip id \"a\" appears twice");
  refused("text_shape.safetensors", {{"video", v}, {"text", narrow(v, 0, 0, 3)}}, ok, "tensor \"text\" is float32 (3, 4)");
  refused("not_unit.safetensors", {{"video", mul(v, 2.0)}}, ok, "row 0 (clip \"clip_0\") has norm 2.0");
  Tensor nan_row = clone(v);
  nan_row.data<float>()[4 * 2 + 1] = NAN;
  refused("nan.safetensors", {{"video", nan_row}}, ok, "row 2 (clip \"clip_2\") holds a non-finite value");
  // Not a safetensors file at all: the reader's own error, which names the path.
  const std::string junk = (s / "junk.safetensors").string();
  std::ofstream(junk) << "this is not an index";
  CHECK_THROWS_WITH_AS(load_index(junk), doctest::Contains(junk.c_str()), Error);
  CHECK_THROWS_WITH_AS(load_index((s / "missing.safetensors").string()), doctest::Contains("missing.safetensors"), Error);
}

TEST_CASE("P@k, DCG@k and nDCG@k against hand-computed cases; the oracle ranking scores nDCG 1") {
  // P@4 of relevances 3 0 2 1 with "relevant" = at least 2: two of four.
  CHECK(precision_at_k({3, 0, 2, 1}, 4, 2) == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(precision_at_k({3, 0, 2, 1}, 1, 2) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(precision_at_k({0, 0, 1}, 3, 1) == doctest::Approx(1.0 / 3).epsilon(1e-15));
  CHECK_THROWS_WITH_AS(precision_at_k({1, 2}, 3, 1), doctest::Contains("k = 3 with 2 ranked items"), Error);
  // DCG@3 of 3 0 2: (2³−1)/log2 2 + 0 + (2²−1)/log2 4 = 7 + 0 + 1.5 = 8.5.
  CHECK(dcg_at_k({3, 0, 2}, 3) == doctest::Approx(8.5).epsilon(1e-15));
  // Only the first k count: DCG@1 of 3 0 2 = 7.
  CHECK(dcg_at_k({3, 0, 2}, 1) == doctest::Approx(7.0).epsilon(1e-15));
  // nDCG@3 of 3 0 2 among candidates {3, 2, 0, 1, 0}: the ideal top 3 is 3 2 1,
  // IDCG = 7 + 3/log2 3 + 1/log2 4 = 7 + 1.892789261 + 0.5 = 9.392789261; nDCG = 8.5 / 9.392789261 = 0.904949…
  CHECK(*ndcg_at_k({3, 0, 2}, {3, 2, 0, 1, 0}, 3) == doctest::Approx(8.5 / (7 + 3 / std::log2(3.0) + 0.5)).epsilon(1e-12));
  CHECK(*ndcg_at_k({3, 0, 2}, {3, 2, 0, 1, 0}, 3) == doctest::Approx(0.904949).epsilon(1e-6));
  // nDCG@2 of 1 0 among {1, 1, 0}: (1) / (1 + 1/log2 3) = 1 / 1.630929754 = 0.613147…
  CHECK(*ndcg_at_k({1, 0}, {1, 1, 0}, 2) == doctest::Approx(0.613147).epsilon(1e-6));
  // Nothing relevant among the candidates: nDCG undefined.
  CHECK_FALSE(ndcg_at_k({0, 0}, {0, 0, 0}, 2).has_value());
  // The oracle ranking (the candidates sorted by relevance) scores 1 on random candidate sets.
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int> candidates(size_t(1 + rng() % 30));
    for (int& r : candidates) r = int(rng() % 5);
    if (*std::max_element(candidates.begin(), candidates.end()) == 0) candidates[0] = 1;
    std::vector<int> oracle = candidates;
    std::sort(oracle.rbegin(), oracle.rend());
    for (int64_t k : {int64_t(1), int64_t(3), int64_t(candidates.size())})
      CHECK(*ndcg_at_k(oracle, candidates, k) == doctest::Approx(1.0).epsilon(1e-12));
  }
  CHECK(shared_attributes({{"color", "red"}, {"shape", "star"}, {"size", "small"}},
                          {{"color", "red"}, {"shape", "disc"}, {"size", "small"}, {"motion", "grows"}}) == 2);
  CHECK(shared_attributes({{"color", "red"}}, {}) == 0);
}

TEST_CASE("the evaluation equals a brute-force re-computation; its random baseline the mean of seeded shuffles") {
  // 30 clips with three attributes; embeddings random, so that the model's ranking is arbitrary but fixed.
  Scratch s;
  std::string manifest;
  const char* colors[] = {"red", "green", "blue"};
  const char* shapes[] = {"circle", "square"};
  const char* sizes[] = {"small", "large"};
  std::mt19937 rng(5);
  const int64_t n = 30;
  std::vector<std::map<std::string, std::string>> attrs;
  EmbeddingIndex index;
  for (int64_t i = 0; i < n; ++i) {
    attrs.push_back({{"color", colors[rng() % 3]}, {"shape", shapes[rng() % 2]}, {"size", sizes[rng() % 2]}});
    if (i == 7) attrs.back() = {{"color", "purple"}};  // shares nothing with any clip: left out of the means
    const std::string id = fmt::format("c{:02d}", i);
    index.clip_ids.push_back(id);
    manifest += nlohmann::json{{"id", id}, {"frames", "f"}, {"caption", "x"}, {"attributes", attrs.back()}}.dump() + "\n";
  }
  fs::create_directories(s / "f");
  const data::Manifest m = data::parse_manifest(manifest, s.dir.string(), "manifest.jsonl");
  index.video = unit_rows(n, 8, 21);
  const int64_t k = 5;
  const RecommendationEval e = evaluate_recommendations(index, m, k);
  CHECK(e.clips == n);
  CHECK(e.queries == n - 1);
  CHECK(e.k == k);
  CHECK(e.min_shared == 2);  // half of three attribute keys, rounded up
  CHECK(e.attributes == std::vector<std::string>{"color", "shape", "size"});

  // The reference: float64 scores, full sorts, and 4000 seeded random rankings for the random baseline.
  RankingScores model, random, oracle;
  std::mt19937 shuffle_rng(99);
  const int draws = 4000;
  int64_t counted = 0;
  for (int64_t q = 0; q < n; ++q) {
    std::vector<int> candidates;
    for (int64_t c = 0; c < n; ++c)
      if (c != q) candidates.push_back(shared_attributes(attrs[size_t(q)], attrs[size_t(c)]));
    const auto ideal = ndcg_at_k(candidates, candidates, k);  // defined iff any candidate shares something
    if (!ideal) continue;
    ++counted;
    std::vector<int> ranked;
    for (const Hit& h : brute_force(index.video, select(index.video, 0, q), q))
      ranked.push_back(shared_attributes(attrs[size_t(q)], attrs[size_t(h.row)]));
    model.precision += precision_at_k(ranked, k, 2);
    model.ndcg += *ndcg_at_k(ranked, candidates, k);
    model.shared += std::accumulate(ranked.begin(), ranked.begin() + k, 0.0) / k;
    std::vector<int> sorted = candidates;
    std::sort(sorted.rbegin(), sorted.rend());
    oracle.precision += precision_at_k(sorted, k, 2);
    oracle.ndcg += *ndcg_at_k(sorted, candidates, k);
    oracle.shared += std::accumulate(sorted.begin(), sorted.begin() + k, 0.0) / k;
    double p = 0, nd = 0, sh = 0;
    for (int d = 0; d < draws; ++d) {
      std::shuffle(candidates.begin(), candidates.end(), shuffle_rng);
      p += precision_at_k(candidates, k, 2);
      const double x = *ndcg_at_k(candidates, candidates, k);
      nd += x;
      sh += std::accumulate(candidates.begin(), candidates.begin() + k, 0.0) / k;
    }
    random.precision += p / draws;
    random.ndcg += nd / draws;
    random.shared += sh / draws;
  }
  REQUIRE(counted == e.queries);
  for (RankingScores* r : {&model, &random, &oracle}) {
    r->precision /= double(counted);
    r->ndcg /= double(counted);
    r->shared /= double(counted);
  }
  // The model and the oracle are deterministic: equal up to float rounding in the sums.
  CHECK(e.model.precision == doctest::Approx(model.precision).epsilon(1e-12));
  CHECK(e.model.ndcg == doctest::Approx(model.ndcg).epsilon(1e-12));
  CHECK(e.model.shared == doctest::Approx(model.shared).epsilon(1e-12));
  CHECK(e.oracle.precision == doctest::Approx(oracle.precision).epsilon(1e-12));
  CHECK(e.oracle.ndcg == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(e.oracle.shared == doctest::Approx(oracle.shared).epsilon(1e-12));
  // The exact expectation against a mean of 4000 draws per query (29 queries): nDCG's per-draw standard
  // deviation is below 0.5, so the mean's standard error is below 0.5 / √(4000 · 29) ≈ 0.0015; 0.006 is 4 of them.
  CHECK(std::abs(e.random.ndcg - random.ndcg) < 0.006);
  CHECK(std::abs(e.random.precision - random.precision) < 0.006);
  CHECK(std::abs(e.random.shared - random.shared) < 0.012);  // shared@k spans 0…3, its deviation below 1
  CHECK(e.oracle.ndcg >= e.model.ndcg);
  CHECK(e.oracle.precision >= e.model.precision);

  // Embeddings that are the attributes themselves (one-hot per key, normalised) rank by shared attributes:
  // the model is an oracle.
  EmbeddingIndex exact = index;
  std::vector<float> onehot(size_t(n * 8), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const auto& a = attrs[size_t(i)];
    const int color = a.at("color") == "red" ? 0 : a.at("color") == "green" ? 1 : a.at("color") == "blue" ? 2 : 3;
    onehot[size_t(i * 8 + color)] = 1;
    if (a.count("shape")) onehot[size_t(i * 8 + 4 + (a.at("shape") == "square"))] = 1;
    if (a.count("size")) onehot[size_t(i * 8 + 6 + (a.at("size") == "large"))] = 1;
  }
  exact.video = contiguous(models::l2_normalize(Tensor::from_vector(onehot, {n, 8})));
  const RecommendationEval best = evaluate_recommendations(exact, m, k);
  CHECK(best.model.ndcg == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(best.model.precision == doctest::Approx(best.oracle.precision).epsilon(1e-12));

  // k beyond the candidates is clamped to n − 1; --min-shared is checked; an id the manifest lacks is named.
  CHECK(evaluate_recommendations(index, m, 1000).k == n - 1);
  CHECK(evaluate_recommendations(index, m, k, 3).min_shared == 3);
  CHECK_THROWS_WITH_AS(evaluate_recommendations(index, m, k, 4), doctest::Contains("--min-shared 4"), Error);
  EmbeddingIndex stranger = index;
  stranger.clip_ids[3] = "not_in_manifest";
  CHECK_THROWS_WITH_AS(evaluate_recommendations(stranger, m, k), doctest::Contains("clip \"not_in_manifest\""), Error);
  const std::string table = format_recommendation_eval(e);
  CHECK(table.find("derived from attributes, not from real interactions") != std::string::npos);
  CHECK(table.find("1 of 30 queries left out") != std::string::npos);
  CHECK(e.to_json()["random_expected"]["ndcg_at_k"].get<double>() == e.random.ndcg);
}

TEST_CASE("embed, search and evaluate a tiny pretrained single stream; its text queries match its captions") {
  const EmbeddingIndex index = embed("tiny");
  const data::Manifest manifest = data::load_manifest(dataset().string());
  REQUIRE(index.size() == 40);
  CHECK(index.video.shape() == Shape{40, 128});  // embed_dim of the tiny preset
  REQUIRE(index.text_search());
  CHECK(index.meta("embedding") == "contrastive");
  CHECK(index.meta("model") == "single_stream");
  for (size_t i = 0; i < 40; ++i) CHECK(index.clip_ids[i] == manifest.clips[i].id);  // manifest order

  Scratch s;
  const std::string path = (s / "index.safetensors").string();
  save_index(path, index);
  const EmbeddingIndex back = load_index(path);  // also checks unit rows
  CHECK(back.video.to_vector() == index.video.to_vector());

  // The first clip's neighbours: not itself, in score order, equal to the float64 reference.
  const std::vector<Hit> hits = search(narrow(back.video, 0, 0, 1), back.video, 5, {0}).front();
  check_ranking(hits, brute_force(back.video, select(back.video, 0, 0), 0), 5, 1e-5);

  // A text query with a clip's own first caption is that clip's text row: the same tokenisation and model.
  const Tensor q = text_query(back, manifest.clips[3].captions.front(), "", "", Device());
  test::check_close(q, narrow(back.text, 0, 3, 1), 1e-5, 0, "text query vs the index's text row");
  CHECK(search(q, back.video, 40).front().size() == 40);
  // The run changed since: its weights no longer match the index.
  CHECK_THROWS_WITH_AS(text_query(back, "a red circle", tiny_run("tiny-dual").string(), "", Device()),
                       doctest::Contains("not those the index"), Error);

  const RecommendationEval e = evaluate_recommendations(back, manifest, 10);
  CHECK(e.queries == 40);
  CHECK(e.k == 10);
  for (const RankingScores& r : {e.model, e.random, e.oracle}) {
    CHECK(r.precision >= 0);
    CHECK(r.precision <= 1);
    CHECK(r.ndcg >= 0);
    CHECK(r.ndcg <= 1 + 1e-12);
  }
  CHECK(e.oracle.ndcg == doctest::Approx(1.0));
  CHECK(e.oracle.precision >= e.model.precision);

  // The test split alone: 4 clips.
  CHECK(embed("tiny", "test").size() == 4);
}

TEST_CASE("a late-fusion run gives video embeddings only, and text search is refused naming the model") {
  const EmbeddingIndex index = embed("tiny-late", "test");
  CHECK(!index.text_search());
  CHECK(index.meta("embedding") == "pooled_video");
  CHECK(index.meta("text_search") == "false");
  Scratch s;
  const std::string path = (s / "late.safetensors").string();
  save_index(path, index);
  const EmbeddingIndex back = load_index(path);
  const std::string message = test::error_of([&] { text_query(back, "a red circle", "", "", Device()); });
  CHECK_MESSAGE(message.find("late_fusion") != std::string::npos, message);
  CHECK_MESSAGE(message.find("no shared text–video space") != std::string::npos, message);
  CHECK_MESSAGE(message.find("--video") != std::string::npos, message);
  CHECK_MESSAGE(message.find("tiny-dual") != std::string::npos, message);
  CHECK_MESSAGE(message.find(path) != std::string::npos, message);
  CHECK(search(narrow(back.video, 0, 1, 1), back.video, 10, {1}).front().size() == 3);  // k beyond the 3 others
}

TEST_CASE("the videobert program: embed, similar --video/--text/--evaluate, and its errors") {
  const std::string bin = std::string(VB_BUILD_DIR) + "/videobert";
  REQUIRE_MESSAGE(fs::exists(bin), bin, " is not built (cmake --build … --target videobert_cli)");
  Scratch s;
  auto run = [&](const std::string& args) {
    const std::string out = (s / "out.txt").string(), err = (s / "err.txt").string();
    const int status = std::system(fmt::format("{} {} > {} 2> {}", bin, args, out, err).c_str());
    return std::tuple{WEXITSTATUS(status), read_text_file(out), read_text_file(err)};
  };
  const std::string data = dataset().string(), index = (s / "i.safetensors").string();
  auto [st, out, err] = run(fmt::format("embed --run {} --data {} --out {} --split all --device cpu",
                                        tiny_run("tiny-dual").string(), data, index));
  REQUIRE_MESSAGE(st == 0, err);
  CHECK(out.find("embedded 40 clips") != std::string::npos);
  std::tie(st, out, err) = run(fmt::format("similar --index {} --video clip_0003 --k 3 --data {}", index, data));
  REQUIRE_MESSAGE(st == 0, err);
  CHECK(out.find("clips like clip_0003") != std::string::npos);
  CHECK(out.find("\n    3  ") != std::string::npos);
  CHECK(out.find("\n    4  ") == std::string::npos);
#if defined(VB_HAVE_EMU)
  const std::string on_cpu = out;  // the same product on the emulated device ranks and scores alike
  std::tie(st, out, err) = run(fmt::format("similar --index {} --video clip_0003 --k 3 --data {} --device emu", index, data));
  REQUIRE_MESSAGE(st == 0, err);
  CHECK(out == on_cpu);
#endif
  std::tie(st, out, err) = run(fmt::format("similar --index {} --text \"a small red circle\" --k 2", index));
  REQUIRE_MESSAGE(st == 0, err);
  CHECK(out.find("text → video") != std::string::npos);
  std::tie(st, out, err) = run(fmt::format("similar --index {} --evaluate --data {} --k 5 --json {}", index, data,
                                           (s / "e.json").string()));
  REQUIRE_MESSAGE(st == 0, err);
  CHECK(out.find("not from real interactions") != std::string::npos);
  CHECK(nlohmann::json::parse(read_text_file((s / "e.json").string()))["k"] == 5);
  std::tie(st, out, err) = run(fmt::format("similar --index {} --video no_such_clip", index));
  CHECK(st == 1);
  CHECK(err.find("no clip \"no_such_clip\"") != std::string::npos);
  std::tie(st, out, err) = run(fmt::format("similar --index {} --evaluate", index));
  CHECK(st == 1);
  CHECK(err.find("needs --data") != std::string::npos);
  std::tie(st, out, err) = run(fmt::format("similar --index {} --video a --text b", index));
  CHECK(st != 0);
}
