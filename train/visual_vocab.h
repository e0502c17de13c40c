// VideoBERT's visual words (Sun et al. 2019): discrete tokens for video, from hierarchical k-means over
// visual features. The paper clusters per-clip S3D features with 4 levels of k = 12, giving 12⁴ = 20,736
// words; `videobert visual-vocab build` clusters the per-frame features of a run's frame encoder
// (docs/VISUAL-WORDS-DRAFT.md says why per frame, and which defaults suit the synthetic data).
//
// k-means (kmeans): k-means++ seeding, then Lloyd iterations until the assignment stops changing, the
// inertia's relative decrease falls to `tolerance`, or `max_iterations` assignment steps. The assignment
// step is the nearest_centroid kernel on the features' device (kernels/backend.h); the update sums the
// rows of each cluster with Backend::index_add (in row order: deterministic) and divides by the counts.
//   - An empty cluster is re-seeded at the update: the point farthest from its own centroid (ties to
//     the smallest row) among points whose cluster keeps at least one other point, moved out of that
//     cluster (whose mean is then taken without it). Several empty clusters take such points in
//     decreasing order of distance; one that no point qualifies for keeps its centroid. Neither raises the
//     inertia.
//   - Fewer than k distinct points: k-means++ stops when every point coincides with a chosen centre, so
//     the result has k' < k clusters (KMeansResult::centroids is (k', D)).
//   - Every random choice comes from the Generator passed in (its offset advances): the same generator
//     state gives the same centroids, on every device (the kernel gives the same bits everywhere; the
//     sums are taken in row order; sampling runs on the host in double).
//
// Hierarchy (build_visual_vocab): level 1 clusters all features into k; level l + 1 clusters the
// members of each level-l cluster into k. A node is its path (i1, …, il), i_j ∈ [0, k); its index at its
// level is Σ_j i_j·k^(l−j), and a feature's word is its leaf's index Σ_l i_l·k^(L−l) ∈ [0, k^L). Each
// node's k-means draws from its own generator, a pure function of (seed, level, node index), so the
// result does not depend on the order nodes are visited.
//   - A node whose members have fewer than k distinct points gets k' < k real children; child slots
//     k' … k − 1 copy child 0's centroid. Descent never picks them (a copy ties with child 0 and ties go
//     to the smallest index), so every word a feature can get is a real leaf, and the tables stay full.
//   - A node with no members (a copy, or a cluster the last assignment left empty) gets k children all
//     equal to its own centroid: unreachable rows that keep the k^l-row tables well defined.
// Word ids are therefore always in [0, k^L), and VisualVocab::assign gives a training feature the word
// the build gave it (the descent repeats, bit for bit, the final assignment of every node it passes).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/visual_words.h"
#include "tensor/philox.h"
#include "tensor/tensor.h"

namespace vb::train {

struct KMeansOptions {
  int64_t k = 8;
  int64_t max_iterations = 100;  // assignment steps, at least 1
  double tolerance = 1e-4;       // stop when (previous − current) inertia ≤ tolerance · previous
};

struct KMeansResult {
  Tensor centroids;             // (k', D) on the features' device, k' = min(k, distinct points)
  Tensor assignment;            // (N) int64 on the CPU: the nearest centroid of each point
  Tensor distance;              // (N) on the CPU: its squared distance (float32; float64 for float64 x)
  std::vector<double> inertia;  // Σ distance after each assignment step (never increases)
  int64_t iterations = 0;       // assignment steps taken
};

// k-means of the rows of x (N ≥ 1, D), float32 or float64 (float64 on the CPU only; half types are
// converted to float32), on x's device.
KMeansResult kmeans(const Tensor& x, const KMeansOptions& options, Generator& gen);

// k-means++ seeding (Arthur and Vassilvitskii 2007): the first centre uniformly, each next one with
// probability proportional to the squared distance to the nearest centre so far; stops early when every
// point coincides with a centre. (k', D) rows of x on x's device.
Tensor kmeans_plus_plus(const Tensor& x, int64_t k, Generator& gen);

// One Lloyd update: the mean of each cluster of x (N, D) under `assignment` (N) int64, with an empty
// cluster re-seeded as the file comment says (`distance` (N): each point's squared distance to its
// centroid, from the assignment step; `centroids` (K, D): the centroids that step used, kept by a cluster
// that stays empty). (K, D) on x's device, in x's working dtype.
Tensor kmeans_update(const Tensor& x, const Tensor& centroids, const Tensor& assignment, const Tensor& distance);

struct VisualVocabOptions {
  int64_t levels = 2, k = 8;
  int64_t max_iterations = 100;
  double tolerance = 1e-4;
  uint64_t seed = 0;
};

// The vocabulary and its tree descent (VisualVocab::assign) live with the model that reads the words.
using models::VisualVocab;

struct VisualVocabBuild {
  VisualVocab vocab;
  Tensor words;                       // (N) int64: each feature's word (what assign gives)
  std::vector<double> level_inertia;  // per level: Σ over features of the squared distance to their node
  int64_t features = 0;
  int64_t words_used = 0;             // distinct words among the features
  int64_t kmeans_runs = 0, lloyd_iterations = 0;
};

// Hierarchical k-means of features (N ≥ 1, D) on their device, in float32 (see the file comment).
VisualVocabBuild build_visual_vocab(const Tensor& features, const VisualVocabOptions& options);

// safetensors: "centroids", the word table (k^L, D), and "level_1" … "level_{L−1}", the tables of the
// levels above ((k^l, D)), all float32; metadata "levels", "k", "dim" plus `metadata`. Written atomically.
void save_visual_vocab(const std::string& path, const VisualVocab& vocab,
                       const std::map<std::string, std::string>& metadata);
// Reads and checks a file written by save_visual_vocab (an Error names the file and the key).
VisualVocab load_visual_vocab(const std::string& path);

// ---- `videobert visual-vocab build` ----

struct RunFeatures {
  Tensor features;  // (clips·T, C) float32 on the device: frame t of the i-th clip served at row i·T + t
  int64_t clips = 0, frames_per_clip = 0;
  std::string weights;  // the file the encoder's weights came from
};

// The per-frame features of a run's frame encoder (FrameEncoder::frame_features: the ResNet backbone's
// pooled output for each frame, before any pooling over time) for every readable clip of `split`,
// loaded as evaluation loads clips: the run's frames and image_size, frames spread uniformly, centre
// crop. The weights are the run's model.safetensors, else its newest complete checkpoint.
RunFeatures run_frame_features(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                               Device device);

struct VisualVocabCommand {
  std::string run, data, out;  // out empty: RUN/visual_vocab.safetensors
  std::string split = "train", device = "auto";
  VisualVocabOptions vocab;
};

struct VisualVocabReport {
  std::string path;  // the file written
  RunFeatures features;
  VisualVocabBuild build;
  double feature_seconds = 0, cluster_seconds = 0;  // wall-clock time of the two stages
};

// The command: the run's frame features, their hierarchical k-means, the file (with metadata: levels,
// k, dim, features, clips, frames_per_clip, inertia and mean squared distance per level, words_used, the
// options, the run, data, split and weights).
VisualVocabReport build_visual_vocab_for_run(const VisualVocabCommand& command);
// The summary the command prints: words used, mean squared distance per level.
std::string format_visual_vocab_report(const VisualVocabReport& report);

}  // namespace vb::train
