// PLACEHOLDER until implemented: throws.
#include "autograd/op_utils.h"

namespace vb {

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) { fail("conv2d: not implemented yet"); }
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) { fail("max_pool2d: not implemented yet"); }
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding, bool count_include_pad) { fail("avg_pool2d: not implemented yet"); }
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) { fail("adaptive_avg_pool2d: not implemented yet"); }
Tensor batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps) { fail("batch_norm: not implemented yet"); }

}  // namespace vb
