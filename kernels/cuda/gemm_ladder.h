// The GEMM ladder (kernels/cuda/gemm_ladder.cu): numbered float32 matrix products, each rung adding one
// idea to the one before, for reading in order (docs/KERNELS.md). The framework's own products go to
// cuBLASLt on a GPU and to the CPU backend's GEMM elsewhere; these kernels are for learning and measuring,
// and every rung is checked against the CPU backend (tests/emu/gemm_ladder.cpp, tests/gpu/gemm_ladder.cpp).
//
//   C (M, N) = A (M, K) · B (K, N), row-major float32, contiguous; 2·M·N·K FLOPs.
//
// The launcher exists three times: vb::emu (the kernel emulator), vb::cuda (a GPU), and vb::emu_insight
// (the emulator with every memory access observed: kernels/emu/insight.h), so that `videobert kernels run
// gemm --insight` can show why each rung is faster.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/runtime.h"

namespace vb::ladder {

struct Rung {
  int number;
  const char* name;
  const char* adds;  // the one idea this rung adds
  const char* dtype = "f32";  // the inputs' type: f32, or bf16 (float32 accumulation and output)
  bool f16_too = false;       // a bf16 rung that also takes f16 inputs (the GEMM's tensor-core rungs)
};

// Rungs 1 … kGemmRungs, in order.
inline constexpr int kGemmRungs = 8;
inline constexpr Rung kGemmRungTable[kGemmRungs] = {
    {1, "naive", "one thread per element of C, reading its row of A and column of B from global memory"},
    {2, "shared tiles", "16x16 tiles of A and B staged in shared memory: each element read from global memory "
                        "once per tile instead of once per thread"},
    {3, "register tiles", "64x64 block tiles, each thread computing a 4x4 tile of C in registers from 4 values "
                          "of A and 4 of B per step: 8 shared reads for 16 FMAs instead of 2 for 1"},
    {4, "vectorised, transposed", "float4 loads from global and shared memory, A's tile stored transposed so "
                                  "a thread's 4 values of A are one 16-byte word; padding keeps the transposing "
                                  "stores free of bank conflicts"},
    {5, "tensor cores", "bf16 inputs on the tensor cores: 64x64 tiles of A and of B transposed staged k-contiguous "
                        "in shared memory, read by ldmatrix into mma.sync m16n8k16 fragments, float32 accumulation",
     "bf16", true},
    {6, "cp.async pipeline", "tiles copied by cp.async in coalesced 16-byte words straight to shared memory, "
                             "double-buffered so the next step's copies fly while the warps multiply; B read "
                             "untransposed by ldmatrix.trans",
     "bf16", true},
    {7, "swizzled", "A's tile stored unpadded with its 16-byte chunks permuted by an XOR of the row (chunk c of "
                    "row r in slot c ^ (r/2 mod 4)): conflict-free copies and ldmatrix reads in 20% less shared "
                    "memory",
     "bf16", true},
    {8, "64x64 warp tiles, 3 stages", "128x128 block tiles, each of the 4 warps a 64x64 block of C: one ldmatrix "
                                      "for every 4 mma instead of 2 and half the global bytes per FLOP; a "
                                      "three-stage cp.async pipeline; B's tile swizzled too",
     "bf16", true},
};

// What the rung needs of the shape that it does not have, or "" (rung 4 loads 16-byte words: K and N
// multiples of 4).
inline const char* gemm_shape_requirement(int rung, int64_t, int64_t n, int64_t k) {
  if (rung == 4 && (k % 4 != 0 || n % 4 != 0)) return "rung 4 needs K and N multiples of 4 (16-byte loads)";
  if (rung == 5 && k % 8 != 0) return "rung 5 needs K a multiple of 8 (16-byte loads of A)";
  if (rung >= 6 && (k % 8 != 0 || n % 8 != 0)) return "rungs 6 to 8 need K and N multiples of 8 (16-byte copies)";
  return "";
}

}  // namespace vb::ladder

#define VB_GEMM_LADDER_LAUNCHER                                                                             \
  /* Runs float32 rung `rung` (1 … 4); an std::invalid_argument for a bad rung or shape. */                    \
  void gemm_ladder(int rung, const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k,         \
                   rt::Stream stream = {});                                                                     \
  /* Runs bf16 rung `rung` (5 … 8): bf16 A and B, float32 C. */                                                    \
  void gemm_ladder_bf16(int rung, const __nv_bfloat16* a, const __nv_bfloat16* b, float* c, int64_t m,        \
                        int64_t n, int64_t k, rt::Stream stream = {});                                          \
  /* The same rungs with float16 A and B (the same kernels, instantiated for __half). */                     \
  void gemm_ladder_f16(int rung, const __half* a, const __half* b, float* c, int64_t m, int64_t n, int64_t k,  \
                       rt::Stream stream = {});

namespace vb::emu {
VB_GEMM_LADDER_LAUNCHER
}  // namespace vb::emu

namespace vb::emu_insight {
VB_GEMM_LADDER_LAUNCHER
}  // namespace vb::emu_insight

namespace vb::cuda {
VB_GEMM_LADDER_LAUNCHER
}  // namespace vb::cuda

#undef VB_GEMM_LADDER_LAUNCHER
