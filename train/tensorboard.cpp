#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace vb::train {

namespace {

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

// Protocol buffer wire format: a key is (field << 3) | wire type; 0 varint, 1 fixed64, 2 length-delimited,
// 5 fixed32.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(v | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void put_key(std::string& out, int field, int wire) { put_varint(out, uint64_t(field << 3 | wire)); }
template <typename T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian host
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;  // Summary.Value: tag = 1, simple_value = 2
  put_bytes(v, 1, tag);
  put_key(v, 2, 5);
  put_fixed(v, value);
  std::string summary;  // Summary: value = 1 (repeated)
  put_bytes(summary, 1, v);
  std::string event;  // Event: wall_time = 1, step = 2, summary = 5
  put_key(event, 1, 1);
  put_fixed(event, wall_time);
  put_key(event, 2, 0);
  put_varint(event, uint64_t(step));
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_key(event, 1, 1);
  put_fixed(event, wall_time);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string frame_record(const std::string& data) {
  std::string out;
  const uint64_t len = data.size();
  put_fixed(out, len);
  put_fixed(out, masked_crc32c(&len, 8));
  out += data;
  put_fixed(out, masked_crc32c(data.data(), data.size()));
  return out;
}

EventWriter::EventWriter(const std::string& folder) {
  std::filesystem::create_directories(folder);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const double t = now_seconds();
  path_ = (std::filesystem::path(folder) / fmt::format("events.out.tfevents.{}.{}", int64_t(t), host)).string();
  file_ = std::fopen(path_.c_str(), "ab");
  VB_CHECK(file_ != nullptr, "{}: cannot create the TensorBoard event file: {}", path_, std::strerror(errno));
  write_record(encode_file_version_event(t));
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::write_record(const std::string& data) {
  const std::string rec = frame_record(data);
  VB_CHECK(std::fwrite(rec.data(), 1, rec.size(), file_) == rec.size() && std::fflush(file_) == 0,
           "{}: cannot write a TensorBoard record: {}", path_, std::strerror(errno));
}

void EventWriter::add_scalar(const std::string& tag, float value, int64_t step) {
  write_record(encode_scalar_event(now_seconds(), step, tag, value));
}

namespace {

struct Reader {
  const std::string& s;
  size_t pos = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; pos < s.size() && shift < 64; shift += 7) {
      const auto b = uint8_t(s[pos++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("TensorBoard event: truncated varint");
  }
  template <typename T>
  T fixed() {
    VB_CHECK(pos + sizeof(T) <= s.size(), "TensorBoard event: truncated field");
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string bytes() {
    const uint64_t n = varint();
    VB_CHECK(n <= s.size() - pos, "TensorBoard event: truncated bytes");
    std::string out = s.substr(pos, n);
    pos += n;
    return out;
  }
  void skip(int wire) {
    if (wire == 0) varint();
    else if (wire == 1) fixed<uint64_t>();
    else if (wire == 5) fixed<uint32_t>();
    else if (wire == 2) bytes();
    else fail("TensorBoard event: unknown wire type {}", wire);
  }
};

}  // namespace

std::vector<ScalarEvent> read_scalar_events(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  VB_CHECK(f != nullptr, "{}: cannot open: {}", path, std::strerror(errno));
  std::string content;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) content.append(buf, n);
  std::fclose(f);
  std::vector<ScalarEvent> out;
  size_t pos = 0;
  while (pos + 12 <= content.size()) {
    uint64_t len;
    uint32_t len_crc;
    std::memcpy(&len, content.data() + pos, 8);
    std::memcpy(&len_crc, content.data() + pos + 8, 4);
    VB_CHECK(len_crc == masked_crc32c(&len, 8), "{}: bad length CRC in the record at byte {}", path, pos);
    if (pos + 12 + len + 4 > content.size()) break;  // a truncated last record
    const std::string data = content.substr(pos + 12, len);
    uint32_t data_crc;
    std::memcpy(&data_crc, content.data() + pos + 12 + len, 4);
    VB_CHECK(data_crc == masked_crc32c(data.data(), data.size()), "{}: bad data CRC in the record at byte {}", path, pos);
    pos += 12 + len + 4;
    Reader event{data};
    ScalarEvent e{0, "", 0.0f, 0.0};
    bool has_value = false;
    while (event.pos < data.size()) {
      const uint64_t key = event.varint();
      const int field = int(key >> 3), wire = int(key & 7);
      if (field == 1 && wire == 1) e.wall_time = event.fixed<double>();
      else if (field == 2 && wire == 0) e.step = int64_t(event.varint());
      else if (field == 5 && wire == 2) {
        const std::string summary = event.bytes();
        Reader sr{summary};
        while (sr.pos < summary.size()) {
          const uint64_t sk = sr.varint();
          if ((sk >> 3) != 1 || (sk & 7) != 2) {
            sr.skip(int(sk & 7));
            continue;
          }
          const std::string value = sr.bytes();
          Reader vr{value};
          while (vr.pos < value.size()) {
            const uint64_t vk = vr.varint();
            if ((vk >> 3) == 1 && (vk & 7) == 2) e.tag = vr.bytes();
            else if ((vk >> 3) == 2 && (vk & 7) == 5) {
              e.value = vr.fixed<float>();
              has_value = true;
            } else vr.skip(int(vk & 7));
          }
        }
      } else event.skip(wire);
    }
    if (has_value) out.push_back(e);
  }
  return out;
}

}  // namespace vb::train
