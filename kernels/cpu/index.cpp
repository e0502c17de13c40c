// PLACEHOLDER until implemented: throws.
#include "kernels/cpu/cpu_backend.h"

namespace vb {

void CpuBackend::embedding(const Tensor& weight, const Tensor& ids, Tensor& out) { fail("cpu embedding: not implemented yet"); }
void CpuBackend::embedding_backward(const Tensor& grad, const Tensor& ids, int64_t padding_idx, Tensor& gweight) { fail("cpu embedding_backward: not implemented yet"); }
void CpuBackend::index_select(const Tensor& x, int dim, const Tensor& idx, Tensor& out) { fail("cpu index_select: not implemented yet"); }
void CpuBackend::index_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) { fail("cpu index_add: not implemented yet"); }
void CpuBackend::gather(const Tensor& x, int dim, const Tensor& idx, Tensor& out) { fail("cpu gather: not implemented yet"); }
void CpuBackend::scatter_add(Tensor& out, int dim, const Tensor& idx, const Tensor& src) { fail("cpu scatter_add: not implemented yet"); }

}  // namespace vb
