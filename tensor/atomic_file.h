// Files that are never half-written: the bytes go to a temporary file in the destination's folder, which
// is fsynced and renamed over the destination, and the folder is fsynced so the rename itself is durable.
// A failure at any point leaves the previous file intact and removes the temporary file.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace vb {

// Appends bytes to the file being written.
using WriteBytes = std::function<void(const void* data, size_t size)>;

// Calls body(write) to produce the contents of `path`, then commits them atomically.
void write_file_atomic(const std::string& path, const std::function<void(const WriteBytes& write)>& body);
void write_text_atomic(const std::string& path, const std::string& text);

// The whole file as a string; an Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace vb
