// manifest.jsonl parsing: strict keys, typed values, paths confined to the dataset folder.
#include "train/data/manifest.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tensor/atomic_file.h"
#include "tensor/error.h"

namespace fs = std::filesystem;

namespace vb::data {

const char* split_name(Split s) {
  switch (s) {
    case Split::Train: return "train";
    case Split::Val: return "val";
    case Split::Test: return "test";
  }
  return "?";
}

Split parse_split(const std::string& s) {
  if (s == "train") return Split::Train;
  if (s == "val") return Split::Val;
  if (s == "test") return Split::Test;
  fail("unknown split '{}': expected train, val or test", s);
}

std::vector<Clip> Manifest::split(Split s) const {
  std::vector<Clip> out;
  for (const Clip& c : clips)
    if (c.split == s) out.push_back(c);
  return out;
}

namespace {

bool is_within(const fs::path& path, const fs::path& root) {
  auto r = root.begin(), p = path.begin();
  for (; r != root.end(); ++r, ++p)
    if (p == path.end() || *p != *r) return false;
  return true;
}

// The absolute path of `rel` inside `root` (canonical), or an Error when it escapes.
std::string resolve_inside(const std::string& rel, const fs::path& root, const std::string& where) {
  VB_CHECK(!rel.empty(), "{}: is empty, expected a path relative to the dataset folder", where);
  const fs::path p(rel);
  VB_CHECK(p.is_relative() && !p.has_root_name() && !p.has_root_directory(),
           "{}: '{}' is absolute; paths must be relative to the dataset folder {}", where, rel, root.string());
  const fs::path lexical = (root / p).lexically_normal();
  VB_CHECK(is_within(lexical, root), "{}: '{}' leaves the dataset folder {}", where, rel, root.string());
  std::error_code ec;
  const fs::path real = fs::weakly_canonical(lexical, ec);
  VB_CHECK(!ec, "{}: cannot resolve '{}': {}", where, rel, ec.message());
  VB_CHECK(is_within(real, root), "{}: '{}' resolves to {}, outside the dataset folder {} (a symlink?)", where,
           rel, real.string(), root.string());
  return real.string();
}

const std::set<std::string> kKeys = {"video", "frames", "caption",    "captions", "start",
                                     "end",   "split",  "id",         "attributes", "qa"};

// One element of "qa" (manifest.h).
QA parse_qa(const nlohmann::json& q, const std::string& at) {
  VB_CHECK(q.is_object(), "{}: expected an object with \"question\" and \"answer\", got {}", at, q.type_name());
  for (const auto& [key, value] : q.items())
    VB_CHECK(key == "question" || key == "answer" || key == "choices" || key == "type",
             "{}: unknown key \"{}\" (expected question, answer, choices, type)", at, key);
  auto text = [&](const char* key, bool required) {
    if (!q.contains(key)) {
      VB_CHECK(!required, "{}: missing key \"{}\"", at, key);
      return std::string();
    }
    VB_CHECK(q.at(key).is_string(), "{}: key \"{}\" is {}, expected a string", at, key, q.at(key).type_name());
    const std::string v = q.at(key).get<std::string>();
    VB_CHECK(v.find_first_not_of(" \t\r\n") != std::string::npos, "{}: key \"{}\" is empty", at, key);
    return v;
  };
  QA out;
  out.question = text("question", true);
  out.answer = text("answer", true);
  out.type = text("type", false);
  if (q.contains("choices")) {
    const auto& v = q.at("choices");
    VB_CHECK(v.is_array() && v.size() >= 2, "{}: \"choices\" must be a list of two strings or more", at);
    for (size_t i = 0; i < v.size(); ++i) {
      VB_CHECK(v[i].is_string(), "{}: choice {} is {}, expected a string", at, i, v[i].type_name());
      const std::string choice = v[i].get<std::string>();
      VB_CHECK(std::find(out.choices.begin(), out.choices.end(), choice) == out.choices.end(),
               "{}: choice \"{}\" appears twice", at, choice);
      out.choices.push_back(choice);
    }
    VB_CHECK(std::find(out.choices.begin(), out.choices.end(), out.answer) != out.choices.end(),
             "{}: the answer \"{}\" is not one of the choices", at, out.answer);
  }
  return out;
}

Clip parse_line(const nlohmann::json& j, const fs::path& root, const std::string& at) {
  VB_CHECK(j.is_object(), "{}: expected a JSON object, got {}", at, j.type_name());
  for (const auto& [key, value] : j.items())
    VB_CHECK(kKeys.count(key), "{}: unknown key \"{}\" (expected video, frames, caption, captions, start, end, "
             "split, id, attributes, qa)", at, key);
  auto key_at = [&](const char* key) { return fmt::format("{}: key \"{}\"", at, key); };
  auto string_of = [&](const char* key) {
    const auto& v = j.at(key);
    VB_CHECK(v.is_string(), "{}: expected a string, got {}", key_at(key), v.type_name());
    return v.get<std::string>();
  };

  Clip c;
  const bool has_video = j.contains("video"), has_frames = j.contains("frames");
  VB_CHECK(has_video != has_frames, "{}: {}", at,
           has_video ? "both \"video\" and \"frames\"; give one" : "missing key \"video\" or \"frames\"");
  if (has_video) c.video = resolve_inside(string_of("video"), root, key_at("video"));
  if (has_frames) c.frames = resolve_inside(string_of("frames"), root, key_at("frames"));

  const bool has_caption = j.contains("caption"), has_captions = j.contains("captions");
  VB_CHECK(has_caption != has_captions, "{}: {}", at,
           has_caption ? "both \"caption\" and \"captions\"; give one" : "missing key \"caption\" or \"captions\"");
  if (has_caption) {
    c.captions.push_back(string_of("caption"));
  } else {
    const auto& v = j.at("captions");
    VB_CHECK(v.is_array() && !v.empty(), "{}: expected a non-empty list of strings, got {}", key_at("captions"),
             v.is_array() ? "an empty list" : v.type_name());
    for (size_t i = 0; i < v.size(); ++i) {
      VB_CHECK(v[i].is_string(), "{}: element {} is {}, expected a string", key_at("captions"), i, v[i].type_name());
      c.captions.push_back(v[i].get<std::string>());
    }
  }
  for (const std::string& cap : c.captions)
    VB_CHECK(cap.find_first_not_of(" \t\r\n") != std::string::npos, "{}: a caption is empty",
             key_at(has_caption ? "caption" : "captions"));

  for (const char* key : {"start", "end"}) {
    if (!j.contains(key)) continue;
    VB_CHECK(has_video, "{}: only a \"video\" clip has start/end times", key_at(key));
    const auto& v = j.at(key);
    VB_CHECK(v.is_number(), "{}: expected a number of seconds, got {}", key_at(key), v.type_name());
    const double t = v.get<double>();
    VB_CHECK(std::isfinite(t) && t >= 0, "{}: {} is not a time ≥ 0 seconds", key_at(key), t);
    (key[0] == 's' ? c.start : c.end) = t;
  }
  if (c.start && c.end)
    VB_CHECK(*c.start < *c.end, "{}: end {} must be after start {}", key_at("end"), *c.end, *c.start);

  if (j.contains("split")) {
    try {
      c.split = parse_split(string_of("split"));
    } catch (const Error& e) {
      fail("{}: {}", key_at("split"), e.what());
    }
  }
  if (j.contains("id")) {
    c.id = string_of("id");
    VB_CHECK(!c.id.empty(), "{}: is empty", key_at("id"));
  } else {
    c.id = string_of(has_video ? "video" : "frames");
  }
  if (j.contains("attributes")) {
    const auto& v = j.at("attributes");
    VB_CHECK(v.is_object(), "{}: expected an object of string → string, got {}", key_at("attributes"), v.type_name());
    for (const auto& [name, value] : v.items()) {
      VB_CHECK(value.is_string(), "{}: \"{}\" is {}, expected a string", key_at("attributes"), name,
               value.type_name());
      c.attributes[name] = value.get<std::string>();
    }
  }
  if (j.contains("qa")) {
    const auto& v = j.at("qa");
    VB_CHECK(v.is_array(), "{}: expected a list of questions, got {}", key_at("qa"), v.type_name());
    for (size_t i = 0; i < v.size(); ++i) c.qa.push_back(parse_qa(v[i], fmt::format("{}, question {}", key_at("qa"), i)));
  }
  return c;
}

}  // namespace

Manifest parse_manifest(const std::string& text, const std::string& root_dir, const std::string& source) {
  std::error_code ec;
  const fs::path root = fs::canonical(root_dir, ec);
  VB_CHECK(!ec, "{}: dataset folder {} cannot be opened: {}", source, root_dir, ec.message());
  Manifest m;
  m.root = root.string();
  m.path = source;
  std::map<std::string, int64_t> ids;
  std::istringstream in(text);
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    const std::string at = fmt::format("{}:{}", source, line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", at, e.what());
    }
    Clip c = parse_line(j, root, at);
    c.line = line_no;
    auto [it, fresh] = ids.emplace(c.id, line_no);
    VB_CHECK(fresh, "{}: key \"id\": \"{}\" is already the id of line {}", at, c.id, it->second);
    m.clips.push_back(std::move(c));
  }
  VB_CHECK(!m.clips.empty(), "{}: holds no clips", source);
  return m;
}

Manifest load_manifest(const std::string& dataset_dir) {
  const std::string path = (fs::path(dataset_dir) / "manifest.jsonl").string();
  VB_CHECK(fs::is_regular_file(path), "dataset {}: no manifest.jsonl there (docs/DATA.md describes the format)",
           dataset_dir);
  return parse_manifest(read_text_file(path), dataset_dir, path);
}

std::vector<std::string> list_frames(const std::string& folder) {
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(folder, ec);
  VB_CHECK(!ec, "frames folder {}: cannot be read: {}", folder, ec.message());
  for (const auto& entry : it) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") names.push_back(entry.path().filename().string());
  }
  VB_CHECK(!names.empty(), "frames folder {}: holds no .png/.jpg/.jpeg images", folder);
  std::sort(names.begin(), names.end());
  for (std::string& n : names) n = (fs::path(folder) / n).string();
  return names;
}

}  // namespace vb::data
