// A video–text dataset: a folder holding manifest.jsonl, one clip per line (docs/DATA.md):
//
//   {"id": "c1", "video": "videos/a.mp4", "start": 2.0, "end": 6.5, "caption": "a dog runs", "split": "train"}
//   {"frames": "clips/c2", "captions": ["a red circle moves left", "the red ball slides left"],
//    "split": "test", "attributes": {"color": "red", "shape": "circle"}}
//
// Exactly one of "video" (a video file) and "frames" (a folder of PNG/JPEG images, taken in name order);
// exactly one of "caption" (a string) and "captions" (a non-empty list of strings); optional "start"/"end"
// (seconds, video only, 0 ≤ start < end), "split" (train, val or test; default train), "id" (default: the
// media path; ids are unique), "attributes" (an object of string → string), "qa" (questions about the
// clip, for `videobert finetune --task qa`):
//   "qa": [{"question": "what color is the shape?", "answer": "red", "type": "color"},
//          {"question": "what does the red circle do?", "choices": ["moves left", "grows", …], "answer": "grows"}]
// an open-ended question has an answer string; a multiple-choice one also a list of choices (two or more,
// distinct) that holds the answer; "type" (optional) groups questions for per-type accuracy. Any other key
// is an error.
// Paths are relative to the dataset folder and may not leave it: absolute paths, ".." that climbs out and
// symlinks that resolve outside it are rejected. Every error names the manifest file, the line and the key.
// Loading does not open the media: a missing or corrupt file is found (and skipped) by the loader.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vb::data {

enum class Split { Train, Val, Test };
const char* split_name(Split s);
Split parse_split(const std::string& s);  // "train" | "val" | "test", else an Error

// A question about a clip, open-ended (choices empty) or multiple choice (answer ∈ choices).
struct QA {
  std::string question, answer, type;
  std::vector<std::string> choices;
  bool multiple_choice() const { return !choices.empty(); }
};

struct Clip {
  std::string id;
  std::string video;   // absolute path of the video file, or empty
  std::string frames;  // absolute path of the frames folder, or empty
  std::vector<std::string> captions;
  std::optional<double> start, end;  // seconds (video only)
  Split split = Split::Train;
  std::map<std::string, std::string> attributes;
  std::vector<QA> qa;
  int64_t line = 0;  // 1-based line in manifest.jsonl, for messages

  bool is_video() const { return !video.empty(); }
  const std::string& media() const { return is_video() ? video : frames; }
};

struct Manifest {
  std::string root;  // the dataset folder (canonical absolute path)
  std::string path;  // root/manifest.jsonl
  std::vector<Clip> clips;

  // The clips of one split, in manifest order.
  std::vector<Clip> split(Split s) const;
};

// Reads DIR/manifest.jsonl.
Manifest load_manifest(const std::string& dataset_dir);
// Parses manifest text whose paths are relative to `root`; `source` names the file in errors.
Manifest parse_manifest(const std::string& text, const std::string& root, const std::string& source);

// The image files of a frames folder (.png, .jpg, .jpeg, any case), sorted by name; an Error naming the
// folder when it cannot be read or holds none.
std::vector<std::string> list_frames(const std::string& folder);

}  // namespace vb::data
