// The CPU's own limits, measured: the peak float32 FMA throughput (a register-only kernel) and the
// streaming memory bandwidth (STREAM's copy and triad), for 1 … N OpenMP threads. These are the ceilings the
// CPU benchmarks' achieved GFLOP/s and GB/s are fractions of (issue 16: "the hardware's limit beside every
// figure").
//
//   amx:   (where kernels/cpu/gemm_bf16.cpp runs on AMX tiles) each thread runs four independent C tiles
//          through TDPBF16PS C += A·B (16 × 32 bfloat16 by 32 × 16) from tiles loaded once: 2·16·16·32 FLOPs
//          per instruction — the bfloat16 products' peak ("ceiling amx-bf16 N threads"), what the bf16 rows
//          of the op benchmark are fractions of.
//   dpbf16: (where gemm_bf16 runs on AVX512-BF16 dot products instead: no AMX) each thread runs kChains
//          accumulator vectors through VDPBF16PS acc += x·y, all in registers: 2·2·W·kChains·iters FLOPs per
//          thread (two bfloat16 products per float32 lane) — "ceiling dpbf16 N threads", the bf16 rows' peak
//          on that path.
//   fma:   each thread runs kChains independent accumulator vectors through acc = acc·x + y for `iters`
//          iterations, all in registers: 2·W·kChains·iters FLOPs per thread (W floats per vector: 16 with
//          AVX-512, 8 with AVX2). Enough chains to cover the FMA latency on two ports (4 cycles × 2 = 8
//          vectors in flight); more change nothing.
//   copy:  b[i] = a[i];            8 bytes per element (read a, write b; STREAM counts no write-allocate)
//   triad: a[i] = b[i] + s·c[i];   12 bytes per element
//          over arrays of 2^25 floats (128 MiB) each, or twice the last-level cache when that is larger (a
//          virtual machine may report its host's), so that the stream comes from memory; the best of 5.
//
// Usage: bench_cpu_ceiling [--quick] [--json]   (--quick: tiny sizes, for the smoke test; no claims)
// Prints a markdown table, and with --json one line per measurement {name, seconds, flops, bytes} as the
// other CPU benchmarks do (bench/host_timing.h).
#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/host_timing.h"
#include "kernels/cpu/gemm.h"

namespace {

// One vector FMA, acc·x + y, as the instruction itself, rather than left to GCC's contraction of a multiply
// and an add (which it does in C++ even with -std=c++20, but where it likes).
#if defined(__AVX512F__)
constexpr int kWidth = 16;
using Vec = __m512;
inline Vec fma(Vec a, Vec x, Vec y) { return _mm512_fmadd_ps(a, x, y); }
inline Vec splat(float v) { return _mm512_set1_ps(v); }
#else
constexpr int kWidth = 8;
using Vec = __m256;
inline Vec fma(Vec a, Vec x, Vec y) { return _mm256_fmadd_ps(a, x, y); }
inline Vec splat(float v) { return _mm256_set1_ps(v); }
#endif
constexpr int kChains = 12;

// kChains independent accumulators, each iteration acc ← step(acc), all in registers; returns a value that
// depends on all of them (so none is optimised away).
template <typename Step>
float chains(long iters, float seed, Step step) {
  Vec acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = splat(seed + float(c) * 1e-3f);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = step(acc[c]);
  }
  float out[kWidth], s = 0;
  for (int c = 0; c < kChains; ++c) {
    std::memcpy(out, &acc[c], sizeof out);
    for (float v : out) s += v;
  }
  return s;
}

// The FMAs of one thread.
__attribute__((noinline)) float fma_chains(long iters, float seed) {
  const Vec x = splat(0.999999f), y = splat(1e-7f);
  return chains(iters, seed, [&](Vec a) { return fma(a, x, y); });
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// The tile configuration (palette 1, the ISA's 64-byte layout): tiles 0–5 of 16 rows × 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16};
};

// 4·iters TDPBF16PS on one thread, from registers; returns a value that depends on them.
__attribute__((noinline)) float amx_chains(long iters) {
  static const TileConfig config;
  alignas(64) uint16_t ab[16 * 32];
  std::fill(ab, ab + 16 * 32, uint16_t(0x3c00));  // bfloat16 2⁻⁷: sums stay far from overflow
  alignas(64) float c[16 * 16];
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  for (long i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 5);
    _tile_dpbf16ps(2, 4, 5);
    _tile_dpbf16ps(3, 4, 5);
  }
  float s = 0;
  for (int t = 0; t < 4; ++t) {
    switch (t) {  // tile numbers are immediates
      case 0: _tile_stored(0, c, 64); break;
      case 1: _tile_stored(1, c, 64); break;
      case 2: _tile_stored(2, c, 64); break;
      default: _tile_stored(3, c, 64); break;
    }
    s += c[0];
  }
  _tile_release();
  return s;
}
#define VB_CEILING_AMX 1
#else
#define VB_CEILING_AMX 0
#endif

#if defined(__AVX512BF16__)
// The VDPBF16PS of one thread: each acc += the pairs of x·y (x = y = 2⁻⁷ in every bfloat16, so that the sums
// stay far from overflow). (AVX512-BF16 implies AVX-512: Vec is __m512 here.)
__attribute__((noinline)) float dot_chains(long iters, float seed) {
  const __m512bh x = __m512bh(_mm512_set1_epi16(0x3c00));
  return chains(iters, seed, [&](Vec a) { return _mm512_dpbf16_ps(a, x, x); });
}
#define VB_CEILING_DOT 1
#else
#define VB_CEILING_DOT 0
#endif

double best_of(int reps, const std::function<void()>& fn) {
  double best = 1e300;
  fn();  // warm-up
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, json = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--json") == 0) json = true;
    else {
      std::fprintf(stderr, "bench_cpu_ceiling: unknown argument %s (expected --quick, --json)\n", argv[i]);
      return 2;
    }
  }
  const int max_threads = omp_get_max_threads();
  const long iters = quick ? 1000 : 20'000'000;
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const long n = quick ? (1L << 12) : std::max(1L << 25, l3 > 0 ? 2 * l3 / long(sizeof(float)) : 0L);
  const int reps = quick ? 1 : 5;
  std::vector<float> a(size_t(n), 1.0f), b(size_t(n), 2.0f), c(size_t(n), 0.5f);
  std::printf("## The CPU's limits: %d-wide float32 vectors, %d threads at most; streams of %.0f MiB per array "
              "(last-level cache %.0f MiB)%s\n\n", kWidth, max_threads, double(n) * 4 / (1 << 20),
              double(std::max(l3, 0L)) / (1 << 20), quick ? " (--quick: tiny sizes, no claims)" : "");
  // The bfloat16 products' peak on the path gemm_bf16 takes here (the library asks the OS for the tiles).
  const vb::cpu::GemmBf16Path bf16_path = vb::cpu::gemm_bf16_path();
  const bool amx = VB_CEILING_AMX && bf16_path == vb::cpu::GemmBf16Path::kAmx;
  const bool dot = VB_CEILING_DOT && bf16_path == vb::cpu::GemmBf16Path::kDot;
  const long amx_iters = quick ? 100 : 1'000'000;
  std::printf("| threads | FMA peak GFLOP/s | bf16 peak GFLOP/s | copy GB/s | triad GB/s |\n"
              "|---:|---:|---:|---:|---:|\n");
  volatile float sink = 0;
  for (int threads = 1; threads <= max_threads; ++threads) {
    omp_set_num_threads(threads);
    const double fma_s = best_of(reps, [&] {
#pragma omp parallel
      { sink = sink + fma_chains(iters, float(omp_get_thread_num())); }
    });
    const double fma_flops = 2.0 * kWidth * kChains * double(iters) * threads;
    const double copy_s = best_of(reps, [&] {
#pragma omp parallel for schedule(static)
      for (long i = 0; i < n; ++i) b[size_t(i)] = a[size_t(i)];
    });
    const double triad_s = best_of(reps, [&] {
#pragma omp parallel for schedule(static)
      for (long i = 0; i < n; ++i) a[size_t(i)] = b[size_t(i)] + 3.0f * c[size_t(i)];
    });
    double amx_s = 0;
#if VB_CEILING_AMX
    if (amx)
      amx_s = best_of(reps, [&] {
#pragma omp parallel
        { sink = sink + amx_chains(amx_iters); }
      });
#endif
    double dot_s = 0;
#if VB_CEILING_DOT
    if (dot)
      dot_s = best_of(reps, [&] {
#pragma omp parallel
        { sink = sink + dot_chains(iters, float(omp_get_thread_num())); }
      });
#endif
    const double amx_flops = 4.0 * 2 * 16 * 16 * 32 * double(amx_iters) * threads;
    const double dot_flops = 2.0 * 2 * 16 * kChains * double(iters) * threads;
    const double copy_bytes = 8.0 * double(n), triad_bytes = 12.0 * double(n);
    const std::string bf16_cell = amx   ? fmt::format("{:.1f} (AMX)", amx_flops / amx_s * 1e-9)
                                  : dot ? fmt::format("{:.1f} (AVX512-BF16)", dot_flops / dot_s * 1e-9)
                                        : std::string("— (the float32 GEMM)");
    std::printf("| %d | %.1f | %s | %.1f | %.1f |\n", threads, fma_flops / fma_s * 1e-9, bf16_cell.c_str(),
                copy_bytes / copy_s * 1e-9, triad_bytes / triad_s * 1e-9);
    if (json) {
      vb::bench::report("ceiling fma " + std::to_string(threads) + " threads", fma_s, fma_flops);
      if (amx) vb::bench::report("ceiling amx-bf16 " + std::to_string(threads) + " threads", amx_s, amx_flops);
      if (dot) vb::bench::report("ceiling dpbf16 " + std::to_string(threads) + " threads", dot_s, dot_flops);
      vb::bench::report("ceiling copy " + std::to_string(threads) + " threads", copy_s, 0, copy_bytes);
      vb::bench::report("ceiling triad " + std::to_string(threads) + " threads", triad_s, 0, triad_bytes);
    }
  }
  return a[0] == 12345.0f ? 1 : 0;  // keeps the last triad alive
}
