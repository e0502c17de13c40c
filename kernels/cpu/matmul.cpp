// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) { fail("cpu matmul: not implemented yet"); }

}  // namespace vb
