// The case table (tests/support/backend_cases.h) on device `cuda`: every Backend method's cases run on the
// GPU against the CPU backend, each twice with bit-identical results. Exits 77 (skipped) without a GPU or
// without the CUDA build. VB_CASES=text selects cases.
#include "tests/support/gpu_harness.h"  // first: skips the test without the GPU

#if defined(VB_HAVE_CUDA)
#include <fmt/core.h>

#include "tests/support/backend_cases.h"

TEST_CASE("every case of the table: cuda against the CPU backend") {
  const auto cases = vb::backend_cases::selected(vb::backend_cases::all_cases());
  REQUIRE_FALSE(cases.empty());
  for (const vb::backend_cases::Case* c : cases) vb::backend_cases::check_case(*c, device_under_test());
  fmt::print("{} cases on cuda\n", cases.size());
}
#endif
