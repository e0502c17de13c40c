#include "tensor/philox.h"

namespace vb {

Generator& default_generator() {
  static Generator g;
  return g;
}

void philox_uniform_block(uint64_t seed, uint64_t n0, int64_t count, float* u) {
  const uint32_t key0 = uint32_t(seed), key1 = uint32_t(seed >> 32);
  int64_t i = 0;
  for (; i + kPhiloxLanes <= count; i += kPhiloxLanes) {
    uint32_t c0[kPhiloxLanes], c1[kPhiloxLanes], c2[kPhiloxLanes], c3[kPhiloxLanes];
    for (int l = 0; l < kPhiloxLanes; ++l) {
      const uint64_t n = n0 + uint64_t(i + l);
      c0[l] = uint32_t(n);
      c1[l] = uint32_t(n >> 32);
      c2[l] = c3[l] = 0;
    }
    uint32_t k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {  // philox4x32_10's round, lane by lane
      for (int l = 0; l < kPhiloxLanes; ++l) {
        const uint64_t p0 = uint64_t(0xD2511F53u) * c0[l];
        const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2[l];
        const uint32_t n0l = uint32_t(p1 >> 32) ^ c1[l] ^ k0;
        const uint32_t n2l = uint32_t(p0 >> 32) ^ c3[l] ^ k1;
        c0[l] = n0l;
        c1[l] = uint32_t(p1);
        c2[l] = n2l;
        c3[l] = uint32_t(p0);
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    for (int l = 0; l < kPhiloxLanes; ++l) u[i + l] = float(c0[l] >> 8) * (1.0f / 16777216.0f);
  }
  for (; i < count; ++i) u[i] = philox_uniform(seed, n0 + uint64_t(i));
}

void manual_seed(uint64_t seed) { default_generator() = Generator{seed, 0}; }

}  // namespace vb
