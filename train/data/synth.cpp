// The synthetic shapes dataset (see synth.h).
#include "train/data/synth.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "models/tokenizer.h"
#include "models/vocab_builder.h"
#include "tensor/atomic_file.h"
#include "tensor/error.h"
#include "train/data/image.h"
#include "train/data/sample_rng.h"

namespace fs = std::filesystem;

namespace vb::data {

const SynthGrammar& synth_grammar() {
  static const SynthGrammar g = [] {
    SynthGrammar g;
    g.colors = {"red", "green", "blue", "yellow", "purple", "orange"};
    g.shapes = {"circle", "square", "triangle", "star", "diamond"};
    g.sizes = {"small", "large"};
    g.motions = {"moves left", "moves right", "moves up", "moves down", "grows", "shrinks", "rotates", "stays still"};
    g.shape_words = {{"circle", {"circle", "ball", "disc"}},
                     {"square", {"square", "box", "block"}},
                     {"triangle", {"triangle"}},
                     {"star", {"star"}},
                     {"diamond", {"diamond", "rhombus"}}};
    g.size_words = {{"small", {"small", "little", "tiny"}}, {"large", {"large", "big", "huge"}}};
    g.motion_phrases = {
        {"moves left", {"moves to the left", "slides left", "drifts leftward", "goes to the left"}},
        {"moves right", {"moves to the right", "slides right", "drifts rightward", "goes to the right"}},
        {"moves up", {"moves up", "rises", "floats upward", "goes up"}},
        {"moves down", {"moves down", "falls", "sinks downward", "goes down"}},
        {"grows", {"grows", "gets bigger", "expands"}},
        {"shrinks", {"shrinks", "gets smaller", "contracts"}},
        {"rotates", {"rotates", "spins", "turns around"}},
        {"stays still", {"stays still", "does not move", "stays in place"}}};
    g.templates = {"a {size} {color} {shape} {motion}", "the {size} {color} {shape} {motion}",
                   "a {color} {shape} that is {size} {motion}", "there is a {size} {color} {shape} and it {motion}"};
    g.questions = {"what color is the shape?",    "what shape is it?",       "is the shape small or large?",
                   "what does the shape do?",     "is the shape {color}?",   "what does the {color} {shape} do?"};
    return g;
  }();
  return g;
}

namespace {

std::string fill(const std::string& tmpl, const std::string& color, const std::string& shape,
                 const std::string& size, const std::string& motion) {
  return fmt::format(fmt::runtime(tmpl), fmt::arg("color", color), fmt::arg("shape", shape),
                     fmt::arg("size", size), fmt::arg("motion", motion));
}

struct Attributes {
  std::string color, shape, size, motion;
};

// The clip's six questions (synth.h), drawn from its own stream.
nlohmann::ordered_json synth_questions(const Attributes& a, SampleRng& rng) {
  const SynthGrammar& g = synth_grammar();
  auto ask = [&](size_t which, const std::string& color = "", const std::string& shape = "") {
    std::string q = g.questions[which];
    for (auto [key, value] : {std::pair<std::string, std::string>{"{color}", color}, {"{shape}", shape}})
      if (size_t at = q.find(key); at != std::string::npos) q.replace(at, key.size(), value);
    return q;
  };
  auto open = [&](size_t which, const std::string& answer, const char* type, const std::string& color = "") {
    return nlohmann::ordered_json{{"question", ask(which, color)}, {"answer", answer}, {"type", type}};
  };
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  out.push_back(open(0, a.color, "color"));
  out.push_back(open(1, a.shape, "shape"));
  out.push_back(open(2, a.size, "size"));
  out.push_back(open(3, a.motion, "motion"));
  // Yes half of the time: the true colour, else one of the others.
  const bool yes = rng.bernoulli(0.5);
  std::string asked = a.color;
  if (!yes)
    while (asked == a.color) asked = g.colors[size_t(rng.randint(0, int64_t(g.colors.size())))];
  out.push_back(open(4, yes ? "yes" : "no", "yesno", asked));
  // Five motions in a random order, the true one among them.
  std::vector<std::string> choices = {a.motion};
  while (choices.size() < 5) {
    const std::string& m = g.motions[size_t(rng.randint(0, int64_t(g.motions.size())))];
    if (std::find(choices.begin(), choices.end(), m) == choices.end()) choices.push_back(m);
  }
  for (size_t i = choices.size(); i > 1; --i) std::swap(choices[i - 1], choices[size_t(rng.randint(0, int64_t(i)))]);
  out.push_back({{"question", ask(5, a.color, a.shape)}, {"choices", choices}, {"answer", a.motion}, {"type", "choice"}});
  return out;
}

constexpr std::array<std::array<uint8_t, 3>, 6> kRgb = {{{220, 40, 40},    // red
                                                          {40, 200, 60},    // green
                                                          {50, 90, 235},    // blue
                                                          {240, 220, 40},   // yellow
                                                          {160, 60, 210},   // purple
                                                          {245, 140, 30}}};  // orange

// Is the point (dx, dy), in the shape's own frame scaled to unit radius (y down), inside the shape?
bool inside(const std::string& shape, double x, double y) {
  if (shape == "circle") return x * x + y * y <= 1.0;
  if (shape == "square") return std::abs(x) <= 0.8 && std::abs(y) <= 0.8;
  if (shape == "diamond") return std::abs(x) + std::abs(y) <= 1.0;
  if (shape == "triangle") return y <= 0.5 && std::abs(x) <= (y + 1.0) / std::sqrt(3.0);  // apex up at (0, −1)
  // star: five points of radius 1, inner corners of radius 0.45; fold the angle into one half-spike
  const double rho = std::hypot(x, y);
  if (rho > 1.0) return false;
  const double spike = 2 * M_PI / 5;
  double a = std::fmod(std::atan2(x, -y) + 2 * M_PI, spike);  // 0 at a point
  if (a > spike / 2) a = spike - a;
  const double px = rho * std::cos(a), py = rho * std::sin(a);  // point: (1, 0); inner corner: q
  const double qx = 0.45 * std::cos(spike / 2), qy = 0.45 * std::sin(spike / 2);
  // inside when on the origin's side of the edge from (1, 0) to q
  const double edge = (qx - 1.0) * (py - 0.0) - qy * (px - 1.0);
  const double origin = (qx - 1.0) * (0.0 - 0.0) - qy * (0.0 - 1.0);
  return edge * origin >= 0;
}

void render_clip(const Attributes& a, const SynthOptions& o, int64_t clip, const std::string& folder) {
  const SynthGrammar& g = synth_grammar();
  const int S = int(o.size);
  SampleRng rng(o.seed, 0, uint64_t(clip), Purpose::Synth);
  // Scene: background level and noise, the shape's start.
  const int background = int(rng.randint(20, 70));
  const bool noisy = rng.bernoulli(0.5);
  const double radius = (a.size == "small" ? 0.12 : 0.2) * S;
  const double travel = 0.35 * S;
  const double margin = radius * 1.05;
  double dx = 0, dy = 0, grow = 1, turn = 0;
  if (a.motion == "moves left") dx = -travel;
  if (a.motion == "moves right") dx = travel;
  if (a.motion == "moves up") dy = -travel;
  if (a.motion == "moves down") dy = travel;
  if (a.motion == "grows") grow = 1.6;
  if (a.motion == "shrinks") grow = 0.55;
  if (a.motion == "rotates") turn = M_PI / 3;
  const double extent = margin * std::max(1.0, grow);
  // The centre's range keeps the shape inside the frame over the whole motion.
  auto start = [&](double shift) {
    const double lo = extent + std::max(0.0, -shift), hi = S - extent - std::max(0.0, shift);
    return hi > lo ? rng.uniform(lo, hi) : S / 2.0;
  };
  const double cx0 = start(dx), cy0 = start(dy);
  const double angle0 = rng.uniform(0, 2 * M_PI);
  const auto color_index = size_t(std::find(g.colors.begin(), g.colors.end(), a.color) - g.colors.begin());
  const std::array<uint8_t, 3> rgb = kRgb[color_index];

  Image img(S, S);
  for (int64_t t = 0; t < o.frames; ++t) {
    const double f = o.frames > 1 ? double(t) / double(o.frames - 1) : 0.0;
    const double cx = cx0 + f * dx, cy = cy0 + f * dy;
    const double r = radius * (1 + f * (grow - 1)), angle = angle0 + f * turn;
    const double c = std::cos(angle), s = std::sin(angle);
    for (int y = 0; y < S; ++y) {
      for (int x = 0; x < S; ++x) {
        uint8_t* p = img.pixel(x, y);
        const double px = (x + 0.5 - cx) / r, py = (y + 0.5 - cy) / r;
        if (px * px + py * py <= 1.0 && inside(a.shape, c * px + s * py, -s * px + c * py)) {
          p[0] = rgb[0], p[1] = rgb[1], p[2] = rgb[2];
          continue;
        }
        int v = background;
        if (noisy) {  // ±8 grey levels, a pure function of (seed, clip, frame, pixel)
          const Philox4 n = philox4x32_10(Philox4{uint32_t(y * S + x), uint32_t(t), uint32_t(clip), 0x5e17u},
                                          uint32_t(o.seed), uint32_t(o.seed >> 32));
          v += int(n.x0 % 17) - 8;
        }
        p[0] = p[1] = p[2] = uint8_t(std::clamp(v, 0, 255));
      }
    }
    write_png(fmt::format("{}/frame_{:03d}.png", folder, t), img);
  }
}

}  // namespace

std::string synth_caption(const std::string& color, const std::string& shape, const std::string& size,
                          const std::string& motion) {
  const SynthGrammar& g = synth_grammar();
  VB_CHECK(std::count(g.colors.begin(), g.colors.end(), color), "synth_caption: unknown color \"{}\"", color);
  VB_CHECK(g.shape_words.count(shape), "synth_caption: unknown shape \"{}\"", shape);
  VB_CHECK(g.size_words.count(size), "synth_caption: unknown size \"{}\"", size);
  VB_CHECK(g.motion_phrases.count(motion), "synth_caption: unknown motion \"{}\"", motion);
  return fill(g.templates[0], color, g.shape_words.at(shape)[0], g.size_words.at(size)[0],
              g.motion_phrases.at(motion)[0]);
}

std::vector<std::string> synth_vocabulary() {
  const SynthGrammar& g = synth_grammar();
  std::set<std::string> words;
  auto add = [&](const std::string& phrase) {
    for (std::string& w : bert_pre_tokenize(phrase, true)) words.insert(std::move(w));
  };
  for (const auto& list : {g.colors, g.shapes, g.sizes, g.motions, g.templates, g.questions}) {
    for (const std::string& phrase : list) add(phrase);
  }
  for (const auto* table : {&g.shape_words, &g.size_words, &g.motion_phrases})
    for (const auto& [key, phrases] : *table)
      for (const std::string& phrase : phrases) add(phrase);
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const std::string& w : words)
    if (w.find_first_of("{}") == std::string::npos) vocab.push_back(w);
  // Single characters (printable ASCII, upper case folded away) and their word-inner forms.
  std::set<std::string> have(vocab.begin(), vocab.end());
  for (char ch = 33; ch < 127; ++ch) {
    if (ch >= 'A' && ch <= 'Z') continue;
    const std::string one(1, ch);
    if (!have.count(one)) vocab.push_back(one);
  }
  for (char ch = 33; ch < 127; ++ch) {
    if (ch >= 'A' && ch <= 'Z') continue;
    vocab.push_back("##" + std::string(1, ch));
  }
  return vocab;
}

SynthSummary write_synthetic_dataset(const std::string& out_dir, const SynthOptions& o) {
  VB_CHECK(o.clips > 0, "data synth: --clips {}, expected at least 1", o.clips);
  VB_CHECK(o.frames > 0, "data synth: --frames {}, expected at least 1", o.frames);
  VB_CHECK(o.size >= 16 && o.size <= 4096, "data synth: --size {}, expected 16 to 4096 pixels", o.size);
  const SynthGrammar& g = synth_grammar();
  std::error_code ec;
  fs::create_directories(fs::path(out_dir) / "clips", ec);
  VB_CHECK(!ec, "data synth: cannot create {}/clips: {}", out_dir, ec.message());

  const int width = std::max(4, int(std::to_string(o.clips - 1).size()));
  std::vector<Attributes> attrs(size_t(o.clips));
  std::vector<std::string> ids(size_t(o.clips));
  std::vector<std::vector<std::string>> captions(size_t(o.clips));
  for (int64_t i = 0; i < o.clips; ++i) {
    // Attributes and captions from the clip's own stream (epoch 1; the renderer uses epoch 0).
    SampleRng rng(o.seed, 1, uint64_t(i), Purpose::Synth);
    auto pick = [&](const std::vector<std::string>& v) -> const std::string& {
      return v[size_t(rng.randint(0, int64_t(v.size())))];
    };
    Attributes& a = attrs[size_t(i)];
    a.color = pick(g.colors);
    a.shape = pick(g.shapes);
    a.size = pick(g.sizes);
    do a.motion = pick(g.motions);
    while (a.shape == "circle" && a.motion == "rotates");
    ids[size_t(i)] = fmt::format("clip_{:0{}d}", i, width);
    std::vector<std::string>& caps = captions[size_t(i)];
    caps.push_back(synth_caption(a.color, a.shape, a.size, a.motion));
    const int64_t count = rng.randint(2, 4);
    for (int tries = 0; int64_t(caps.size()) < count && tries < 20; ++tries) {
      const std::string c = fill(g.templates[size_t(rng.randint(1, int64_t(g.templates.size())))], a.color,
                                 pick(g.shape_words.at(a.shape)), pick(g.size_words.at(a.size)),
                                 pick(g.motion_phrases.at(a.motion)));
      if (std::find(caps.begin(), caps.end(), c) == caps.end()) caps.push_back(c);
    }
  }

  std::vector<std::string> errors(size_t(o.clips));
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < o.clips; ++i) {
    try {
      const std::string folder = (fs::path(out_dir) / "clips" / ids[size_t(i)]).string();
      fs::create_directories(folder);
      render_clip(attrs[size_t(i)], o, i, folder);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  for (const std::string& e : errors) VB_CHECK(e.empty(), "data synth: {}", e);

  SynthSummary summary;
  summary.clips = o.clips;
  std::string manifest;
  for (int64_t i = 0; i < o.clips; ++i) {
    const char* split = i % 10 == 8 ? "val" : i % 10 == 9 ? "test" : "train";
    (i % 10 == 8 ? summary.val : i % 10 == 9 ? summary.test : summary.train) += 1;
    const Attributes& a = attrs[size_t(i)];
    nlohmann::ordered_json line;
    line["id"] = ids[size_t(i)];
    line["frames"] = "clips/" + ids[size_t(i)];
    line["captions"] = captions[size_t(i)];
    line["split"] = split;
    line["attributes"] = {{"color", a.color}, {"shape", a.shape}, {"size", a.size}, {"motion", a.motion}};
    SampleRng qa_rng(o.seed, 2, uint64_t(i), Purpose::Synth);  // the questions' own stream (epoch 2)
    line["qa"] = synth_questions(a, qa_rng);
    manifest += line.dump() + "\n";
  }
  write_text_atomic((fs::path(out_dir) / "manifest.jsonl").string(), manifest);
  const std::vector<std::string> vocab = synth_vocabulary();
  write_vocab(vocab, (fs::path(out_dir) / "vocab.txt").string());
  summary.vocab_size = int64_t(vocab.size());
  return summary;
}

}  // namespace vb::data
