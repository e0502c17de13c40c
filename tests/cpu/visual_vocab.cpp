// VideoBERT's visual words: the nearest-centroid kernel of the CPU backend against a float64 brute force,
// k-means (blobs recovered, inertia never rising, re-seeding, reproducibility), the hierarchical vocabulary
// (word ids, tree descent, edge cases, the file) and `videobert visual-vocab build` on a tiny pretrained run.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_backend.h"
#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/pretrain.h"
#include "train/report.h"
#include "train/visual_vocab.h"

using namespace vb;
using namespace vb::train;
using vb::test::error_of;
namespace fs = std::filesystem;

namespace {

Tensor normal(const Shape& shape, uint64_t seed, DType dtype = DType::Float32) {
  Generator g{seed, 0};
  return contiguous(to(randn(shape, &g), dtype));
}

std::vector<int64_t> ints(const Tensor& t) {
  const std::vector<double> v = to(t, Device()).to_vector();
  return std::vector<int64_t>(v.begin(), v.end());
}

// `per_blob` points around each of `count` centres (corners of a cube of side 20 in D = 5, σ = 1), blob
// after blob: row i comes from blob i / per_blob.
Tensor blobs(int64_t count, int64_t per_blob, uint64_t seed) {
  std::vector<double> centres;
  for (int64_t b = 0; b < count; ++b)
    for (int64_t e = 0; e < 5; ++e) centres.push_back(((b >> e) & 1) ? 10.0 : -10.0);
  std::vector<int64_t> of_row;
  for (int64_t i = 0; i < count * per_blob; ++i) of_row.push_back(i / per_blob);
  const Tensor centre = Tensor::from_vector(centres, {count, 5});
  return contiguous(add(index_select(centre, 0, Tensor::from_vector(of_row, {count * per_blob})),
                        normal({count * per_blob, 5}, seed)));
}

// The nearest centroid in float64: min_k Σ_d (x − c)² with the smallest such k.
struct Exact {
  std::vector<double> distance;        // (N)
  std::vector<std::vector<double>> all;  // (N, K)
};
Exact brute_force(const Tensor& x, const Tensor& c) {
  const int64_t n = x.size(0), k = c.size(0), d = x.size(1);
  const std::vector<double> xv = x.to_vector(), cv = c.to_vector();
  Exact e;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> row;
    for (int64_t j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) {
        const double diff = xv[size_t(i * d + t)] - cv[size_t(j * d + t)];
        s += diff * diff;
      }
      row.push_back(s);
    }
    e.distance.push_back(*std::min_element(row.begin(), row.end()));
    e.all.push_back(std::move(row));
  }
  return e;
}

// The same shape, dtype and values.
bool to_vector_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && to(a, Device()).to_vector() == to(b, Device()).to_vector();
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
}

}  // namespace

TEST_CASE("nearest_centroid on the CPU against a float64 brute force") {
  // Tolerance: each distance is a float32 sum of D squares of float32 differences, every operation
  // rounded once: |error| ≤ (D + 2)·2⁻²⁴·dist (first order), plus 1e-30 for distances of 0. The chosen
  // centroid must be the float64 nearest up to that error (near-ties may resolve either way).
  struct Size {
    int64_t n, k, d;
  };
  const std::vector<Size> sizes = {{1, 1, 1}, {131, 65, 17}, {64, 64, 1}, {200, 130, 40}, {7, 3, 300}, {0, 2, 3}};
  for (DType dtype : {DType::Float32, DType::BFloat16, DType::Float64}) {
    for (const Size& s : sizes) {
      const std::string what = fmt::format("{} N={} K={} D={}", dtype_name(dtype), s.n, s.k, s.d);
      CAPTURE(what);
      const Tensor x = normal({s.n, s.d}, 100 + uint64_t(s.n), dtype), c = normal({s.k, s.d}, 200 + uint64_t(s.k), dtype);
      const NearestCentroid r = nearest_centroid(x, c);
      REQUIRE(r.index.shape() == Shape{s.n});
      CHECK(r.distance.dtype() == (dtype == DType::Float64 ? DType::Float64 : DType::Float32));
      const Exact e = brute_force(x, c);
      const double unit = dtype == DType::Float64 ? 0x1p-53 : 0x1p-24;
      const double rtol = double(s.d + 2) * unit;
      const std::vector<int64_t> index = ints(r.index);
      const std::vector<double> dist = r.distance.to_vector();
      for (int64_t i = 0; i < s.n; ++i) {
        const int64_t got = index[size_t(i)];
        REQUIRE(got >= 0);
        REQUIRE(got < s.k);
        const double best = e.distance[size_t(i)], chosen = e.all[size_t(i)][size_t(got)];
        CHECK_MESSAGE(std::abs(dist[size_t(i)] - best) <= 1e-30 + rtol * best, "row ", i);
        CHECK_MESSAGE(chosen <= best * (1 + 2 * rtol) + 1e-30, "row ", i, ": centroid ", got, " at ", chosen,
                      ", the nearest at ", best);
      }
    }
  }
}

TEST_CASE("nearest_centroid: ties to the smallest index, NaN never wins, errors name the shapes") {
  // x = 0 is 1 from centroids 0 and 1; x = 1 is 0 from centroids 0 and 2; x = 2 is 1 from 0 and 3.
  const Tensor x = Tensor::from_vector(std::vector<double>{0, 1, 2, NAN}, {4, 1});
  const Tensor c = Tensor::from_vector(std::vector<double>{1, -1, 1, 3}, {4, 1});
  NearestCentroid r = nearest_centroid(x, c);
  CHECK(ints(r.index) == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(r.distance.at({0}) == 1);
  CHECK(r.distance.at({1}) == 0);
  CHECK(std::isnan(r.distance.at({3})));  // a NaN row: index 0, distance NaN
  const Tensor c_nan = Tensor::from_vector(std::vector<double>{NAN, 5, 0.5}, {3, 1});
  r = nearest_centroid(narrow(x, 0, 0, 3), c_nan);
  CHECK(ints(r.index) == std::vector<int64_t>{2, 2, 2});

  CHECK(test::error_of([&] { nearest_centroid(x, zeros({0, 1})); }).find("at least one centroid") != std::string::npos);
  CHECK(test::error_of([&] { nearest_centroid(x, zeros({2, 3})); }).find("(2, 3)") != std::string::npos);
  CHECK(test::error_of([&] { nearest_centroid(to(x, DType::Int64), to(c, DType::Int64)); }).find("x must be") !=
        std::string::npos);
  Tensor index = Tensor::empty({4}, DType::Int32), distance = Tensor::empty({4});
  CHECK(test::error_of([&] { cpu_backend().nearest_centroid(x, c, index, distance); }).find("int64") !=
        std::string::npos);
}

TEST_CASE("k-means recovers well-separated Gaussian blobs, up to relabelling") {
  const int64_t count = 4, per_blob = 100;
  const Tensor x = blobs(count, per_blob, 7);
  for (uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    Generator gen{seed, 0};
    const KMeansResult r = kmeans(x, KMeansOptions{count, 100, 1e-6}, gen);
    REQUIRE(r.centroids.shape() == Shape{count, 5});
    const std::vector<int64_t> a = ints(r.assignment);
    // Every blob maps to one cluster, and no two blobs share one: a relabelling.
    std::set<int64_t> used;
    for (int64_t b = 0; b < count; ++b) {
      const int64_t label = a[size_t(b * per_blob)];
      used.insert(label);
      for (int64_t i = 0; i < per_blob; ++i) CHECK(a[size_t(b * per_blob + i)] == label);
    }
    CHECK(int64_t(used.size()) == count);
    // Converged: the assignment is the nearest-centroid assignment of the centroids returned.
    CHECK(ints(nearest_centroid(x, r.centroids).index) == a);
    CHECK(r.iterations <= 5);
  }
}

TEST_CASE("k-means: the inertia never increases across Lloyd iterations") {
  // Uniform points (no cluster structure: many iterations before convergence), several seeds. The inertia
  // is summed in double from float32 distances; at the last iterations, where the exact decrease is tiny,
  // rounding may show a rise of a few float32 ulps: 1e-6 relative slack.
  Generator data{11, 0};
  const Tensor x = rand({600, 3}, &data);
  for (uint64_t seed : {1, 2, 3, 4}) {
    CAPTURE(seed);
    Generator gen{seed, 0};
    const KMeansResult r = kmeans(x, KMeansOptions{12, 200, 0.0}, gen);
    CHECK(r.iterations >= 5);
    for (size_t i = 1; i < r.inertia.size(); ++i)
      CHECK_MESSAGE(r.inertia[i] <= r.inertia[i - 1] * (1 + 1e-6), "iteration ", i, ": ", r.inertia[i], " after ",
                    r.inertia[i - 1]);
  }
}

TEST_CASE("k-means update: means, and an empty cluster re-seeded at the farthest point of a cluster with others") {
  // 1-d points 0, 1, 10, 12 all in cluster 0 (centroid 5, distances 25, 16, 25, 49): cluster 1 is empty
  // and takes the farthest point, 12; cluster 0 keeps {0, 1, 10}.
  const Tensor x = Tensor::from_vector(std::vector<double>{0, 1, 10, 12}, {4, 1});
  const Tensor centroids = Tensor::from_vector(std::vector<double>{5, 100}, {2, 1});
  const Tensor assignment = Tensor::from_vector(std::vector<int64_t>{0, 0, 0, 0}, {4});
  const Tensor distance = Tensor::from_vector(std::vector<double>{25, 16, 25, 49}, {4});
  Tensor updated = kmeans_update(x, centroids, assignment, distance);
  test::check_close(updated, Tensor::from_vector(std::vector<double>{11.0 / 3.0, 12}, {2, 1}), 1e-6, 1e-6, "reseed");
  // Two empty clusters take the farthest points in turn (12, then 0: the first row of the tie at 25);
  // cluster 0 keeps {1, 10}.
  const Tensor three = Tensor::from_vector(std::vector<double>{5, 100, 200}, {3, 1});
  updated = kmeans_update(x, three, assignment, distance);
  test::check_close(updated, Tensor::from_vector(std::vector<double>{5.5, 12, 0}, {3, 1}), 1e-6, 1e-6, "two");
  // A cluster that no point can join without emptying another (here: the only point, at distance 0)
  // keeps its centroid.
  const Tensor single = Tensor::from_vector(std::vector<double>{3}, {1, 1});
  const Tensor lone = Tensor::from_vector(std::vector<double>{3, 7}, {2, 1});
  updated = kmeans_update(single, lone, Tensor::from_vector(std::vector<int64_t>{0}, {1}),
                          Tensor::from_vector(std::vector<double>{0}, {1}));
  test::check_close(updated, Tensor::from_vector(std::vector<double>{3, 7}, {2, 1}), 0, 0, "stays");
}

TEST_CASE("k-means is reproducible: the same generator state gives the same centroids") {
  const Tensor x = normal({300, 6}, 21);
  auto run = [&](uint64_t seed) {
    Generator gen{seed, 0};
    return kmeans(x, KMeansOptions{7, 50, 1e-4}, gen).centroids;
  };
  const Tensor a = run(5), b = run(5), c = run(6);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  Generator g1{9, 0}, g2{9, 0};
  CHECK(kmeans_plus_plus(x, 7, g1).to_vector() == kmeans_plus_plus(x, 7, g2).to_vector());
  CHECK(g1.offset == g2.offset);
  CHECK(g1.offset == 7);  // one draw per centre
}

TEST_CASE("hierarchical k-means: word ids in range, each feature's word is the tree descent's, the file") {
  const Tensor x = normal({500, 8}, 31);
  VisualVocabOptions o;
  o.levels = 3;
  o.k = 4;
  o.seed = 3;
  const VisualVocabBuild b = build_visual_vocab(x, o);
  const VisualVocab& v = b.vocab;
  REQUIRE(v.level_centroids.size() == 3);
  for (int64_t l = 1; l <= 3; ++l)
    CHECK(v.level_centroids[size_t(l - 1)].shape() == Shape{int64_t(std::pow(4, l)), 8});
  CHECK(v.words() == 64);
  const std::vector<int64_t> words = ints(b.words);
  for (int64_t w : words) {
    CHECK(w >= 0);
    CHECK(w < 64);
  }
  CHECK(b.words_used == int64_t(std::set<int64_t>(words.begin(), words.end()).size()));
  CHECK(b.words_used > 48);
  // The descent gives every training feature the build's word, and the same inertia at every level.
  std::vector<double> inertia;
  CHECK(ints(v.assign(x, &inertia)) == words);
  REQUIRE(inertia.size() == 3);
  for (size_t l = 0; l < 3; ++l) CHECK(inertia[l] == doctest::Approx(b.level_inertia[l]).epsilon(1e-9));
  CHECK(b.level_inertia[2] < b.level_inertia[1]);
  CHECK(b.level_inertia[1] < b.level_inertia[0]);
  // A word is its path: the level-2 node of word w is w / 4, the nearest of its parent's children.
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t w = words[size_t(i)], parent = w / 16, node = w / 4;
    const Tensor children = narrow(v.level_centroids[1], 0, parent * 4, 4);
    CHECK(ints(nearest_centroid(narrow(x, 0, i, 1), children).index)[0] == node - parent * 4);
  }
  // New features get words in range; the same from a saved and reloaded vocabulary.
  const Tensor fresh = normal({50, 8}, 32);
  const std::vector<int64_t> fresh_words = ints(v.assign(fresh));
  for (int64_t w : fresh_words) CHECK((w >= 0 && w < 64));
  const std::string path = temp_path("vb_visual_vocab") + ".safetensors";
  save_visual_vocab(path, v, {{"note", "test"}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.at("levels") == "3");
  CHECK(f.metadata.at("k") == "4");
  CHECK(f.metadata.at("dim") == "8");
  CHECK(f.metadata.at("note") == "test");
  CHECK(f.at("centroids").shape() == Shape{64, 8});
  const VisualVocab loaded = load_visual_vocab(path);
  CHECK(ints(loaded.assign(fresh)) == fresh_words);
  CHECK(loaded.centroids().to_vector() == v.centroids().to_vector());
  // A file that is not a vocabulary: the error names the file and the key.
  save_safetensors(path, {{"centroids", zeros({4, 2})}});
  const std::string err = test::error_of([&] { load_visual_vocab(path); });
  CHECK(err.find(path) != std::string::npos);
  CHECK(err.find("levels") != std::string::npos);
  fs::remove(path);
}

TEST_CASE("hierarchical k-means edge cases: fewer points than k, duplicate points, D = 1") {
  VisualVocabOptions o;
  o.levels = 2;
  o.k = 8;
  SUBCASE("fewer points than k: fewer children, copies of child 0 that descent never picks") {
    const Tensor x = normal({3, 4}, 41);
    const VisualVocabBuild b = build_visual_vocab(x, o);
    CHECK(b.words_used == 3);
    const std::vector<int64_t> words = ints(b.words);
    CHECK(std::set<int64_t>(words.begin(), words.end()).size() == 3);
    for (int64_t w : words) CHECK(w % 8 == 0);  // each point alone in its level-1 cluster: child 0 below
    CHECK(ints(b.vocab.assign(x)) == words);
    const std::vector<double> table = b.vocab.centroids().to_vector();
    for (double v : table) CHECK(std::isfinite(v));
    // Slots 3 … 7 of level 1 copy slot 0.
    const std::vector<double> level1 = b.vocab.level_centroids[0].to_vector();
    for (int64_t s = 3; s < 8; ++s)
      for (int64_t e = 0; e < 4; ++e) CHECK(level1[size_t(s * 4 + e)] == level1[size_t(e)]);
    for (double inertia : b.level_inertia) CHECK(inertia == 0);
  }
  SUBCASE("duplicate points: one distinct point, one word") {
    const Tensor x = contiguous(expand(normal({1, 5}, 42), {20, 5}));
    const VisualVocabBuild b = build_visual_vocab(x, o);
    CHECK(b.words_used == 1);
    CHECK(ints(b.words) == std::vector<int64_t>(20, 0));
    CHECK(ints(b.vocab.assign(x)) == std::vector<int64_t>(20, 0));
  }
  SUBCASE("D = 1") {
    const Tensor x = normal({200, 1}, 43);
    const VisualVocabBuild b = build_visual_vocab(x, o);
    const std::vector<int64_t> words = ints(b.words);
    CHECK(ints(b.vocab.assign(x)) == words);
    // In one dimension clusters are intervals: sorted by value, the words never go back to an earlier one.
    const std::vector<double> v = x.to_vector();
    std::vector<size_t> order(v.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::set<int64_t> seen;
    for (size_t i = 0; i < order.size(); ++i) {
      const int64_t w = words[order[i]];
      if (i > 0 && w == words[order[i - 1]]) continue;
      CHECK_MESSAGE(seen.insert(w).second, "word ", w, " appears in two separate intervals");
    }
    CHECK(b.words_used > 40);
  }
  SUBCASE("bad options and features") {
    VisualVocabOptions bad = o;
    bad.k = 1;
    CHECK(test::error_of([&] { build_visual_vocab(normal({5, 2}, 44), bad); }).find("k ≥ 2") != std::string::npos);
    bad = o;
    bad.levels = 9;
    bad.k = 12;
    CHECK(test::error_of([&] { build_visual_vocab(normal({5, 2}, 44), bad); }).find("2^24") != std::string::npos);
    Tensor x = contiguous(normal({5, 2}, 45));
    Tensor cell = narrow(narrow(x, 0, 2, 1), 1, 1, 1);
    fill_(cell, INFINITY);
    CHECK(test::error_of([&] { build_visual_vocab(x, o); }).find("NaN or infinite") != std::string::npos);
  }
}

namespace {

struct Program {
  int status = -1;
  std::string out, err;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The built program (next to this test's executable), run as a user runs it.
Program videobert(const std::string& args) {
  const fs::path program = fs::read_symlink("/proc/self/exe").parent_path() / "videobert";
  REQUIRE_MESSAGE(fs::exists(program), "build the videobert program first: ", program.string());
  const std::string out = temp_path("vb_vv_stdout"), err = temp_path("vb_vv_stderr");
  const int status = std::system((program.string() + " " + args + " >" + out + " 2>" + err).c_str());
  Program p;
  p.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  p.out = read_all(out);
  p.err = read_all(err);
  fs::remove(out);
  fs::remove(err);
  return p;
}

}  // namespace

TEST_CASE("videobert visual-vocab build on a tiny pretrained run") {
  // A tiny model pretrained for a few steps on a small synthetic dataset (as tests/cpu/pretrain.cpp does).
  const fs::path data = test::synth_dataset("vb_visual_vocab_data", 24, 2, 32);
  const fs::path run = temp_path("vb_visual_vocab_run");
  fs::remove_all(run);
  nlohmann::json c = load_config("tiny");
  apply_overrides(c, {"steps=2", "batch_size=4", "frames=2", "image_size=32", "max_text_len=12", "workers=1",
                      "eval_every=0", "checkpoint_every=100", "warmup_steps=1"});
  PretrainOptions po;
  po.config = c;
  po.data_dir = data.string();
  po.out_dir = run.string();
  po.device = "cpu";
  po.quiet = true;
  pretrain(po);

  const std::string args = "visual-vocab build --run " + run.string() + " --data " + data.string() +
                           " --levels 2 --k 3 --device cpu";
  const Program p = videobert(args);
  REQUIRE_MESSAGE(p.status == 0, p.err);
  CHECK(p.out.find("words used:") != std::string::npos);
  CHECK(p.out.find("mean squared distance") != std::string::npos);
  const std::string file = (run / "visual_vocab.safetensors").string();
  REQUIRE(fs::exists(file));
  const VisualVocab v = load_visual_vocab(file);
  CHECK(v.levels == 2);
  CHECK(v.k == 3);
  const SafetensorsFile f = load_safetensors(file);
  const RunFeatures features = run_frame_features(run.string(), data.string(), "train", Device());
  CHECK(features.frames_per_clip == 2);
  CHECK(features.features.size(0) == features.clips * 2);
  CHECK(v.dim == features.features.size(1));
  CHECK(f.metadata.at("features") == std::to_string(features.features.size(0)));
  CHECK(f.metadata.at("clips") == std::to_string(features.clips));
  CHECK(nlohmann::json::parse(f.metadata.at("inertia")).size() == 2);
  const int64_t used = std::stoll(f.metadata.at("words_used"));
  CHECK((used >= 1 && used <= 9));
  // The words the file gives the run's features are in range and use as many words as the build said.
  const std::vector<int64_t> words = ints(v.assign(features.features));
  for (int64_t w : words) CHECK((w >= 0 && w < 9));
  CHECK(int64_t(std::set<int64_t>(words.begin(), words.end()).size()) == used);

  // visual_tokens=true: a single stream reading the words, its frame encoder the vocabulary's (frozen).
  const fs::path words_run = temp_path("vb_visual_words_run");
  fs::remove_all(words_run);
  nlohmann::json wc = c;
  apply_overrides(wc, {"visual_tokens=true", "visual_vocab=" + file});
  PretrainOptions wo = po;
  wo.config = wc;
  wo.out_dir = words_run.string();
  pretrain(wo);
  const SafetensorsFile before = load_safetensors((run / "model.safetensors").string());
  const SafetensorsFile after = load_safetensors((words_run / "model.safetensors").string());
  int64_t backbone = 0;
  for (const auto& [name, tensor] : before.tensors)
    if (name.rfind("video.backbone.", 0) == 0) {
      ++backbone;
      CHECK_MESSAGE(to_vector_equal(after.at(name), tensor), name, " changed in training (it must stay frozen)");
    }
  CHECK(backbone > 0);
  CHECK(to_vector_equal(after.at("visual_vocab.centroids"), f.at("centroids")));
  CHECK(to_vector_equal(after.at("visual_vocab.level_1"), f.at("level_1")));
  // The same encoder gives the same features, so every training frame reads the word the build gave it.
  const RunFeatures again = run_frame_features(words_run.string(), data.string(), "train", Device());
  CHECK(to_vector_equal(again.features, features.features));
  const std::vector<nlohmann::json> metrics = read_metrics((words_run / "metrics.jsonl").string());
  bool logged = false;
  for (const nlohmann::json& m : metrics) logged |= m.contains("mfm") && m.contains("mfm_acc");
  CHECK(logged);
  const nlohmann::json evaluated = read_json_object((words_run / "eval_test.json").string());
  for (const char* key : {"visual_word_acc", "visual_word_acc_chance", "visual_word_acc_neighbour"})
    CHECK_MESSAGE((evaluated.contains(key) && evaluated[key] >= 0.0 && evaluated[key] <= 1.0), key);
  CHECK(evaluated["visual_word_masked"] >= 1);
  // Setups that cannot work are refused, naming what is wrong.
  nlohmann::json bad_config = c;
  CHECK(error_of([&] { apply_overrides(bad_config, {"visual_tokens=true"}); }).find("visual_vocab=FILE") !=
        std::string::npos);
  bad_config = c;
  CHECK(error_of([&] {
          apply_overrides(bad_config, {"visual_tokens=true", "visual_vocab=" + file, "model=late_fusion",
                                       "objectives.mlm=0", "objectives.mfm=0", "objectives.contrastive=0"});
        }).find("model single_stream") != std::string::npos);
  wo.config = wc;
  apply_overrides(wo.config, {"vision=resnet18"});
  wo.out_dir = (words_run.string() + "_bad");
  const std::string wrong_dim = error_of([&] { pretrain(wo); });
  CHECK(wrong_dim.find(file) != std::string::npos);
  CHECK(wrong_dim.find("512-d") != std::string::npos);
  fs::remove_all(words_run);
  fs::remove_all(words_run.string() + "_bad");

  // --out elsewhere; a bad option and a missing run are errors that name them, with exit status 1.
  const std::string other = temp_path("vb_visual_vocab_other") + ".safetensors";
  CHECK(videobert(args + " --out " + other).status == 0);
  CHECK(fs::exists(other));
  fs::remove(other);
  Program bad = videobert("visual-vocab build --run " + run.string() + " --data " + data.string() +
                          " --levels 0 --device cpu");
  CHECK(bad.status == 1);
  CHECK(bad.err.find("levels = 0") != std::string::npos);
  bad = videobert("visual-vocab build --run " + run.string() + "_absent --data " + data.string());
  CHECK(bad.status == 1);
  CHECK(bad.err.find("_absent") != std::string::npos);
  fs::remove_all(run);
}
