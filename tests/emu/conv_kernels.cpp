// The convolution, pooling and batch-norm kernels (kernels/cuda/conv.cu, pool.cu, batch_norm.cu)
// under the emulator, against the CPU backend, every run repeated under four fiber orders with
// bit-identical results. The cases are tests/support/conv_kernel_cases.h, shared with the GPU test.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include "kernels/cuda/conv.h"
#include "tests/support/conv_kernel_cases.h"
#endif
