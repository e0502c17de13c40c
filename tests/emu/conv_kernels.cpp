// The convolution, pooling and batch-norm kernels (kernels/cuda/conv.cu, pool.cu, batch_norm.cu)
// under the emulator, against the CPU backend, every run repeated under five fiber orders with
// bit-identical results. The cases are tests/support/conv_kernel_cases.h, shared with the GPU test.
#include "tests/emu/emu_test.h"  // first: skips the test when there is no emulator

#if defined(VB_HAVE_EMU)

#include "kernels/cuda/conv.h"
#include "tests/support/emu_launchers.h"  // rt, kern

namespace {
template <class Run>
auto repeat_bit_identical(Run run) {
  return vb::emulator::run_under_orders(run);
}
}  // namespace

#include "tests/support/conv_kernel_cases.h"

#endif
