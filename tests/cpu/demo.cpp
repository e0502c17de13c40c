// The README's demo: the MLP's loss must fall well below where it started.
#include "tests/support/check.h"
#include "train/demo.h"

TEST_CASE("the MLP demo learns the toy regression") {
  vb::DemoOptions opt;
  opt.steps = 150;
  int logged = 0;
  vb::DemoResult r = vb::run_mlp_demo(opt, [&](int, double) { ++logged; });
  CHECK(logged == 150);
  // Predicting the mean gives the target's variance (about 0.27); the fit must beat it by far.
  CHECK(r.first_loss > 0.1);
  CHECK(r.last_loss < r.first_loss / 5);
}
