// Pinned host memory under the emulator (device `emu`): tests/support/pinned_cases.h.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include "tests/support/pinned_cases.h"
#endif
