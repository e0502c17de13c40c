#include "nn/init.h"

#include <cmath>

namespace vb::nn::init {

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  NoGradGuard no_grad;
  copy_(t, add(mul(randn(t.shape(), gen, t.dtype(), t.device()), std), mean));
}

void uniform_(Tensor& t, double low, double high, Generator* gen) {
  NoGradGuard no_grad;
  copy_(t, add(mul(rand(t.shape(), gen, t.dtype(), t.device()), high - low), low));
}

void constant_(Tensor& t, double value) {
  NoGradGuard no_grad;
  fill_(t, value);
}

std::pair<int64_t, int64_t> fans(const Tensor& w) {
  VB_CHECK(w.dim() >= 2, "init: fan of a tensor of shape {} needs at least 2 dims", shape_str(w.shape()));
  // (out, in) or (O, KH, KW, I): receptive field = product of the middle dims.
  int64_t receptive = 1;
  for (int d = 1; d + 1 < w.dim(); ++d) receptive *= w.size(d);
  return {w.size(-1) * receptive, w.size(0) * receptive};
}

void kaiming_normal_(Tensor& t, bool fan_out, Generator* gen) {
  auto [in, out] = fans(t);
  normal_(t, 0.0, std::sqrt(2.0) / std::sqrt(double(fan_out ? out : in)), gen);
}

void default_uniform_(Tensor& t, int64_t fan_in, Generator* gen) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  uniform_(t, -bound, bound, gen);
}

}  // namespace vb::nn::init
