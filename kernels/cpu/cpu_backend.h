// The CPU backend: the reference every other backend is tested against, and what runs on a machine
// without a GPU. Its methods are defined across kernels/cpu/*.cpp, one file per op family.
#pragma once
#include "kernels/backend.h"

namespace vb {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  void copy(const Tensor& src, Tensor& dst) override;
  void fill(Tensor& dst, double value) override;
  void arange(Tensor& dst, double start, double step) override;
  void random(Tensor& dst, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) override;

  void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, Tensor& out) override;
  void matmul(const Tensor& a, const Tensor& b, Tensor& out) override;
  void matmul_bias(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) override;

  void softmax(const Tensor& x, Tensor& y, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& y, Tensor& mean,
                  Tensor& rstd) override;
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) override;

  void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) override;
  void embedding_backward(const Tensor& grad, const Tensor& ids, int64_t padding_idx, Tensor& gweight) override;
  void index_select(const Tensor& x, int dim, const Tensor& idx, Tensor& out) override;
  void index_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) override;
  void gather(const Tensor& x, int dim, const Tensor& idx, Tensor& out) override;
  void scatter_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) override;

  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double smoothing,
                     Tensor& loss, Tensor& lse) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                              const Tensor& grad_loss, int64_t ignore_index, double smoothing,
                              Tensor& glogits) override;
  void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) override;

  void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) override;
  void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) override;
  void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Conv2dParams& p, Tensor& gw) override;
  void max_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& indices) override;
  void max_pool2d_backward(const Tensor& gy, const Tensor& indices, Tensor& gx) override;
  void avg_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y) override;
  void avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, Tensor& gx) override;
  void adaptive_avg_pool2d(const Tensor& x, Tensor& y) override;
  void adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) override;
  void batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var,
                  bool training, double momentum, double eps, Tensor& y, Tensor& save_mean,
                  Tensor& save_invstd) override;
  void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& save_mean,
                           const Tensor& save_invstd, bool training, Tensor& gx, Tensor& gw, Tensor& gb) override;

  void adamw(const std::vector<AdamWSlot>& slots, const AdamWStep& step) override;
  void sum_squares(const std::vector<Tensor>& xs, Tensor& out) override;

  void nearest_centroid(const Tensor& x, const Tensor& centroids, Tensor& index, Tensor& distance) override;

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                 double dropout_p, uint64_t seed, uint64_t offset, Tensor& out, Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, const Tensor& out,
                          const Tensor& gout, const Tensor& lse, double scale, double dropout_p, uint64_t seed,
                          uint64_t offset, Tensor& gq, Tensor& gk, Tensor& gv) override;
};

CpuBackend& cpu_backend();

}  // namespace vb
