// Pinned host memory and asynchronous copies on a real GPU (device `cuda`): the cases of
// tests/emu/pinned.cpp (tests/support/pinned_cases.h). Exits 77 (skipped) without a GPU or CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "tests/support/pinned_cases.h"
#endif
