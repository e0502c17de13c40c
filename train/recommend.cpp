// Video recommendation (train/recommend.h): embedding a split into an index, exact top-k search over it, and
// the offline evaluation with its random and attribute-oracle baselines.
#include "train/recommend.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>

#include "autograd/ops.h"
#include "models/videobert.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/data/loader.h"
#include "train/pretrain.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;

namespace vb::train {

namespace {

constexpr const char* kFormatKey = "videobert.index";
constexpr const char* kFormatVersion = "1";
// An index row must have unit norm within this: float32 normalisation leaves ~1e-7; anything beyond 1e-3
// is a vector that was never normalised or was damaged.
constexpr double kNormTolerance = 1e-3;
// Scores per block of one matrix product in search(): 2^24 floats (64 MiB) whatever the query count.
constexpr int64_t kScoresPerBlock = int64_t(1) << 24;

// The weights `videobert eval` would take (train/checkpoint.h), of a folder that is a run.
fs::path weights_of_run(const fs::path& run) {
  VB_CHECK(fs::exists(run / "config.json"), "{} is not a run folder (no config.json)", run.string());
  return run_weights(run, "recommend");
}

// "a ranks before b": the higher score, and among equal scores the lower row, so rankings never depend on
// the order in which scores were visited.
bool ranks_before(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.row < b.row); }

// Checks that every row of an (N, D) float32 CPU tensor is finite with unit norm.
void check_unit_rows(const Tensor& t, const std::string& name, const std::vector<std::string>& ids,
                     const std::string& path) {
  const int64_t n = t.size(0), d = t.size(1);
  const float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    double sq = 0;
    for (int64_t j = 0; j < d; ++j) {
      const float x = p[i * d + j];
      VB_CHECK(std::isfinite(x), "{}: tensor \"{}\" row {} (clip \"{}\") holds a non-finite value at column {}",
               path, name, i, ids[size_t(i)], j);
      sq += double(x) * double(x);
    }
    VB_CHECK(std::abs(std::sqrt(sq) - 1.0) <= kNormTolerance,
             "{}: tensor \"{}\" row {} (clip \"{}\") has norm {:.6f} (expected unit rows, ±{}: L2-normalised "
             "embeddings)",
             path, name, i, ids[size_t(i)], std::sqrt(sq), kNormTolerance);
  }
}

// Gain of a relevance grade in DCG: 2^rel − 1 (see dcg_at_k).
double gain(int rel) { return std::ldexp(1.0, rel) - 1.0; }

}  // namespace

// ---------------------------------------------------------------- models and runs

EmbeddingSpace embedding_space(const nlohmann::json& c) {
  const std::string model = c.at("model");
  if (model == "dual_encoder") return {true, "contrastive", "the dual encoder's contrastive text–video space"};
  if (model == "single_stream" && c.at("objectives").at("contrastive").get<double>() > 0)
    return {true, "contrastive", "the single stream's contrastive first stage, a shared text–video space"};
  if (model == "late_fusion")
    return {false, "pooled_video",
            "late fusion's pooled video features; it compares a caption with a clip only through its fusion MLP, "
            "so its text and video vectors share no space"};
  return {false, "pooled_video",
          "the single stream's mean frame features; trained without its contrastive first stage "
          "(objectives.contrastive=0) it scores caption–clip pairs only jointly, so it has no text–video space"};
}

LoadedRun load_run(const std::string& run_dir, const std::string& dataset_vocab, Device device) {
  const fs::path weights = weights_of_run(run_dir);
  nlohmann::json config = read_run_config((fs::path(run_dir) / "config.json").string());
  // A run whose text side came from a Hugging Face folder tokenises with that folder's vocabulary.
  const std::string vocab_path =
      config["text_init"].get<std::string>().empty() ? dataset_vocab : text_vocab_path(config, "");
  VB_CHECK(fs::exists(vocab_path), "{}: no such vocabulary (the dataset's vocab.txt tokenises the captions)",
           vocab_path);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(vocab_path);
  std::unique_ptr<Task> task = make_task(config, tokenizer);
  task->module().load_state_dict(load_safetensors(weights.string()).tensors);
  task->module().to(device);
  task->module().eval();
  return LoadedRun{fs::canonical(run_dir).string(), fs::canonical(weights).string(),
                   fs::canonical(vocab_path).string(), std::move(config), std::move(tokenizer), std::move(task),
                   device};
}

std::string file_crc32c(const std::string& path) {
  const std::string bytes = read_text_file(path);
  return fmt::format("{:08x}", crc32c(bytes.data(), bytes.size()));
}

// ---------------------------------------------------------------- the index

int64_t EmbeddingIndex::row(const std::string& clip_id) const {
  for (size_t i = 0; i < clip_ids.size(); ++i)
    if (clip_ids[i] == clip_id) return int64_t(i);
  const std::string split = metadata.count("split") ? metadata.at("split") : "?";
  fail("{}: no clip \"{}\" in the index ({} clips embedded from {} of {})", path.empty() ? "index" : path, clip_id,
       clip_ids.size(), split == "all" ? "every split" : "the " + split + " split",
       metadata.count("data") ? metadata.at("data") : "?");
}

const std::string& EmbeddingIndex::meta(const std::string& key) const {
  auto it = metadata.find(key);
  VB_CHECK(it != metadata.end(), "{}: the index's __metadata__ has no \"{}\" (rebuild it with videobert embed)",
           path.empty() ? "index" : path, key);
  return it->second;
}

EmbeddingIndex embed_clips(const EmbedOptions& o) {
  NoGradGuard no_grad;
  const Device device = resolve_device(o.device);
  LoadedRun run = load_run(o.run_dir, (fs::path(o.data_dir) / "vocab.txt").string(), device);
  const data::Manifest manifest = data::load_manifest(o.data_dir);
  std::vector<data::Clip> clips = o.split == "all" ? manifest.clips : manifest.split(data::parse_split(o.split));
  VB_CHECK(!clips.empty(), "embed: {} has no clips in the {} split", manifest.path, o.split);
  const EmbeddingSpace space = embedding_space(run.config);

  // Evaluation's loading: uniform frames, resize and centre crop, the first caption, in manifest order.
  data::LoaderOptions lo;
  lo.train = false;
  lo.shuffle = false;
  lo.frames = run.config["frames"];
  lo.size = run.config["image_size"];
  lo.max_length = run.config["max_text_len"];
  lo.batch_size = o.batch_size;
  lo.workers = run.config["workers"];
  lo.seed = run.config["seed"];
  lo.quiet = o.quiet;
  const int64_t listed = int64_t(clips.size());
  data::DataLoader loader(std::move(clips), run.tokenizer, lo);

  std::vector<Tensor> video, text;
  EmbeddingIndex index;
  while (auto b = loader.next()) {
    const data::Batch batch = data::to_device(*b, device);
    const VideoSide v = run.task->encode_video(batch.frames);
    // The model's own video embedding where it has one; the single stream without a first stage gives
    // per-frame features (B, T, C), pooled here by their mean as its first stage would.
    const Tensor pooled = v.embedding.defined() ? v.embedding : mean(v.features, {1});
    video.push_back(to(models::l2_normalize(pooled), Device()));
    if (space.shared)
      text.push_back(
          to(models::l2_normalize(run.task->encode_text(batch.input_ids, batch.attention_mask).embedding), Device()));
    for (double c : b->clip_index.to_vector()) index.clip_ids.push_back(loader.clips()[size_t(c)].id);
  }
  VB_CHECK(!index.clip_ids.empty(), "embed: none of the {} clips of the {} split of {} could be read", listed, o.split,
           manifest.path);
  index.video = contiguous(cat(video, 0));
  if (space.shared) index.text = contiguous(cat(text, 0));
  index.metadata = {
      {"model", run.config["model"].get<std::string>()},
      {"embedding", space.name},
      {"text_search", space.shared ? "true" : "false"},
      {"run", run.run_dir},
      {"weights", run.weights},
      {"weights_crc32c", file_crc32c(run.weights)},
      {"data", manifest.root},
      {"vocab", run.vocab},
      {"vocab_crc32c", file_crc32c(run.vocab)},
      {"split", o.split},
      {"config", run.config.dump()},
  };
  return index;
}

void save_index(const std::string& path, const EmbeddingIndex& index) {
  VB_CHECK(index.video.defined() && index.video.dim() == 2 && index.video.size(0) == index.size(),
           "{}: the index's video tensor must be (N, D) with one row per clip id ({} ids)", path, index.size());
  VB_CHECK(!index.text.defined() || index.text.shape() == index.video.shape(),
           "{}: the index's text tensor {} must have the video tensor's shape {}", path, shape_str(index.text.shape()),
           shape_str(index.video.shape()));
  std::map<std::string, std::string> metadata = index.metadata;
  metadata.insert_or_assign(kFormatKey, std::string(kFormatVersion));
  metadata.insert_or_assign("clip_ids", nlohmann::json(index.clip_ids).dump());
  metadata.insert_or_assign("text_search", std::string(index.text_search() ? "true" : "false"));
  std::vector<std::pair<std::string, Tensor>> tensors = {{"video", index.video}};
  if (index.text_search()) tensors.emplace_back("text", index.text);
  save_safetensors(path, tensors, metadata);
}

EmbeddingIndex load_index(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  EmbeddingIndex index;
  index.path = path;
  index.metadata = file.metadata;
  auto marker = index.metadata.find(kFormatKey);
  VB_CHECK(marker != index.metadata.end(),
           "{}: not a videobert embedding index (no \"{}\" in the header's __metadata__; videobert embed writes one)",
           path, kFormatKey);
  VB_CHECK(marker->second == kFormatVersion, "{}: index format version \"{}\" (this build reads version {})", path,
           marker->second, kFormatVersion);
  for (const auto& [name, t] : file.tensors)
    VB_CHECK(name == "video" || name == "text", "{}: unexpected tensor \"{}\" (an index holds \"video\" and \"text\")",
             path, name);
  VB_CHECK(file.contains("video"), "{}: no tensor \"video\" (expected the (N, D) float32 video embeddings)", path);
  index.video = file.at("video");
  VB_CHECK(index.video.dtype() == DType::Float32 && index.video.dim() == 2 && index.video.size(0) > 0 &&
               index.video.size(1) > 0,
           "{}: tensor \"video\" is {} {} (expected (N, D) float32 with N, D ≥ 1)", path, index.video.dtype(),
           shape_str(index.video.shape()));

  const std::string& ids_text = index.meta("clip_ids");
  const nlohmann::json ids = nlohmann::json::parse(ids_text, nullptr, /*allow_exceptions=*/false);
  VB_CHECK(ids.is_array(), "{}: __metadata__ \"clip_ids\" is not a JSON array of strings", path);
  std::set<std::string> seen;
  for (size_t i = 0; i < ids.size(); ++i) {
    VB_CHECK(ids[i].is_string(), "{}: __metadata__ \"clip_ids\" entry {} is {} (expected a string)", path, i,
             ids[i].dump());
    index.clip_ids.push_back(ids[i].get<std::string>());
    VB_CHECK(seen.insert(index.clip_ids.back()).second, "{}: clip id \"{}\" appears twice in \"clip_ids\"", path,
             index.clip_ids.back());
  }
  index.metadata.erase("clip_ids");
  VB_CHECK(index.size() == index.video.size(0), "{}: {} clip ids for {} rows of tensor \"video\" (expected one each)",
           path, index.size(), index.video.size(0));

  if (file.contains("text")) {
    index.text = file.at("text");
    VB_CHECK(index.text.dtype() == DType::Float32 && index.text.shape() == index.video.shape(),
             "{}: tensor \"text\" is {} {} (expected float32 {}, the shape of \"video\")", path, index.text.dtype(),
             shape_str(index.text.shape()), shape_str(index.video.shape()));
  }
  auto flag = index.metadata.find("text_search");
  VB_CHECK(flag == index.metadata.end() || flag->second == (index.text_search() ? "true" : "false"),
           "{}: __metadata__ says text_search={} but the file {} a \"text\" tensor", path,
           flag == index.metadata.end() ? "" : flag->second, index.text_search() ? "holds" : "has no");
  check_unit_rows(index.video, "video", index.clip_ids, path);
  if (index.text_search()) check_unit_rows(index.text, "text", index.clip_ids, path);
  return index;
}

// ---------------------------------------------------------------- search

std::vector<Hit> top_k(const float* scores, int64_t n, int64_t k, int64_t exclude) {
  VB_CHECK(k >= 0, "top_k: k = {} (expected ≥ 0)", k);
  std::vector<Hit> heap;  // the best hits so far, the worst of them at the front (a max-heap under ranks_before)
  heap.reserve(size_t(std::min(k, n)));
  if (k == 0) return heap;
  for (int64_t i = 0; i < n; ++i) {
    if (i == exclude) continue;
    VB_CHECK(!std::isnan(scores[i]), "top_k: the score of row {} is NaN (a non-finite embedding?)", i);
    const Hit h{i, scores[i]};
    if (int64_t(heap.size()) < k) {
      heap.push_back(h);
      std::push_heap(heap.begin(), heap.end(), ranks_before);
    } else if (ranks_before(h, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), ranks_before);
      heap.back() = h;
      std::push_heap(heap.begin(), heap.end(), ranks_before);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), ranks_before);  // best first
  return heap;
}

std::vector<std::vector<Hit>> search(const Tensor& queries, const Tensor& items, int64_t k,
                                     const std::vector<int64_t>& exclude) {
  NoGradGuard no_grad;
  VB_CHECK(queries.dim() == 2 && items.dim() == 2 && queries.size(1) == items.size(1),
           "search: queries {} against items {} (expected (Q, D) and (N, D))", shape_str(queries.shape()),
           shape_str(items.shape()));
  VB_CHECK(queries.dtype() == DType::Float32 && items.dtype() == DType::Float32,
           "search: queries {} and items {} (expected float32)", queries.dtype(), items.dtype());
  VB_CHECK(exclude.empty() || int64_t(exclude.size()) == queries.size(0),
           "search: {} excluded rows for {} queries (expected one per query, or none)", exclude.size(),
           queries.size(0));
  const int64_t q = queries.size(0), n = items.size(0);
  const Tensor on_device = to(queries, items.device());
  const int64_t block = std::max<int64_t>(1, kScoresPerBlock / std::max<int64_t>(n, 1));
  std::vector<std::vector<Hit>> out;
  out.reserve(size_t(q));
  for (int64_t start = 0; start < q; start += block) {
    const int64_t rows = std::min(block, q - start);
    // queries · itemsᵀ as linear(x, w) = x · wᵀ: the (N, D) items are already the (out, in) weight layout.
    const Tensor scores = contiguous(to(linear(narrow(on_device, 0, start, rows), items), Device()));  // (rows, N)
    const float* s = scores.data<float>();
    for (int64_t i = 0; i < rows; ++i)
      out.push_back(top_k(s + i * n, n, k, exclude.empty() ? -1 : exclude[size_t(start + i)]));
  }
  return out;
}

Tensor text_query(const EmbeddingIndex& index, const std::string& text, const std::string& run_override,
                  const std::string& data_override, Device device) {
  NoGradGuard no_grad;
  if (!index.text_search()) {
    std::string what = "no text embeddings";
    if (index.metadata.count("config")) {
      const nlohmann::json config = nlohmann::json::parse(index.metadata.at("config"), nullptr, false);
      if (config.is_object() && config.contains("model") && config.contains("objectives"))
        what = embedding_space(config).description;
    }
    fail("similar --text: the index {} was embedded from a {} run ({}), which has no shared text–video space: the "
         "index holds {}. Search it by --video ID, or embed a run with a shared space: a dual_encoder (preset "
         "tiny-dual) or a single_stream with its contrastive first stage (preset tiny)",
         index.path, index.metadata.count("model") ? index.metadata.at("model") : "?",
         index.metadata.count("run") ? index.metadata.at("run") : "?", what);
  }
  VB_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos, "similar --text: the query text is empty");
  const std::string run_dir = run_override.empty() ? index.meta("run") : run_override;
  const std::string vocab = data_override.empty() ? index.meta("vocab") : (fs::path(data_override) / "vocab.txt").string();
  VB_CHECK(fs::exists(vocab), "similar --text: the vocabulary {} is missing (give the dataset with --data)", vocab);
  const std::string vocab_crc = file_crc32c(vocab), weights = weights_of_run(run_dir).string();
  VB_CHECK(vocab_crc == index.meta("vocab_crc32c"),
           "similar --text: the vocabulary {} (CRC-32C {}) is not the one the index {} was built with ({}, CRC-32C "
           "{}): give that dataset with --data, or rebuild the index with videobert embed",
           vocab, vocab_crc, index.path, index.meta("vocab"), index.meta("vocab_crc32c"));
  const std::string weights_crc = file_crc32c(weights);
  VB_CHECK(weights_crc == index.meta("weights_crc32c"),
           "similar --text: the weights {} (CRC-32C {}) are not those the index {} was built from ({}, CRC-32C {}): "
           "the run has changed since; rebuild the index with videobert embed, or give the original run with --run",
           weights, weights_crc, index.path, index.meta("weights"), index.meta("weights_crc32c"));

  LoadedRun run = load_run(run_dir, vocab, device);
  VB_CHECK(embedding_space(run.config).shared, "similar --text: the run {} ({}) has no shared text–video space",
           run.run_dir, run.config["model"].get<std::string>());
  EncodeOptions eo;
  eo.max_length = run.config["max_text_len"];  // as the loader encoded the captions: [CLS] text [SEP], truncated
  const Encoding e = run.tokenizer.encode(text, eo);
  const int64_t length = int64_t(e.ids.size());
  const Tensor ids = to(Tensor::from_vector(e.ids, {1, length}), device);
  const Tensor mask = to(Tensor::from_vector(e.attention_mask, {1, length}), device);
  Tensor embedding = models::l2_normalize(run.task->encode_text(ids, mask).embedding);  // (1, D)
  VB_CHECK(embedding.size(1) == index.video.size(1),
           "similar --text: the run's text embedding has {} dimensions, the index {} has {}", embedding.size(1),
           index.path, index.video.size(1));
  return embedding;
}

// ---------------------------------------------------------------- offline evaluation

int shared_attributes(const std::map<std::string, std::string>& query, const std::map<std::string, std::string>& clip) {
  int shared = 0;
  for (const auto& [key, value] : query) {
    auto it = clip.find(key);
    shared += it != clip.end() && it->second == value;
  }
  return shared;
}

double precision_at_k(const std::vector<int>& ranked, int64_t k, int min_relevance) {
  VB_CHECK(k >= 1 && int64_t(ranked.size()) >= k, "precision@k: k = {} with {} ranked items (expected 1 ≤ k ≤ items)",
           k, ranked.size());
  int64_t relevant = 0;
  for (int64_t i = 0; i < k; ++i) relevant += ranked[size_t(i)] >= min_relevance;
  return double(relevant) / double(k);
}

// DCG@k = Σ_{i=1..k} (2^rel_i − 1) / log2(i + 1)   (Burges et al. 2005; rank i counted from 1)
//
// The gain 2^rel − 1, not rel: a clip that shares all four attributes with the query (the near-duplicate a
// viewer would take next) gains 15, one that shares a single attribute 1. With the linear gain rel it would be
// 4 against 1, and since half of all clips share the size alone by chance, a ranking full of one-attribute
// matches would score close to a good one. The log base is 2 so that rank 1 is not discounted
// (log2(2) = 1); any base scales DCG and the ideal DCG by the same constant, so nDCG does not depend on it.
double dcg_at_k(const std::vector<int>& ranked, int64_t k) {
  double dcg = 0;
  for (int64_t i = 0; i < std::min<int64_t>(k, int64_t(ranked.size())); ++i)
    dcg += gain(ranked[size_t(i)]) / std::log2(double(i + 2));
  return dcg;
}

std::optional<double> ndcg_at_k(const std::vector<int>& ranked, std::vector<int> candidates, int64_t k) {
  const auto top = candidates.begin() + std::min<int64_t>(k, int64_t(candidates.size()));
  std::partial_sort(candidates.begin(), top, candidates.end(), std::greater<int>());
  const double ideal = dcg_at_k(std::vector<int>(candidates.begin(), top), k);
  if (ideal <= 0) return std::nullopt;
  return dcg_at_k(ranked, k) / ideal;
}

nlohmann::json RecommendationEval::to_json() const {
  auto scores = [&](const RankingScores& s) {
    return nlohmann::json{{"precision_at_k", s.precision}, {"ndcg_at_k", s.ndcg}, {"mean_shared_at_k", s.shared}};
  };
  return {{"task", "video_to_video"},
          {"relevance", "number of shared manifest attributes (derived from attributes, not from real interactions)"},
          {"gain", "2^rel - 1"},
          {"discount", "log2(rank + 1)"},
          {"clips", clips},
          {"queries", queries},
          {"k", k},
          {"min_shared", min_shared},
          {"attributes", attributes},
          {"model", scores(model)},
          {"random_expected", scores(random)},
          {"attribute_oracle", scores(oracle)}};
}

RecommendationEval evaluate_recommendations(const EmbeddingIndex& index, const data::Manifest& manifest, int64_t k,
                                            int min_shared, Device device) {
  const int64_t n = index.size();
  VB_CHECK(n >= 2, "evaluate: the index {} holds {} clip; recommending needs at least 2", index.path, n);
  VB_CHECK(k >= 1, "evaluate: k = {} (expected ≥ 1)", k);
  std::map<std::string, const data::Clip*> by_id;
  for (const data::Clip& c : manifest.clips) by_id[c.id] = &c;

  // Attribute values as small integers per key (−1: the clip lacks the key), so that counting the shared
  // attributes of N² pairs compares integers.
  std::set<std::string> keys;
  std::vector<const data::Clip*> clips;
  for (const std::string& id : index.clip_ids) {
    auto it = by_id.find(id);
    VB_CHECK(it != by_id.end(), "evaluate: clip \"{}\" of the index {} is not in {} (was the index built from "
             "another dataset?)", id, index.path, manifest.path);
    clips.push_back(it->second);
    for (const auto& [key, value] : it->second->attributes) keys.insert(key);
  }
  VB_CHECK(!keys.empty(), "evaluate: no clip of the index {} has attributes in {}; relevance is derived from the "
           "manifest's attributes", index.path, manifest.path);
  const int a = int(keys.size());
  const int m = min_shared == 0 ? (a + 1) / 2 : min_shared;
  VB_CHECK(m >= 1 && m <= a, "evaluate: --min-shared {} (expected 1 … {}, the attribute keys {})", m, a, keys);
  std::vector<int> codes(static_cast<size_t>(n * a), -1);
  {
    std::vector<std::map<std::string, int>> values(static_cast<size_t>(a));
    for (int64_t i = 0; i < n; ++i) {
      int j = 0;
      for (const std::string& key : keys) {
        auto it = clips[size_t(i)]->attributes.find(key);
        if (it != clips[size_t(i)]->attributes.end())
          codes[size_t(i * a + j)] = values[size_t(j)].emplace(it->second, int(values[size_t(j)].size())).first->second;
        ++j;
      }
    }
  }
  auto relevance = [&](int64_t q, int64_t c) {
    int shared = 0;
    for (int j = 0; j < a; ++j) {
      const int v = codes[size_t(q * a + j)];
      shared += v >= 0 && v == codes[size_t(c * a + j)];
    }
    return shared;
  };

  RecommendationEval e;
  e.clips = n;
  e.k = std::min(k, n - 1);
  e.min_shared = m;
  e.attributes.assign(keys.begin(), keys.end());
  std::vector<int64_t> self(static_cast<size_t>(n));
  std::iota(self.begin(), self.end(), 0);
  const Tensor video = to(index.video, device);
  const std::vector<std::vector<Hit>> hits = search(video, video, e.k, self);

  // Σ_{i=1..k} 1/log2(i + 1): a random ranking puts the mean gain at every rank.
  double discounts = 0;
  for (int64_t i = 0; i < e.k; ++i) discounts += 1.0 / std::log2(double(i + 2));
  std::vector<int64_t> histogram(size_t(a + 1));
  for (int64_t q = 0; q < n; ++q) {
    std::fill(histogram.begin(), histogram.end(), 0);
    for (int64_t c = 0; c < n; ++c)
      if (c != q) ++histogram[size_t(relevance(q, c))];
    // The oracle's top k: candidates by decreasing relevance, read off the histogram.
    std::vector<int> oracle;
    for (int r = a; r >= 0 && int64_t(oracle.size()) < e.k; --r)
      for (int64_t j = 0; j < histogram[size_t(r)] && int64_t(oracle.size()) < e.k; ++j) oracle.push_back(r);
    const double ideal = dcg_at_k(oracle, e.k);
    if (ideal <= 0) continue;  // no candidate shares anything: nDCG is undefined for this query
    ++e.queries;
    std::vector<int> ranked;
    for (const Hit& h : hits[size_t(q)]) ranked.push_back(relevance(q, h.row));
    e.model.precision += precision_at_k(ranked, e.k, m);
    e.model.ndcg += dcg_at_k(ranked, e.k) / ideal;
    e.model.shared += std::accumulate(ranked.begin(), ranked.end(), 0.0) / double(e.k);
    e.oracle.precision += precision_at_k(oracle, e.k, m);
    e.oracle.ndcg += 1.0;  // dcg_at_k(oracle, k) / ideal, by definition
    e.oracle.shared += std::accumulate(oracle.begin(), oracle.end(), 0.0) / double(e.k);
    // A uniformly random ranking of the n − 1 candidates puts each at each rank with probability 1/(n − 1):
    // the expected P@k is the fraction of relevant candidates, the expected DCG the mean gain times the sum of
    // the discounts, the expected mean relevance the candidates' mean.
    double relevant = 0, gains = 0, shared = 0;
    for (int r = 0; r <= a; ++r) {
      const double count = double(histogram[size_t(r)]);
      relevant += r >= m ? count : 0;
      gains += count * gain(r);
      shared += count * r;
    }
    e.random.precision += relevant / double(n - 1);
    e.random.ndcg += gains / double(n - 1) * discounts / ideal;
    e.random.shared += shared / double(n - 1);
  }
  VB_CHECK(e.queries > 0, "evaluate: no clip of the index {} shares an attribute with any other; nDCG is undefined",
           index.path);
  for (RankingScores* s : {&e.model, &e.random, &e.oracle}) {
    s->precision /= double(e.queries);
    s->ndcg /= double(e.queries);
    s->shared /= double(e.queries);
  }
  return e;
}

std::string format_recommendation_eval(const RecommendationEval& e) {
  std::string keys;
  for (const std::string& key : e.attributes) keys += (keys.empty() ? "" : ", ") + key;
  std::string out = fmt::format(
      "video → video recommendation: each of the {} clips is a query against the other {}; K = {}.\n"
      "Relevance is derived from attributes, not from real interactions: a clip's relevance to a query is\n"
      "the number of manifest attributes ({}) the two share.\n"
      "P@{}: the fraction of the top {} sharing at least {} of the {}. nDCG@{}: gain 2^rel − 1, discount "
      "log2(rank + 1).\n\n",
      e.clips, e.clips - 1, e.k, keys, e.k, e.k, e.min_shared, e.attributes.size(), e.k);
  const std::string p = fmt::format("P@{}", e.k), nd = fmt::format("nDCG@{}", e.k), sh = fmt::format("shared@{}", e.k);
  out += fmt::format("{:<34}{:>9}{:>10}{:>11}\n", "ranking", p, nd, sh);
  auto line = [&](const char* name, const RankingScores& s) {
    out += fmt::format("{:<34}{:>9.3f}{:>10.3f}{:>11.2f}\n", name, s.precision, s.ndcg, s.shared);
  };
  line("model (video embedding)", e.model);
  line("random ranking (expected value)", e.random);
  line("attribute oracle (best possible)", e.oracle);
  if (e.queries < e.clips)
    out += fmt::format("({} of {} queries left out: no other clip shares an attribute with them)\n", e.clips - e.queries,
                       e.clips);
  return out;
}

}  // namespace vb::train
