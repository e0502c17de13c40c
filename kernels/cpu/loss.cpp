// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double smoothing, Tensor& loss, Tensor& lse) { fail("cpu cross_entropy: not implemented yet"); }
void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& grad_loss, int64_t ignore_index, double smoothing, Tensor& glogits) { fail("cpu cross_entropy_backward: not implemented yet"); }

}  // namespace vb
