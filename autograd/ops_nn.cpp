// PLACEHOLDER until implemented: throws.
#include "autograd/op_utils.h"

namespace vb {

Tensor softmax(const Tensor& x, int dim) { fail("softmax: not implemented yet"); }
Tensor log_softmax(const Tensor& x, int dim) { fail("log_softmax: not implemented yet"); }
Tensor layer_norm(const Tensor& x, int normalized_dims, const Tensor& w, const Tensor& b, double eps) { fail("layer_norm: not implemented yet"); }
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) { fail("embedding: not implemented yet"); }
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing, Reduction reduction) { fail("cross_entropy: not implemented yet"); }
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction, const Tensor& pos_weight) { fail("binary_cross_entropy_with_logits: not implemented yet"); }
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) { fail("dropout: not implemented yet"); }
Tensor index_select(const Tensor& x, int dim, const Tensor& index) { fail("index_select: not implemented yet"); }
Tensor gather(const Tensor& x, int dim, const Tensor& index) { fail("gather: not implemented yet"); }
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p, std::optional<double> scale, Generator* gen) { fail("scaled_dot_product_attention: not implemented yet"); }

}  // namespace vb
