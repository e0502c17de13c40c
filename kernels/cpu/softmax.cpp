// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::softmax(const Tensor& x, Tensor& y, bool log) { fail("cpu softmax: not implemented yet"); }
void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, bool log) { fail("cpu softmax_backward: not implemented yet"); }

}  // namespace vb
