// The kernel interface: every primitive computation, declared once. Each backend (kernels/cpu/, and
// later the CUDA kernels run on a GPU or under the emulator) implements it; autograd/ops.cpp chooses the
// backend from the inputs' device, allocates outputs and records gradients.
//
// Conventions, for every method:
// - Outputs are allocated by the caller on the right device with the right dtype and shape, contiguous
//   unless a method says otherwise; the kernel writes every element of them.
// - Inputs may be non-contiguous (any strides, including 0 for broadcast dimensions) unless a method says
//   "contiguous". Elementwise inputs arrive already expanded to the output's shape.
// - Floating dtypes are float32, bfloat16, float16; half types are computed in float32.
// - Activations are channels-last: images are (N, H, W, C); conv weights are (O, KH, KW, C/groups).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vb {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Log1p, Sqrt, Rsqrt, Abs, Sign, Tanh, Sigmoid, Relu,
  GeluErf,    // x·Φ(x) = x/2·(1 + erf(x/√2))           (BERT)
  GeluTanh,   // x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))
  Pow,        // x^alpha
  AddScalar,  // x + alpha
  MulScalar,  // x · alpha
  RSubScalar, // alpha − x
  ClampMin,   // max(x, alpha)
  ClampMax,   // min(x, alpha)
  Not,        // logical not (bool)
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,  // output bool
  And, Or,                 // bool inputs and output
  // Fused gradient products, out = g · f'(x) (a = g, b = x or the forward output y):
  ReluGrad,      // g · [x > 0]
  GeluErfGrad,   // g · (Φ(x) + x·φ(x))
  GeluTanhGrad,  // g · d/dx gelu_tanh(x)
  SigmoidGrad,   // g · y(1 − y), b = y
  TanhGrad,      // g · (1 − y²), b = y
};

enum class ReduceOp : uint8_t { Sum, Mean, Amax, Amin, Argmax };

enum class RandomKind : uint8_t { Uniform, Normal, Randint };

struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
};

struct Pool2dParams {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // avg_pool2d only
};

// One tensor of a fused AdamW step: param and grad of the same shape and floating dtype, exp_avg and
// exp_avg_sq float32 of that shape, all contiguous; decay: decoupled weight decay applies to it.
struct AdamWSlot {
  Tensor param, grad, exp_avg, exp_avg_sq;
  bool decay = true;
};

// The step's scalars (train/optim.h's formula, torch.optim.AdamW's):
//   p ← p·(1 − lr·λ) (decay slots);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr / c1) · m / (√v / √c2 + ε),   c1 = 1 − β1ᵗ, c2 = 1 − β2ᵗ.
// Arithmetic in float32 with the scalars rounded once to float32, as the CUDA kernel does.
struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double bias_correction1 = 1, bias_correction2 = 1;  // c1, c2
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory and creation ----
  // dst[i] = convert(src[i]); same shape; both may be strided (cat writes into slices of its output).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  virtual void fill(Tensor& dst, double value) = 0;                          // dst contiguous
  virtual void arange(Tensor& dst, double start, double step) = 0;           // dst 1-d contiguous
  // Philox draws (tensor/philox.h): Uniform [a, b), Normal (mean a, std b), Randint [a, b).
  virtual void random(Tensor& dst, RandomKind kind, double a, double b, uint64_t seed, uint64_t offset) = 0;

  // ---- elementwise ----
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha) = 0;
  // a and b expanded to out's shape; comparisons write bool.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // out = cond ? a : b, all expanded to out's shape; cond is bool.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) = 0;

  // ---- reductions ----
  // Reduces x over `dims` (sorted, unique); out has x's shape with those dims set to 1 (keepdim).
  // Argmax takes one dim and writes int64 (the first maximal index).
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, Tensor& out) = 0;

  // ---- matrix products ----
  // out (Bt, M, N) = a (Bt, M, K) · b (Bt, K, N); a and b any strides (transposed views need no copy).
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // out = a·b + bias, bias (N) added to every row before the one rounding to out's dtype (the
  // accumulator's precision, as cuBLASLt's bias epilogue, which the GPU uses for it).
  virtual void matmul_bias(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out) = 0;

  // ---- normalisation and softmax (over the last dim of a contiguous (N, C) input) ----
  virtual void softmax(const Tensor& x, Tensor& y, bool log) = 0;
  // gx = y ⊙ (gy − Σ gy⊙y)  (softmax) or gy − exp(y)·Σ gy  (log_softmax)
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, bool log) = 0;
  // y = (x − mean)·rstd·w + b; mean and rstd (N) float32 saved for backward; w, b (C) may be undefined.
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& y, Tensor& mean,
                          Tensor& rstd) = 0;
  // gw, gb may be undefined when not needed.
  virtual void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) = 0;

  // ---- embedding and index ops ----
  // out (N, H) = weight (V, H)[ids (N)]; ids int32 or int64, each checked to lie in [0, V).
  virtual void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) = 0;
  // gweight (V, H) = Σ over i with ids[i] = v of grad[i] (rows equal to padding_idx stay 0; −1 = none).
  // Deterministic: the sum runs in index order.
  virtual void embedding_backward(const Tensor& grad, const Tensor& ids, int64_t padding_idx, Tensor& gweight) = 0;
  // out = x.index_select(dim, idx); idx 1-d int64.
  virtual void index_select(const Tensor& x, int dim, const Tensor& idx, Tensor& out) = 0;
  // out.index_select(dim, idx) += src (out contiguous, accumulated in index order).
  virtual void index_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) = 0;
  // out[..., i, ...] = x[..., idx[..., i, ...], ...] along dim; idx int64 with out's shape.
  virtual void gather(const Tensor& x, int dim, const Tensor& idx, Tensor& out) = 0;
  // out[..., idx[...], ...] += src[...] along dim (out contiguous).
  virtual void scatter_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) = 0;

  // ---- losses ----
  // Per row of logits (N, C) with int64 target (N): lse[i] = log Σ exp(logits[i]); loss[i] =
  // lse − (1−s)·logits[i, t] − s/C·Σ_j logits[i, j]; rows whose target == ignore_index get loss 0.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double smoothing,
                             Tensor& loss, Tensor& lse) = 0;
  // glogits[i, j] = grad_loss[i] · (softmax[i, j] − (1−s)·[j = t] − s/C); 0 for ignored rows.
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                      const Tensor& grad_loss, int64_t ignore_index, double smoothing,
                                      Tensor& glogits) = 0;

  // ---- dropout: out = x · [u ≥ p] / (1 − p), u = philox_uniform(seed, offset + i); the same call on the
  //      gradient is the backward ----
  virtual void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) = 0;

  // ---- convolution and pooling (channels-last) ----
  // x (N, H, W, C), w (O, KH, KW, C/groups), bias (O) or undefined → y (N, OH, OW, O).
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Tensor& y) = 0;
  virtual void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, Tensor& gx) = 0;
  virtual void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Conv2dParams& p, Tensor& gw) = 0;
  // y (N, OH, OW, C); indices (N, OH, OW, C) int64 hold the argmax as h·W + w within the input plane.
  virtual void max_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& indices) = 0;
  virtual void max_pool2d_backward(const Tensor& gy, const Tensor& indices, Tensor& gx) = 0;
  virtual void avg_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y) = 0;
  virtual void avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, Tensor& gx) = 0;
  // Output cell (i, j) averages rows floor(i·H/OH) .. ceil((i+1)·H/OH) − 1, likewise for columns.
  virtual void adaptive_avg_pool2d(const Tensor& x, Tensor& y) = 0;
  virtual void adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) = 0;
  // x (M, C) contiguous (an NHWC tensor flattened). Training: batch mean and biased variance normalise,
  // running_var is updated with the unbiased one: r ← (1 − momentum)·r + momentum·stat. Eval: running stats.
  // save_mean and save_invstd (C) float32 hold what normalised y.
  virtual void batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean,
                          Tensor& running_var, bool training, double momentum, double eps, Tensor& y,
                          Tensor& save_mean, Tensor& save_invstd) = 0;
  virtual void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& save_mean,
                                   const Tensor& save_invstd, bool training, Tensor& gx, Tensor& gw,
                                   Tensor& gb) = 0;

  // ---- attention ----
  // q (B, H, Tq, D), k and v (B, H, Tk, D), mask an additive float tensor expanded to (B, H, Tq, Tk) or
  // undefined. S = scale·q·kᵀ + mask; P = softmax(S); P' = dropout(P) with mask element
  // ((b·H + h)·Tq + i)·Tk + j drawn as in dropout; out = P'·v; lse (B, H, Tq) float32 = logsumexp(S).
  // Optimizer primitives. adamw: one fused step over every slot (in place on param, exp_avg, exp_avg_sq).
  virtual void adamw(const std::vector<AdamWSlot>& slots, const AdamWStep& step) = 0;
  // out (xs.size(),) float32: out[i] = Σ_j xs[i]_j², accumulated in (at least) float32 without
  // materialising the squares; xs floating and contiguous (global gradient norms read one small tensor).
  virtual void sum_squares(const std::vector<Tensor>& xs, Tensor& out) = 0;

  // ---- clustering ----
  // The nearest centroid of each row: x (N, D) and centroids (K ≥ 1, D) of one floating dtype;
  // index (N) int64 and distance (N) float32 (float64 for float64 x), contiguous.
  //   distance[i] = min_k Σ_d (x[i, d] − c[k, d])²,   index[i] = the smallest k attaining it.
  // Each sum runs over d = 0, 1, …, D − 1 in float32 (float64 for float64 x; half types are loaded to
  // float32) as acc ← fma(x − c, x − c, acc) from acc = 0, and k is taken in increasing order with a
  // strict <, on every backend: the same bits everywhere, so a feature gets the same index on every
  // device. A NaN distance never wins against a number; a row whose distances are all NaN gets index 0
  // and distance NaN.
  virtual void nearest_centroid(const Tensor& x, const Tensor& centroids, Tensor& index, Tensor& distance) = 0;

  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                         double dropout_p, uint64_t seed, uint64_t offset, Tensor& out, Tensor& lse) = 0;
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                  const Tensor& out, const Tensor& gout, const Tensor& lse, double scale,
                                  double dropout_p, uint64_t seed, uint64_t offset, Tensor& gq, Tensor& gk,
                                  Tensor& gv) = 0;
};

// The backend that runs kernels for tensors on `device`.
Backend& backend(Device device);
void register_backend(DeviceType type, Backend* b);

}  // namespace vb
