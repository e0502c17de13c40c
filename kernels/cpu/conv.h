// A switch of kernels/cpu/conv.cpp, for the tests and benchmarks that compare its two weight-gradient paths.
#pragma once

#include <cstdint>

namespace vb::cpu {

// Whether the weight gradient of a convolution with few output channels (one group, no horizontal dilation,
// up to 96 output channels: conv.cpp's gathered_weight_grad says which) reads its im2col rows where they lie in
// x (conv_backward_weight_gathered) instead of packing them: the same sums in the same order, so the same bits.
// On by default; returns the previous setting.
bool conv_gathered_weight_grad(bool on);
// Weight gradients that path has run in this process: so that a test knows which path it checked.
uint64_t conv_gathered_weight_grad_calls();

}  // namespace vb::cpu
