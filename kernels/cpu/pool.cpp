// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y, Tensor& indices) { fail("cpu max_pool2d: not implemented yet"); }
void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, Tensor& gx) { fail("cpu max_pool2d_backward: not implemented yet"); }
void CpuBackend::avg_pool2d(const Tensor& x, const Pool2dParams& p, Tensor& y) { fail("cpu avg_pool2d: not implemented yet"); }
void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, Tensor& gx) { fail("cpu avg_pool2d_backward: not implemented yet"); }
void CpuBackend::adaptive_avg_pool2d(const Tensor& x, Tensor& y) { fail("cpu adaptive_avg_pool2d: not implemented yet"); }
void CpuBackend::adaptive_avg_pool2d_backward(const Tensor& gy, Tensor& gx) { fail("cpu adaptive_avg_pool2d_backward: not implemented yet"); }

}  // namespace vb
