// The synthetic dataset: byte-identical output for a seed, captions that name the clip's attributes,
// frames that show the motion, splits, and a vocabulary that covers every caption.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "models/tokenizer.h"
#include "tensor/atomic_file.h"
#include "train/data/image.h"
#include "train/data/manifest.h"
#include "train/data/synth.h"

namespace fs = std::filesystem;
using namespace vb::data;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("vb_synth_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  return p;
}

// Every file under `dir`, relative path → bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = vb::read_text_file(e.path().string());
  return files;
}

bool contains_any(const std::string& text, const std::vector<std::string>& words) {
  const std::string padded = " " + text + " ";
  return std::any_of(words.begin(), words.end(),
                     [&](const std::string& w) { return padded.find(" " + w + " ") != std::string::npos; });
}

// The shape in a frame: its pixels are the saturated ones (the background is grey).
struct Blob {
  double x = 0, y = 0, area = 0;
};
Blob blob(const Image& img) {
  Blob b;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const uint8_t* p = img.pixel(x, y);
      if (std::max({p[0], p[1], p[2]}) - std::min({p[0], p[1], p[2]}) > 60) {
        b.x += x;
        b.y += y;
        b.area += 1;
      }
    }
  b.x /= b.area;
  b.y /= b.area;
  return b;
}

}  // namespace

TEST_CASE("synth: the same seed writes byte-identical files; another seed does not") {
  const fs::path a = temp_dir("a"), b = temp_dir("b"), c = temp_dir("c");
  const SynthOptions o{.clips = 30, .frames = 4, .size = 32, .seed = 9};
  const SynthSummary s = write_synthetic_dataset(a.string(), o);
  write_synthetic_dataset(b.string(), o);
  CHECK(s.clips == 30);
  CHECK(s.train == 24);
  CHECK(s.val == 3);
  CHECK(s.test == 3);
  const auto fa = snapshot(a), fb = snapshot(b);
  CHECK(fa.size() == 2 + 30 * 4);  // manifest, vocab and the frames
  CHECK(fa == fb);
  CHECK(fa.count("manifest.jsonl") == 1);
  CHECK(fa.count("clips/clip_0000/frame_000.png") == 1);
  CHECK(fa.count("clips/clip_0029/frame_003.png") == 1);
  SynthOptions other = o;
  other.seed = 10;
  write_synthetic_dataset(c.string(), other);
  CHECK(snapshot(c).at("manifest.jsonl") != fa.at("manifest.jsonl"));
  for (const fs::path& p : {a, b, c}) fs::remove_all(p);
}

TEST_CASE("synth: captions mention the attributes, frames show the motion, the vocabulary covers it all") {
  const fs::path dir = temp_dir("content");
  write_synthetic_dataset(dir.string(), SynthOptions{.clips = 120, .frames = 5, .size = 48, .seed = 3});
  const Manifest m = load_manifest(dir.string());
  REQUIRE(m.clips.size() == 120);
  const SynthGrammar& g = synth_grammar();
  const vb::WordPieceTokenizer tok = vb::WordPieceTokenizer::load((dir / "vocab.txt").string());
  std::set<std::string> colors, shapes, motions, sizes;
  for (size_t i = 0; i < m.clips.size(); ++i) {
    const Clip& c = m.clips[i];
    CAPTURE(c.id);
    const std::string color = c.attributes.at("color"), shape = c.attributes.at("shape"),
                      size = c.attributes.at("size"), motion = c.attributes.at("motion");
    CHECK(c.attributes.size() == 4);
    colors.insert(color);
    shapes.insert(shape);
    sizes.insert(size);
    motions.insert(motion);
    CHECK(c.split == (i % 10 == 8 ? Split::Val : i % 10 == 9 ? Split::Test : Split::Train));
    CHECK(c.captions.size() >= 2);
    CHECK(c.captions.size() <= 3);
    CHECK(c.captions[0] == synth_caption(color, shape, size, motion));
    CHECK(std::set<std::string>(c.captions.begin(), c.captions.end()).size() == c.captions.size());
    for (const std::string& caption : c.captions) {
      CAPTURE(caption);
      CHECK(contains_any(caption, {color}));
      CHECK(contains_any(caption, g.shape_words.at(shape)));
      CHECK(contains_any(caption, g.size_words.at(size)));
      CHECK(contains_any(caption, g.motion_phrases.at(motion)));
      const std::vector<int64_t> ids = tok.encode(caption, false);
      CHECK(std::count(ids.begin(), ids.end(), tok.unk_id()) == 0);
    }
    CHECK(!(shape == "circle" && motion == "rotates"));
    // The frames: the shape's centre and area change as the motion says.
    const std::vector<std::string> frames = list_frames(c.frames);
    REQUIRE(frames.size() == 5);
    const Blob first = blob(read_image(frames.front())), last = blob(read_image(frames.back()));
    const double dx = last.x - first.x, dy = last.y - first.y, grow = last.area / first.area;
    if (motion == "moves left") CHECK(dx < -10);
    if (motion == "moves right") CHECK(dx > 10);
    if (motion == "moves up") CHECK(dy < -10);
    if (motion == "moves down") CHECK(dy > 10);
    if (motion == "grows") CHECK(grow > 1.8);
    if (motion == "shrinks") CHECK(grow < 0.5);
    if (motion == "rotates" || motion == "stays still" || motion == "grows" || motion == "shrinks") {
      CHECK(std::abs(dx) < 1.5);
      CHECK(std::abs(dy) < 1.5);
    }
    if (motion == "stays still") CHECK(grow == doctest::Approx(1.0));
    if (motion == "rotates") CHECK(grow == doctest::Approx(1.0).epsilon(0.15));
  }
  // 120 clips cover every value of every attribute.
  CHECK(colors.size() == g.colors.size());
  CHECK(shapes.size() == g.shapes.size());
  CHECK(sizes.size() == g.sizes.size());
  CHECK(motions.size() == g.motions.size());
  // Every word of the grammar is one token; single letters cover anything else lower-case.
  for (const char* w : {"ball", "leftward", "rhombus", "bigger"}) CHECK(tok.contains(w));
  const std::vector<int64_t> zebra = tok.encode("a zebra", false);
  CHECK(zebra.size() > 2);
  CHECK(std::count(zebra.begin(), zebra.end(), tok.unk_id()) == 0);
  fs::remove_all(dir);
}

TEST_CASE("synth: six questions per clip with the right answers; yes/no balanced; five distinct choices") {
  const fs::path dir = temp_dir("questions");
  write_synthetic_dataset(dir.string(), SynthOptions{.clips = 200, .frames = 2, .size = 16, .seed = 5});
  const Manifest m = load_manifest(dir.string());
  const vb::WordPieceTokenizer tok = vb::WordPieceTokenizer::load((dir / "vocab.txt").string());
  const SynthGrammar& g = synth_grammar();
  int64_t yes = 0;
  std::map<std::string, int64_t> true_choice_position;
  for (const Clip& c : m.clips) {
    CAPTURE(c.id);
    REQUIRE(c.qa.size() == 6);
    const auto& at = c.attributes;
    std::map<std::string, const QA*> by_type;
    for (const QA& q : c.qa) {
      by_type[q.type] = &q;
      // Questions and answers are made of vocabulary words: no [UNK], no word split into pieces.
      for (const std::string& text : {q.question, q.answer}) {
        const std::vector<int64_t> ids = tok.encode(text, false);
        CHECK(std::count(ids.begin(), ids.end(), tok.unk_id()) == 0);
      }
    }
    REQUIRE(by_type.size() == 6);
    CHECK(by_type["color"]->answer == at.at("color"));
    CHECK(by_type["shape"]->answer == at.at("shape"));
    CHECK(by_type["size"]->answer == at.at("size"));
    CHECK(by_type["motion"]->answer == at.at("motion"));
    for (const char* t : {"color", "shape", "size", "motion", "yesno"}) CHECK(!by_type[t]->multiple_choice());
    // yes/no: "is the shape <colour>?" is yes exactly when the colour asked is the clip's.
    const QA& yn = *by_type["yesno"];
    std::string asked;
    for (const std::string& col : g.colors)
      if (yn.question == "is the shape " + col + "?") asked = col;
    REQUIRE(!asked.empty());
    CHECK(yn.answer == (asked == at.at("color") ? "yes" : "no"));
    yes += yn.answer == "yes";
    // Multiple choice: five distinct motions, the clip's among them, the question naming colour and shape.
    const QA& mc = *by_type["choice"];
    CHECK(mc.question == "what does the " + at.at("color") + " " + at.at("shape") + " do?");
    CHECK(mc.choices.size() == 5);
    CHECK(std::set<std::string>(mc.choices.begin(), mc.choices.end()).size() == 5);
    for (const std::string& ch : mc.choices) CHECK(std::count(g.motions.begin(), g.motions.end(), ch) == 1);
    CHECK(mc.answer == at.at("motion"));
    const auto pos = std::find(mc.choices.begin(), mc.choices.end(), mc.answer) - mc.choices.begin();
    true_choice_position[std::to_string(pos)] += 1;
  }
  // Balanced: yes half of the time (binomial, 200 draws: ±4.5σ ≈ ±32), and the true choice in every
  // position (expected 40 each; each within ±4.5σ ≈ ±25).
  CHECK(std::abs(yes - 100) < 32);
  CHECK(true_choice_position.size() == 5);
  for (const auto& [pos, n] : true_choice_position) CHECK_MESSAGE(std::abs(n - 40) < 25, "position ", pos, ": ", n);
  fs::remove_all(dir);
}
