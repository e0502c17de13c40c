// The three convolution passes as GEMM operands, shared by the float32-arithmetic kernel
// (kernels/cuda/conv.cu) and the tensor-core kernel (kernels/cuda/conv_mma.cu). See conv.cu's comment
// for the shapes and the math of each pass. Included only by kernel sources, after kernels/launch.h,
// so that everything lands in vb::VB_KERNEL_NS (cuda or emu).
//
// Each pass is C = A·B, A (m × k), B (k × n), per group g. A kernel thread stages one row of A's tile
// (an m index) and one row of Bᵀ's tile (an n index) that never change, so their index arithmetic
// (pixel → n, oh, ow or tap → kh, kw, c) is done once, in a_row / b_row; each K step it reads a run
// of R consecutive k with a_run / b_run, advancing k by increments (c, then kw, then kh — or o, then
// the tap) from one division at the start of the run instead of several per element. Elements outside
// the problem (rows past m or n, k past k_end, taps in the padding) read as 0. Where a run is R
// contiguous elements in memory (the forward's channels of one tap when R divides Cg, a filter's
// weights, the data gradient's output channels of one tap when R divides Og) and 16-byte aligned, it
// is read as whole 16-byte words. put() stores one element of C: y (+ bias), gx, or the weight
// gradient's float32 partial of a slice; put2() two adjacent columns of a row, as one access where they
// are aligned for it (the tensor-core kernel stores its rows of C a pair per lane).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/conv.h"
#include "kernels/cuda/load_store.h"
#include "kernels/launch.h"

// Unrolled by nvcc (register arrays stay in registers); the emulator's g++ build gains nothing from
// unrolling loops whose bodies meet at warp-wide operations, and compiles far faster without.
#if defined(__CUDACC__)
#define VB_CONV_GEMM_UNROLL _Pragma("unroll")
#else
#define VB_CONV_GEMM_UNROLL
#endif

namespace vb::VB_KERNEL_NS::conv_detail {

// ---- whole 16-byte words: a run of R contiguous elements loaded (or zeroed) R·sizeof(T)/16 at a time ----

template <class T, int R>
inline constexpr bool kWordRuns = R * sizeof(T) % 16 == 0;

__device__ __forceinline__ bool word_aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Whether the run [k0, k0 + R) may be read as words from rows of `period` elements starting at a
// 16-byte aligned `base`: the run starts a group of R (so it stays inside one period when R divides
// it) and is whole or entirely past k_end.
template <class T, int R>
__device__ __forceinline__ bool word_run(const T* base, int64_t period, int64_t k0, int64_t k_end) {
  return kWordRuns<T, R> && period % R == 0 && k0 % R == 0 && (k0 >= k_end || k0 + R <= k_end) &&
         word_aligned(base);
}

template <class T, int R>
__device__ __forceinline__ void load_words(T (&v)[R], const T* src) {
  if constexpr (kWordRuns<T, R>) {
    uint4 words[R * sizeof(T) / 16];
    VB_CONV_GEMM_UNROLL
    for (int i = 0; i < int(R * sizeof(T) / 16); ++i) words[i] = reinterpret_cast<const uint4*>(src)[i];
    memcpy(v, words, sizeof(v));
  }
}

template <class T, int R>
__device__ __forceinline__ void zeros(T (&v)[R]) {
  VB_CONV_GEMM_UNROLL
  for (int e = 0; e < R; ++e) v[e] = store<T>(0.0f);
}

// ---- C's elements in pairs: an mma fragment holds two adjacent columns of a row ----

// p[0] = v0, p[1] = v1 as one access of 2·sizeof(T) bytes when p is aligned for it; false (nothing
// stored) when it is not.
template <class T>
__device__ __forceinline__ bool store_pair(T* p, float v0, float v1) {
  // One word of both values (a struct of two T would be stored member by member).
  using Word = std::conditional_t<sizeof(T) == 2, std::uint32_t, uint2>;
  static_assert(sizeof(Word) == 2 * sizeof(T), "a pair is one word");
  if (reinterpret_cast<std::uintptr_t>(p) % sizeof(Word) != 0) return false;
  const T pair[2] = {store<T>(v0), store<T>(v1)};
  Word word;
  memcpy(&word, pair, sizeof(word));
  *reinterpret_cast<Word*>(p) = word;
  return true;
}

// Advances k = (kh, kw, channel), channel fastest, to the next k of a run; true when the tap changed.
__device__ __forceinline__ bool next_k(int& channel, int& kw, int& kh, int channels, int KW) {
  if (++channel < channels) return false;
  channel = 0;
  if (++kw == KW) {
    kw = 0;
    ++kh;
  }
  return true;
}

// Forward. A[(n, oh, ow), (kh, kw, c)] = x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, g·Cg + c];
// B[(kh, kw, c), o] = w[g·Og + o, kh, kw, c]; out y[(n, oh, ow), g·Og + o] (+ bias).
template <class T>
struct Forward {
  using Elem = T;
  ConvShape s;
  const T *x, *w, *bias;
  T* y;
  struct ARow {
    const T* x_n;  // x at image n, channel g·Cg
    int ih0, iw0;  // oh·sh − ph, ow·sw − pw
    bool valid;
  };
  struct BRow {
    const T* w_o;  // filter g·Og + o
    bool valid;
  };
  __device__ int64_t m() const { return s.N * s.OH * s.OW; }
  __device__ int64_t n() const { return s.O / s.groups; }
  __device__ int64_t k() const { return s.KH * s.KW * (s.C / s.groups); }
  __device__ ARow a_row(int g, int64_t row) const {
    if (row >= m()) return {x, 0, 0, false};
    const int64_t ow = row % s.OW, oh = row / s.OW % s.OH, nn = row / (s.OW * s.OH);
    return {x + nn * s.H * s.W * s.C + g * (s.C / s.groups), int(oh * s.stride_h - s.pad_h),
            int(ow * s.stride_w - s.pad_w), true};
  }
  template <int R>
  __device__ void a_run(const ARow& r, int64_t k0, int64_t k_end, T (&v)[R]) const {
    const int Cg = int(s.C / s.groups);
    int c = int(k0 % Cg), tap = int(k0 / Cg), kh = tap / int(s.KW), kw = tap % int(s.KW);
    if (word_run<T, R>(x, Cg, k0, k_end) && s.C % R == 0) {  // one tap, R contiguous channels
      const int ih = r.ih0 + kh * s.dilation_h, iw = r.iw0 + kw * s.dilation_w;
      if (r.valid && k0 < k_end && ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
        load_words(v, r.x_n + (int64_t(ih) * s.W + iw) * s.C + c);
      else
        zeros(v);
      return;
    }
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) {
      const int ih = r.ih0 + kh * s.dilation_h, iw = r.iw0 + kw * s.dilation_w;
      const bool inside = r.valid && k0 + e < k_end && ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
      v[e] = inside ? r.x_n[(int64_t(ih) * s.W + iw) * s.C + c] : store<T>(0.0f);
      next_k(c, kw, kh, Cg, int(s.KW));
    }
  }
  __device__ BRow b_row(int g, int64_t o) const { return {w + (g * n() + o) * k(), o < n()}; }
  template <int R>
  __device__ void b_run(const BRow& r, int64_t k0, int64_t k_end, T (&v)[R]) const {
    if (word_run<T, R>(w, k(), k0, k_end)) {  // a filter's K weights are contiguous
      if (r.valid && k0 < k_end)
        load_words(v, r.w_o + k0);
      else
        zeros(v);
      return;
    }
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) v[e] = r.valid && k0 + e < k_end ? r.w_o[k0 + e] : store<T>(0.0f);
  }
  __device__ void put(int g, int, int64_t row, int64_t o, float acc) const {
    const int64_t oc = g * n() + o;
    y[row * s.O + oc] = store<T>(acc + (bias ? load(bias[oc]) : 0.0f));
  }
  // Columns o and o + 1 of one row (o + 1 may lie past n()): one store where both exist and are aligned.
  __device__ void put2(int g, int slice, int64_t row, int64_t o, float acc0, float acc1) const {
    const int64_t oc = g * n() + o;
    if (o + 1 < n() && store_pair(y + row * s.O + oc, acc0 + (bias ? load(bias[oc]) : 0.0f),
                                  acc1 + (bias ? load(bias[oc + 1]) : 0.0f)))
      return;
    put(g, slice, row, o, acc0);
    if (o + 1 < n()) put(g, slice, row, o + 1, acc1);
  }
};

// Data gradient. A[(n, ih, iw), (kh, kw, o)] = gy[n, oh, ow, g·Og + o] for the output position whose
// tap (kh, kw) reads (ih, iw) — oh = (ih + ph − kh·dh)/sh when that divides and lands in [0, OH),
// likewise ow — else 0; B[(kh, kw, o), c] = w[g·Og + o, kh, kw, c]; out gx[(n, ih, iw), g·Cg + c].
template <class T>
struct BackwardInput {
  using Elem = T;
  ConvShape s;
  const T *gy, *w;
  T* gx;
  struct ARow {
    const T* gy_n;  // gy at image n, channel g·Og
    int ih, iw;
    bool valid;
  };
  struct BRow {
    const T* w_c;  // w at group g's first filter, channel c
    bool valid;
  };
  __device__ int64_t m() const { return s.N * s.H * s.W; }
  __device__ int64_t n() const { return s.C / s.groups; }
  __device__ int64_t k() const { return s.KH * s.KW * (s.O / s.groups); }
  __device__ ARow a_row(int g, int64_t row) const {
    if (row >= m()) return {gy, 0, 0, false};
    const int64_t iw = row % s.W, ih = row / s.W % s.H, nn = row / (s.W * s.H);
    return {gy + nn * s.OH * s.OW * s.O + g * (s.O / s.groups), int(ih), int(iw), true};
  }
  // The output position (oh·OW + ow) whose tap (kh, kw) reads (ih, iw), or −1.
  __device__ int64_t source(const ARow& r, int kh, int kw) const {
    const int th = r.ih + s.pad_h - kh * s.dilation_h, tw = r.iw + s.pad_w - kw * s.dilation_w;
    if (th < 0 || tw < 0 || th % s.stride_h != 0 || tw % s.stride_w != 0) return -1;
    const int oh = th / s.stride_h, ow = tw / s.stride_w;
    return oh < s.OH && ow < s.OW ? int64_t(oh) * s.OW + ow : -1;
  }
  template <int R>
  __device__ void a_run(const ARow& r, int64_t k0, int64_t k_end, T (&v)[R]) const {
    const int Og = int(s.O / s.groups);
    int o = int(k0 % Og), tap = int(k0 / Og), kh = tap / int(s.KW), kw = tap % int(s.KW);
    int64_t pos = r.valid && k0 < k_end ? source(r, kh, kw) : -1;
    if (word_run<T, R>(gy, Og, k0, k_end) && s.O % R == 0) {  // one tap, R contiguous output channels
      if (pos >= 0)
        load_words(v, r.gy_n + pos * s.O + o);
      else
        zeros(v);
      return;
    }
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) {
      v[e] = pos >= 0 && k0 + e < k_end ? r.gy_n[pos * s.O + o] : store<T>(0.0f);
      if (next_k(o, kw, kh, Og, int(s.KW))) pos = r.valid && kh < s.KH ? source(r, kh, kw) : -1;
    }
  }
  __device__ BRow b_row(int g, int64_t c) const {
    return {w + g * (s.O / s.groups) * s.KH * s.KW * n() + c, c < n()};
  }
  template <int R>
  __device__ void b_run(const BRow& r, int64_t k0, int64_t k_end, T (&v)[R]) const {
    const int Og = int(s.O / s.groups), taps = int(s.KH * s.KW);
    int o = int(k0 % Og), tap = int(k0 / Og);
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) {
      v[e] = r.valid && k0 + e < k_end ? r.w_c[(int64_t(o) * taps + tap) * n()] : store<T>(0.0f);
      if (++o == Og) {
        o = 0;
        ++tap;
      }
    }
  }
  __device__ void put(int g, int, int64_t row, int64_t c, float acc) const {
    gx[row * s.C + g * n() + c] = store<T>(acc);
  }
  __device__ void put2(int g, int slice, int64_t row, int64_t c, float acc0, float acc1) const {
    if (c + 1 < n() && store_pair(gx + row * s.C + g * n() + c, acc0, acc1)) return;
    put(g, slice, row, c, acc0);
    if (c + 1 < n()) put(g, slice, row, c + 1, acc1);
  }
};

// Weight gradient. A[o, (n, oh, ow)] = gy[n, oh, ow, g·Og + o]; B[(n, oh, ow), (kh, kw, c)] = the
// receptive field x[n, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw, g·Cg + c]; out the float32 partial of
// slice `slice`, partial[slice, g·Og + o, (kh, kw, c)].
template <class T>
struct BackwardWeight {
  using Elem = T;
  ConvShape s;
  const T *gy, *x;
  float* partial;  // (slices, O, KH·KW·Cg)
  struct ARow {
    const T* gy_o;  // gy at channel g·Og + o; pixel p at gy_o[p·O]
    bool valid;
  };
  struct BRow {
    const T* x_c;    // x at channel g·Cg + c
    int dh, dw;      // kh·dh − ph, kw·dw − pw
    bool valid;
  };
  __device__ int64_t m() const { return s.O / s.groups; }
  __device__ int64_t n() const { return s.KH * s.KW * (s.C / s.groups); }
  __device__ int64_t k() const { return s.N * s.OH * s.OW; }
  __device__ ARow a_row(int g, int64_t o) const { return {gy + g * m() + o, o < m()}; }
  template <int R>
  __device__ void a_run(const ARow& r, int64_t p0, int64_t p_end, T (&v)[R]) const {
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) v[e] = r.valid && p0 + e < p_end ? r.gy_o[(p0 + e) * s.O] : store<T>(0.0f);
  }
  __device__ BRow b_row(int g, int64_t kk) const {
    if (kk >= n()) return {x, 0, 0, false};
    const int64_t Cg = s.C / s.groups, c = kk % Cg, tap = kk / Cg, kh = tap / s.KW, kw = tap % s.KW;
    return {x + g * Cg + c, int(kh * s.dilation_h - s.pad_h), int(kw * s.dilation_w - s.pad_w), true};
  }
  template <int R>
  __device__ void b_run(const BRow& r, int64_t p0, int64_t p_end, T (&v)[R]) const {
    int64_t ow = p0 % s.OW, oh = p0 / s.OW % s.OH, nn = p0 / (s.OW * s.OH);
    VB_CONV_GEMM_UNROLL
    for (int e = 0; e < R; ++e) {
      const int64_t ih = oh * s.stride_h + r.dh, iw = ow * s.stride_w + r.dw;
      const bool inside = r.valid && p0 + e < p_end && ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
      v[e] = inside ? r.x_c[((nn * s.H + ih) * s.W + iw) * s.C] : store<T>(0.0f);
      if (++ow == s.OW) {
        ow = 0;
        if (++oh == s.OH) {
          oh = 0;
          ++nn;
        }
      }
    }
  }
  __device__ void put(int g, int slice, int64_t o, int64_t kk, float acc) const {
    partial[(slice * s.O + g * m() + o) * n() + kk] = acc;
  }
  __device__ void put2(int g, int slice, int64_t o, int64_t kk, float acc0, float acc1) const {
    if (kk + 1 < n() && store_pair(partial + (slice * s.O + g * m() + o) * n() + kk, acc0, acc1)) return;
    put(g, slice, o, kk, acc0);
    if (kk + 1 < n()) put(g, slice, o, kk + 1, acc1);
  }
};

}  // namespace vb::VB_KERNEL_NS::conv_detail
