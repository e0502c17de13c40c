// Dropout on the CPU backend's Philox stream:
//
//   out_i = x_i · [u_i ≥ float(p)] · scale,   u_i = philox_uniform(seed, offset + i),   scale = 1/(1 − p)
//
// i is the row-major index, so the mask depends only on (seed, offset + i): the same call on the CPU
// and here gives the same mask, bit for bit, and the backward is this same call on the gradient. The
// comparison is in float32 and scale is rounded once to float32, exactly as kernels/cpu/dropout.cpp
// computes them; p ≥ 1 zeroes everything.
//
// Cost per element: one Philox4x32-10 (10 rounds of 2 32-bit multiplies and a few xors, ≈ 100 integer
// ops) and one multiply; reads and writes sizeof(T) bytes.
//
// Launch: one thread per element, blocks of 256.
#include "kernels/cuda/nn.h"
#include "kernels/launch.h"
#include "kernels/cuda/nn_common.h"
#include "tensor/philox.h"

namespace vb::VB_KERNEL_NS {
namespace {

using nnk::load;
using nnk::store;

template <class T>
__global__ void dropout_kernel(const T* x, T* out, int64_t n, float threshold, float scale, bool drop_all,
                               uint64_t seed, uint64_t offset) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const bool keep = !drop_all && philox_uniform(seed, offset + static_cast<uint64_t>(i)) >= threshold;
  out[i] = keep ? store<T>(load(x[i]) * scale) : store<T>(0.0f);
}

}  // namespace

void dropout(const void* x, void* out, int64_t n, DType dtype, double p, uint64_t seed, uint64_t offset,
             rt::Stream stream) {
  nnk::check(p >= 0, "dropout: p must be in [0, 1], got {}", p);
  if (n == 0) return;
  const bool drop_all = p >= 1;
  const float scale = drop_all ? 0.0f : static_cast<float>(1.0 / (1.0 - p));
  nnk::dispatch_floating(dtype, "dropout", [&](auto tag) {
    using T = decltype(tag);
    launch(dropout_kernel<T>, {blocks_for(n, 256), 256, 0, stream}, static_cast<const T*>(x),
           static_cast<T*>(out), n, static_cast<float>(p), scale, drop_all, seed, offset);
  });
}

}  // namespace vb::VB_KERNEL_NS
