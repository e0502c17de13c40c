// TensorBoard event files: CRC-32C test vectors, record framing, and a round trip through the reader.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "tests/support/check.h"
#include "train/tensorboard.h"

using namespace vb::train;

TEST_CASE("CRC-32C and TFRecord's mask match the published vectors") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  const uint64_t len = 24;
  CHECK(masked_crc32c(&len, 8) == 0x224B7FA3u);
  CHECK(crc32c("", 0) == 0u);
}

TEST_CASE("a scalar event encodes as the protobuf TensorBoard reads") {
  const std::string e = encode_scalar_event(1.5, 300, "loss", 0.25f);
  // Event.wall_time: key 0x09 then the double; Event.step: key 0x10, varint 300 = 0xAC 0x02.
  REQUIRE(e.size() > 12);
  CHECK(uint8_t(e[0]) == 0x09);
  double wall;
  std::memcpy(&wall, e.data() + 1, 8);
  CHECK(wall == 1.5);
  CHECK(uint8_t(e[9]) == 0x10);
  CHECK(uint8_t(e[10]) == 0xAC);
  CHECK(uint8_t(e[11]) == 0x02);
  CHECK(uint8_t(e[12]) == 0x2A);  // Event.summary, length-delimited
  const std::string rec = frame_record(e);
  CHECK(rec.size() == e.size() + 16);
}

TEST_CASE("events written are read back with their CRCs checked; a truncated tail is ignored") {
  // Per process: two test runs at once (ctest -j, a second build) must not share the folder.
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("vb_tb_test_{}", ::getpid());
  std::filesystem::remove_all(dir);
  std::string path;
  {
    EventWriter w(dir.string());
    path = w.path();
    CHECK(path.find("events.out.tfevents.") != std::string::npos);
    for (int s = 1; s <= 5; ++s) w.add_scalar("train/loss", 1.0f / float(s), s);
    w.add_scalar("eval/t2v_r1", 0.5f, 5);
  }
  auto events = read_scalar_events(path);
  REQUIRE(events.size() == 6);
  CHECK(events[0].tag == "train/loss");
  CHECK(events[2].step == 3);
  CHECK(events[2].value == doctest::Approx(1.0 / 3));
  CHECK(events[5].tag == "eval/t2v_r1");
  // Cut the last record short: the reader keeps the complete ones.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 3);
  CHECK(read_scalar_events(path).size() == 5);
  // Corrupt a data byte of the first scalar record (a byte of its wall time): its CRC fails. The byte is
  // inverted, not overwritten with a constant that it may already hold (1 time in 256 it did).
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = std::streamoff(12 + encode_file_version_event(0).size() + 4 + 14);
    f.seekg(at);
    const char byte = char(f.get());
    f.seekp(at);
    f.put(char(~byte));
  }
  CHECK_THROWS_WITH_AS(read_scalar_events(path), doctest::Contains("bad data CRC"), vb::Error);
  std::filesystem::remove_all(dir);
}
