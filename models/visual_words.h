// VideoBERT's visual words on the model's side: the hierarchical vocabulary (train/visual_vocab.h builds
// it by hierarchical k-means) and its tree descent, which turns a frame feature into a word id, and the
// module that carries the tree inside a model, so that checkpoints and model.safetensors hold the
// vocabulary the model reads (docs/VISUAL-WORDS.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/tensor.h"

namespace vb::models {

// levels ≥ 1, k ≥ 2 and k^levels ≤ 2^24, else an Error naming `where`.
void check_visual_tree(int64_t levels, int64_t k, const std::string& where);

// A floating (N ≥ 1, D) tensor with finite values, else an Error naming `op`.
void check_visual_features(const char* op, const Tensor& x);

struct VisualVocab {
  int64_t levels = 0, k = 0, dim = 0;
  // level_centroids[l − 1]: (k^l, D) float32, row = node index at level l (node (i1, …, il) is row
  // Σ_j i_j·k^(l−j)); the last one is the word table (k^L, D).
  std::vector<Tensor> level_centroids;

  int64_t words() const;  // k^L
  const Tensor& centroids() const { return level_centroids.back(); }
  // The word of each row of features (N, D), by descending the tree: at each level the nearest of the
  // current node's k children (one nearest_centroid call per node reached), on the features' device, in
  // float32. (N) int64 on the CPU. level_inertia, when given, receives per level the sum over features
  // of the squared distance to the node chosen there.
  Tensor assign(const Tensor& features, std::vector<double>* level_inertia = nullptr) const;
};

// The vocabulary as a module: buffers "level_1" … "level_{L−1}" and "centroids", the names of the file
// `videobert visual-vocab build` writes. Made with zero tables; load() copies a vocabulary's in.
class VisualTokenizer : public nn::Module {
 public:
  VisualTokenizer(int64_t levels, int64_t k, int64_t dim);
  void load(const VisualVocab& v);  // shapes must match (an Error names them)
  // features (B, T, D) → words (B, T) int64 on the features' device; no gradient.
  Tensor words(const Tensor& features) const;
  VisualVocab vocab;  // its tables are the buffers' handles (they follow the module's device)
};

}  // namespace vb::models
