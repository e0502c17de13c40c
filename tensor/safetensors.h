// safetensors: the format of checkpoints and of the PyTorch golden fixtures.
// Layout: [u64 little-endian N][N bytes of UTF-8 JSON header][byte buffer]. The header maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets into the byte buffer) and may hold
// "__metadata__", a string → string map. Data is little-endian and row-major.
//
// The reader validates a file the way the reference implementation does, and checks every size before
// it trusts it: no allocation is ever sized by a header value that was not checked against the file.
// The writer pads the header with spaces to a multiple of 8, records {"format": "pt"} (Hugging Face
// refuses files without it) and replaces the destination atomically.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace vb {

// One tensor's entry in the header.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // [begin, end) in bytes, relative to the start of the byte buffer
};

// A validated header: the entries sorted by their place in the byte buffer.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<SafetensorsEntry> entries;
  uint64_t data_start = 0;  // byte offset of the buffer in the file: 8 + N
};

// A loaded file: CPU tensors in the order their data lies in the file (for files written by
// save_safetensors: the order they were given).
struct SafetensorsFile {
  std::string path;
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<std::string, Tensor>> tensors;

  bool contains(const std::string& name) const;
  // The tensor called `name`; an Error naming the file and the key when there is none.
  const Tensor& at(const std::string& name) const;
};

// Reads and validates the header only (names, dtypes, shapes, offsets); checks the file's size too.
// An Error, starting with the path, names the problem (and the tensor) when the file is malformed.
SafetensorsHeader parse_safetensors_header(const std::string& path);

// Reads a whole file into CPU tensors, after the header's checks.
SafetensorsFile load_safetensors(const std::string& path);

// Writes `tensors` in the given order (any device, any strides: each is copied to a contiguous CPU
// tensor). `metadata` is merged with {"format": "pt"}; a "format" given by the caller wins. Atomic: the
// file is written to a temporary file in the same folder, synced and renamed over `path`, so a failure
// never leaves a partial file under `path` (and an existing file there stays intact).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string ("F32", "BF16", ...) of a dtype.
std::string safetensors_dtype_name(DType dtype);

}  // namespace vb
