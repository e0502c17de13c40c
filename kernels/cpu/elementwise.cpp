// Elementwise kernels on the CPU: unary maps, binary maps (arithmetic, comparisons, logic and the fused
// gradient products used by activation backwards), and where.
//
// Math (Φ, φ: standard normal cdf and pdf; k = √(2/π), c = 0.044715):
//   gelu_erf(x)  = x·Φ(x) = x/2·(1 + erf(x/√2))          d/dx = Φ(x) + x·φ(x)
//   gelu_tanh(x) = x/2·(1 + tanh(u)), u = k(x + c·x³)     d/dx = (1 + t)/2 + x/2·(1 − t²)·k(1 + 3c·x²), t = tanh(u)
//   sigmoid: y = 1/(1 + e^−x), dy/dx = y(1 − y);  tanh: dy/dx = 1 − y²;  relu: dy/dx = [x > 0]
// NaN propagates through maximum/minimum, clamp and relu as in PyTorch.
//
// Cost: one read per input and one write per output element (memory bound: 8–12 bytes per float32
// element for unary/binary, 13 for where); 1 FLOP for arithmetic, ~20 for erf/tanh/exp based ops.
//
// Inputs arrive expanded to out's shape (stride 0 on broadcast dims). cpu::for_each_strided hands out
// innermost runs; runs where every operand has stride 1 (or a broadcast operand has stride 0) take a
// plain loop the compiler vectorises. Half types are converted to float32 in registers, computed in
// float32 and rounded once on the store. float32 exp (exp, sigmoid), tanh and erfc (gelu's backward, and its
// forward below x = −6) use branch-free approximations below (exp and tanh ≤ 2 ulp, erfc ≤ 1.2e-7 relative as an
// approximation) so that those loops vectorise; float64 uses libm. gelu's float32 forward takes Φ on [−6, 6]
// from a fitted table of polynomial pieces (≤ 1.4e-7 relative, normal_cdf_table.h); below −6 the erfc form's
// exponent −z² carries float32's rounding of z² (≈ 2.5·2⁻²⁴·x², absolute), which exp turns into a relative error
// of Φ: up to 2.5e-5 at x = −13 (seen: 8.8e-6 at x = −12; tests/cpu/elementwise.cpp). A form 0.5·(1 + erf) would
// lose every digit below x ≈ −5.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/normal_cdf_table.h"

namespace vb {

namespace {

// The type arithmetic runs in: float32 for the half types, the type itself otherwise.
template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, bf16> || std::is_same_v<T, f16>, float, T>;

// ---- the strided maps: f takes and returns storage types ----

// The run loops below are flattened: f and everything it calls (exp, erfc, ...) are inlined into them, so
// that they vectorise. Without it g++ kept `g · gelu_erf_grad(x)` as a call per element: GELU's backward
// over 4M float32 took 60 ms on one thread of the dev VM, against 7 ms for the (inlined) forward.
#define VB_FLATTEN __attribute__((flatten))

template <typename X, typename O, typename F>
void map1(const Tensor& x, Tensor& out, F f) {
  const X* px = static_cast<const X*>(x.data_ptr());
  O* po = static_cast<O*>(out.data_ptr());
  cpu::for_each_strided<2>(out.shape(), {out.strides(), x.strides()}, [&](auto off, int64_t n, auto st) VB_FLATTEN {
    O* o = po + off[0];
    const X* a = px + off[1];
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(a[i * st[1]]);
    }
  });
}

template <typename A, typename B, typename O, typename F>
void map2(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const A* pa = static_cast<const A*>(a.data_ptr());
  const B* pb = static_cast<const B*>(b.data_ptr());
  O* po = static_cast<O*>(out.data_ptr());
  cpu::for_each_strided<3>(out.shape(), {out.strides(), a.strides(), b.strides()}, [&](auto off, int64_t n,
                                                                                      auto st) VB_FLATTEN {
    O* o = po + off[0];
    const A* x = pa + off[1];
    const B* y = pb + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // b broadcast along the run (a bias row, a scalar)
      const B yv = y[0];
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const A xv = x[0];
      for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
    }
  });
}

template <typename T>
void where_typed(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  const bool* pc = static_cast<const bool*>(cond.data_ptr());
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  T* po = static_cast<T*>(out.data_ptr());
  cpu::for_each_strided<4>(out.shape(), {out.strides(), cond.strides(), a.strides(), b.strides()},
                           [&](auto off, int64_t n, auto st) {
                             T* o = po + off[0];
                             const bool* c = pc + off[1];
                             const T* x = pa + off[2];
                             const T* y = pb + off[3];
                             if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
                               for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
                             } else {
                               for (int64_t i = 0; i < n; ++i)
                                 o[i * st[0]] = c[i * st[1]] ? x[i * st[2]] : y[i * st[3]];
                             }
                           });
}

// ---- exp and erf: libm for float64; for float32 branch-free forms the compiler vectorises (libm calls
//      would keep these loops scalar) ----

// a·b + c rounded once where the machine has FMA (every AVX2 and AVX-512 build), else twice. Written out rather
// than left to the compiler: GCC fuses a·b + c in C++ at -O2 and above (in ISO mode too) but not at -O1 or -O0,
// and other compilers choose differently, while the AVX-512 forms below repeat these functions' operations and
// must give their bits at every optimisation level (a sanitizer build at -O1 found the scalar tail of gelu
// 7.8e-6 away from the vector one). GCC still vectorises the loops: fmaf is a builtin it maps to VFMADD. The
// bits at -O3 are those GCC's own fusing gave (checked on exp, tanh, softmax and gelu's forward and backward
// outputs); its code for the loops is a little slower (the exp op alone, one thread of the Zen 4 VM, old and
// new library alternated: 1.38 → 1.45–1.47 ms; gelu forward + backward over 4 M values 3.7 → 3.8–4.1 ms).
inline float fmadd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// e^x = 2^n·e^r with n = round(x·log2 e), |r| ≤ ln2/2, Cephes' degree-6 polynomial for e^r (≤ 2 ulp).
// 2^n is applied as two factors so that n in [−150, 128] stays within normal exponents: results
// underflow to 0 and overflow to inf like expf; NaN stays NaN.
inline float vexp(float x) {
  const float lo = x < -104.0f ? -104.0f : x, xc = lo > 88.8f ? 88.8f : lo;  // NaN stays NaN
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer held in the low bits
  const float shifted = fmadd(xc, 1.44269504088896341f, kRound);
  const float n = shifted - kRound;
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  const float r = fmadd(n, 2.12194440e-4f, fmadd(-n, 0.693359375f, xc));  // xc − n·ln2, ln2 in two parts
  float p = 1.9875691500e-4f;
  p = fmadd(p, r, 1.3981999507e-3f);
  p = fmadd(p, r, 8.3334519073e-3f);
  p = fmadd(p, r, 4.1665795894e-2f);
  p = fmadd(p, r, 1.6666665459e-1f);
  p = fmadd(p, r, 5.0000001201e-1f);
  const float y = fmadd(r, p * r, r) + 1.0f;
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  return y * std::bit_cast<float>((n1 + 127) << 23) * std::bit_cast<float>((n2 + 127) << 23);
}

// erfc(z) for z ≥ 0 with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit): accurate in the tail,
// where 1 − erf would cancel. The steps are written out: a range-for over an initializer list of the
// coefficients kept GCC 12 from vectorising the loops that call this (gelu's backward ran 8× slower).
inline float verfc_nonneg(float z) {
  const float t = 1.0f / fmadd(z, 0.5f, 1.0f);
  float p = 0.17087277f;
  p = fmadd(p, t, -0.82215223f);
  p = fmadd(p, t, 1.48851587f);
  p = fmadd(p, t, -1.13520398f);
  p = fmadd(p, t, 0.27886807f);
  p = fmadd(p, t, -0.18628806f);
  p = fmadd(p, t, 0.09678418f);
  p = fmadd(p, t, 0.37409196f);
  p = fmadd(p, t, 1.00002368f);
  return t * vexp(fmadd(p, t, fmadd(-z, z, -1.26551223f)));  // t·e^(−z² − 1.26551223 + t·p)
}

// tanh: Cephes' odd polynomial for |x| < 0.625, else 1 − 2/(e^{2|x|} + 1) with x's sign (≤ 2 ulp).
inline float vtanh(float x) {
  const float a = std::fabs(x), z = x * x;
  const float small = x + x * z * ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                                     1.33314422036e-1f) * z - 3.33332819422e-1f);
  const float large = std::copysign(1.0f - 2.0f / (vexp(2.0f * a) + 1.0f), x);
  return a < 0.625f ? small : large;
}

template <typename C>
C tanh_(C x) {
  if constexpr (std::is_same_v<C, float>) return vtanh(x);
  else return std::tanh(x);
}

template <typename C>
C exp_(C x) {
  if constexpr (std::is_same_v<C, float>) return vexp(x);
  else return std::exp(x);
}

// Φ(x) = ½·erfc(−x/√2), through erfc so that the left tail keeps its relative accuracy. GELU's backward uses it;
// the float32 forward uses gelu_erf_f32 below.
template <typename C>
C normal_cdf(C x) {
  if constexpr (std::is_same_v<C, float>) {
    const float tail = 0.5f * verfc_nonneg(std::fabs(x) * float(M_SQRT1_2));
    return x < 0 ? tail : 1.0f - tail;
  } else {
    return C(0.5) * std::erfc(-x * C(M_SQRT1_2));
  }
}

// Φ(z) for z in [−6, 0] (below: Φ(−6)) from the fitted table (kernels/cpu/normal_cdf_table.h, made by
// scripts/fit_normal_cdf.py): piece i = ⌊(z + 6)·16/3⌋ holds a degree-6 polynomial in u = z − c_i around its
// centre c_i = i·3/16 − 5.90625. Relative error ≤ 1.4e-7 over the range, the float32 evaluation included: no
// division, no exp, so nothing rounds an exponent (compare verfc_nonneg's). Every a·b + c is one fmaf, and
// the 16-wide form (gelu_erf16) performs the same operations, so the two give the same bits. NaN takes the
// clamp's −6 here, and gelu_erf_f32's multiply by x returns it.
constexpr float kCdfLow = -6.0f, kCdfScale = 16.0f / 3.0f, kCdfWidth = 0.1875f, kCdfFirstCentre = -5.90625f;
inline float normal_cdf_left(float z) {
  const float zc = z > kCdfLow ? z : kCdfLow;
  const int i = std::min(int(std::fmaf(zc, kCdfScale, float(cpu::kNormalCdfPieces))), cpu::kNormalCdfPieces - 1);
  const float u = zc - std::fmaf(float(i), kCdfWidth, kCdfFirstCentre);
  float p = cpu::kNormalCdfPoly[6][i];
  for (int j = 5; j >= 0; --j) p = std::fmaf(p, u, cpu::kNormalCdfPoly[j][i]);
  return p;
}

// gelu(x) = x·Φ(x) for float32: Φ(−|x|) from the table, 1 − Φ(−|x|) for x ≥ 0. Below x = −6, where the table
// stops, Φ's relative accuracy is kept by normal_cdf's erfc form (Φ(−6) ≈ 1e-9; above +6, 1 − Φ(−6) rounds to
// 1 as Φ(6) does).
inline float gelu_erf_f32(float x) {
  if (x < kCdfLow) return x * normal_cdf(x);
  const float p = normal_cdf_left(-std::fabs(x));
  return x * (x < 0 ? p : 1.0f - p);
}

#if defined(__AVX512F__)
// gelu for 16 floats, operation for operation as the scalar forms above, so that the results are theirs bit
// for bit: a training run's trajectory does not depend on whether a tensor was contiguous
// (tests/cpu/elementwise.cpp checks the two paths for equality).
inline __m512 splat(float v) { return _mm512_set1_ps(v); }

// x·Φ(x) through normal_cdf's erfc form (verfc_nonneg and vexp), for the lanes below −6: each fmadd of the
// scalar functions is one FMA here, each other operation the same operation. 2^n is one VSCALEFPS instead of
// integer exponent arithmetic and two multiplies (the same result: y·2^n1 is a normal float, so the second
// multiply and VSCALEFPS round once, alike).
inline __m512 vexp16(__m512 x) {
  constexpr float kRound = 12582912.0f;  // 1.5·2^23, as vexp
  const __m512 xc = _mm512_min_ps(splat(88.8f), _mm512_max_ps(splat(-104.0f), x));  // NaN stays NaN
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, splat(1.44269504088896341f), splat(kRound)), splat(kRound));
  const __m512 r = _mm512_fmadd_ps(n, splat(2.12194440e-4f), _mm512_fnmadd_ps(n, splat(0.693359375f), xc));
  __m512 p = splat(1.9875691500e-4f);
  for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm512_fmadd_ps(p, r, splat(c));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(r, _mm512_mul_ps(p, r), r), splat(1.0f));
  return _mm512_scalef_ps(y, n);
}

inline __m512 gelu_erf_tail16(__m512 x) {
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), splat(float(M_SQRT1_2)));
  const __m512 t = _mm512_div_ps(splat(1.0f), _mm512_fmadd_ps(z, splat(0.5f), splat(1.0f)));
  __m512 p = splat(0.17087277f);
  for (float c : {-0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f, -0.18628806f, 0.09678418f, 0.37409196f,
                  1.00002368f})
    p = _mm512_fmadd_ps(p, t, splat(c));
  const __m512 arg = _mm512_fmadd_ps(p, t, _mm512_fnmadd_ps(z, z, splat(-1.26551223f)));
  return _mm512_mul_ps(x, _mm512_mul_ps(_mm512_mul_ps(t, vexp16(arg)), splat(0.5f)));
}

// gelu_erf_f32 for 16 floats. The table's 32 entries of a coefficient sit in two registers, and VPERMT2PS picks
// each lane's by its piece index: per 16 elements 7 permutes, 8 FMAs and 9 other operations, against the erfc
// form's division, 24 FMAs and 12 others. Vectors with a lane below −6 (Φ < 1e-9; for N(0, 1) inputs one
// element in a billion) also run gelu_erf_tail16 and take its result for those lanes.
inline __m512 gelu_erf16(__m512 x) {
  const __m512 z = _mm512_castsi512_ps(_mm512_or_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)));
  const __m512 zc = _mm512_max_ps(z, splat(kCdfLow));  // −|x|, clamped; NaN → −6 as in normal_cdf_left
  const __m512i i = _mm512_min_epi32(
      _mm512_cvttps_epi32(_mm512_fmadd_ps(zc, splat(kCdfScale), splat(float(cpu::kNormalCdfPieces)))),
      _mm512_set1_epi32(cpu::kNormalCdfPieces - 1));
  const __m512 u = _mm512_sub_ps(zc, _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), splat(kCdfWidth), splat(kCdfFirstCentre)));
  auto coefficient = [&](int j) {
    return _mm512_permutex2var_ps(_mm512_load_ps(cpu::kNormalCdfPoly[j]), i,
                                  _mm512_load_ps(cpu::kNormalCdfPoly[j] + 16));
  };
  __m512 p = coefficient(6);
  for (int j = 5; j >= 0; --j) p = _mm512_fmadd_ps(p, u, coefficient(j));
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 y = _mm512_mul_ps(x, _mm512_mask_blend_ps(negative, _mm512_sub_ps(splat(1.0f), p), p));
  const __mmask16 tail = _mm512_cmp_ps_mask(x, splat(kCdfLow), _CMP_LT_OQ);
  return tail ? _mm512_mask_blend_ps(tail, y, gelu_erf_tail16(x)) : y;
}

// out[i] = gelu(x[i]) for contiguous float32, 16 at a time (the last few masked), over the threads.
void gelu_erf_contiguous(const float* x, float* out, int64_t n) {
  const int64_t vectors = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelGrain)
  for (int64_t v = 0; v < vectors; ++v) {
    const int64_t i = v * 16, left = n - i;
    if (left >= 16) {
      _mm512_storeu_ps(out + i, gelu_erf16(_mm512_loadu_ps(x + i)));
    } else {
      const __mmask16 m = __mmask16((1u << left) - 1);
      _mm512_mask_storeu_ps(out + i, m, gelu_erf16(_mm512_maskz_loadu_ps(m, x + i)));
    }
  }
}
#endif

// ---- unary ----

template <typename C>
C gelu_erf(C x) {
  if constexpr (std::is_same_v<C, float>) return gelu_erf_f32(x);
  else return x * normal_cdf(x);
}
template <typename C>
C gelu_tanh(C x) {
  const C k = C(0.7978845608028654);  // √(2/π)
  return C(0.5) * x * (C(1) + tanh_(k * (x + C(0.044715) * x * x * x)));
}
template <typename C>
C gelu_erf_grad(C x) {
  const C cdf = normal_cdf(x);
  const C pdf = exp_(C(-0.5) * x * x) * C(0.3989422804014327);  // 1/√(2π)
  return cdf + x * pdf;
}
template <typename C>
C gelu_tanh_grad(C x) {
  const C k = C(0.7978845608028654), c = C(0.044715);
  const C t = tanh_(k * (x + c * x * x * x));
  return C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k * (C(1) + C(3) * c * x * x);
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, Tensor& out, double alpha) {
  using C = compute_t<T>;
  // Applies g (C → C) to every element, converting T ↔ C around it.
  auto run = [&](auto g) { map1<T, T>(x, out, [g](T v) { return scalar_cast<T>(g(scalar_cast<C>(v))); }); };
  if (op == UnaryOp::Not) {
    map1<T, bool>(x, out, [](T v) { return !scalar_cast<bool>(v); });
    return;
  }
  if constexpr (std::is_same_v<T, bool>) {
    fail("{}: not defined for bool tensors", op_name(op));
  } else {
    const C s = scalar_cast<C>(alpha);
    switch (op) {
      case UnaryOp::Neg: run([](C v) { return C(-v); }); return;
      case UnaryOp::Abs: run([](C v) { return v < C(0) ? C(-v) : v; }); return;
      case UnaryOp::Sign: run([](C v) { return v > C(0) ? C(1) : v < C(0) ? C(-1) : v; }); return;
      case UnaryOp::Relu: run([](C v) { return v < C(0) ? C(0) : v; }); return;
      case UnaryOp::AddScalar: run([s](C v) { return C(v + s); }); return;
      case UnaryOp::MulScalar: run([s](C v) { return C(v * s); }); return;
      case UnaryOp::RSubScalar: run([s](C v) { return C(s - v); }); return;
      case UnaryOp::ClampMin: run([s](C v) { return v < s ? s : v; }); return;
      case UnaryOp::ClampMax: run([s](C v) { return v > s ? s : v; }); return;
      default: break;
    }
    if constexpr (!std::is_floating_point_v<C>) {
      fail("{}: not defined for {} tensors (convert to a floating dtype)", op_name(op), x.dtype());
    } else {
      switch (op) {
        case UnaryOp::Exp: run([](C v) { return exp_(v); }); return;
        case UnaryOp::Log: run([](C v) { return std::log(v); }); return;
        case UnaryOp::Log1p: run([](C v) { return std::log1p(v); }); return;
        case UnaryOp::Sqrt: run([](C v) { return std::sqrt(v); }); return;
        case UnaryOp::Rsqrt: run([](C v) { return C(1) / std::sqrt(v); }); return;
        case UnaryOp::Tanh: run([](C v) { return tanh_(v); }); return;
        case UnaryOp::Sigmoid: run([](C v) { return C(1) / (C(1) + exp_(-v)); }); return;
        case UnaryOp::GeluErf:
#if defined(__AVX512F__)
          if constexpr (std::is_same_v<T, float>) {
            if (x.is_contiguous() && out.is_contiguous() && x.shape() == out.shape()) {
              gelu_erf_contiguous(x.data<float>(), out.data<float>(), x.numel());
              return;
            }
          }
#endif
          run([](C v) { return gelu_erf(v); });
          return;
        case UnaryOp::GeluTanh: run([](C v) { return gelu_tanh(v); }); return;
        case UnaryOp::Pow:
          if (alpha == 2) run([](C v) { return v * v; });
          else run([s](C v) { return std::pow(v, s); });
          return;
        default: fail("unary: unknown op {}", int(op));
      }
    }
  }
}

// ---- binary ----

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  using C = compute_t<T>;
  auto arith = [&](auto g) {
    map2<T, T, T>(a, b, out, [g](T x, T y) { return scalar_cast<T>(g(scalar_cast<C>(x), scalar_cast<C>(y))); });
  };
  auto test = [&](auto g) {
    map2<T, T, bool>(a, b, out, [g](T x, T y) { return bool(g(scalar_cast<C>(x), scalar_cast<C>(y))); });
  };
  switch (op) {
    case BinaryOp::Eq: test([](C x, C y) { return x == y; }); return;
    case BinaryOp::Ne: test([](C x, C y) { return x != y; }); return;
    case BinaryOp::Lt: test([](C x, C y) { return x < y; }); return;
    case BinaryOp::Le: test([](C x, C y) { return x <= y; }); return;
    case BinaryOp::Gt: test([](C x, C y) { return x > y; }); return;
    case BinaryOp::Ge: test([](C x, C y) { return x >= y; }); return;
    case BinaryOp::And:
      map2<T, T, bool>(a, b, out, [](T x, T y) { return scalar_cast<bool>(x) && scalar_cast<bool>(y); });
      return;
    case BinaryOp::Or:
      map2<T, T, bool>(a, b, out, [](T x, T y) { return scalar_cast<bool>(x) || scalar_cast<bool>(y); });
      return;
    default: break;
  }
  if constexpr (std::is_same_v<T, bool>) {
    fail("{}: not defined for bool tensors (use logical_and/logical_or)", op_name(op));
  } else {
    switch (op) {
      case BinaryOp::Add: arith([](C x, C y) { return C(x + y); }); return;
      case BinaryOp::Sub: arith([](C x, C y) { return C(x - y); }); return;
      case BinaryOp::Mul: arith([](C x, C y) { return C(x * y); }); return;
      // NaN in either operand wins, as in PyTorch.
      case BinaryOp::Maximum: arith([](C x, C y) { return (x > y || x != x) ? x : y; }); return;
      case BinaryOp::Minimum: arith([](C x, C y) { return (x < y || x != x) ? x : y; }); return;
      default: break;
    }
    if constexpr (!std::is_floating_point_v<C>) {
      fail("{}: not defined for {} tensors (convert to a floating dtype)", op_name(op), a.dtype());
    } else {
      switch (op) {
        case BinaryOp::Div: arith([](C x, C y) { return x / y; }); return;
        case BinaryOp::ReluGrad: arith([](C g, C x) { return x > C(0) ? g : C(0); }); return;
        case BinaryOp::GeluErfGrad: arith([](C g, C x) { return g * gelu_erf_grad(x); }); return;
        case BinaryOp::GeluTanhGrad: arith([](C g, C x) { return g * gelu_tanh_grad(x); }); return;
        case BinaryOp::SigmoidGrad: arith([](C g, C y) { return g * y * (C(1) - y); }); return;
        case BinaryOp::TanhGrad: arith([](C g, C y) { return g * (C(1) - y * y); }); return;
        default: fail("binary: unknown op {}", int(op));
      }
    }
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha) {
  check_unary("cpu", op, x, out);
  VB_DISPATCH(x.dtype(), "unary", unary_typed<T>(op, x, out, alpha));
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  check_binary("cpu", op, a, b, out);
  VB_DISPATCH(a.dtype(), "binary", binary_typed<T>(op, a, b, out));
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  VB_CHECK(cond.dtype() == DType::Bool, "cpu where: condition must be bool, got {}", cond.dtype());
  VB_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype(), "cpu where: dtypes {}, {} → {} must match",
           a.dtype(), b.dtype(), out.dtype());
  VB_CHECK(cond.shape() == out.shape() && a.shape() == out.shape() && b.shape() == out.shape(),
           "cpu where: inputs must arrive expanded to the output's shape {}", shape_str(out.shape()));
  VB_DISPATCH(a.dtype(), "where", where_typed<T>(cond, a, b, out));
}

}  // namespace vb
