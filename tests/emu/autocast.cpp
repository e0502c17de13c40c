// Mixed precision under the emulator (device `emu`): tests/support/autocast_cases.h.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include "tests/support/autocast_cases.h"
#endif
