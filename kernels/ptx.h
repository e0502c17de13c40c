// The inline PTX the project's kernels use, one small device function per instruction. Under nvcc
// each is the instruction itself; under the kernel emulator each does what the PTX ISA specifies,
// with the fragment layouts it documents (docs/EMULATOR.md), and checks what the GPU requires
// (all 32 lanes for the .aligned instructions, cp.async sizes and alignment).
// Hopper-only instructions (wgmma, TMA, clusters) are not here: they stay GPU-only.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#if !defined(__CUDACC__)
#include <bit>
#include <cstring>

#include "kernels/emu/device.h"
#if defined(VB_EMU_INSIGHT)
#include "kernels/emu/insight.h"
#endif
#endif

namespace vb::ptx {

#if !defined(__CUDACC__)
namespace emu_detail {

using emulator::detail::WarpOp;

struct MmaLane {
  const std::uint32_t* a;  // [4]
  const std::uint32_t* b;  // [2]
  const float* c;          // [4]
};

template <class Element>
double element(std::uint32_t reg, int half) {
  const auto bits = static_cast<std::uint16_t>(reg >> (16 * half));
  if constexpr (std::is_same_v<Element, __half>)
    return __half2float(std::bit_cast<__half>(bits));
  else
    return __bfloat162float(std::bit_cast<__nv_bfloat16>(bits));
}

// D (16x8) = A (16x16) * B (16x8) + C, from and to the fragments of all 32 lanes. With g = lane/4
// and t = lane%4: a_i sits at row g (+8 for i = 2,3,6,7), column 2t + (i&1) (+8 for i >= 4);
// b_i at row 2t + (i&1) (+8 for i >= 2), column g; c_i at row g (+8 for i >= 2), column 2t + (i&1).
// Products are exact in double; the sum is rounded once to float.
template <class Element>
void resolve_mma(WarpOp* const* lanes, unsigned) {
  double a[16][16], b[16][8], c[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& in = *static_cast<const MmaLane*>(lanes[lane]->in);
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; ++i)
      a[g + ((i / 2) % 2) * 8][2 * t + (i & 1) + (i >= 4) * 8] = element<Element>(in.a[i / 2], i & 1);
    for (int i = 0; i < 4; ++i) b[2 * t + (i & 1) + (i >= 2) * 8][g] = element<Element>(in.b[i / 2], i & 1);
    for (int i = 0; i < 4; ++i) c[g + (i >= 2) * 8][2 * t + (i & 1)] = in.c[i];
  }
  for (int lane = 0; lane < 32; ++lane) {
    float* d = static_cast<float*>(lanes[lane]->out);
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2) * 8, col = 2 * t + (i & 1);
      double sum = c[row][col];
      for (int k = 0; k < 16; ++k) sum += a[row][k] * b[k][col];
      d[i] = static_cast<float>(sum);
    }
  }
}

template <class Element>
void mma(const char* name, float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
         const float (&c)[4], emulator::detail::Site site) {
  const MmaLane in{a, b, c};
  float result[4];
  WarpOp op{name, &resolve_mma<Element>, 0xffffffffu, &in, result};
  emulator::detail::warp_sync(op, site);
  for (int i = 0; i < 4; ++i) d[i] = result[i];
}

// ldmatrix: lanes 8j..8j+7 give the row addresses of matrix j; register j of lane l receives
// row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (with .trans: of its transpose).
template <int Matrices, bool Trans>
void resolve_ldmatrix(WarpOp* const* lanes, unsigned) {
  auto at = [&](int matrix, int row, int col) {
    const void* row_address = *static_cast<const void* const*>(lanes[8 * matrix + row]->in);
    std::uint16_t value;
    std::memcpy(&value, static_cast<const std::byte*>(row_address) + 2 * col, 2);
    return std::uint32_t{value};
  };
  for (int lane = 0; lane < 32; ++lane) {
    auto* regs = static_cast<std::uint32_t*>(lanes[lane]->out);
    const int r = lane / 4, c = 2 * (lane % 4);
    for (int j = 0; j < Matrices; ++j)
      regs[j] = Trans ? at(j, c, r) | at(j, c + 1, r) << 16 : at(j, r, c) | at(j, r, c + 1) << 16;
  }
}

// Always inlined, so that under insight the row read is charged to the kernel's line that issued it.
template <int Matrices, bool Trans>
__attribute__((always_inline)) inline void ldmatrix(const char* name, std::uint32_t* regs, const void* row,
                                                    emulator::detail::Site site) {
  const unsigned lane = emulator::detail::lane_id();
  if (lane < 8 * Matrices && reinterpret_cast<std::uintptr_t>(row) % 16)
    emulator::detail::fail(std::string(name) + " at " + emulator::detail::where(site) + ": lane " +
                           std::to_string(lane) + "'s row address is not 16-byte aligned");
#if defined(VB_EMU_INSIGHT)
  // The lane's part of the instruction: its 16-byte row of shared memory (kernels/emu/insight.h).
  if (lane < 8 * Matrices) emulator::insight::record_access(row, 16, false);
#endif
  WarpOp op{name, &resolve_ldmatrix<Matrices, Trans>, 0xffffffffu, &row, regs};
  emulator::detail::warp_sync(op, site);
}

}  // namespace emu_detail
#define VB_PTX_SITE , emulator::detail::Site site = emulator::detail::Site::current()
#else
#define VB_PTX_SITE
#endif

// ---- The m16n8k16 fragment layout, named once for the kernels ----
// Which elements of a 16x16 A, a 16x8 B and a 16x8 C/D tile a lane holds (PTX ISA, "Matrix Fragments for
// mma.m16n8k16"). Lanes come in 8 groups of 4: group g = lane / 4, place t = lane % 4 within the group.
//   C/D element e (0..3):                 row g + 8·(e / 2),              column 2t + e % 2
//   A element i (0..7, two per register): row g + 8·((i / 2) % 2),        column 2t + i % 2 + 8·(i / 4)
//   B element i (0..3, two per register): row 2t + i % 2 + 8·(i / 2),     column g
// So a lane's C elements are rows g and g + 8, columns 2t and 2t + 1. The emulator's mma above spells the
// same layout out on its own from the ISA (emu_detail::resolve_mma): a kernel that used these wrongly
// would disagree with it, and fail its emulator test against the CPU backend.
struct MmaLayout {
  __host__ __device__ static constexpr int group(int lane) { return lane / 4; }
  __host__ __device__ static constexpr int place(int lane) { return lane % 4; }
  __host__ __device__ static constexpr int c_row(int lane, int e) { return group(lane) + 8 * (e / 2); }
  __host__ __device__ static constexpr int c_col(int lane, int e) { return 2 * place(lane) + e % 2; }
  __host__ __device__ static constexpr int a_row(int lane, int i) { return group(lane) + 8 * ((i / 2) % 2); }
  __host__ __device__ static constexpr int a_col(int lane, int i) { return 2 * place(lane) + i % 2 + 8 * (i / 4); }
  __host__ __device__ static constexpr int b_row(int lane, int i) { return 2 * place(lane) + i % 2 + 8 * (i / 2); }
  __host__ __device__ static constexpr int b_col(int lane, int) { return group(lane); }

  // Every element of each tile belongs to exactly one (lane, element): checked at compile time below.
  static constexpr bool covers_each_once() {
    int c[16][8] = {}, a[16][16] = {}, b[16][8] = {};
    for (int lane = 0; lane < 32; ++lane) {
      for (int e = 0; e < 4; ++e) ++c[c_row(lane, e)][c_col(lane, e)];
      for (int i = 0; i < 8; ++i) ++a[a_row(lane, i)][a_col(lane, i)];
      for (int i = 0; i < 4; ++i) ++b[b_row(lane, i)][b_col(lane, i)];
    }
    for (int r = 0; r < 16; ++r) {
      for (int k = 0; k < 16; ++k)
        if (a[r][k] != 1) return false;
      for (int n = 0; n < 8; ++n)
        if (c[r][n] != 1 || b[r][n] != 1) return false;
    }
    return true;
  }
};
static_assert(MmaLayout::covers_each_once(), "the m16n8k16 fragments must tile A, B and C exactly once");

// d = A * B + c on the tensor cores, one 16x8x16 tile per warp (all 32 lanes call it).
// Fragments as the PTX ISA lays them out for mma.m16n8k16 (see emu_detail::resolve_mma).
__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2],
                                                 const float (&c)[4] VB_PTX_SITE) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  emu_detail::mma<__half>("mma.sync.m16n8k16.f16", d, a, b, c, site);
#endif
}

__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2],
                                                  const float (&c)[4] VB_PTX_SITE) {
#if defined(__CUDACC__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  emu_detail::mma<__nv_bfloat16>("mma.sync.m16n8k16.bf16", d, a, b, c, site);
#endif
}

// d += A * B for element type T (__nv_bfloat16 or __half), B given as its two registers: the form
// the tiled kernels (attention_mma.cu, conv_mma.cu) use, accumulating in place.
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1 VB_PTX_SITE) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "mma takes bf16 or f16");
  const std::uint32_t b[2] = {b0, b1};
#if defined(__CUDACC__)
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    mma_m16n8k16_bf16(d, a, b, d);
  else
    mma_m16n8k16_f16(d, a, b, d);
#else
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    mma_m16n8k16_bf16(d, a, b, d, site);
  else
    mma_m16n8k16_f16(d, a, b, d, site);
#endif
}

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16: loads 1, 2 or 4 8x8 matrices of 16-bit
// elements from shared memory; `row` is this lane's row address (lanes 0-7 for x1, 0-15 for x2).
#if defined(__CUDACC__)
#define VB_LDMATRIX(name, count, trans, ...)                                                       \
  __device__ __forceinline__ void name(std::uint32_t* regs, const void* row) {                       \
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(row));                      \
    __VA_ARGS__                                                                                     \
  }
#else
#define VB_LDMATRIX(name, count, trans, ...)                                                       \
  __attribute__((always_inline)) inline void name(std::uint32_t* regs, const void* row VB_PTX_SITE) { \
    emu_detail::ldmatrix<count, trans>(#name, regs, row, site);                                     \
  }
#endif
VB_LDMATRIX(ldmatrix_x1, 1, false,
            asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(regs[0]) : "r"(address));)
VB_LDMATRIX(ldmatrix_x2, 2, false,
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                         : "=r"(regs[0]), "=r"(regs[1]) : "r"(address));)
VB_LDMATRIX(ldmatrix_x4, 4, false,
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3]) : "r"(address));)
VB_LDMATRIX(ldmatrix_x1_trans, 1, true,
            asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                         : "=r"(regs[0]) : "r"(address));)
VB_LDMATRIX(ldmatrix_x2_trans, 2, true,
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                         : "=r"(regs[0]), "=r"(regs[1]) : "r"(address));)
VB_LDMATRIX(ldmatrix_x4_trans, 4, true,
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3]) : "r"(address));)
#undef VB_LDMATRIX

// cp.async: copies Bytes (4, 8 or 16) from global to shared memory without passing through
// registers; only the first `src_bytes` are read, the rest of the destination is zero-filled.
// The copy is complete only after cp_async_wait<N>() leaves at most N newer groups pending.
template <int Bytes>
__device__ __forceinline__ void cp_async(void* shared_dst, const void* global_src, int src_bytes = Bytes) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDACC__)
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  if constexpr (Bytes == 16)  // .cg (bypassing L1) exists only for 16 bytes
    asm volatile("cp.async.cg.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(global_src), "n"(Bytes),
                 "r"(src_bytes));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(global_src), "n"(Bytes),
                 "r"(src_bytes));
#else
#if defined(VB_EMU_INSIGHT)
  // A global read and a shared write of Bytes (kernels/emu/insight.h), made inside the emulator.
  if (src_bytes > 0) emulator::insight::record_access(global_src, Bytes, false);
  emulator::insight::record_access(shared_dst, Bytes, true);
#endif
  emulator::detail::cp_async(shared_dst, global_src, Bytes, src_bytes);
#endif
}

// Closes the group of this thread's cp.async issued since the last commit (an empty group counts).
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDACC__)
  asm volatile("cp.async.commit_group;\n" ::);
#else
  emulator::detail::cp_async_commit();
#endif
}

// Waits until at most `Pending` of this thread's newest committed groups are still in flight.
// Other threads see the data only after a barrier as well.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDACC__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
#else
  emulator::detail::cp_async_wait(Pending);
#endif
}

#undef VB_PTX_SITE

}  // namespace vb::ptx
