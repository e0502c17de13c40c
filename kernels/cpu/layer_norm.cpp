// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& y, Tensor& mean, Tensor& rstd) { fail("cpu layer_norm: not implemented yet"); }
void CpuBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) { fail("cpu layer_norm_backward: not implemented yet"); }

}  // namespace vb
