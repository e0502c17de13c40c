// The GEMM ladder (kernels/cuda/gemm_ladder.cu) on a real GPU against the CPU backend, every case run
// twice with identical bytes. The cases are tests/support/gemm_ladder_cases.h, shared with the emulator
// test. Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "kernels/cuda/gemm_ladder.h"
#include "tests/support/gemm_ladder_cases.h"
#endif
