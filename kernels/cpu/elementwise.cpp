// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha) { fail("cpu unary: not implemented yet"); }
void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) { fail("cpu binary: not implemented yet"); }
void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) { fail("cpu where: not implemented yet"); }

}  // namespace vb
