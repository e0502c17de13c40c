// safetensors reading and writing. The checks follow the reference implementation's order: file size,
// header length, UTF-8, JSON schema (dtype, shape, offsets, metadata), offsets contiguous from 0,
// shape × element size (with overflow checks) equal to each tensor's byte count, no trailing bytes.
// Duplicate keys are rejected too: the format forbids them, but a JSON parser keeps the last silently.
#include "tensor/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/atomic_file.h"

namespace vb {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// Keeps the header's key order: entries with equal offsets (zero-size tensors) stay in file order.
using Json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

// ---------------------------------------------------------------- dtypes

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kSupported[] = {{"BOOL", DType::Bool},   {"I32", DType::Int32},   {"I64", DType::Int64},
                                    {"F16", DType::Float16}, {"BF16", DType::BFloat16}, {"F32", DType::Float32},
                                    {"F64", DType::Float64}};
// Valid safetensors dtypes that videobert has no tensor type for.
constexpr const char* kUnsupported[] = {"U8",      "I8",      "I16",     "U16",     "U32",     "U64", "C64",
                                        "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"};

// ---------------------------------------------------------------- small helpers

std::string errno_text() { return std::strerror(errno); }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Returns the byte
// offset of the first invalid sequence, or npos.
size_t find_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0fu, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07u, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string::npos;
}

std::string json_type(const Json& j) { return j.type_name(); }

// ---------------------------------------------------------------- header parsing

// The header's JSON with duplicate keys rejected at every level.
Json parse_json(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> keys;  // one set per object being parsed
  auto reject_duplicates = [&](int, Json::parse_event_t event, Json& parsed) {
    using E = Json::parse_event_t;
    if (event == E::object_start) {
      keys.emplace_back();
    } else if (event == E::object_end) {
      keys.pop_back();
    } else if (event == E::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(key).second)
        fail("{}: safetensors header has the key \"{}\" twice (duplicate names are not allowed)", path, key);
    }
    return true;
  };
  try {
    return Json::parse(text, reject_duplicates);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: safetensors header is not valid JSON: {}", path, e.what());
  }
}

DType parse_dtype(const std::string& path, const std::string& name, const Json& j) {
  VB_CHECK(j.is_string(), "{}: tensor \"{}\": \"dtype\" must be a string, got {}", path, name, json_type(j));
  const std::string& s = j.get_ref<const std::string&>();
  for (const DTypeName& d : kSupported)
    if (s == d.name) return d.dtype;
  for (const char* u : kUnsupported)
    VB_CHECK(s != u, "{}: tensor \"{}\" has dtype {}, a valid safetensors dtype that videobert does not support "
             "(supported: BOOL, I32, I64, F16, BF16, F32, F64)", path, name, s);
  fail("{}: tensor \"{}\" has unknown dtype \"{}\" (safetensors dtypes: BOOL, U8, I8, I16, U16, I32, U32, I64, "
       "U64, F16, BF16, F32, F64, C64, F8_*, F6_*, F4)", path, name, s);
}

// A non-negative JSON integer (what the reference reads as usize).
uint64_t parse_count(const std::string& path, const std::string& name, const char* field, const Json& j) {
  VB_CHECK(j.is_number_unsigned(), "{}: tensor \"{}\": \"{}\" must hold non-negative integers, got {} {}", path,
           name, field, json_type(j), j.dump());
  return j.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const Json& j) {
  VB_CHECK(j.is_object(), "{}: tensor \"{}\": expected an object with dtype, shape and data_offsets, got {}", path,
           name, json_type(j));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    VB_CHECK(j.contains(field), "{}: tensor \"{}\" has no \"{}\"", path, name, field);
  SafetensorsEntry e;
  e.name = name;
  e.dtype = parse_dtype(path, name, j["dtype"]);
  const Json& shape = j["shape"];
  VB_CHECK(shape.is_array(), "{}: tensor \"{}\": \"shape\" must be an array, got {}", path, name, json_type(shape));
  for (const Json& d : shape) {
    const uint64_t v = parse_count(path, name, "shape", d);
    VB_CHECK(v <= uint64_t(std::numeric_limits<int64_t>::max()), "{}: tensor \"{}\": shape entry {} is too large",
             path, name, v);
    e.shape.push_back(int64_t(v));
  }
  const Json& off = j["data_offsets"];
  VB_CHECK(off.is_array() && off.size() == 2, "{}: tensor \"{}\": \"data_offsets\" must be [begin, end], got {}",
           path, name, off.dump());
  e.begin = parse_count(path, name, "data_offsets", off[0]);
  e.end = parse_count(path, name, "data_offsets", off[1]);
  return e;
}

// Validates the layout of the byte buffer (`buffer_bytes` long) against the entries, sorted by offset.
void check_layout(const std::string& path, std::vector<SafetensorsEntry>& entries, uint64_t buffer_bytes) {
  std::stable_sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t expected_begin = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : entries) {
    VB_CHECK(e.end >= e.begin, "{}: tensor \"{}\": data_offsets [{}, {}] end before they begin", path, e.name,
             e.begin, e.end);
    if (e.begin != expected_begin) {
      if (!previous)
        fail("{}: tensor \"{}\" begins at byte {} of the data buffer; offsets must be contiguous from 0", path,
             e.name, e.begin);
      if (e.begin > expected_begin)
        fail("{}: gap in the data buffer: tensor \"{}\" begins at byte {} but \"{}\" ends at byte {}", path, e.name,
             e.begin, previous->name, expected_begin);
      fail("{}: tensor \"{}\" [{}, {}) overlaps tensor \"{}\" [{}, {})", path, e.name, e.begin, e.end, previous->name,
           previous->begin, previous->end);
    }
    uint64_t numel = 1;
    for (int64_t d : e.shape)
      VB_CHECK(!__builtin_mul_overflow(numel, uint64_t(d), &numel), "{}: tensor \"{}\": shape {} overflows", path,
               e.name, shape_str(e.shape));
    uint64_t nbytes;
    VB_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes),
             "{}: tensor \"{}\": shape {} × {} bytes overflows", path, e.name, shape_str(e.shape),
             dtype_size(e.dtype));
    VB_CHECK(e.end - e.begin == nbytes, "{}: tensor \"{}\": data_offsets [{}, {}] hold {} bytes, but shape {} of {} "
             "needs {}", path, e.name, e.begin, e.end, e.end - e.begin, shape_str(e.shape),
             safetensors_dtype_name(e.dtype), nbytes);
    expected_begin = e.end;
    previous = &e;
  }
  VB_CHECK(expected_begin <= buffer_bytes, "{}: file truncated: the tensors need a {}-byte data buffer, the file "
           "holds {}", path, expected_begin, buffer_bytes);
  VB_CHECK(expected_begin == buffer_bytes, "{}: {} trailing bytes after the last tensor's data", path,
           buffer_bytes - expected_begin);
}

// Opens `path`, reads and validates its header; leaves the file positioned at the data buffer.
SafetensorsHeader read_header(const std::string& path, File& file) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  VB_CHECK(status.type() != std::filesystem::file_type::not_found, "{}: cannot open safetensors file: no such file",
           path);
  VB_CHECK(!ec, "{}: cannot open safetensors file: {}", path, ec.message());
  VB_CHECK(std::filesystem::is_regular_file(status), "{}: cannot open safetensors file: not a regular file", path);
  file.reset(std::fopen(path.c_str(), "rb"));
  VB_CHECK(file != nullptr, "{}: cannot open safetensors file: {}", path, errno_text());
  struct stat st {};
  VB_CHECK(fstat(fileno(file.get()), &st) == 0, "{}: cannot stat: {}", path, errno_text());
  const uint64_t file_bytes = uint64_t(st.st_size);

  VB_CHECK(file_bytes >= 8, "{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path,
           file_bytes);
  unsigned char len_bytes[8];
  VB_CHECK(std::fread(len_bytes, 1, 8, file.get()) == 8, "{}: cannot read the header length: {}", path,
           errno_text());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  VB_CHECK(n <= kMaxHeaderBytes, "{}: header length {} exceeds the safetensors limit of {} bytes", path, n,
           kMaxHeaderBytes);
  VB_CHECK(n <= file_bytes - 8, "{}: header length {} runs past the end of the file ({} bytes)", path, n,
           file_bytes);

  std::string text(size_t(n), '\0');  // n is now bounded by the file's size
  VB_CHECK(std::fread(text.data(), 1, text.size(), file.get()) == text.size(), "{}: cannot read the {}-byte header",
           path, n);
  const size_t bad = find_invalid_utf8(text);
  VB_CHECK(bad == std::string::npos, "{}: safetensors header is not valid UTF-8 (byte {} of the header)", path, bad);

  const Json j = parse_json(path, text);
  VB_CHECK(j.is_object(), "{}: safetensors header must be a JSON object, got {}", path, json_type(j));
  SafetensorsHeader h;
  h.data_start = 8 + n;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      VB_CHECK(value.is_object(), "{}: \"__metadata__\" must be an object of strings, got {}", path,
               json_type(value));
      for (const auto& [mk, mv] : value.items()) {
        VB_CHECK(mv.is_string(), "{}: \"__metadata__\" value of \"{}\" must be a string, got {} {}", path, mk,
                 json_type(mv), mv.dump());
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(path, key, value));
  }
  check_layout(path, h.entries, file_bytes - h.data_start);
  return h;
}

// ---------------------------------------------------------------- writing

// t's elements as contiguous row-major bytes on the host; `keep` holds them when t is not already so.
const void* host_bytes(const Tensor& t, std::vector<unsigned char>& keep) {
  const int64_t es = t.element_size();
  const int64_t numel = t.numel();
  if (t.device().is_cpu() && t.is_contiguous()) return t.data_ptr();
  // The storage span the view touches, on the host.
  int64_t lo = t.offset(), hi = t.offset();
  for (int d = 0; d < t.dim(); ++d) (t.stride(d) < 0 ? lo : hi) += (t.size(d) - 1) * t.stride(d);
  const auto* base = static_cast<const unsigned char*>(t.impl()->storage->data);
  std::vector<unsigned char> span;
  const unsigned char* src = base + lo * es;
  if (!t.device().is_cpu()) {
    span.resize(size_t((hi - lo + 1) * es));
    copy_bytes(span.data(), Device(), src, t.device(), span.size());
    src = span.data();
  }
  if (t.is_contiguous()) {  // a contiguous device tensor: the span is exactly its bytes
    keep = std::move(span);
    return keep.data();
  }
  keep.resize(size_t(numel * es));
  std::vector<int64_t> idx(size_t(t.dim()), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t off = t.offset() - lo;
    for (int d = 0; d < t.dim(); ++d) off += idx[size_t(d)] * t.stride(d);
    std::memcpy(keep.data() + i * es, src + off * es, size_t(es));
    for (int d = t.dim() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.size(d)) break;
      idx[size_t(d)] = 0;
    }
  }
  return keep.data();
}

}  // namespace

// ---------------------------------------------------------------- public API

std::string safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kSupported)
    if (d.dtype == dtype) return d.name;
  fail("safetensors: no dtype name for {}", dtype);
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  fail("{}: no tensor named \"{}\" ({} tensors in the file)", path, name, tensors.size());
}

SafetensorsHeader parse_safetensors_header(const std::string& path) {
  File file;
  return read_header(path, file);
}

SafetensorsFile load_safetensors(const std::string& path) {
  File file;
  SafetensorsHeader h = read_header(path, file);
  SafetensorsFile out;
  out.path = path;
  out.metadata = std::move(h.metadata);
  out.tensors.reserve(h.entries.size());
  // The entries are sorted and contiguous, so the data is read front to back in one pass; each
  // allocation was checked against the file's size in read_header.
  for (const SafetensorsEntry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const size_t nbytes = size_t(e.end - e.begin);
    VB_CHECK(std::fread(t.data_ptr(), 1, nbytes, file.get()) == nbytes,
             "{}: tensor \"{}\": cannot read its {} bytes (file changed while reading?)", path, e.name, nbytes);
    if (e.dtype == DType::Bool) {  // any non-zero byte is true; keep C++ bools 0 or 1
      auto* b = static_cast<unsigned char*>(t.data_ptr());
      for (size_t i = 0; i < nbytes; ++i) b[i] = b[i] != 0;
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Everything that can be checked before a byte is written.
  std::set<std::string> names;
  std::map<std::string, std::string> meta = metadata;
  meta.try_emplace("format", "pt");
  nlohmann::ordered_json header;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    VB_CHECK(name != "__metadata__", "{}: cannot save a tensor named \"__metadata__\" (reserved)", path);
    VB_CHECK(names.insert(name).second, "{}: cannot save two tensors named \"{}\"", path, name);
    VB_CHECK(t.defined(), "{}: cannot save tensor \"{}\": it is undefined", path, name);
    const uint64_t nbytes = uint64_t(t.numel() * t.element_size());
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {
    fail("{}: tensor names and metadata must be valid UTF-8: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));

  write_file_atomic(path, [&](const WriteBytes& write) {
    write(len_bytes, 8);
    write(text.data(), text.size());
    for (const auto& [name, t] : tensors) {
      if (t.numel() == 0) continue;
      std::vector<unsigned char> keep;
      const void* p;
      try {
        p = host_bytes(t, keep);
      } catch (const std::exception& e) {
        fail("{}: cannot save tensor \"{}\": {}", path, name, e.what());
      }
      write(p, size_t(t.numel() * t.element_size()));
    }
  });
}

}  // namespace vb
