// The op library: every differentiable operation, as free functions on tensors. Each op checks its
// inputs (an Error names the op, shapes, dtypes and devices), allocates its output, runs the kernel of
// the inputs' backend (kernels/backend.h) and records its gradient (autograd/node.h). Definitions live
// in autograd/ops_<family>.cpp, each op's backward right below its forward.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "autograd/node.h"
#include "kernels/backend.h"
#include "tensor/philox.h"
#include "tensor/tensor.h"

namespace vb {

// ---- creation (ops_tensor.cpp) ----
Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = {});
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = {});
Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = {});
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// [start, end) in steps of step.
Tensor arange(double start, double end, double step = 1, DType dtype = DType::Int64, Device device = {});
Tensor arange(int64_t end, DType dtype = DType::Int64, Device device = {});
// Random draws from `gen` (the default generator when null), which advances by numel.
Tensor rand(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::Float32, Device device = {});
Tensor randn(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::Float32, Device device = {});
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* gen = nullptr, DType dtype = DType::Int64,
               Device device = {});
// The same draws for the rows of a batch that is split into shards (Generator::advance_rows): shape's
// leading dim is this shard's rows, and each row gets what a draw for the whole batch gives it.
Tensor rand_rows(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::Float32, Device device = {});
Tensor randint_rows(int64_t low, int64_t high, const Shape& shape, Generator* gen = nullptr, DType dtype = DType::Int64,
                    Device device = {});

// ---- dtype, device, copies (ops_tensor.cpp) ----
Tensor to(const Tensor& t, DType dtype);  // differentiable between floating dtypes
Tensor to(const Tensor& t, Device device);
Tensor contiguous(const Tensor& t);
Tensor clone(const Tensor& t);
Tensor detach(const Tensor& t);  // shares storage, records nothing
// dst ← src in place (same shape after broadcasting src, dtype converted). Not recorded: an error when
// dst requires grad while recording is on.
void copy_(Tensor& dst, const Tensor& src);
void fill_(Tensor& dst, double value);

// ---- views: share storage, no copy (ops_tensor.cpp) ----
Tensor view(const Tensor& t, const Shape& shape);     // one -1 allowed; an error when strides forbid a view
Tensor reshape(const Tensor& t, const Shape& shape);  // a view when possible, else a copy
Tensor flatten(const Tensor& t, int start_dim = 0, int end_dim = -1);
Tensor transpose(const Tensor& t, int dim0, int dim1);
Tensor permute(const Tensor& t, const std::vector<int>& dims);
Tensor narrow(const Tensor& t, int dim, int64_t start, int64_t length);
Tensor slice(const Tensor& t, int dim, int64_t start, int64_t end, int64_t step = 1);  // negative start/end wrap
Tensor select(const Tensor& t, int dim, int64_t index);
Tensor expand(const Tensor& t, const Shape& shape);  // -1 keeps a dim; new leading dims allowed
Tensor squeeze(const Tensor& t);
Tensor squeeze(const Tensor& t, int dim);
Tensor unsqueeze(const Tensor& t, int dim);

// ---- joining and splitting (ops_tensor.cpp) ----
Tensor cat(const std::vector<Tensor>& tensors, int dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int dim = 0);
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int dim = 0);  // views; the last may be shorter
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int dim = 0);

// ---- broadcasting helpers (ops_tensor.cpp) ----
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums t down to `shape` (the inverse of broadcasting): what every broadcasting op's backward needs.
Tensor sum_to(const Tensor& t, const Shape& shape);

// ---- elementwise (ops_elementwise.cpp); binary ops broadcast like PyTorch; both sides one dtype ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s − a
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
// Comparisons and logic write bool and record nothing.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double s);
Tensor gt(const Tensor& a, double s);
Tensor lt(const Tensor& a, double s);
Tensor logical_not(const Tensor& a);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // broadcasts all three
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// ---- reductions (ops_reduce.cpp); dims may be negative; an empty dims list means all dims ----
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor amax(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor argmax(const Tensor& x, int dim, bool keepdim = false);  // int64, not differentiable
// Variance with Bessel's correction when unbiased (divides by N − 1), else biased (N).
Tensor var(const Tensor& x, const std::vector<int>& dims, bool unbiased = true, bool keepdim = false);

// ---- linear algebra (ops_linalg.cpp) ----
// PyTorch's matmul: 1-d operands are promoted and the added dim removed; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (…, in) · wᵀ (out, in) + b (out).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {});
// k-means' assignment: for each row of x (N, D), the nearest row of centroids (K ≥ 1, D) in squared
// Euclidean distance. index (N) int64, ties to the smallest index; distance (N) the squared distance to
// it, float32 (float64 for float64 x). The same bits on every device (Backend::nearest_centroid). Not
// differentiable: the outputs record nothing.
struct NearestCentroid {
  Tensor index, distance;
};
NearestCentroid nearest_centroid(const Tensor& x, const Tensor& centroids);

// ---- neural-network functions (ops_nn.cpp) ----
Tensor softmax(const Tensor& x, int dim = -1);
Tensor log_softmax(const Tensor& x, int dim = -1);
// Normalises over the last normalized_dims dims; w and b have those dims' shape (or are undefined).
Tensor layer_norm(const Tensor& x, int normalized_dims, const Tensor& w, const Tensor& b, double eps = 1e-5);
// weight (V, H), ids any shape of int32/int64 → (…ids, H). padding_idx: that row's gradient stays 0.
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);
enum class Reduction { Mean, Sum, None };
// logits (N, C) or (…, C) with target of the leading shape (int64). Mean divides by the number of
// targets that are not ignore_index.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, Reduction reduction = Reduction::Mean);
// max(x, 0) − x·y + log(1 + exp(−|x|)), optionally weighted; target of the logits' shape and dtype.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::Mean,
                                        const Tensor& pos_weight = {});
// In training, zeroes each element with probability p and scales the rest by 1/(1 − p).
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);
Tensor index_select(const Tensor& x, int dim, const Tensor& index);
Tensor gather(const Tensor& x, int dim, const Tensor& index);
// q (B, H, Tq, D), k and v (B, H, Tk, D). mask: bool (true = may attend) or float (added to the scores),
// broadcastable to (B, H, Tq, Tk); scale defaults to 1/√D.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = {},
                                    double dropout_p = 0.0, std::optional<double> scale = std::nullopt,
                                    Generator* gen = nullptr);

// ---- convolution, pooling, batch norm: channels-last (ops_conv.cpp) ----
// x (N, H, W, C), w (O, KH, KW, C/groups), b (O) → (N, OH, OW, O).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = {}, const Conv2dParams& p = {});
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding = 0);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding = 0, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
// x (…, C) channels-last. In training uses batch statistics and updates the running ones in place.
Tensor batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var,
                  bool training, double momentum = 0.1, double eps = 1e-5);

}  // namespace vb
