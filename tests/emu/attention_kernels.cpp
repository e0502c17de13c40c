// The attention kernels (kernels/cuda/attention.cu, attention_mma.cu) under the emulator: the cases of
// tests/support/attention_cases.h (forward and backward against the CPU backend in float32, the
// FlashAttention criterion against float64 for bfloat16/float16), every case under four fiber/block
// orders with bit-identical results.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include "kernels/cuda/attention.h"
#include "tests/support/attention_cases.h"
#endif
