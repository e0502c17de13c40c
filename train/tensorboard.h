// TensorBoard event files written by hand: TFRecord framing (length, masked CRC-32C of the length, data,
// masked CRC-32C of the data) around Event protocol buffers holding scalar summaries. TensorBoard loads
// any file whose name contains "tfevents" in a run folder.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace vb::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF).
uint32_t crc32c(const void* data, size_t size);
// TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xA282EAD8.
uint32_t masked_crc32c(const void* data, size_t size);

// The encoded Event message for one scalar (wall_time seconds, step, tag, value).
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
// The first Event of every file: file_version "brain.Event:2".
std::string encode_file_version_event(double wall_time);
// One TFRecord around `data`.
std::string frame_record(const std::string& data);

// Appends whole records to events.out.tfevents.<unix seconds>.<hostname> in `folder`, flushing each.
class EventWriter {
 public:
  explicit EventWriter(const std::string& folder);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  void add_scalar(const std::string& tag, float value, int64_t step);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// A parsed scalar, for tests and for report.md.
struct ScalarEvent {
  int64_t step;
  std::string tag;
  float value;
  double wall_time;
};
// Reads an event file back, checking both CRCs of every record; a truncated last record is ignored (as
// TensorBoard does), a bad CRC is an Error naming the file and the record's offset.
std::vector<ScalarEvent> read_scalar_events(const std::string& path);

}  // namespace vb::train
