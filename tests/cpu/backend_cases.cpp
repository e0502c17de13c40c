// The case table itself (tests/support/backend_cases.h), on the CPU backend:
// - every method of kernels/backend_methods.def has at least one case that is not an error case, and no
//   case names a method the interface lacks: a new Backend method fails here until the table runs it;
// - case names are unique (VB_CASES selects by name);
// - every case gives the same bits on one OpenMP thread as on two (the CPU backend's threads split work,
//   never sums), and the error cases raise their errors on the CPU too.
#include "tests/support/backend_cases.h"

#include <doctest/doctest.h>
#include <omp.h>

#include <map>
#include <set>

namespace bc = vb::backend_cases;

TEST_CASE("the case table covers every Backend method, with unique names") {
  std::map<std::string, int> runs;
  std::set<std::string> names;
  const std::set<std::string> methods(bc::method_names().begin(), bc::method_names().end());
  CHECK(methods.size() == bc::method_names().size());
  for (const bc::Case& c : bc::all_cases()) {
    CHECK_MESSAGE(methods.count(c.method) == 1, "case \"", c.name, "\" names no Backend method: ", c.method);
    CHECK_MESSAGE(names.insert(c.name).second, "two cases are named \"", c.name, "\"");
    if (c.error.empty()) ++runs[c.method];
  }
  for (const std::string& m : bc::method_names())
    CHECK_MESSAGE(runs[m] > 0, "Backend::", m, " has no case in tests/support/cases/ (kernels/backend_methods.def)");
  MESSAGE(bc::all_cases().size(), " cases over ", methods.size(), " methods");
}

TEST_CASE("every case of the table on the CPU: the same bits on 1 and 2 threads; its errors raised") {
  const int threads = omp_get_max_threads();
  for (const bc::Case* c : bc::selected(bc::all_cases())) {
    CAPTURE(c->name);
    if (!c->error.empty()) {
      if (c->device_only) continue;
      const std::string m = bc::error_text([&] { c->run(vb::Device()); });
      CHECK_MESSAGE(m.find(c->error) != std::string::npos, c->name, ": expected an error containing \"", c->error,
                    "\", got \"", m, "\"");
      continue;
    }
    omp_set_num_threads(1);
    const bc::Outputs one = c->run(vb::Device());
    omp_set_num_threads(2);
    const bc::Outputs two = c->run(vb::Device());
    REQUIRE(one.size() == two.size());
    for (size_t i = 0; i < one.size(); ++i)
      if (one[i].value.defined())
        CHECK_MESSAGE(bc::bytes_of(one[i].value) == bc::bytes_of(two[i].value), c->name, ": ", one[i].name,
                      " differs between 1 and 2 threads");
  }
  omp_set_num_threads(threads);
}
