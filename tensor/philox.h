// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
// generator. Element i of a draw with (seed, offset) is a pure function of (seed, offset + i), so the CPU
// and CUDA backends produce the same numbers in any order and any thread layout.
//
//   uniform(seed, n)   = (philox(key = seed, counter = n).x0 >> 8) * 2^-24              in [0, 1)
//   normal(seed, n)    = sqrt(-2 ln u1) cos(2π u2), u1 = (x0 + 1)·2^-32 ∈ (0, 1], u2 = x1·2^-32 (Box–Muller)
//   randint(seed, n)   = lo + (x0 | x1 << 32) mod (hi − lo)
// where n = offset + i. A generator advances its offset by the number of elements it drew.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define VB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VB_HOST_DEVICE inline
#endif

namespace vb {

struct Philox4 {
  uint32_t x0, x1, x2, x3;
};

// The full generator: a 128-bit counter and a 64-bit key (the Random123 known-answer tests use this form).
VB_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  uint32_t c0 = ctr.x0, c1 = ctr.x1, c2 = ctr.x2, c3 = ctr.x3;
  for (int round = 0; round < 10; ++round) {
    // One round (Random123): (c0, c1, c2, c3) <- (hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1, lo(M0·c0))
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = uint32_t(p1);
    c2 = n2;
    c3 = uint32_t(p0);
    k0 += 0x9E3779B9u;  // Weyl sequence key schedule
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

// The form the project draws with: counter = (n, 0), key = seed.
VB_HOST_DEVICE Philox4 philox4x32_10(uint64_t seed, uint64_t n) {
  return philox4x32_10(Philox4{uint32_t(n), uint32_t(n >> 32), 0u, 0u}, uint32_t(seed), uint32_t(seed >> 32));
}

VB_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t n) {
  return float(philox4x32_10(seed, n).x0 >> 8) * (1.0f / 16777216.0f);
}

VB_HOST_DEVICE float philox_normal(uint64_t seed, uint64_t n) {
  const Philox4 r = philox4x32_10(seed, n);
  const float u1 = (float(r.x0) + 1.0f) * 2.3283064365386963e-10f;  // (0, 1]
  const float u2 = float(r.x1) * 2.3283064365386963e-10f;           // [0, 1)
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

VB_HOST_DEVICE int64_t philox_randint(uint64_t seed, uint64_t n, int64_t lo, int64_t hi) {
  const Philox4 r = philox4x32_10(seed, n);
  const uint64_t bits = uint64_t(r.x0) | (uint64_t(r.x1) << 32);
  return lo + int64_t(bits % uint64_t(hi - lo));
}

#if !defined(__CUDACC__)
// u[i] = philox_uniform(seed, n0 + i) for 0 ≤ i < count — the same numbers, bit for bit — computed
// kPhiloxLanes counters at a time with the ten rounds running across the lanes, which the compiler turns
// into vector code (32×32→64-bit multiplies, vpmuludq): the CPU backend's dropout and uniform draws use it.
// One draw costs ≈ 100 integer ops; measured on the dev VM (AVX-512, one thread), dropout over 4M float32
// went from 51 ms with scalar draws to 16 ms with the block form. With AVX-512 the block form is written with
// intrinsics (philox.cpp: each counter word in a 64-bit lane), 2.2× faster again; the portable form stays
// as the readable reference, and the tests hold both to philox_uniform.
inline constexpr int kPhiloxLanes = 16;
void philox_uniform_block(uint64_t seed, uint64_t n0, int64_t count, float* u);
namespace detail {
void philox_uniform_block_portable(uint64_t seed, uint64_t n0, int64_t count, float* u);
}
#endif

// A generator is just (seed, offset): saving and restoring it is copying two integers.
//
// Draws over the rows of a batch split into `shards` equal parts (data-parallel ranks × accumulation
// micro-batches), of which this process holds part `shard`, use advance_rows: a draw of `count` counters
// for this part's rows takes counters [offset + shard·count, offset + (shard + 1)·count) and advances the
// offset by shards·count. When the batch dimension is outermost, every row then gets the numbers it would
// get if one process drew for the whole batch at once, and every process's offset moves alike — which is
// what makes dropout and masking independent of the world size (docs/DISTRIBUTED.md). shard and shards
// are not state to save: the trainer sets them around each micro-batch and resets them to 0 of 1.
struct Generator {
  uint64_t seed = 0x5eed;
  uint64_t offset = 0;
  uint64_t shard = 0, shards = 1;

  // Reserves `count` counters and returns the offset of the first.
  uint64_t advance(uint64_t count) {
    const uint64_t first = offset;
    offset += count;
    return first;
  }
  // Reserves this shard's `count` counters of a batch-row draw (see above) and returns the first.
  uint64_t advance_rows(uint64_t count) {
    const uint64_t first = offset + shard * count;
    offset += shards * count;
    return first;
  }
};

// The process-wide default generator (vb::manual_seed sets it).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace vb
