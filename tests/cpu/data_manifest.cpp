// manifest.jsonl: parsing, every error (naming file, line and key), and paths that try to leave the dataset.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tensor/error.h"
#include "train/data/manifest.h"

namespace fs = std::filesystem;
using namespace vb::data;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("vb_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// The message of the Error that parsing `text` raises ("" when it parses).
std::string error_of(const TempDir& d, const std::string& text) {
  try {
    parse_manifest(text, d.path.string(), "data/manifest.jsonl");
  } catch (const vb::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("manifest: every field parses") {
  TempDir d("manifest_ok");
  write(d.path / "manifest.jsonl",
        R"({"id": "a", "video": "videos/a.mp4", "start": 1.5, "end": 4, "caption": "a dog runs", "split": "val"})"
        "\n\n"
        R"({"frames": "clips/b", "captions": ["one", "two"], "attributes": {"color": "red", "shape": "circle"}})"
        "\n"
        R"({"video": "c.webm", "caption": "x", "split": "test"})"
        "\n");
  const Manifest m = load_manifest(d.path.string());
  REQUIRE(m.clips.size() == 3);
  const Clip& a = m.clips[0];
  CHECK(a.id == "a");
  CHECK(a.is_video());
  CHECK(a.video == (fs::canonical(d.path) / "videos/a.mp4").string());
  CHECK(a.captions == std::vector<std::string>{"a dog runs"});
  CHECK(*a.start == 1.5);
  CHECK(*a.end == 4.0);
  CHECK(a.split == Split::Val);
  CHECK(a.line == 1);
  const Clip& b = m.clips[1];
  CHECK(b.id == "clips/b");  // the media path when no id is given
  CHECK(!b.is_video());
  CHECK(b.frames == (fs::canonical(d.path) / "clips/b").string());
  CHECK(b.captions == std::vector<std::string>{"one", "two"});
  CHECK(!b.start);
  CHECK(b.split == Split::Train);
  CHECK(b.attributes.at("color") == "red");
  CHECK(b.attributes.at("shape") == "circle");
  CHECK(b.line == 3);  // the blank line is counted
  CHECK(m.clips[2].split == Split::Test);
  CHECK(m.split(Split::Train).size() == 1);
  CHECK(m.split(Split::Val).size() == 1);
  CHECK(m.split(Split::Test).size() == 1);
  CHECK(m.path == (d.path / "manifest.jsonl").string());
  CHECK(a.qa.empty());
}

TEST_CASE("manifest: questions, open-ended and multiple choice") {
  TempDir d("manifest_qa");
  write(d.path / "manifest.jsonl",
        R"({"frames": "f", "caption": "c", "qa": [{"question": "what color is it?", "answer": "red", "type": "color"},)"
        R"( {"question": "what does it do?", "choices": ["grows", "shrinks"], "answer": "shrinks"}]})"
        "\n");
  const Manifest m = load_manifest(d.path.string());
  REQUIRE(m.clips.at(0).qa.size() == 2);
  const QA& open = m.clips[0].qa[0];
  CHECK(open.question == "what color is it?");
  CHECK(open.answer == "red");
  CHECK(open.type == "color");
  CHECK(!open.multiple_choice());
  const QA& mc = m.clips[0].qa[1];
  CHECK(mc.multiple_choice());
  CHECK(mc.choices == std::vector<std::string>{"grows", "shrinks"});
  CHECK(mc.answer == "shrinks");
  CHECK(mc.type.empty());
}

TEST_CASE("manifest: each error names the file, the line and the key") {
  TempDir d("manifest_errors");
  const std::string ok = R"({"video": "v.mp4", "caption": "c"})";
  struct Case {
    std::string line;
    std::vector<std::string> words;  // each must appear in the message
  };
  const std::vector<Case> cases = {
      {R"({"video": "v.mp4", "caption": "c")", {"invalid JSON"}},
      {R"([1, 2])", {"expected a JSON object"}},
      {R"({"video": "v.mp4", "caption": "c", "captoin": "x"})", {"unknown key", "\"captoin\""}},
      {R"({"caption": "c"})", {"missing key", "\"video\"", "\"frames\""}},
      {R"({"video": "v.mp4", "frames": "f", "caption": "c"})", {"both", "\"video\"", "\"frames\""}},
      {R"({"video": "v.mp4"})", {"missing key", "\"caption\""}},
      {R"({"video": "v.mp4", "caption": "c", "captions": ["d"]})", {"both", "\"captions\""}},
      {R"({"video": "v.mp4", "captions": []})", {"\"captions\"", "empty list"}},
      {R"({"video": "v.mp4", "captions": "c"})", {"\"captions\"", "non-empty list"}},
      {R"({"video": "v.mp4", "captions": ["a", 3]})", {"\"captions\"", "element 1"}},
      {R"({"video": "v.mp4", "caption": 7})", {"\"caption\"", "expected a string"}},
      {R"({"video": "v.mp4", "caption": "  "})", {"\"caption\"", "empty"}},
      {R"({"video": 3, "caption": "c"})", {"\"video\"", "expected a string"}},
      {R"({"frames": "f", "caption": "c", "start": 1})", {"\"start\"", "only a \"video\""}},
      {R"({"video": "v.mp4", "caption": "c", "start": "1"})", {"\"start\"", "number"}},
      {R"({"video": "v.mp4", "caption": "c", "start": -1})", {"\"start\"", "≥ 0"}},
      {R"({"video": "v.mp4", "caption": "c", "start": 3, "end": 2})", {"\"end\"", "after start"}},
      {R"({"video": "v.mp4", "caption": "c", "start": 2, "end": 2})", {"\"end\"", "after start"}},
      {R"({"video": "v.mp4", "caption": "c", "split": "training"})", {"\"split\"", "training", "train, val or test"}},
      {R"({"video": "v.mp4", "caption": "c", "split": 1})", {"\"split\"", "expected a string"}},
      {R"({"video": "v.mp4", "caption": "c", "id": ""})", {"\"id\"", "empty"}},
      {R"({"video": "v.mp4", "caption": "c", "attributes": ["red"]})", {"\"attributes\"", "object"}},
      {R"({"video": "v.mp4", "caption": "c", "attributes": {"size": 3}})", {"\"attributes\"", "\"size\""}},
      {R"({"video": "", "caption": "c"})", {"\"video\"", "empty"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": {"question": "q"}})", {"\"qa\"", "list of questions"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": ["q?"]})", {"\"qa\"", "question 0", "expected an object"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?"}]})", {"question 0", "missing key", "\"answer\""}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": "a", "hint": "h"}]})",
       {"question 0", "unknown key", "\"hint\""}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": " ", "answer": "a"}]})", {"\"question\"", "empty"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": 3}]})", {"\"answer\"", "expected a string"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": "a"}, {"question": "r?", "answer": "a", "choices": ["a"]}]})",
       {"question 1", "\"choices\"", "two strings or more"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": "a", "choices": ["a", "b", "a"]}]})",
       {"choice \"a\" appears twice"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": "c", "choices": ["a", "b"]}]})",
       {"answer \"c\"", "not one of the choices"}},
      {R"({"video": "v.mp4", "caption": "c", "qa": [{"question": "q?", "answer": "a", "choices": ["a", 2]}]})",
       {"choice 1", "expected a string"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.line);
    // The bad line is line 2, after a good one.
    const std::string msg = error_of(d, ok + "\n" + c.line + "\n");
    REQUIRE(!msg.empty());
    CHECK_MESSAGE(msg.find("data/manifest.jsonl:2") != std::string::npos, msg);
    for (const std::string& w : c.words) CHECK_MESSAGE(msg.find(w) != std::string::npos, msg, " lacks ", w);
  }
  // Duplicate ids name both lines.
  const std::string dup = error_of(d, R"({"id": "x", "video": "a.mp4", "caption": "c"})"
                                      "\n"
                                      R"({"id": "x", "video": "b.mp4", "caption": "c"})");
  CHECK(dup.find("data/manifest.jsonl:2") != std::string::npos);
  CHECK(dup.find("\"id\"") != std::string::npos);
  CHECK(dup.find("line 1") != std::string::npos);
  CHECK(error_of(d, "\n  \n").find("no clips") != std::string::npos);
  CHECK_THROWS_WITH_AS(load_manifest((d.path / "nowhere").string()), doctest::Contains("no manifest.jsonl"),
                       vb::Error);
}

TEST_CASE("manifest: paths that leave the dataset folder are rejected") {
  TempDir d("manifest_paths");
  TempDir outside("manifest_outside");
  fs::create_directories(d.path / "inner");
  fs::create_symlink(outside.path, d.path / "escape");  // a symlink pointing out of the dataset
  fs::create_symlink(d.path / "inner", d.path / "stays");  // one that stays inside is fine
  auto line = [](const std::string& key, const std::string& path) {
    return "{\"" + key + "\": \"" + path + "\", \"caption\": \"c\"}";
  };
  for (const std::string key : {"video", "frames"}) {
    CAPTURE(key);
    for (const std::string bad : {"../x.mp4", "inner/../../x.mp4", "/etc/passwd", "escape/x.mp4", "escape"}) {
      CAPTURE(bad);
      const std::string msg = error_of(d, line(key, bad));
      REQUIRE(!msg.empty());
      CHECK(msg.find("data/manifest.jsonl:1") != std::string::npos);
      CHECK(msg.find("\"" + key + "\"") != std::string::npos);
      CHECK(msg.find(bad) != std::string::npos);
    }
    CHECK(error_of(d, line(key, "inner/../x.mp4")).empty());
    CHECK(error_of(d, line(key, "stays/x.mp4")).empty());
    CHECK(error_of(d, line(key, "./inner/x.mp4")).empty());
  }
}

TEST_CASE("manifest: frames folders list their images in name order") {
  TempDir d("manifest_frames");
  for (const std::string name : {"b.png", "a.JPG", "c.jpeg", "notes.txt", "10.png"}) write(d.path / name, "x");
  const std::vector<std::string> files = list_frames(d.path.string());
  REQUIRE(files.size() == 4);
  CHECK(fs::path(files[0]).filename() == "10.png");
  CHECK(fs::path(files[1]).filename() == "a.JPG");
  CHECK(fs::path(files[2]).filename() == "b.png");
  CHECK(fs::path(files[3]).filename() == "c.jpeg");
  fs::create_directories(d.path / "empty");
  CHECK_THROWS_WITH_AS(list_frames((d.path / "empty").string()), doctest::Contains("holds no"), vb::Error);
  CHECK_THROWS_WITH_AS(list_frames((d.path / "missing").string()), doctest::Contains("missing"), vb::Error);
  CHECK(parse_split("val") == Split::Val);
  CHECK_THROWS_AS(parse_split("dev"), vb::Error);
}
