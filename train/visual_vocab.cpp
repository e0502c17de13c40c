#include "train/visual_vocab.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "models/resnet.h"
#include "tensor/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/data/loader.h"
#include "train/pretrain.h"
#include "train/tasks.h"

namespace vb::train {

namespace {

// float32 or float64 (the kernel's arithmetic types), contiguous; half types become float32.
Tensor working(const Tensor& x) {
  const Tensor w = x.dtype() == DType::Float32 || x.dtype() == DType::Float64 ? x : to(x, DType::Float32);
  return contiguous(detach(w));
}

std::vector<double> host(const Tensor& t) { return to(t, Device()).to_vector(); }

// One uniform draw in [0, 1) from gen (it advances by one).
double uniform(Generator& gen) { return rand({1}, &gen, DType::Float64).item(); }

// splitmix64's finaliser: a well-mixed 64-bit function of its argument.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The generator of node `node` at level `level` (its children are clustered with it): a pure function
// of (seed, level, node), so the tree does not depend on the order its nodes are built in.
Generator node_generator(uint64_t seed, int64_t level, int64_t node) {
  return Generator{mix(seed ^ mix((uint64_t(level) << 48) ^ uint64_t(node))), 0};
}

// Rows of x with the given indices, in that order, on x's device.
Tensor rows_of(const Tensor& x, const std::vector<int64_t>& rows) {
  const Tensor idx = to(Tensor::from_vector(rows, {int64_t(rows.size())}), x.device());
  return index_select(x, 0, idx);
}

// The centroid update of one Lloyd step: the mean of each cluster's points, an empty cluster re-seeded
// at the farthest point of a cluster that keeps another (train/visual_vocab.h). x (N, D), centroids
// (K, D) on one device; assignment and distance of the last assignment step on the host.
Tensor update_centroids(const Tensor& x, const Tensor& centroids, std::vector<int64_t> assignment,
                        const std::vector<double>& distance) {
  const int64_t n = x.size(0), k = centroids.size(0);
  Tensor sums = zeros({k, x.size(1)}, x.dtype(), x.device());
  backend(x.device()).index_add(sums, 0, to(Tensor::from_vector(assignment, {n}), x.device()), x);
  std::vector<int64_t> count(size_t(k), 0);
  for (int64_t a : assignment) ++count[size_t(a)];
  if (std::find(count.begin(), count.end(), 0) != count.end()) {
    std::vector<int64_t> by_distance(static_cast<size_t>(n));
    std::iota(by_distance.begin(), by_distance.end(), 0);
    std::stable_sort(by_distance.begin(), by_distance.end(),
                     [&](int64_t a, int64_t b) { return distance[size_t(a)] > distance[size_t(b)]; });
    size_t next = 0;
    for (int64_t empty = 0; empty < k; ++empty) {
      if (count[size_t(empty)] != 0) continue;
      while (next < by_distance.size() &&
             !(distance[size_t(by_distance[next])] > 0 && count[size_t(assignment[size_t(by_distance[next])])] >= 2))
        ++next;
      Tensor sum_row = narrow(sums, 0, empty, 1);
      if (next == by_distance.size()) {  // no point qualifies: the centroid stays where it is
        copy_(sum_row, narrow(centroids, 0, empty, 1));
        count[size_t(empty)] = 1;
        continue;
      }
      const int64_t r = by_distance[next++], from = assignment[size_t(r)];
      const Tensor point = narrow(x, 0, r, 1);
      Tensor from_row = narrow(sums, 0, from, 1);
      copy_(from_row, sub(from_row, point));
      copy_(sum_row, point);
      --count[size_t(from)];
      count[size_t(empty)] = 1;
      assignment[size_t(r)] = empty;
    }
  }
  std::vector<double> counts(count.begin(), count.end());
  return div(sums, to(Tensor::from_vector(counts, {k, 1}, x.dtype()), x.device()));
}

// k-means++ on x as working() gives it, already checked.
Tensor seed_centroids(const Tensor& x, int64_t k, Generator& gen) {
  const int64_t n = x.size(0);
  std::vector<int64_t> chosen = {std::min(n - 1, int64_t(uniform(gen) * double(n)))};
  Tensor nearest;  // (N) squared distance of each point to its nearest centre so far, on x's device
  while (int64_t(chosen.size()) < k) {
    const Tensor d = nearest_centroid(x, narrow(x, 0, chosen.back(), 1)).distance;
    nearest = nearest.defined() ? minimum(nearest, d) : d;
    const std::vector<double> w = host(nearest);
    double total = 0;
    for (double v : w) total += v;
    if (!(total > 0)) break;  // every point coincides with a centre: fewer than k distinct points
    // The first point whose running sum of weights passes u·total: probability w_i / total, and never
    // a point of weight 0 (an existing centre).
    const double target = uniform(gen) * total;
    double running = 0;
    int64_t pick = -1, last_positive = -1;
    for (int64_t i = 0; i < n && pick < 0; ++i) {
      if (w[size_t(i)] > 0) last_positive = i;
      running += w[size_t(i)];
      if (running > target && w[size_t(i)] > 0) pick = i;
    }
    chosen.push_back(pick >= 0 ? pick : last_positive);  // rounding left the target past the end
  }
  return rows_of(x, chosen);
}

// k-means on x as working() gives it, already checked.
KMeansResult lloyd(const Tensor& x, const KMeansOptions& o, Generator& gen) {
  VB_CHECK(o.k >= 1 && o.max_iterations >= 1 && o.tolerance >= 0,
           "kmeans: k = {}, max_iterations = {}, tolerance = {} (expected k ≥ 1, max_iterations ≥ 1, tolerance ≥ 0)",
           o.k, o.max_iterations, o.tolerance);
  KMeansResult r;
  Tensor centroids = seed_centroids(x, o.k, gen);
  std::vector<int64_t> previous;
  while (true) {
    const NearestCentroid a = nearest_centroid(x, centroids);
    const Tensor index = to(a.index, Device()), distance = to(a.distance, Device());
    const std::vector<double> dist = distance.to_vector();
    std::vector<int64_t> assignment(index.data<int64_t>(), index.data<int64_t>() + index.numel());
    double inertia = 0;
    for (double v : dist) inertia += v;
    ++r.iterations;
    r.inertia.push_back(inertia);
    const bool settled = assignment == previous ||
                         (r.inertia.size() >= 2 && r.inertia[r.inertia.size() - 2] - inertia <=
                                                       o.tolerance * r.inertia[r.inertia.size() - 2]);
    if (settled || r.iterations >= o.max_iterations) {
      r.centroids = centroids;
      r.assignment = index;
      r.distance = distance;
      return r;
    }
    centroids = update_centroids(x, centroids, assignment, dist);
    previous = std::move(assignment);
  }
}

}  // namespace

Tensor kmeans_update(const Tensor& x, const Tensor& centroids, const Tensor& assignment, const Tensor& distance) {
  models::check_visual_features("kmeans_update", x);
  const int64_t n = x.size(0);
  VB_CHECK(centroids.dim() == 2 && centroids.size(1) == x.size(1) && centroids.size(0) >= 1 &&
               assignment.shape() == Shape{n} && assignment.dtype() == DType::Int64 && distance.shape() == Shape{n},
           "kmeans_update: x {}, centroids {}, assignment {} {}, distance {} (expected (N, D), (K, D), (N) int64, (N))",
           shape_str(x.shape()), shape_str(centroids.shape()), shape_str(assignment.shape()), assignment.dtype(),
           shape_str(distance.shape()));
  VB_CHECK(centroids.device() == x.device(), "kmeans_update: x on {} and centroids on {} (expected one device)",
           x.device(), centroids.device());
  const std::vector<double> a = host(assignment);
  std::vector<int64_t> clusters(a.begin(), a.end());
  for (int64_t c : clusters)
    VB_CHECK(c >= 0 && c < centroids.size(0), "kmeans_update: assignment {} out of range [0, {})", c,
             centroids.size(0));
  NoGradGuard no_grad;
  const Tensor w = working(x);
  return update_centroids(w, to(centroids, w.dtype()), std::move(clusters), host(distance));
}

Tensor kmeans_plus_plus(const Tensor& x, int64_t k, Generator& gen) {
  models::check_visual_features("kmeans++", x);
  VB_CHECK(k >= 1, "kmeans++: k = {} (expected at least 1)", k);
  NoGradGuard no_grad;
  return seed_centroids(working(x), k, gen);
}

KMeansResult kmeans(const Tensor& x, const KMeansOptions& options, Generator& gen) {
  models::check_visual_features("kmeans", x);
  NoGradGuard no_grad;
  return lloyd(working(x), options, gen);
}

VisualVocabBuild build_visual_vocab(const Tensor& features, const VisualVocabOptions& o) {
  models::check_visual_features("visual vocab build", features);
  models::check_visual_tree(o.levels, o.k, "visual vocab build");
  NoGradGuard no_grad;
  const Tensor x = contiguous(to(detach(features), DType::Float32));
  const int64_t n = x.size(0), dim = x.size(1), k = o.k;
  VisualVocabBuild out;
  out.features = n;
  out.vocab.levels = o.levels;
  out.vocab.k = k;
  out.vocab.dim = dim;
  std::vector<std::vector<int64_t>> members = {std::vector<int64_t>(size_t(n))};  // rows of each node
  std::iota(members[0].begin(), members[0].end(), 0);
  Tensor parents;      // the level above's table on the CPU (the root is never empty: N ≥ 1)
  int64_t nodes = 1;   // at the level above
  for (int64_t l = 1; l <= o.levels; ++l) {
    Tensor table = Tensor::empty({nodes * k, dim}, DType::Float32);  // (k^l, D) on the CPU
    std::vector<std::vector<int64_t>> children(size_t(nodes * k));
    double inertia = 0;
    for (int64_t p = 0; p < nodes; ++p) {
      Tensor slots = narrow(table, 0, p * k, k);  // (k, D): the children of node p
      const std::vector<int64_t>& rows = members[size_t(p)];
      if (rows.empty()) {  // unreachable: every child is the node itself
        copy_(slots, narrow(parents, 0, p, 1));
        continue;
      }
      Generator gen = node_generator(o.seed, l, p);
      const KMeansResult r =
          lloyd(l == 1 ? x : rows_of(x, rows), KMeansOptions{k, o.max_iterations, o.tolerance}, gen);
      ++out.kmeans_runs;
      out.lloyd_iterations += r.iterations;
      const Tensor c = to(r.centroids, Device());  // (k', D)
      const int64_t real = c.size(0);
      Tensor real_slots = narrow(slots, 0, 0, real);
      copy_(real_slots, c);
      if (real < k) {  // copies of child 0: ties go to it, so descent never picks them
        Tensor copies = narrow(slots, 0, real, k - real);
        copy_(copies, narrow(c, 0, 0, 1));
      }
      const int64_t* a = r.assignment.data<int64_t>();
      const std::vector<double> dist = r.distance.to_vector();
      for (size_t j = 0; j < rows.size(); ++j) {
        children[size_t(p * k + a[j])].push_back(rows[j]);
        inertia += dist[j];
      }
    }
    out.vocab.level_centroids.push_back(table);
    out.level_inertia.push_back(inertia);
    members = std::move(children);
    parents = table;
    nodes *= k;
  }
  std::vector<int64_t> word(size_t(n), 0);
  for (size_t w = 0; w < members.size(); ++w) {
    out.words_used += !members[w].empty();
    for (int64_t row : members[w]) word[size_t(row)] = int64_t(w);
  }
  out.words = Tensor::from_vector(word, {n});
  return out;
}

void save_visual_vocab(const std::string& path, const VisualVocab& vocab,
                       const std::map<std::string, std::string>& metadata) {
  models::check_visual_tree(vocab.levels, vocab.k, "save_visual_vocab " + path);
  VB_CHECK(int64_t(vocab.level_centroids.size()) == vocab.levels,
           "save_visual_vocab {}: {} centroid tables for {} levels", path, vocab.level_centroids.size(), vocab.levels);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int64_t l = 1; l <= vocab.levels; ++l)
    tensors.emplace_back(l == vocab.levels ? "centroids" : "level_" + std::to_string(l),
                         to(vocab.level_centroids[size_t(l - 1)], DType::Float32));
  std::map<std::string, std::string> meta = metadata;
  meta["levels"] = std::to_string(vocab.levels);
  meta["k"] = std::to_string(vocab.k);
  meta["dim"] = std::to_string(vocab.dim);
  save_safetensors(path, tensors, meta);
}

VisualVocab load_visual_vocab(const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  auto integer = [&](const std::string& key) {
    auto it = f.metadata.find(key);
    VB_CHECK(it != f.metadata.end(), "{}: no metadata key \"{}\" (not a visual vocabulary written by "
             "`videobert visual-vocab build`)", path, key);
    try {
      size_t used = 0;
      const int64_t v = std::stoll(it->second, &used);
      if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    fail("{}: metadata \"{}\" = \"{}\" (expected an integer)", path, key, it->second);
  };
  VisualVocab v;
  v.levels = integer("levels");
  v.k = integer("k");
  v.dim = integer("dim");
  models::check_visual_tree(v.levels, v.k, path);
  int64_t rows = 1;
  for (int64_t l = 1; l <= v.levels; ++l) {
    rows *= v.k;
    const std::string name = l == v.levels ? "centroids" : "level_" + std::to_string(l);
    const Tensor& t = f.at(name);
    VB_CHECK(t.dtype() == DType::Float32 && t.shape() == Shape({rows, v.dim}),
             "{}: tensor \"{}\" is {} {} (expected float32 ({}, {}) for levels = {}, k = {}, dim = {})", path, name,
             t.dtype(), shape_str(t.shape()), rows, v.dim, v.levels, v.k, v.dim);
    v.level_centroids.push_back(t);
  }
  return v;
}

RunFeatures run_frame_features(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                               Device device) {
  namespace fs = std::filesystem;
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "visual-vocab build: {} is not a run folder (no config.json)", run_dir);
  const nlohmann::json c = read_run_config((run / "config.json").string());
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(text_vocab_path(c, data_dir));
  const data::Manifest manifest = data::load_manifest(data_dir);
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  RunFeatures out;
  const fs::path weights = run_weights(run, "visual-vocab build");
  out.weights = weights.string();
  nn::Module& model = task->module();
  model.load_state_dict(load_safetensors(out.weights).tensors);
  model.to(device);
  model.eval();
  std::shared_ptr<models::FrameEncoder> encoder;
  for (const auto& [name, m] : model.named_modules()) {
    encoder = std::dynamic_pointer_cast<models::FrameEncoder>(m);
    if (encoder) break;
  }
  VB_CHECK(encoder != nullptr, "visual-vocab build: the model of {} has no frame encoder", run_dir);

  data::LoaderOptions lo;  // evaluation loading (train/evaluate.cpp)
  lo.split = data::parse_split(split);
  lo.train = false;
  lo.shuffle = false;
  lo.frames = c["frames"];
  lo.size = c["image_size"];
  lo.max_length = c["max_text_len"];
  lo.batch_size = 32;
  lo.workers = c["workers"];
  lo.seed = c["seed"];
  lo.quiet = true;
  data::DataLoader loader(manifest, tokenizer, lo);
  VB_CHECK(!loader.clips().empty(), "visual-vocab build: the {} split of {} has no clips", split, manifest.path);
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  while (auto b = loader.next()) {
    const Tensor f = encoder->frame_features(to(b->frames, device));  // (B, T, C)
    parts.push_back(reshape(f, {f.size(0) * f.size(1), f.size(2)}));
    out.clips += f.size(0);
    out.frames_per_clip = f.size(1);
  }
  VB_CHECK(!parts.empty(), "visual-vocab build: no clip of the {} split of {} could be read ({} skipped: {})", split,
           manifest.path, loader.skipped(), fmt::join(loader.skip_messages(), "; "));
  if (loader.skipped() > 0)
    std::cerr << fmt::format("visual-vocab build: {} clips skipped (unreadable):\n  {}\n", loader.skipped(),
                             fmt::join(loader.skip_messages(), "\n  "));
  out.features = contiguous(to(cat(parts, 0), DType::Float32));
  return out;
}

VisualVocabReport build_visual_vocab_for_run(const VisualVocabCommand& cmd) {
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  VisualVocabReport r;
  r.path = cmd.out.empty() ? (std::filesystem::path(cmd.run) / "visual_vocab.safetensors").string() : cmd.out;
  models::check_visual_tree(cmd.vocab.levels, cmd.vocab.k, "visual-vocab build");  // before the slow part
  const Device device = resolve_device(cmd.device);
  auto start = Clock::now();
  r.features = run_frame_features(cmd.run, cmd.data, cmd.split, device);
  r.features.features.at_linear(0);  // waits for the device: the time is the features'
  r.feature_seconds = seconds_since(start);
  start = Clock::now();
  r.build = build_visual_vocab(r.features.features, cmd.vocab);
  r.cluster_seconds = seconds_since(start);
  std::vector<double> mean_distance;
  for (double v : r.build.level_inertia) mean_distance.push_back(v / double(r.build.features));
  const std::map<std::string, std::string> meta = {
      {"feature", "per-frame FrameEncoder features (the ResNet backbone's pooled output)"},
      {"features", std::to_string(r.build.features)},
      {"clips", std::to_string(r.features.clips)},
      {"frames_per_clip", std::to_string(r.features.frames_per_clip)},
      {"inertia", nlohmann::json(r.build.level_inertia).dump()},
      {"mean_squared_distance", nlohmann::json(mean_distance).dump()},
      {"words_used", std::to_string(r.build.words_used)},
      {"seed", std::to_string(cmd.vocab.seed)},
      {"max_iterations", std::to_string(cmd.vocab.max_iterations)},
      {"tolerance", fmt::format("{}", cmd.vocab.tolerance)},
      {"run", cmd.run},
      {"data", cmd.data},
      {"split", cmd.split},
      {"weights", std::filesystem::absolute(r.features.weights).string()},
  };
  save_visual_vocab(r.path, r.build.vocab, meta);
  return r;
}

std::string format_visual_vocab_report(const VisualVocabReport& r) {
  const VisualVocab& v = r.build.vocab;
  std::string out = fmt::format(
      "visual vocabulary: {} levels of k = {}, {} words, from {} frame features ({} clips x {} frames, dim {})\n",
      v.levels, v.k, v.words(), r.build.features, r.features.clips, r.features.frames_per_clip, v.dim);
  out += fmt::format("{:<8}{:>8}{:>26}\n", "level", "nodes", "mean squared distance");
  int64_t nodes = 1;
  for (int64_t l = 1; l <= v.levels; ++l) {
    nodes *= v.k;
    out += fmt::format("{:<8}{:>8}{:>26.6g}\n", l, nodes,
                       r.build.level_inertia[size_t(l - 1)] / double(r.build.features));
  }
  out += fmt::format("words used: {} of {}; {} k-means runs, {} Lloyd iterations\n", r.build.words_used, v.words(),
                     r.build.kmeans_runs, r.build.lloyd_iterations);
  out += fmt::format("time: features {:.2f} s, clustering {:.2f} s on {}\n", r.feature_seconds, r.cluster_seconds,
                     r.features.features.device());
  out += fmt::format("written {}\n", r.path);
  return out;
}

}  // namespace vb::train
