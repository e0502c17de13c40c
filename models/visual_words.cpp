#include "models/visual_words.h"

#include <algorithm>
#include <numeric>

#include "autograd/ops.h"

namespace vb::models {

void check_visual_tree(int64_t levels, int64_t k, const std::string& where) {
  VB_CHECK(levels >= 1 && k >= 2, "{}: levels = {}, k = {} (expected levels ≥ 1 and k ≥ 2)", where, levels, k);
  int64_t words = 1;
  for (int64_t l = 0; l < levels; ++l) {
    VB_CHECK(words <= (int64_t(1) << 24) / k,
             "{}: k^levels = {}^{} words exceeds 2^24 (the word tables would not fit in memory)", where, k, levels);
    words *= k;
  }
}

void check_visual_features(const char* op, const Tensor& x) {
  VB_CHECK(x.defined() && x.dim() == 2 && x.size(0) >= 1 && is_floating(x.dtype()),
           "{}: features {} (expected a floating (N, D) tensor with N ≥ 1)", op,
           x.defined() ? shape_str(x.shape()) + " " + std::string(dtype_name(x.dtype())) : "undefined");
  // Σ 0·x is 0 when every value is finite and NaN otherwise: one reduction on x's device.
  const double probe = sum(mul(detach(x), 0.0)).item();
  VB_CHECK(probe == 0, "{}: features {} hold NaN or infinite values", op, shape_str(x.shape()));
}

int64_t VisualVocab::words() const {
  int64_t w = 1;
  for (int64_t l = 0; l < levels; ++l) w *= k;
  return w;
}

Tensor VisualVocab::assign(const Tensor& features, std::vector<double>* level_inertia) const {
  check_visual_features("visual vocab assign", features);
  VB_CHECK(features.size(1) == dim, "visual vocab assign: features {} for a vocabulary of dim {} (expected (N, {}))",
           shape_str(features.shape()), dim, dim);
  NoGradGuard no_grad;
  const Tensor x = contiguous(to(detach(features), DType::Float32));
  const int64_t n = x.size(0);
  auto host = [](const Tensor& t) { return to(t, Device()).to_vector(); };
  std::vector<int64_t> node(size_t(n), 0);  // each feature's node at the level reached so far
  if (level_inertia) level_inertia->assign(size_t(levels), 0.0);
  for (int64_t l = 1; l <= levels; ++l) {
    // Features grouped by node, in row order within a node: one nearest_centroid call per node reached.
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return node[size_t(a)] < node[size_t(b)]; });
    const Tensor grouped = index_select(x, 0, to(Tensor::from_vector(order, {n}), x.device()));
    const Tensor table = to(to(level_centroids[size_t(l - 1)], DType::Float32), x.device());  // (k^l, D)
    std::vector<Tensor> indices, distances;
    for (int64_t b = 0; b < n;) {
      const int64_t p = node[size_t(order[size_t(b)])];
      int64_t e = b;
      while (e < n && node[size_t(order[size_t(e)])] == p) ++e;
      const NearestCentroid r = nearest_centroid(narrow(grouped, 0, b, e - b), narrow(table, 0, p * k, k));
      indices.push_back(r.index);
      distances.push_back(r.distance);
      b = e;
    }
    const std::vector<double> child = host(cat(indices, 0)), dist = host(cat(distances, 0));
    for (int64_t i = 0; i < n; ++i) {
      const size_t row = size_t(order[size_t(i)]);
      node[row] = node[row] * k + int64_t(child[size_t(i)]);
      if (level_inertia) (*level_inertia)[size_t(l - 1)] += dist[size_t(i)];
    }
  }
  return Tensor::from_vector(node, {n});
}

VisualTokenizer::VisualTokenizer(int64_t levels, int64_t k, int64_t dim) {
  check_visual_tree(levels, k, "VisualTokenizer");
  VB_CHECK(dim >= 1, "VisualTokenizer: dim = {} (expected ≥ 1)", dim);
  vocab.levels = levels;
  vocab.k = k;
  vocab.dim = dim;
  int64_t rows = 1;
  for (int64_t l = 1; l <= levels; ++l) {
    rows *= k;
    vocab.level_centroids.push_back(
        register_buffer(l == levels ? "centroids" : "level_" + std::to_string(l), zeros({rows, dim})));
  }
}

void VisualTokenizer::load(const VisualVocab& v) {
  VB_CHECK(v.levels == vocab.levels && v.k == vocab.k && v.dim == vocab.dim &&
               v.level_centroids.size() == vocab.level_centroids.size(),
           "VisualTokenizer: a vocabulary of levels {}, k {}, dim {} does not fit one made for levels {}, k {}, dim {}",
           v.levels, v.k, v.dim, vocab.levels, vocab.k, vocab.dim);
  NoGradGuard no_grad;
  for (size_t l = 0; l < v.level_centroids.size(); ++l) {
    Tensor& dst = vocab.level_centroids[l];
    VB_CHECK(v.level_centroids[l].shape() == dst.shape(), "VisualTokenizer: level {} table {} (expected {})", l + 1,
             shape_str(v.level_centroids[l].shape()), shape_str(dst.shape()));
    copy_(dst, vb::to(vb::to(v.level_centroids[l], dst.dtype()), dst.device()));
  }
}

Tensor VisualTokenizer::words(const Tensor& features) const {
  VB_CHECK(features.dim() == 3, "VisualTokenizer: expected frame features (B, T, D), got {}",
           shape_str(features.shape()));
  const int64_t b = features.size(0), t = features.size(1);
  if (b * t == 0) return zeros({b, t}, DType::Int64, features.device());
  const Tensor w = vocab.assign(reshape(features, {b * t, features.size(2)}));
  return vb::to(reshape(w, {b, t}), features.device());
}

}  // namespace vb::models
