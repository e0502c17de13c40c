// One exception type for every mistake a user can make: its message names the op, the shapes,
// dtypes, devices, files or keys involved and what was expected.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <stdexcept>
#include <string>

namespace vb {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vb

// VB_CHECK(cond, "op: expected ..., got {}", x): throws vb::Error with that message when cond is false.
#define VB_CHECK(cond, ...)                  \
  do {                                       \
    if (!(cond)) ::vb::fail(__VA_ARGS__);    \
  } while (0)
