// Mixed precision on a real GPU (device `cuda`): the cases of tests/emu/autocast.cpp
// (tests/support/autocast_cases.h). Exits 77 (skipped) without a GPU or without the CUDA build.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include "tests/support/autocast_cases.h"
#endif
