// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale, double dropout_p, uint64_t seed, uint64_t offset, Tensor& out, Tensor& lse) { fail("cpu attention: not implemented yet"); }
void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, const Tensor& out, const Tensor& gout, const Tensor& lse, double scale, double dropout_p, uint64_t seed, uint64_t offset, Tensor& gq, Tensor& gk, Tensor& gv) { fail("cpu attention_backward: not implemented yet"); }

}  // namespace vb
