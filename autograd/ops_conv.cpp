// Convolution, pooling and batch normalisation, channels-last: images are (N, H, W, C), conv weights
// (O, KH, KW, C/groups). The kernels are in kernels/*/conv, pool and batch_norm.
#include "autograd/autocast.h"
#include "autograd/op_utils.h"

namespace vb {

using detail::describe;

namespace {

// Output length of a sliding window: (in + 2·pad − dilation·(k − 1) − 1)/stride + 1.
int64_t window_count(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = in + 2 * pad - dilation * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

void check_image(const char* op, const Tensor& x) {
  detail::check_floating(op, x);
  VB_CHECK(x.dim() == 4, "{}: input must be 4-d channels-last (N, H, W, C), got {}", op, describe(x));
}

// x's data as a contiguous (M, C) matrix (a view when x is contiguous), recorded by no autograd.
Tensor as_rows(const Tensor& x, int64_t M, int64_t C) {
  Tensor d = detach(x);
  if (!d.is_contiguous()) {
    d = Tensor::empty(x.shape(), x.dtype(), x.device());
    backend(x.device()).copy(x, d);
  }
  return d.as_strided({M, C}, {C, 1}, d.offset());
}

}  // namespace

// ---------------------------------------------------------------- conv2d

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  // Autocast: on a GPU, cast in and out; on the CPU, x and w are cast outside the graph and the kernels
  // return float32 results of the low operands (as bmm does: autograd/ops_linalg.cpp), the bias float32.
  const std::optional<DType> low = autocast_dtype({&x, &w, &b});
  if (low && !x.device().is_cpu())
    return to(conv2d(to(x, *low), to(w, *low), b.defined() ? to(b, *low) : b, p), DType::Float32);
  check_image("conv2d", x);
  detail::check_floating("conv2d", w, "weight");
  detail::check_same_device("conv2d", {x, w, b});
  detail::check_same_dtype("conv2d", {x, w, b});
  VB_CHECK(w.dim() == 4, "conv2d: weight must be 4-d (O, KH, KW, C/groups), got {}", describe(w));
  VB_CHECK(p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 &&
               p.pad_h >= 0 && p.pad_w >= 0,
           "conv2d: groups, stride and dilation must be positive and padding non-negative, got groups={} "
           "stride=({}, {}) padding=({}, {}) dilation=({}, {})",
           p.groups, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t O = w.size(0), KH = w.size(1), KW = w.size(2);
  VB_CHECK(C > 0 && C % p.groups == 0 && O % p.groups == 0,
           "conv2d: groups={} must divide the input channels (x {}) and the output channels (weight {})", p.groups,
           describe(x), describe(w));
  VB_CHECK(w.size(3) == C / p.groups && KH > 0 && KW > 0,
           "conv2d: weight {} does not fit input {}: expected (O, KH, KW, {}) for {} channels in {} groups",
           describe(w), describe(x), C / p.groups, C, p.groups);
  if (b.defined()) {
    VB_CHECK(b.dim() == 1 && b.size(0) == O, "conv2d: bias must be ({}) for weight {}, got {}", O, describe(w),
             describe(b));
  }
  const int64_t OH = window_count(H, KH, p.stride_h, p.pad_h, p.dilation_h);
  const int64_t OW = window_count(W, KW, p.stride_w, p.pad_w, p.dilation_w);
  VB_CHECK(OH > 0 && OW > 0,
           "conv2d: input {} is smaller than the (dilated) kernel {}x{} with padding ({}, {}) and dilation ({}, {}); "
           "the output would be {}x{}",
           describe(x), KH, KW, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, OH, OW);
  const Tensor xk = low ? to(detach(x), *low) : x, wk = low ? autocast_weight(w, *low) : w;  // (cached: autocast.h)
  Tensor y = Tensor::empty({N, OH, OW, O}, x.dtype(), x.device());
  backend(x.device()).conv2d(xk, wk, b, p, y);

  // Each gradient needs only the other operand: keep x only when w needs a gradient and vice versa.
  const Tensor saved_x = w.requires_grad() ? detach(xk) : Tensor();
  const Tensor saved_w = x.requires_grad() ? detach(wk) : Tensor();
  const Shape x_shape = x.shape(), w_shape = w.shape();
  return record(y, "conv2d", {x, w, b}, [=](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx, gw, gb;
    const Tensor gk = low ? to(g, *low) : g;  // float32 gradients of low operands, as in the forward
    if (self.needs(0)) {
      gx = Tensor::empty(x_shape, g.dtype(), g.device());
      backend(g.device()).conv2d_backward_input(gk, saved_w, p, gx);
    }
    if (self.needs(1)) {
      gw = Tensor::empty(w_shape, g.dtype(), g.device());
      backend(g.device()).conv2d_backward_weight(gk, saved_x, p, gw);
    }
    if (self.needs(2)) gb = sum(g, {0, 1, 2});
    return {gx, gw, gb};
  });
}

// ---------------------------------------------------------------- pooling

namespace {

Pool2dParams pool_params(const char* op, const Tensor& x, int kernel, int stride, int padding) {
  check_image(op, x);
  VB_CHECK(kernel > 0 && stride > 0 && padding >= 0, "{}: kernel and stride must be positive and padding "
           "non-negative, got kernel={} stride={} padding={}", op, kernel, stride, padding);
  VB_CHECK(2 * padding <= kernel, "{}: padding {} must be at most half the kernel size {}", op, padding, kernel);
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = padding;
  const int64_t OH = window_count(x.size(1), kernel, stride, padding, 1);
  const int64_t OW = window_count(x.size(2), kernel, stride, padding, 1);
  VB_CHECK(OH > 0 && OW > 0, "{}: input {} is smaller than the kernel {} with padding {}", op, describe(x), kernel,
           padding);
  return p;
}

Shape pooled_shape(const Tensor& x, const Pool2dParams& p) {
  return {x.size(0), window_count(x.size(1), p.kernel_h, p.stride_h, p.pad_h, 1),
          window_count(x.size(2), p.kernel_w, p.stride_w, p.pad_w, 1), x.size(3)};
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  const Pool2dParams p = pool_params("max_pool2d", x, kernel, stride, padding);
  const Shape shape = pooled_shape(x, p);
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(shape, DType::Int64, x.device());
  backend(x.device()).max_pool2d(x, p, y, indices);
  const Shape x_shape = x.shape();
  return record(y, "max_pool2d", {x}, [indices, x_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty(x_shape, g.dtype(), g.device());
    backend(g.device()).max_pool2d_backward(g, indices, gx);
    return {gx};
  });
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding, bool count_include_pad) {
  Pool2dParams p = pool_params("avg_pool2d", x, kernel, stride, padding);
  p.count_include_pad = count_include_pad;
  Tensor y = Tensor::empty(pooled_shape(x, p), x.dtype(), x.device());
  backend(x.device()).avg_pool2d(x, p, y);
  const Shape x_shape = x.shape();
  return record(y, "avg_pool2d", {x}, [p, x_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty(x_shape, g.dtype(), g.device());
    backend(g.device()).avg_pool2d_backward(g, p, gx);
    return {gx};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_image("adaptive_avg_pool2d", x);
  VB_CHECK(out_h > 0 && out_w > 0, "adaptive_avg_pool2d: output size must be positive, got {}x{}", out_h, out_w);
  VB_CHECK(x.size(1) > 0 && x.size(2) > 0, "adaptive_avg_pool2d: input {} has an empty plane", describe(x));
  Tensor y = Tensor::empty({x.size(0), out_h, out_w, x.size(3)}, x.dtype(), x.device());
  backend(x.device()).adaptive_avg_pool2d(x, y);
  const Shape x_shape = x.shape();
  return record(y, "adaptive_avg_pool2d", {x}, [x_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty(x_shape, g.dtype(), g.device());
    backend(g.device()).adaptive_avg_pool2d_backward(g, gx);
    return {gx};
  });
}

// ---------------------------------------------------------------- batch_norm

Tensor batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var,
                  bool training, double momentum, double eps) {
  detail::check_floating("batch_norm", x);
  VB_CHECK(x.dim() >= 2, "batch_norm: input must have at least 2 dims with channels last, got {}", describe(x));
  detail::check_same_device("batch_norm", {x, w, b, running_mean, running_var});
  detail::check_same_dtype("batch_norm", {x, w, b});
  const int64_t C = x.size(-1), M = C == 0 ? 0 : x.numel() / C;
  auto check_channels = [&](const Tensor& t, const char* what) {
    if (!t.defined()) return;
    detail::check_floating("batch_norm", t, what);
    VB_CHECK(t.dim() == 1 && t.size(0) == C, "batch_norm: {} must be ({}) for input {}, got {}", what, C,
             describe(x), describe(t));
  };
  check_channels(w, "weight");
  check_channels(b, "bias");
  check_channels(running_mean, "running_mean");
  check_channels(running_var, "running_var");
  for (const Tensor* r : {&running_mean, &running_var}) {
    VB_CHECK(!r->defined() || r->is_contiguous(), "batch_norm: running statistics must be contiguous, got {}",
             describe(*r));
  }
  VB_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm: give both running_mean and running_var or neither, got {} and {}", describe(running_mean),
           describe(running_var));
  VB_CHECK(training || running_mean.defined(), "batch_norm: eval mode needs running_mean and running_var");
  VB_CHECK(!training || M > 1, "batch_norm: training needs more than one value per channel, got input {}",
           describe(x));

  const Tensor x2 = as_rows(x, M, C);  // (M, C)
  Tensor y = Tensor::empty({M, C}, x.dtype(), x.device());
  // float64 inputs keep float64 statistics, so that gradient checks see exact x̂.
  const DType stat = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor save_mean = Tensor::empty({C}, stat, x.device()), save_invstd = Tensor::empty({C}, stat, x.device());
  backend(x.device()).batch_norm(x2, w, b, running_mean, running_var, training, momentum, eps, y, save_mean,
                                 save_invstd);
  y = y.as_strided(x.shape(), contiguous_strides(x.shape()), 0);

  const Tensor saved_w = w.defined() ? detach(w) : Tensor();
  return record(y, "batch_norm", {x, w, b}, [=](const Node& self, const Tensor& g) -> std::vector<Tensor> {
    const Tensor g2 = as_rows(g, M, C);
    Tensor gx = self.needs(0) ? Tensor::empty({M, C}, g.dtype(), g.device()) : Tensor();
    Tensor gw = self.needs(1) ? Tensor::empty({C}, g.dtype(), g.device()) : Tensor();
    Tensor gb = self.needs(2) ? Tensor::empty({C}, g.dtype(), g.device()) : Tensor();
    backend(g.device()).batch_norm_backward(g2, x2, saved_w, save_mean, save_invstd, training, gx, gw, gb);
    if (gx.defined()) gx = gx.as_strided(g.shape(), contiguous_strides(g.shape()), 0);
    return {gx, gw, gb};
  });
}

}  // namespace vb
