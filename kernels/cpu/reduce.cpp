// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, Tensor& out) { fail("cpu reduce: not implemented yet"); }

}  // namespace vb
