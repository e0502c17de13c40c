// The kernel emulator's self-test kernels: one small kernel per emulated feature, compiled both by
// nvcc (run on a GPU by tests/gpu) and under the emulator (tests/emu), each checked against a
// CPU-computed expectation, and the two against each other when a GPU is present.
#include "kernels/cuda/emu_selftest.h"

#include <cstring>

#include "kernels/launch.h"
#include "kernels/ptx.h"

namespace vb::VB_KERNEL_NS::selftest {
namespace {

constexpr unsigned full_mask = 0xffffffffu;

// One shuffle of each thread's value: in (threads) -> out (threads). Launch: 1 block of `threads`.
template <class T>
__global__ void shuffle_kernel(const T* in, T* out, int kind, int operand, int width) {
  const unsigned t = threadIdx.x;
  const T value = in[t];
  T result = value;
  switch (static_cast<ShuffleKind>(kind)) {
    case ShuffleKind::idx: result = __shfl_sync(full_mask, value, operand, width); break;
    case ShuffleKind::up: result = __shfl_up_sync(full_mask, value, static_cast<unsigned>(operand), width); break;
    case ShuffleKind::down: result = __shfl_down_sync(full_mask, value, static_cast<unsigned>(operand), width); break;
    case ShuffleKind::bfly: result = __shfl_xor_sync(full_mask, value, operand, width); break;
  }
  out[t] = result;
}

// Warp votes of predicate != 0: ballot, any, all per thread. Launch: 1 block of `threads`.
__global__ void vote_kernel(const int* predicate, unsigned* ballot, int* any, int* all) {
  const unsigned t = threadIdx.x;
  const int p = predicate[t] != 0;
  ballot[t] = __ballot_sync(full_mask, p);
  any[t] = __any_sync(full_mask, p);
  all[t] = __all_sync(full_mask, p);
}

// Seven warp reductions of in[t]; out is (7, threads). Launch: 1 block of `threads`.
__global__ void warp_reduce_kernel(const int* in, int* out) {
  const unsigned t = threadIdx.x, n = blockDim.x;
  const int v = in[t];
  const auto u = static_cast<unsigned>(v);
  out[0 * n + t] = __reduce_add_sync(full_mask, v);
  out[1 * n + t] = __reduce_min_sync(full_mask, v);
  out[2 * n + t] = __reduce_max_sync(full_mask, v);
  out[3 * n + t] = static_cast<int>(__reduce_add_sync(full_mask, u));
  out[4 * n + t] = static_cast<int>(__reduce_and_sync(full_mask, u));
  out[5 * n + t] = static_cast<int>(__reduce_or_sync(full_mask, u));
  out[6 * n + t] = static_cast<int>(__reduce_xor_sync(full_mask, u));
}

// For each thread, the lanes of its warp holding the same value. Launch: 1 block of `threads`.
__global__ void match_any_kernel(const int* in, unsigned* out) {
  out[threadIdx.x] = __match_any_sync(full_mask, in[threadIdx.x]);
}

// Each thread g of the grid applies every atomic once; the counters' final values (and the values
// atomicExch returned) are then fixed by the rules alone, whatever the order of the threads.
// Launch: atomic_blocks x atomic_threads.
__global__ void atomics_kernel(AtomicCounters* c, int* old_exch) {
  const int g = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&c->add_int, 1);
  atomicAdd(&c->add_unsigned, 3u);
  atomicAdd(&c->add_ull, 1ull << 33);
  atomicAdd(&c->add_float, 0.5f);  // sums of halves up to 2^24 are exact in any order
  atomicAdd(&c->add_double, 0.25);
  atomicAdd(&c->add_half, __float2half(1.0f));  // exact up to 2048
  if (g < 256) atomicAdd(&c->add_bf16, __float2bfloat16(1.0f));  // exact up to 256
  atomicSub(&c->sub_int, 3);
  const int v = (g * 7919) % 2048 - 1000;
  atomicMax(&c->max_int, v);
  atomicMin(&c->min_int, v);
  const unsigned u = static_cast<unsigned>(g) * 2654435761u;
  atomicMax(&c->max_unsigned, u);
  atomicMin(&c->min_unsigned, u);
  atomicMax(&c->max_ull, static_cast<unsigned long long>(g) << 40);
  atomicInc(&c->inc, vb::selftest::inc_limit);
  atomicDec(&c->dec, vb::selftest::dec_limit);
  if (g % 3 == 0 && g % 32 < 20) atomicAnd(&c->and_bits, ~(1u << (g % 32)));
  if (g % 5 == 0) atomicOr(&c->or_bits, 1u << (g % 29));
  atomicXor(&c->xor_bits, 1u << (g % 7));
  old_exch[g] = atomicExch(&c->exch, g);
  int old = c->cas_counter, assumed;
  do {
    assumed = old;
    old = atomicCAS(&c->cas_counter, assumed, assumed + 1);
  } while (old != assumed);
}

// out[b] = sum of the block's 256 inputs, by a tree in static shared memory. Launch: blocks x 256.
__global__ void block_sum_static_kernel(const float* in, float* out) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (unsigned stride = 128; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// out[b] = sum of the block's inputs, by a tree in dynamic shared memory.
// Launch: blocks x threads (a power of two), threads * 4 bytes of dynamic shared memory.
__global__ void block_sum_dynamic_kernel(const float* in, float* out) {
  VB_DYNAMIC_SHARED(float, partial);
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

template <class E>
__device__ std::uint32_t pack(E lo, E hi) {
  std::uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return l | (static_cast<std::uint32_t>(h) << 16);
}

// d (16x8) = a (16x16) b (16x8) + c by one mma.sync, each lane loading its fragments straight from
// global memory with the PTX ISA's layout (g = lane/4, t = lane%4). Launch: 1 block of 32.
template <class E>
__global__ void mma_kernel(const E* a, const E* b, const float* c, float* d) {
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  auto at = [&](int row, int col) { return a[row * 16 + col]; };
  const std::uint32_t ra[4] = {pack(at(g, 2 * t), at(g, 2 * t + 1)), pack(at(g + 8, 2 * t), at(g + 8, 2 * t + 1)),
                               pack(at(g, 2 * t + 8), at(g, 2 * t + 9)),
                               pack(at(g + 8, 2 * t + 8), at(g + 8, 2 * t + 9))};
  const std::uint32_t rb[2] = {pack(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
                               pack(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
  const float rc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  float rd[4];
  if constexpr (sizeof(E) == 2 && std::is_same_v<E, __half>)
    vb::ptx::mma_m16n8k16_f16(rd, ra, rb, rc);
  else
    vb::ptx::mma_m16n8k16_bf16(rd, ra, rb, rc);
  d[g * 8 + 2 * t] = rd[0];
  d[g * 8 + 2 * t + 1] = rd[1];
  d[(g + 8) * 8 + 2 * t] = rd[2];
  d[(g + 8) * 8 + 2 * t + 1] = rd[3];
}

// Each lane's registers after one ldmatrix of four 8x8 b16 matrices staged in shared memory;
// lane l points at row l%8 of matrix l/8. Launch: 1 block of 32.
__global__ void ldmatrix_kernel(const std::uint16_t* in, std::uint32_t* out, int matrices, int trans) {
  __shared__ __align__(16) std::uint16_t tile[4 * 64];
  const unsigned lane = threadIdx.x;
  for (int i = 0; i < 8; ++i) tile[lane * 8 + i] = in[lane * 8 + i];
  __syncthreads();
  std::uint32_t regs[4] = {0, 0, 0, 0};
  const void* row = &tile[(lane / 8) * 64 + (lane % 8) * 8];
  switch (matrices * 2 + trans) {
    case 2: vb::ptx::ldmatrix_x1(regs, row); break;
    case 3: vb::ptx::ldmatrix_x1_trans(regs, row); break;
    case 4: vb::ptx::ldmatrix_x2(regs, row); break;
    case 5: vb::ptx::ldmatrix_x2_trans(regs, row); break;
    case 8: vb::ptx::ldmatrix_x4(regs, row); break;
    case 9: vb::ptx::ldmatrix_x4_trans(regs, row); break;
  }
  for (int j = 0; j < matrices; ++j) out[lane * 4 + j] = regs[j];
}

// c (16x16) = a (16x16) b (16x16), row-major: a's A fragment by ldmatrix.x4 (lanes 0-15 point at
// rows 0-15 of columns 0-7, lanes 16-31 at columns 8-15); b, stored k-major, by ldmatrix.x4.trans
// (matrix j holds k rows 8(j%2).., n columns 8(j/2)..); then one mma.sync per 8-column half of c.
// Launch: 1 block of 32.
__global__ void ldmatrix_mma_kernel(const __half* a, const __half* b, float* c) {
  __shared__ __align__(16) __half sa[16 * 16];
  __shared__ __align__(16) __half sb[16 * 16];
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 8; ++i) {
    sa[lane * 8 + i] = a[lane * 8 + i];
    sb[lane * 8 + i] = b[lane * 8 + i];
  }
  __syncthreads();
  std::uint32_t ra[4], rb[4];
  vb::ptx::ldmatrix_x4(ra, &sa[(lane % 16) * 16 + (lane / 16) * 8]);
  vb::ptx::ldmatrix_x4_trans(rb, &sb[((lane / 8) % 2 * 8 + lane % 8) * 16 + (lane / 16) * 8]);
  const float zero[4] = {0, 0, 0, 0};
  for (int half = 0; half < 2; ++half) {
    const std::uint32_t bh[2] = {rb[2 * half], rb[2 * half + 1]};
    float d[4];
    vb::ptx::mma_m16n8k16_f16(d, ra, bh, zero);
    const int col = half * 8 + 2 * t;
    c[g * 16 + col] = d[0];
    c[g * 16 + col + 1] = d[1];
    c[(g + 8) * 16 + col] = d[2];
    c[(g + 8) * 16 + col + 1] = d[3];
  }
}

// out = in[0 .. valid) then zeros, 64 chunks of Bytes: thread t copies chunk t in group 0 and chunk
// 32 + t in group 1, waits for group 0 only, and writes out the first half (thread t the chunk of
// thread 31 - t, so the barrier matters), then waits for group 1 and writes the second half.
// Launch: 1 block of 32.
template <int Bytes>
__global__ void cp_async_kernel(const float* in, float* out, int valid) {
  constexpr int per = Bytes / 4;  // floats per chunk
  __shared__ __align__(16) float buffer[64 * per];
  const int t = static_cast<int>(threadIdx.x);
  for (int group = 0; group < 2; ++group) {
    const int first = (group * 32 + t) * per;
    const int src_bytes = (valid - first) * 4 < 0 ? 0 : ((valid - first) * 4 > Bytes ? Bytes : (valid - first) * 4);
    vb::ptx::cp_async<Bytes>(&buffer[first], src_bytes ? in + first : in, src_bytes);
    vb::ptx::cp_async_commit();
  }
  for (int group = 0; group < 2; ++group) {
    if (group == 0)
      vb::ptx::cp_async_wait<1>();
    else
      vb::ptx::cp_async_wait<0>();
    __syncthreads();
    const int first = (group * 32 + (31 - t)) * per;
    for (int i = 0; i < per; ++i) out[first + i] = buffer[first + i];
  }
}

// out[i] = factor * i for the first n threads. Launch: 1 block of 64.
__global__ void scale_kernel(float factor, int n, float* out) {
  const int i = static_cast<int>(threadIdx.x);
  if (i < n) out[i] = factor * static_cast<float>(i);
}

}  // namespace

void shuffle_int(const int* in, int* out, int threads, ShuffleKind kind, int operand, int width) {
  launch(shuffle_kernel<int>, {1, static_cast<unsigned>(threads)}, in, out, static_cast<int>(kind), operand, width);
}
void shuffle_double(const double* in, double* out, int threads, ShuffleKind kind, int operand, int width) {
  launch(shuffle_kernel<double>, {1, static_cast<unsigned>(threads)}, in, out, static_cast<int>(kind), operand,
         width);
}
void vote(const int* predicate, unsigned* ballot, int* any, int* all, int threads) {
  launch(vote_kernel, {1, static_cast<unsigned>(threads)}, predicate, ballot, any, all);
}
void warp_reduce(const int* in, int* out, int threads) {
  launch(warp_reduce_kernel, {1, static_cast<unsigned>(threads)}, in, out);
}
void match_any(const int* in, unsigned* out, int threads) {
  launch(match_any_kernel, {1, static_cast<unsigned>(threads)}, in, out);
}
void atomics(AtomicCounters* counters, int* old_exch) {
  launch(atomics_kernel, {vb::selftest::atomic_blocks, vb::selftest::atomic_threads}, counters, old_exch);
}
void block_sum_static(const float* in, float* out, int blocks) {
  launch(block_sum_static_kernel, {static_cast<unsigned>(blocks), 256}, in, out);
}
void block_sum_dynamic(const float* in, float* out, int blocks, int threads) {
  launch(block_sum_dynamic_kernel,
         {static_cast<unsigned>(blocks), static_cast<unsigned>(threads), threads * sizeof(float)}, in, out);
}
void mma_f16(const __half* a, const __half* b, const float* c, float* d) {
  launch(mma_kernel<__half>, {1, 32}, a, b, c, d);
}
void mma_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c, float* d) {
  launch(mma_kernel<__nv_bfloat16>, {1, 32}, a, b, c, d);
}
void ldmatrix(const std::uint16_t* in, std::uint32_t* out, int matrices, bool trans) {
  launch(ldmatrix_kernel, {1, 32}, in, out, matrices, trans);
}
void ldmatrix_mma(const __half* a, const __half* b, float* c) { launch(ldmatrix_mma_kernel, {1, 32}, a, b, c); }
void cp_async_copy(const float* in, float* out, int valid, int bytes) {
  if (bytes == 4) launch(cp_async_kernel<4>, {1, 32}, in, out, valid);
  if (bytes == 8) launch(cp_async_kernel<8>, {1, 32}, in, out, valid);
  if (bytes == 16) launch(cp_async_kernel<16>, {1, 32}, in, out, valid);
}
void argument_conversion(float* out, int factor, std::size_t n) { launch(scale_kernel, {1, 64}, factor, n, out); }

}  // namespace vb::VB_KERNEL_NS::selftest
