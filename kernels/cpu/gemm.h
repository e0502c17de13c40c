// The CPU backend's matrix product: C (M, N) = A (M, K) · B (K, N)  [+ C when accumulating].
// matmul, linear and convolution (im2col generated while packing) all run through it; the algorithm,
// blocking and costs are described at the top of gemm.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <type_traits>

#include "tensor/dtype.h"

namespace vb::cpu {

// One operand of the product, read only while it is packed. Either a strided view — element (i, j) at
// data[i·row_stride + j·col_stride], any strides (transposed views are row_stride = 1) — or, when `row`
// is set, a generator that writes elements (i, j0) … (i, j0 + n − 1) of row i to dst (convolution builds
// its im2col rows this way, so the column matrix is never stored).
template <typename T>
struct GemmOperand {
  const T* data = nullptr;
  int64_t row_stride = 0, col_stride = 0;
  std::function<void(int64_t i, int64_t j0, int64_t n, T* dst)> row;

  static GemmOperand strided(const T* data, int64_t row_stride, int64_t col_stride) {
    return {data, row_stride, col_stride, {}};
  }
};

// The type of C for operands of type T: T, or float32 for bfloat16.
template <typename T>
using gemm_acc_t = std::conditional_t<std::is_same_v<T, bf16>, float, T>;

// C (M, N), row-major with leading dimension ldc (C[i, j] at c[i·ldc + j]):
//   C = A·B, or C += A·B when `accumulate`.
// `parallel`: split the work over the OpenMP threads (false: run on the calling thread only, for callers
// that already run one product per thread). The sum over K runs in the same order whatever the thread
// count, so the result is deterministic. M, N or K may be 0 (K = 0 gives C = 0, or C unchanged).
// `bias` (N values, or null): added to every row of the finished sums as the micro-kernel stores them, the
// same bits as adding it in a pass afterwards (a linear layer's bias without that pass over C).
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const GemmOperand<T>& a, const GemmOperand<T>& b, T* c, int64_t ldc,
          bool accumulate, bool parallel, const T* bias = nullptr);

// bfloat16 operands, float32 C: C (+)= A·B with every product exact and the sums in float32 (the rounding
// of the result to bfloat16, if wanted, is the caller's). With AMX (Intel's tile unit: Sapphire Rapids and
// later, where the kernel grants it) this runs on the tiles, gemm_bf16.cpp; with AVX512-BF16 and no AMX, on
// VDPBF16PS dot products over the same packed panels; elsewhere through the float32 GEMM, converting each
// operand while it is packed. Sums run in a fixed order on every path, whatever the thread count, but the
// paths round differently (the first two flush subnormals to zero).
//
// The epilogue, if given, replaces the store of the finished sums: they get a bias row added (N floats,
// `bias`) and/or are rounded to bfloat16 into `out` (row stride `ldo`), as the tiles leave them. The bits are
// those of storing C and then adding the bias and rounding in two more passes (sums, + bias, one rounding),
// without those passes over C. With `out`, C is only scratch for the sums between K slices (unused when K
// fits one) and its contents afterwards are unspecified.
struct GemmBf16Epilogue {
  const float* bias = nullptr;
  bf16* out = nullptr;
  int64_t ldo = 0;
};
void gemm_bf16(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
               int64_t ldc, bool accumulate, bool parallel, const GemmBf16Epilogue& epilogue = {});

// The path gemm_bf16 takes in this process: AMX tiles (the build targets AMX-BF16 and the OS granted the tile
// state), else AVX512-BF16 dot products (VDPBF16PS: Cooper Lake, Zen 4 and later, where the build targets them),
// else the float32 GEMM on widened operands. gemm_bf16_allow(path, false) rules the AMX or the dot-product path
// out (for tests and benchmarks that compare them) and returns its previous setting.
enum class GemmBf16Path { kAmx, kDot, kFloat32 };
GemmBf16Path gemm_bf16_path();
const char* gemm_bf16_path_name(GemmBf16Path path);
bool gemm_bf16_allow(GemmBf16Path path, bool allow);
// On the tiles and the dot products, with a bfloat16 output (the epilogue's `out`), the float32 sums between K
// slices wait in blocks of their own (contiguous 32 × 32 blocks, up to 64 MB per thread), else in C. This sets
// that limit in floats (0: always in C) and returns the previous one — for the test that holds the two to the
// same bits.
int64_t gemm_bf16_sums_limit(int64_t floats);
// On the tiles and the dot products, a product whose B columns for the whole of K fit the B block budget runs each A
// panel through all its K slices before the next (the sums between slices stay in cache); the same sums in the
// same order as the slices outermost. This turns that order on or off and returns the previous setting — for
// the test that holds the two to the same bits.
bool gemm_bf16_k_inner(bool on);

// A task of at most this many rows reads a row-major B (unit column stride) where it lies instead of packing it
// (gemm.cpp: packing costs as much as the product when few rows use it); the same bits either way. This sets
// the limit (0: always pack; default 512) and returns the previous one — for the test that holds the two to the
// same bits, and for benchmarks.
int64_t gemm_b_in_place_rows(int64_t rows);

// B given row by row and read where the rows lie, for products whose B would cost more to pack than to use:
// a convolution's weight gradient with few output channels, gW (O, KH·KW·C) = gYᵀ · im2col(x), where each im2col
// element serves only 2·O FLOPs and packing the im2col rows cost more than the product (kernels/cpu/conv.cpp).
// `groups` products C_g (M, N) (+)= A (M, K) · B_g (K, N), g < groups, share A; C_g starts at c + g·c_group (row
// stride ldc). rows(g, k0, kc, dst, scratch) sets dst[p] (p < kc) to row k0 + p of B_g: N values, readable up
// to gemm_gathered_row_length<T>(N) (whole vectors are read; the values past N are not used). A row that lies
// nowhere whole (a window over the image's edge) can be built in scratch + p·gemm_gathered_row_length<T>(N).
// rows is called from several threads at once, for several tasks. Same KC, same order of sums as gemm(): each
// C_g has the bits gemm(M, N, K, a, B_g, …) gives, whatever the thread count.
//   T is float, double or bf16. bfloat16 operands run in float32 (C float32): A widened as it is packed, B's rows
// widened in registers as the micro-kernel loads them (a shift: exact), every product exact and summed by the
// float32 FMA chains — the bits of the float32 gemm_gathered (and gemm()) on the widened operands. Not gemm_bf16's
// bits: its dot products add k in pairs (and flush subnormals).
template <typename T>
struct GemmGatheredB {
  int64_t groups = 1;
  std::function<void(int64_t g, int64_t k0, int64_t kc, const T** dst, T* scratch)> rows;
};
template <typename T>
void gemm_gathered(int64_t M, int64_t N, int64_t K, const GemmOperand<T>& a, const GemmGatheredB<T>& b,
                   gemm_acc_t<T>* c, int64_t ldc, int64_t c_group, bool accumulate, bool parallel);
template <typename T>
int64_t gemm_gathered_row_length(int64_t n);

// The bytes of one packed B block in the CPU GEMMs (0: the default for this machine, gemm.cpp); returns the
// previous setting. Block sizes change no sum's order, so results do not change: for that test, and benchmarks.
int64_t gemm_b_block_bytes(int64_t bytes);

// In the float32/float64 GEMM, a product whose B columns all fit one block for several K slices takes each A
// panel through those slices before the next (its C tile stays in cache between them); the same sums in the
// same order either way. This turns that order on or off and returns the previous setting — for the test that
// holds the two to the same bits, and for benchmarks.
bool gemm_k_inner(bool on);

// One name for both: code templated on the operand type calls gemm(…) and gets the float32 GEMM for float,
// the float64 one for double and gemm_bf16 for bfloat16 (C of type gemm_acc_t<T>, above).
inline void gemm(int64_t M, int64_t N, int64_t K, const GemmOperand<bf16>& a, const GemmOperand<bf16>& b, float* c,
                 int64_t ldc, bool accumulate, bool parallel) {
  gemm_bf16(M, N, K, a, b, c, ldc, accumulate, parallel);
}

// FLOP counting for the benchmarks (bench_train_cpu's "of limit" column): while on, every product adds its
// 2·M·N·K to a process-wide counter — the matrix products' work (linear, matmul, convolution) as the backend
// runs it; attention's own loops and elementwise ops are not counted.
void gemm_count_flops(bool on);
uint64_t gemm_flops_counted();

extern template void gemm<float>(int64_t, int64_t, int64_t, const GemmOperand<float>&, const GemmOperand<float>&,
                                 float*, int64_t, bool, bool, const float*);
extern template void gemm<double>(int64_t, int64_t, int64_t, const GemmOperand<double>&,
                                  const GemmOperand<double>&, double*, int64_t, bool, bool, const double*);

}  // namespace vb::cpu
