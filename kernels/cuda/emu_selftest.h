// The kernel emulator's self-test kernels (kernels/cuda/emu_selftest.cu), one small kernel per
// feature. Their host launchers exist twice: vb::emu::selftest (run by the emulator, tests/emu) and
// vb::cuda::selftest (run on a GPU, tests/gpu, which compares the two). Pointers are device pointers
// from vb::rt::<same namespace>::malloc.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace vb::selftest {

enum class ShuffleKind : int { idx, up, down, bfly };

// Every counter the atomics kernel updates, each thread of the grid once (see emu_selftest.cu).
struct AtomicCounters {
  int add_int;
  unsigned add_unsigned;
  unsigned long long add_ull;
  float add_float;
  double add_double;
  __half add_half;
  __nv_bfloat16 add_bf16;
  int sub_int;
  int max_int;
  int min_int;
  unsigned max_unsigned;
  unsigned min_unsigned;
  unsigned long long max_ull;
  unsigned inc;
  unsigned dec;
  unsigned and_bits;
  unsigned or_bits;
  unsigned xor_bits;
  int exch;
  int cas_counter;
};

inline constexpr int atomic_blocks = 8, atomic_threads = 256;
inline constexpr unsigned inc_limit = 6, dec_limit = 6;

}  // namespace vb::selftest

namespace vb::emu::selftest {
using vb::selftest::AtomicCounters;
using vb::selftest::ShuffleKind;
#include "kernels/cuda/emu_selftest.inc"
}  // namespace vb::emu::selftest

namespace vb::cuda::selftest {
using vb::selftest::AtomicCounters;
using vb::selftest::ShuffleKind;
#include "kernels/cuda/emu_selftest.inc"
}  // namespace vb::cuda::selftest
