// The attention ladder: out = softmax(scale·Q·Kᵀ)·V per (batch, head), in three rungs
// (kernels/cuda/attention_ladder.h lists them; docs/KERNELS.md reads them with the emulator's counts).
//
// Math, per head, q, k, v (T, D):
//   S_ij = scale·Σ_x q_ix·k_jx,   m_i = max_j S_ij,   l_i = Σ_j exp(S_ij − m_i),   lse_i = m_i + log l_i
//   P_ij = exp(S_ij − m_i) / l_i,  out_ix = Σ_j P_ij·v_jx
//
//   rung  kernels  S and P live in                 a warp's request in the products
//   1     3        global memory (T² per head)      S: 32 threads, 32 rows of K: 32 sectors
//                                                    P·V: 32 consecutive columns of one V row: 4 sectors
//   2     1        registers and shared memory      tiles of K and V staged in shared memory
//   3     1        registers (tensor-core fragments) tiles by cp.async, fragments by ldmatrix
//
// Rung 1 here is the textbook form — three kernels, each one thread per result, the score matrix written
// out, softmaxed in place and read back: 4·T²·D FLOPs and 3 passes over T² floats of S per head (written by
// the first kernel, read and written by the second, read by the third), against rung 2's none. Rungs 2 and
// 3 call the framework's kernels (kernels/cuda/attention.cu, attention_mma.cu: their headers give their
// math, launch shapes and costs) without a mask or dropout.
#include "kernels/cuda/attention_ladder.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/launch.h"

namespace vb::VB_KERNEL_NS {
namespace {

// ---------------------------------------------------------------- rung 1: materialised scores
// S[h, i, j] = scale·q_i·k_j: thread (h, i, j), j fastest. A warp's 32 threads share i (q_i is a broadcast)
// and read 32 different rows k_j, D floats apart: every load request touches 32 sectors for 128 useful bytes.
__global__ void attn_scores(const float* q, const float* k, float* s, int bh, int t, int d, float scale) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(bh) * t * t) return;
  const int64_t j = idx % t, i = idx / t % t, h = idx / (int64_t(t) * t);
  const float* qi = q + (h * t + i) * d;
  const float* kj = k + (h * t + j) * d;
  float acc = 0.0f;
  for (int x = 0; x < d; ++x) acc += qi[x] * kj[x];
  s[idx] = acc * scale;
}

// Row r of S (T floats) → P in place, and lse[r]: thread r walks its row three times (max, sum, normalise).
// A warp's lanes read 32 rows at the same column, T floats apart: 32 sectors per request, like rung 1 of
// the layer-norm ladder.
__global__ void attn_softmax(float* s, float* lse, int rows, int t) {
  const int r = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (r >= rows) return;
  float* row = s + int64_t(r) * t;
  float m = -INFINITY;
  for (int j = 0; j < t; ++j) m = fmaxf(m, row[j]);
  float l = 0.0f;
  for (int j = 0; j < t; ++j) l += expf(row[j] - m);
  const float inv = 1.0f / l;
  for (int j = 0; j < t; ++j) row[j] = expf(row[j] - m) * inv;
  lse[r] = m + logf(l);
}

// out[h, i, x] = Σ_j P[h, i, j]·v[h, j, x]: thread (h, i, x), x fastest. A warp reads one P element (a
// broadcast) and 32 consecutive floats of a V row (4 sectors) per step.
__global__ void attn_pv(const float* p, const float* v, float* out, int bh, int t, int d) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(bh) * t * d) return;
  const int64_t x = idx % d, i = idx / d % t, h = idx / (int64_t(d) * t);
  const float* pi = p + (h * t + i) * t;
  const float* vh = v + h * t * d;
  float acc = 0.0f;
  for (int j = 0; j < t; ++j) acc += pi[j] * vh[int64_t(j) * d + x];
  out[idx] = acc;
}

void check(int rung, int first, int last, int64_t bh, int64_t t, int64_t d) {
  if (rung < first || rung > last)
    throw std::invalid_argument("attention ladder: no " + std::string(first == 3 ? "bf16" : "float32") + " rung " +
                                std::to_string(rung) + " (rungs " + std::to_string(first) + " … " +
                                std::to_string(last) + ")");
  if (bh < 0 || t < 0 || bh >= (int64_t(1) << 31) || t >= (int64_t(1) << 31))
    throw std::invalid_argument("attention ladder: shape B·H " + std::to_string(bh) + ", T " + std::to_string(t));
  if (const std::string need = ladder::attention_shape_requirement(rung, bh, t, d); !need.empty())
    throw std::invalid_argument("attention ladder: " + need + "; got B·H " + std::to_string(bh) + ", T " +
                                std::to_string(t) + ", D " + std::to_string(d));
}

// The framework kernels' inputs: one batch of bh heads, self-attention, no mask, no dropout.
template <class T>
AttentionInputs<T, T> framework_inputs(const T* q, const T* k, const T* v, int64_t bh, int64_t t, int64_t d,
                                       float scale) {
  AttentionInputs<T, T> in;
  in.shape = {1, bh, t, t, d};
  in.q = q;
  in.k = k;
  in.v = v;
  in.scale = scale;
  return in;
}

}  // namespace

void attention_ladder(int rung, const float* q, const float* k, const float* v, float* out, float* lse,
                      float* scores, int64_t bh, int64_t t, int64_t d, float scale, rt::Stream stream) {
  check(rung, 1, 2, bh, t, d);
  if (bh == 0 || t == 0) return;
  if (rung == 2) {
    attention_forward(framework_inputs(q, k, v, bh, t, d, scale), out, lse, stream);
    return;
  }
  const int b = int(bh), ti = int(t), di = int(d);
  launch(attn_scores, {dim3(blocks_for(bh * t * t, 256)), dim3(256), 0, stream}, q, k, scores, b, ti, di, scale);
  launch(attn_softmax, {dim3(blocks_for(bh * t, 128)), dim3(128), 0, stream}, scores, lse, int(bh * t), ti);
  launch(attn_pv, {dim3(blocks_for(bh * t * d, 256)), dim3(256), 0, stream}, scores, v, out, b, ti, di);
}

void attention_ladder_bf16(int rung, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                           __nv_bfloat16* out, float* lse, int64_t bh, int64_t t, int64_t d, float scale,
                           rt::Stream stream) {
  check(rung, 3, 3, bh, t, d);
  if (bh == 0 || t == 0) return;
  attention_forward(framework_inputs(q, k, v, bh, t, d, scale), out, lse, stream);
}

}  // namespace vb::VB_KERNEL_NS
