// An occupancy estimate, as CUDA's occupancy calculator makes it: how many blocks of a kernel fit on one SM
// at once, limited by threads (warps), registers and shared memory, for the two architectures the project
// builds for. Host-side arithmetic only (used by `videobert kernels`, train/kernel_lab.cpp).
//
//   warps/block  = ⌈threads/32⌉
//   by warps     = ⌊max warps / warps per block⌋
//   by registers = ⌊registers per SM / (⌈regs·32 / 256⌉·256 · warps per block)⌋   (allocated per warp, 256 at a time)
//   by shared    = ⌊shared per SM / (⌈shared per block / 128⌉·128 + 1 KiB reserved)⌋
//   blocks       = min(by warps, by registers, by shared, max blocks per SM);  occupancy = blocks·warps/block / max warps
//
// Limits (CUDA C++ Programming Guide, compute capabilities 8.0 and 9.0): 64 warps, 32 blocks and 65,536
// registers per SM; 164 KiB (8.0) and 228 KiB (9.0) of shared memory per SM.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

namespace vb::ladder {

struct Occupancy {
  int blocks = 0;          // resident blocks per SM
  double fraction = 0;     // active warps / max warps
  const char* limit = "";  // "warps", "registers", "shared memory" or "blocks"
};

inline Occupancy occupancy(int sm, int threads_per_block, int registers_per_thread, int64_t shared_bytes_per_block) {
  const int max_warps = 64, max_blocks = 32, registers = 65536;
  const int64_t shared_per_sm = (sm >= 90 ? 228 : 164) * 1024;
  const int warps = (threads_per_block + 31) / 32;
  Occupancy o;
  if (warps <= 0) return o;
  const int by_warps = max_warps / warps;
  const int per_warp = (registers_per_thread * 32 + 255) / 256 * 256;
  const int by_registers = per_warp > 0 ? registers / (per_warp * warps) : max_blocks;
  const int64_t shared = (shared_bytes_per_block + 127) / 128 * 128 + 1024;
  const int by_shared = int(shared_per_sm / shared);
  o.blocks = std::min({by_warps, by_registers, by_shared, max_blocks});
  // Where several limits meet, the first of warps, registers, shared memory.
  o.limit = o.blocks == by_warps       ? "warps"
            : o.blocks == by_registers ? "registers"
            : o.blocks == by_shared    ? "shared memory"
                                       : "blocks";
  o.fraction = double(o.blocks * warps) / max_warps;
  return o;
}

// What ptxas reports for the ladders' kernels (CUDA 13.0, Release; `nvcc -Xptxas -v`): registers per
// thread on sm_80 and sm_90, and static shared memory. The test cpu/ladder_registers compiles the ladder
// sources again and fails where an entry disagrees with ptxas; `scripts/ladder_registers.py --print`
// prints the lines to paste after a kernel changes. The GEMM's tensor-core kernels are templates on the
// 16-bit type: an entry covers both instantiations, which must agree.
struct KernelResources {
  const char* kernel;  // the kernel's name, as it appears in the demangled symbol
  int registers_sm80, registers_sm90;
  int static_shared_bytes;
};
inline constexpr KernelResources kLadderResources[] = {
    {"gemm_naive(", 32, 32, 0},         {"gemm_shared(", 32, 32, 2048},     {"gemm_register(", 72, 72, 4096},
    {"gemm_vectorised(", 56, 55, 4224}, {"ln_mean(", 31, 31, 0},            {"ln_rstd(", 32, 32, 0},
    {"ln_normalise(", 16, 16, 0},       {"ln_warp(", 144, 168, 0},          {"ln_warp_vectorised(", 56, 56, 0},
    {"gemm_mma<", 64, 64, 0},  // its 10 KiB of shared memory are dynamic: the launch gives them
    {"gemm_mma_pipelined<false,", 80, 80, 0},  // rung 6: 19 KiB dynamic
    {"gemm_mma_pipelined<true,", 96, 96, 0},   // rung 7: 17 KiB dynamic; the swizzle's index arithmetic
    {"gemm_mma_big<", 234, 238, 0},            // rung 8: 48 KiB dynamic; 128 accumulators a thread, no spills
    {"attn_scores(", 32, 32, 0},        {"attn_softmax(", 31, 31, 0},       {"attn_pv(", 32, 32, 0},
    {"conv_direct(", 39, 39, 0},
};

// The recorded resources of the kernel whose (demangled) name contains an entry's name, or null.
inline const KernelResources* ladder_resources(const std::string& kernel_name) {
  for (const KernelResources& r : kLadderResources)
    if (kernel_name.find(std::string("::") + r.kernel) != std::string::npos) return &r;
  return nullptr;
}

}  // namespace vb::ladder
