// `videobert info`: what this build is and what it can run on.
#pragma once
#include <string>

namespace vb {

// Build options, devices, thread count and library versions, one "key: value" per line.
std::string build_info();

}  // namespace vb
