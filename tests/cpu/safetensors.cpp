// safetensors: round trips of every dtype and layout, the writer's header (padding, format metadata),
// byte-exact agreement with the Python writer of tests/golden/make_fixtures.py, every malformed file
// the reference reader rejects, and the atomic replacement of an existing file when a write fails.
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "tensor/safetensors.h"
#include "tests/support/check.h"

namespace fs = std::filesystem;
using namespace vb;

namespace {

// A fresh folder for one test case, removed afterwards.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int n = 0;
    dir = fs::temp_directory_path() / ("vb_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  // Every entry of the folder (to catch temporary files left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file made of a header and `data_bytes` zero bytes of data; `n` overrides the header length.
std::string raw_file(const std::string& header, size_t data_bytes, std::optional<uint64_t> n = std::nullopt) {
  return u64_le(n.value_or(header.size())) + header + std::string(data_bytes, '\0');
}

// Loading `path` fails with a vb::Error whose message starts with the path and contains every key word.
void check_rejected(const std::string& path, std::initializer_list<const char*> words, const char* what) {
  INFO(std::string(what));
  bool threw = false;
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    threw = true;
    const std::string msg = e.what();
    INFO("message: ", msg);
    CHECK(msg.rfind(path, 0) == 0);
    for (const char* w : words) CHECK_MESSAGE(msg.find(w) != std::string::npos, "missing \"", std::string(w), "\"");
  }
  CHECK_MESSAGE(threw, "the file was accepted");
}

void check_malformed(const TempDir& tmp, const std::string& bytes, std::initializer_list<const char*> words,
                     const char* what) {
  const std::string path = tmp.file("bad.safetensors");
  write_bytes(path, bytes);
  check_rejected(path, words, what);
}

// An F32 entry of the header.
std::string f32_entry(const std::string& name, const std::string& shape, uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) +
         "," + std::to_string(end) + "]}";
}

void check_same_tensor(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  CHECK(actual.dtype() == expected.dtype());
  REQUIRE(actual.shape() == expected.shape());
  CHECK((actual.is_contiguous() || actual.numel() == 0));
  CHECK(actual.device().is_cpu());
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i) REQUIRE_MESSAGE(a[i] == e[i], "element ", i);
}

const DType kAllDTypes[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16,
                            DType::Int32,   DType::Int64,   DType::Bool};

// Values every dtype holds exactly.
Tensor sample(const Shape& shape, DType dtype, double start = -3) {
  std::vector<double> v(size_t(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = dtype == DType::Bool ? double((i * 7 + 1) % 3 == 0) : start + 0.5 * double(i);
  if (!is_floating(dtype))
    for (double& x : v) x = std::trunc(x);
  return Tensor::from_vector(v, shape, dtype);
}

}  // namespace

TEST_CASE("round trip of every dtype: plain, 0-d, zero-size") {
  TempDir tmp;
  for (DType dt : kAllDTypes) {
    std::vector<std::pair<std::string, Tensor>> tensors = {
        {"matrix", sample({3, 4}, dt)},
        {"scalar", Tensor::scalar(dt == DType::Bool ? 1.0 : 2.5, dt)},
        {"empty_rows", Tensor::empty({0, 3}, dt)},
        {"empty_cols", Tensor::empty({2, 0, 5}, dt)},
        {"vector", sample({5}, dt, 7)},
    };
    const std::string path = tmp.file(std::string(dtype_name(dt)) + ".safetensors");
    save_safetensors(path, tensors);
    const SafetensorsFile f = load_safetensors(path);
    REQUIRE(f.tensors.size() == tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      CHECK(f.tensors[i].first == tensors[i].first);  // the order they were given
      check_same_tensor(f.tensors[i].second, tensors[i].second,
                        std::string(dtype_name(dt)) + " " + tensors[i].first);
    }
    CHECK(f.at("scalar").dim() == 0);
    CHECK(f.metadata.at("format") == "pt");
  }
}

TEST_CASE("round trip of non-contiguous views: transpose, step slice, expand") {
  TempDir tmp;
  for (DType dt : kAllDTypes) {
    const Tensor base = sample({4, 6}, dt);
    const std::vector<std::pair<std::string, Tensor>> tensors = {
        {"transposed", transpose(base, 0, 1)},
        {"strided", slice(base, 1, 1, 6, 2)},
        {"expanded", expand(sample({1, 3}, dt), {4, 3})},
        {"column", select(base, 1, 2)},
    };
    for (const auto& [name, t] : tensors) REQUIRE_FALSE(t.is_contiguous());
    const std::string path = tmp.file("views.safetensors");
    save_safetensors(path, tensors);
    const SafetensorsFile f = load_safetensors(path);
    for (const auto& [name, t] : tensors) check_same_tensor(f.at(name), t, std::string(dtype_name(dt)) + " " + name);
  }
}

TEST_CASE("the writer pads the header to a multiple of 8 and records the format") {
  TempDir tmp;
  const std::string path = tmp.file("h.safetensors");
  // Names of several lengths so that different paddings occur.
  for (const std::string name : {"a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"}) {
    save_safetensors(path, {{name, sample({2}, DType::Float32)}}, {{"step", "12"}});
    const std::string bytes = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    CHECK(n % 8 == 0);
    CHECK(bytes.size() == 8 + n + 8);
    const std::string header = bytes.substr(8, n);
    CHECK(header.find("\"__metadata__\":{\"format\":\"pt\",\"step\":\"12\"}") != std::string::npos);
    const size_t last = header.find_last_not_of(' ');
    CHECK(header[last] == '}');
    CHECK(n - (last + 1) < 8);
    const SafetensorsHeader h = parse_safetensors_header(path);
    CHECK(h.data_start == 8 + n);
    REQUIRE(h.entries.size() == 1);
    CHECK(h.entries[0].name == name);
    CHECK(h.entries[0].dtype == DType::Float32);
    CHECK(h.entries[0].shape == Shape{2});
    CHECK(h.entries[0].end == 8);
    CHECK(h.metadata.at("step") == "12");
  }
  // A "format" given by the caller wins; other metadata survives the round trip, UTF-8 included.
  save_safetensors(path, {{"x", sample({1}, DType::Float32)}}, {{"format", "mlx"}, {"note", "naïve \"q\"\t"}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.at("format") == "mlx");
  CHECK(f.metadata.at("note") == "naïve \"q\"\t");
}

TEST_CASE("byte-exact agreement with the Python writer (tests/golden/reference_tiny.safetensors)") {
  // make_fixtures.py writes these tensors with these values; see write_reference_tiny() there.
  const std::string ref_path = std::string(VB_SOURCE_DIR) + "/tests/golden/reference_tiny.safetensors";
  std::vector<double> a(6), z;
  for (int i = 0; i < 6; ++i) a[size_t(i)] = 0.5 * i - 1;
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"a", Tensor::from_vector(a, {2, 3}, DType::Float32)},
      {"b", Tensor::from_vector(std::vector<double>{1.25, -1e-300}, {1, 2}, DType::Float64)},
      {"c", Tensor::from_vector(std::vector<double>{1.0, -2.5, 3.0}, {3}, DType::BFloat16)},
      {"d", Tensor::from_vector(std::vector<double>{0.5, -0.25}, {2, 1}, DType::Float16)},
      {"e", Tensor::from_vector(std::vector<double>{1, -2, 3}, {3}, DType::Int32)},
      {"f", Tensor::scalar(7, DType::Int64)},
      {"g", Tensor::from_vector(std::vector<double>{1, 0, 1}, {3}, DType::Bool)},
      {"h", Tensor::from_vector(z, {0, 4}, DType::Float32)},
  };
  const std::map<std::string, std::string> metadata = {{"note", "naïve \"q\"\t"}};
  TempDir tmp;
  const std::string path = tmp.file("tiny.safetensors");
  save_safetensors(path, tensors, metadata);
  const std::string ours = read_bytes(path), theirs = read_bytes(ref_path);
  REQUIRE_MESSAGE(!theirs.empty(), "missing ", ref_path, " (run tests/golden/make_fixtures.py)");
  CHECK(ours == theirs);
  const SafetensorsFile f = load_safetensors(ref_path);
  CHECK(f.metadata.at("format") == "pt");
  CHECK(f.metadata.at("note") == metadata.at("note"));
  REQUIRE(f.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    CHECK(f.tensors[i].first == tensors[i].first);
    check_same_tensor(f.tensors[i].second, tensors[i].second, tensors[i].first);
  }
}

TEST_CASE("a valid file with no tensors, null metadata and unknown extra fields") {
  TempDir tmp;
  const std::string path = tmp.file("ok.safetensors");
  write_bytes(path, raw_file("{}", 0));
  CHECK(load_safetensors(path).tensors.empty());
  write_bytes(path, raw_file("{\"__metadata__\":null}   ", 0));
  CHECK(load_safetensors(path).metadata.empty());
  // The reference ignores fields it does not know; offsets are sorted, not taken in header order.
  write_bytes(path, raw_file("{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8],\"extra\":1}," +
                                 f32_entry("x", "[1]", 0, 4) + "}",
                             8));
  const SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].first == "x");
  CHECK(f.tensors[1].first == "y");
  // A bool byte other than 0/1 reads as true.
  const std::string bool_header = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  write_bytes(path, u64_le(bool_header.size()) + bool_header + std::string("\x00\x05", 2));
  CHECK(load_safetensors(path).at("m").to_vector() == std::vector<double>{0, 1});
}

TEST_CASE("malformed files are rejected with a message naming the problem") {
  TempDir tmp;
  const std::string ok_entry = f32_entry("w", "[2]", 0, 8);

  check_malformed(tmp, std::string("\x02\x00\x00\x00\x00", 5), {"5 bytes", "shorter than the 8-byte"}, "short file");
  check_malformed(tmp, raw_file("{}", 0, 100'000'001), {"header length 100000001", "exceeds", "100000000"},
                  "header length over the limit");
  check_malformed(tmp, raw_file("{}", 0, 64), {"header length 64", "past the end"}, "header past the end");
  check_malformed(tmp, raw_file("{\"\xff\":1}", 0), {"not valid UTF-8", "byte 2"}, "invalid byte");
  check_malformed(tmp, raw_file("{\"\xc0\xaf\":1}", 0), {"not valid UTF-8"}, "overlong encoding");
  check_malformed(tmp, raw_file("{\"\xed\xa0\x80\":1}", 0), {"not valid UTF-8"}, "encoded surrogate");
  check_malformed(tmp, raw_file("{\"w\":", 0), {"not valid JSON"}, "truncated JSON");
  check_malformed(tmp, raw_file("[1,2]", 0), {"must be a JSON object", "array"}, "header not an object");
  check_malformed(tmp, raw_file("{\"w\":[1]}", 0), {"\"w\"", "expected an object"}, "entry not an object");
  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), {"\"w\"", "no \"data_offsets\""},
                  "missing field");

  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                  {"\"w\"", "unknown dtype \"F33\""}, "unknown dtype");
  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                  {"\"w\"", "\"dtype\" must be a string"}, "dtype not a string");
  for (const char* dt : {"U8", "I8", "I16", "U16", "U32", "U64"}) {
    const std::string header = std::string("{\"w\":{\"dtype\":\"") + dt + "\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    check_malformed(tmp, raw_file(header, 0), {"\"w\"", dt, "videobert does not support"}, dt);
  }

  check_malformed(tmp, raw_file("{" + f32_entry("w", "[-2]", 0, 8) + "}", 8), {"\"w\"", "non-negative", "-2"},
                  "negative shape");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[2.5]", 0, 8) + "}", 8), {"\"w\"", "non-negative", "2.5"},
                  "fractional shape");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "2", 0, 8) + "}", 8), {"\"w\"", "\"shape\" must be an array"},
                  "shape not an array");
  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8),
                  {"\"w\"", "[begin, end]"}, "three offsets");
  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", 8),
                  {"\"w\"", "data_offsets", "non-negative"}, "negative offset");

  check_malformed(tmp, raw_file("{" + f32_entry("w", "[2]", 8, 4) + "}", 8), {"\"w\"", "[8, 4]", "end before"},
                  "end before begin");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[2]", 4, 12) + "}", 12), {"\"w\"", "begins at byte 4",
                  "contiguous from 0"}, "first tensor not at 0");
  check_malformed(tmp, raw_file("{" + ok_entry + "," + f32_entry("v", "[1]", 12, 16) + "}", 16),
                  {"gap", "\"v\"", "\"w\"", "12", "8"}, "gap");
  check_malformed(tmp, raw_file("{" + ok_entry + "," + f32_entry("v", "[2]", 4, 12) + "}", 12),
                  {"\"v\"", "overlaps", "\"w\""}, "overlap");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[3]", 0, 8) + "}", 8),
                  {"\"w\"", "hold 8 bytes", "(3)", "F32", "needs 12"}, "byte count mismatch");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[4294967296,4294967296,0]", 0, 0) + "}", 0),
                  {"\"w\"", "overflows"}, "element count overflow");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[4611686018427387904]", 0, 8) + "}", 8),
                  {"\"w\"", "overflows"}, "byte count overflow");
  check_malformed(tmp, raw_file("{" + f32_entry("w", "[18446744073709551615]", 0, 8) + "}", 8),
                  {"\"w\"", "too large"}, "dim beyond int64");
  check_malformed(tmp, raw_file("{" + ok_entry + "}", 11), {"3 trailing bytes"}, "trailing bytes");
  check_malformed(tmp, raw_file("{" + ok_entry + "}", 5), {"truncated", "holds 5"}, "truncated data");

  check_malformed(tmp, raw_file("{" + ok_entry + "," + f32_entry("w", "[2]", 8, 16) + "}", 16),
                  {"\"w\" twice", "duplicate"}, "duplicate names");
  check_malformed(tmp, raw_file("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                                8),
                  {"\"dtype\" twice"}, "duplicate field");
  check_malformed(tmp, raw_file("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0), {"\"a\" twice"},
                  "duplicate metadata key");
  check_malformed(tmp, raw_file("{\"__metadata__\":{\"epoch\":1}," + ok_entry + "}", 8),
                  {"__metadata__", "\"epoch\"", "must be a string"}, "non-string metadata");
  check_malformed(tmp, raw_file("{\"__metadata__\":[\"a\"]," + ok_entry + "}", 8),
                  {"__metadata__", "must be an object"}, "metadata not an object");

  check_rejected(tmp.file("absent.safetensors"), {"no such file"}, "missing file");
  check_rejected(tmp.dir.string(), {"not a regular file"}, "a folder");
}

TEST_CASE("parse_safetensors_header rejects what load rejects, without reading the data") {
  TempDir tmp;
  const std::string path = tmp.file("p.safetensors");
  write_bytes(path, raw_file("{" + f32_entry("w", "[2]", 0, 8) + "}", 9));
  CHECK_THROWS_WITH_AS(parse_safetensors_header(path), doctest::Contains("1 trailing bytes"), Error);
}

TEST_CASE("the writer rejects bad requests before touching the destination") {
  TempDir tmp;
  const std::string path = tmp.file("keep.safetensors");
  save_safetensors(path, {{"old", sample({3}, DType::Float32)}});
  const std::string before = read_bytes(path);
  const Tensor x = sample({2}, DType::Float32);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"x", x}, {"x", x}}), doctest::Contains("two tensors named \"x\""),
                       Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"x", x}, {"u", Tensor()}}), doctest::Contains("\"u\": it is undefined"),
                       Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", x}}), doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"bad\xff", x}}), doctest::Contains("valid UTF-8"), Error);
  CHECK(read_bytes(path) == before);
  CHECK(tmp.entries() == std::vector<std::string>{"keep.safetensors"});
  const std::string nowhere = tmp.file("no/such/folder/x.safetensors");
  CHECK_THROWS_WITH_AS(save_safetensors(nowhere, {{"x", x}}), doctest::Contains(nowhere.c_str()), Error);
}

TEST_CASE("a write that fails midway leaves the existing file intact and no temporary file") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  save_safetensors(path, {{"old", sample({3}, DType::Float32)}});
  const std::string before = read_bytes(path);

  // Limit the size of any file this process writes: the header goes out, the 256 KiB tensor does not.
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  auto* previous_handler = std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of a signal
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    save_safetensors(path, {{"small", sample({4}, DType::Float32)}, {"big", zeros({256, 256}, DType::Float32)}});
  } catch (const Error& e) {
    message = e.what();
  }
  REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
  std::signal(SIGXFSZ, previous_handler);

  INFO("message: ", message);
  CHECK(message.rfind(path, 0) == 0);
  CHECK(message.find("write failed") != std::string::npos);
  CHECK(read_bytes(path) == before);
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  check_same_tensor(load_safetensors(path).at("old"), sample({3}, DType::Float32), "old tensor");

  // Without the limit the same write replaces the file.
  save_safetensors(path, {{"small", sample({4}, DType::Float32)}, {"big", zeros({256, 256}, DType::Float32)}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK_FALSE(f.contains("old"));
  CHECK(f.at("big").shape() == Shape{256, 256});
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK_THROWS_WITH_AS(f.at("old"), doctest::Contains("no tensor named \"old\""), Error);
}
