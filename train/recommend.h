// Video recommendation from a pretrained run: an embedding index of a dataset's clips (`videobert embed`),
// exact inner-product search over it (`videobert similar`), and an offline evaluation of video → video
// recommendations whose relevance is derived from the manifest's attributes, not from real interactions.
//
// The index is one safetensors file:
//   video  (N, D) float32   each clip's pooled video embedding, L2-normalised
//   text   (N, D) float32   its first caption's text embedding, L2-normalised, in the same space as `video`;
//                           present only when the model has a shared text–video space
//   __metadata__            "videobert.index": "1" (the format's version); "clip_ids": a JSON array of the
//                           N clip ids in row order; provenance: "model", "embedding", "text_search", "run",
//                           "weights", "weights_crc32c", "data", "vocab", "vocab_crc32c", "split", "config"
// The clip ids live in the header because safetensors holds tensors only and the header's metadata is the
// one place for strings; the ids, not manifest positions, identify clips, so an index stays valid when the
// manifest is reordered or grows.
//
// Rows are unit vectors, so inner product = cosine similarity, and a query against the index is one matrix
// product queries · videoᵀ on the device followed by a top-k selection on the host.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "tensor/tensor.h"
#include "train/data/manifest.h"
#include "train/tasks.h"

namespace vb::train {

// ---------------------------------------------------------------- which embedding a model offers

struct EmbeddingSpace {
  bool shared = false;      // text and video vectors in one space: text → video search is meaningful
  std::string name;         // "contrastive" (shared) or "pooled_video"
  std::string description;  // what the vectors are, for messages
};
// Dual encoder: its contrastive space. Single stream with objectives.contrastive > 0: its contrastive
// first stage. Late fusion, and a single stream without a first stage: the pooled (mean over frames) video
// features, normalised, and no text space.
EmbeddingSpace embedding_space(const nlohmann::json& config);

// ---------------------------------------------------------------- a run, loaded for encoding

struct LoadedRun {
  std::string run_dir;  // canonical
  std::string weights;  // the final model.safetensors, else the newest complete checkpoint's
  std::string vocab;    // the dataset's vocab.txt that tokenises captions and queries
  nlohmann::json config;
  WordPieceTokenizer tokenizer;
  std::unique_ptr<Task> task;
  Device device;
};
// Loads a run's configuration and newest weights onto `device`, in evaluation mode, as `videobert eval` does.
LoadedRun load_run(const std::string& run_dir, const std::string& vocab_path, Device device);

// CRC-32C of a file's bytes as 8 hex digits: the fingerprint that ties an index to the weights and vocabulary
// that produced it.
std::string file_crc32c(const std::string& path);

// ---------------------------------------------------------------- the index

struct EmbeddingIndex {
  std::vector<std::string> clip_ids;            // row order
  Tensor video;                                 // (N, D) float32, unit rows
  Tensor text;                                  // (N, D) float32, unit rows; undefined without a shared space
  std::map<std::string, std::string> metadata;  // provenance: every key above but "clip_ids"
  std::string path;                             // the file it was read from or written to, for messages

  int64_t size() const { return int64_t(clip_ids.size()); }
  bool text_search() const { return text.defined(); }
  // The row of a clip id; an Error naming the id and the index file when it holds none.
  int64_t row(const std::string& clip_id) const;
  // A metadata value; an Error naming the key and the index file when it is missing.
  const std::string& meta(const std::string& key) const;
};

struct EmbedOptions {
  std::string run_dir, data_dir;
  std::string split = "test";  // test, val, train or all
  std::string device = "auto";
  int64_t batch_size = 32;
  bool quiet = false;  // no warning lines for unreadable clips (they are skipped either way)
};
// Embeds every readable clip of the split: uniform frames and centre crops, the first caption (evaluation's
// loading). Unreadable clips are skipped with a warning, as the loader does; none readable is an Error.
EmbeddingIndex embed_clips(const EmbedOptions& options);

// Writes the index atomically (tensor/safetensors.h).
void save_index(const std::string& path, const EmbeddingIndex& index);
// Reads and validates an index: a safetensors file with the "videobert.index" marker, `video` (N, D) float32,
// `text` of the same shape when present, N unique clip ids, every row finite and of unit norm (±1e-3). Each
// Error names the file and the tensor, key, row or clip id at fault, and what was expected.
EmbeddingIndex load_index(const std::string& path);

// ---------------------------------------------------------------- search

struct Hit {
  int64_t row = 0;
  float score = 0;
  bool operator==(const Hit&) const = default;
};

// The k best of scores[0, n): highest score first, equal scores by lower row (deterministic), row `exclude`
// skipped (−1: none); fewer than k when fewer remain. A bounded heap of k entries: O(n log k).
std::vector<Hit> top_k(const float* scores, int64_t n, int64_t k, int64_t exclude = -1);

// Every query row (Q, D) against every item row (N, D): one matrix product queries · itemsᵀ on the items'
// device (in blocks of query rows so that the (Q, N) scores stay bounded), then each row's top k on the host,
// skipping exclude[q] (−1: none; an empty vector excludes nothing).
std::vector<std::vector<Hit>> search(const Tensor& queries, const Tensor& items, int64_t k,
                                     const std::vector<int64_t>& exclude = {});

// The text embedding of a query sentence, from the run that built the index (or `run_override`), tokenised
// with the dataset's vocabulary (the index's "vocab", or `data_override`/vocab.txt): (1, D) on `device`.
// An Error when the index has no text space (naming the model and what to use instead), or when the run's
// weights or the vocabulary differ from those that built the index (their CRC-32C).
Tensor text_query(const EmbeddingIndex& index, const std::string& text, const std::string& run_override,
                  const std::string& data_override, Device device);

// ---------------------------------------------------------------- offline evaluation
//
// Every clip of the index is a query; the other clips are ranked by the video embedding's inner product with
// it. A clip's relevance to the query (graded, 0 … A) is the number of manifest attributes it shares with it
// (same key, same value): relevance derived from attributes, not from real viewing interactions.

// The number of attributes of `query` that `clip` has with the same value.
int shared_attributes(const std::map<std::string, std::string>& query, const std::map<std::string, std::string>& clip);

// The fraction of the first k of `ranked` (graded relevances in rank order, at least k of them) with relevance
// ≥ min_relevance.
double precision_at_k(const std::vector<int>& ranked, int64_t k, int min_relevance);
// DCG@k = Σ_{i=1..k} (2^rel_i − 1) / log2(i + 1) over the first k of `ranked` (fewer when shorter).
double dcg_at_k(const std::vector<int>& ranked, int64_t k);
// DCG@k of `ranked` over the ideal DCG@k of all `candidates` sorted by relevance; nullopt when no candidate
// has relevance > 0 (the ideal DCG is 0 and nDCG is undefined).
std::optional<double> ndcg_at_k(const std::vector<int>& ranked, std::vector<int> candidates, int64_t k);

struct RankingScores {
  double precision = 0;  // P@k
  double ndcg = 0;       // nDCG@k
  double shared = 0;     // mean shared attributes over the top k
};
struct RecommendationEval {
  int64_t clips = 0;          // in the index
  int64_t queries = 0;        // those with at least one candidate sharing an attribute (nDCG defined)
  int64_t k = 0;              // min(requested k, clips − 1)
  int min_shared = 0;         // relevant for P@k: sharing at least this many attributes
  std::vector<std::string> attributes;
  RankingScores model;        // the index's video embeddings
  RankingScores random;       // the expected value over uniformly random rankings (exact, not sampled)
  RankingScores oracle;       // candidates sorted by shared attributes: the best possible ranking

  nlohmann::json to_json() const;
};
// Evaluates the index's video → video recommendations on `device`. Clip ids are looked up in the manifest
// (an id it lacks is an Error naming it); min_shared 0 takes half the attribute keys, rounded up.
RecommendationEval evaluate_recommendations(const EmbeddingIndex& index, const data::Manifest& manifest, int64_t k,
                                            int min_shared = 0, Device device = {});

// The table printed on the terminal, with what relevance means.
std::string format_recommendation_eval(const RecommendationEval& eval);

}  // namespace vb::train
