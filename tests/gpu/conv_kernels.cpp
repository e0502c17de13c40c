// The convolution, pooling and batch-norm kernels (kernels/cuda/conv.cu, pool.cu, batch_norm.cu) on a
// real GPU, against the CPU backend, every run repeated twice with bit-identical results (the
// reductions are deterministic). The cases are tests/support/conv_kernel_cases.h, shared with the
// emulator test. Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "kernels/cuda/conv.h"
#include "tests/support/conv_kernel_cases.h"
#endif
