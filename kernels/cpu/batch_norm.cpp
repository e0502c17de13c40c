// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps, Tensor& y, Tensor& save_mean, Tensor& save_invstd) { fail("cpu batch_norm: not implemented yet"); }
void CpuBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& save_mean, const Tensor& save_invstd, bool training, Tensor& gx, Tensor& gw, Tensor& gb) { fail("cpu batch_norm_backward: not implemented yet"); }

}  // namespace vb
