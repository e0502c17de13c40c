// Parameter initialisation in place, as the reference models do it. Each draws from `gen` (the default
// generator when null).
#pragma once
#include "autograd/ops.h"

namespace vb::nn::init {

void normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);
void uniform_(Tensor& t, double low, double high, Generator* gen = nullptr);
void constant_(Tensor& t, double value);
// fan_in and fan_out of a Linear (out, in) or a channels-last conv (O, KH, KW, I/groups) weight.
std::pair<int64_t, int64_t> fans(const Tensor& w);
// Kaiming (He) normal with the ReLU gain √2: std = √2 / √fan, fan = fan_out (ResNet) or fan_in.
void kaiming_normal_(Tensor& t, bool fan_out, Generator* gen = nullptr);
// PyTorch's default for Linear and Conv2d: kaiming_uniform(a = √5) = U(−1/√fan_in, 1/√fan_in).
void default_uniform_(Tensor& t, int64_t fan_in, Generator* gen = nullptr);

}  // namespace vb::nn::init
