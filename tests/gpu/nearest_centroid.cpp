// The nearest-centroid kernel (kernels/cuda/nearest_centroid.cu) on a real GPU, through the op and the
// backend's wiring, against the CPU backend: bit-identical results, every case run twice with identical
// bytes. The cases are tests/support/nearest_centroid_cases.h, shared with the emulator test. Exits 77
// (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "tests/support/nearest_centroid_cases.h"
#endif
