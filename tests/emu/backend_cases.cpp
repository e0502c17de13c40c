// The case table (tests/support/backend_cases.h) on device `emu`: every Backend method's cases run by the
// CUDA backend's kernels under the emulator, against the CPU backend, each under two fiber orders
// (in order on one worker, shuffled on two) with bit-identical results. VB_CASES=text selects cases.
#include "tests/support/emu_harness.h"  // first: skips the test without the emulator

#if defined(VB_HAVE_EMU)
#include <fmt/core.h>

#include "tests/support/backend_cases.h"

TEST_CASE("every case of the table: emu against the CPU backend") {
  const auto cases = vb::backend_cases::selected(vb::backend_cases::all_cases());
  REQUIRE_FALSE(cases.empty());
  for (const vb::backend_cases::Case* c : cases) vb::backend_cases::check_case(*c, device_under_test());
  fmt::print("{} cases on emu\n", cases.size());
}
#endif
