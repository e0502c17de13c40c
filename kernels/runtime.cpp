// What both runtimes share (kernels/runtime.h): the error type.
#include "kernels/runtime.h"

namespace vb::rt {

Error::Error(const std::string& what, std::source_location where)
    : std::runtime_error(std::string(where.file_name()) + ":" + std::to_string(where.line()) + ": " + what),
      where_(where) {}

}  // namespace vb::rt
