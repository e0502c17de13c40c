// The nearest-centroid kernel (kernels/cuda/nearest_centroid.cu) under the emulator, through the op and
// the backend's wiring, against the CPU backend: bit-identical results, every case run under four fiber
// orders (in order, reversed, a shuffle on one worker; in order on two workers) with identical bytes. The
// cases are tests/support/nearest_centroid_cases.h, shared with the GPU test.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include "tests/support/nearest_centroid_cases.h"
#endif
