// The caption metrics (train/caption_metrics.h) against pycocoevalcap 1.2 itself — the scorers that
// published captioning numbers come from — run in the .venv-hf that scripts/install-deps.sh makes: Bleu(4),
// Rouge() and Cider() on the same pre-tokenised corpus (captions joined by spaces, which those scorers split
// again; no PTBTokenizer, METEOR or SPICE, which need Java). The corpus has 72 clips with 2–5 references
// each: templated captions like the synthetic dataset's ("a small red circle moves to the left") with
// hypotheses that are right, wrong in one attribute, truncated, padded with repeated words, constant or
// empty, and free COCO-style captions. Corpus scores and every clip's score must agree to 1e-6 (absolute;
// both sides compute in float64, so the differences seen are rounding, ~1e-15).
// Skipped (77) when .venv-hf or its pycocoevalcap is missing.
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/torch/torch_support.h"
#include "train/caption_metrics.h"

using namespace vb;
using namespace vb::test;
using namespace vb::train;

namespace {

// pycocoevalcap's side: the three scorers on {"gts": {id: [refs]}, "res": {id: [hyp]}}, scores by id.
constexpr const char* kJudge = R"(
import json, sys
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.cider.cider import Cider
d = json.load(open(sys.argv[1]))
gts, res = d["gts"], d["res"]
ids = list(gts.keys())
bleu, bleu_clips = Bleu(4).compute_score(gts, res, verbose=0)
rouge, rouge_clips = Rouge().compute_score(gts, res)
cider, cider_clips = Cider().compute_score(gts, res)
out = {
    "bleu": [float(b) for b in bleu],
    "rouge": float(rouge),
    "cider": float(cider),
    "clips": {i: {"bleu": [float(bleu_clips[k][n]) for k in range(4)], "rouge": float(rouge_clips[n]),
                  "cider": float(cider_clips[n])} for n, i in enumerate(ids)},
}
json.dump(out, open(sys.argv[2], "w"))
)";

Words words(const std::string& text) {
  Words out;
  std::string cur;
  for (char c : text + " ") {
    if (c == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

std::string joined(const Words& w) {
  std::string s;
  for (const std::string& x : w) s += (s.empty() ? "" : " ") + x;
  return s;
}

struct Corpus {
  CaptionHypotheses hyps;
  CaptionReferences refs;
};

Corpus make_corpus() {
  Corpus c;
  const std::vector<std::string> colours = {"red", "green", "blue", "yellow", "purple", "orange"};
  const std::vector<std::string> sizes = {"small", "large"};
  const std::vector<std::string> shapes = {"circle", "square", "triangle", "star"};
  const std::vector<std::string> motions = {"moves to the left", "moves to the right", "moves up", "moves down",
                                            "grows", "shrinks", "rotates clockwise", "rotates counterclockwise"};
  // Templated clips: attributes from a fixed linear congruential sequence, references in several phrasings.
  uint64_t state = 12345;
  auto next = [&](size_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return size_t((state >> 33) % n);
  };
  for (int i = 0; i < 56; ++i) {
    const std::string col = colours[next(colours.size())], size = sizes[next(sizes.size())],
                      shape = shapes[next(shapes.size())], motion = motions[next(motions.size())];
    std::vector<std::string> phrasings = {
        "a " + size + " " + col + " " + shape + " " + motion,
        "the " + size + " " + col + " " + shape + " " + motion,
        "a " + col + " " + shape + " that is " + size + " " + motion,
        "there is a " + size + " " + col + " " + shape + " which " + motion,
        "a " + size + " " + shape + " in " + col + " " + motion + " slowly",
    };
    std::vector<Words> refs;
    const size_t n_refs = 2 + size_t(i % 4);  // 2 … 5 references
    for (size_t k = 0; k < n_refs; ++k) refs.push_back(words(phrasings[(size_t(i) + k) % phrasings.size()]));
    std::string hyp;
    switch (i % 8) {
      case 0: hyp = phrasings[size_t(i) % phrasings.size()]; break;                                  // a reference
      case 1: hyp = "a " + size + " " + colours[(next(colours.size()))] + " " + shape + " " + motion; break;
      case 2: hyp = "a " + size + " " + col + " " + shape + " " + motions[next(motions.size())]; break;
      case 3: hyp = "a " + col + " " + shape; break;                                                  // short
      case 4: hyp = "a " + size + " " + col + " " + col + " " + col + " " + shape + " " + motion; break;  // repeats
      case 5: hyp = "a small shape moves"; break;                                                     // constant
      case 6: hyp = "a " + size + " " + col + " " + shape + " " + motion + " across the whole frame quickly"; break;
      case 7: hyp = i == 7 ? "" : "the " + col + " " + shape + " " + motion; break;                   // one empty
    }
    const std::string id = "synth" + std::to_string(i);
    c.hyps[id] = words(hyp);
    c.refs[id] = refs;
  }
  // Free captions, COCO-like.
  const std::vector<std::pair<std::string, std::vector<std::string>>> free = {
      {"a man riding a wave on a surfboard",
       {"a man riding a wave on top of a surfboard", "a surfer rides a large wave in the ocean",
        "a person on a surfboard riding a wave"}},
      {"two dogs playing in the grass",
       {"two dogs play with a ball on the grass", "a pair of dogs running across a green field",
        "two brown dogs playing together in a park", "dogs chasing each other on the lawn"}},
      {"a plate of food with broccoli",
       {"a plate topped with rice and broccoli", "a white plate with chicken broccoli and rice"}},
      {"a kitchen with a stove and a sink",
       {"a small kitchen with a stove a sink and cabinets", "a kitchen that has a stove and a sink in it",
        "an old kitchen with white cabinets"}},
      {"a bus driving down a street",
       {"a red bus driving down a city street", "a double decker bus on a busy road",
        "a bus is parked on the side of the street"}},
      {"a cat sitting on a laptop",
       {"a cat is sitting on top of a laptop computer", "a cat lying on the keyboard of a laptop"}},
      {"people standing",
       {"a group of people standing around a table", "several people stand in a room talking",
        "people are standing together at a party"}},
      {"a train on the tracks on the tracks",
       {"a train traveling down the tracks near a station", "a long train on railroad tracks",
        "a passenger train pulling into a station"}},
      {"a giraffe standing next to a tree",
       {"a giraffe standing next to a tree in a zoo", "a tall giraffe eating leaves from a tree",
        "a giraffe stands near some trees"}},
      {"a woman holding an umbrella in the rain",
       {"a woman holding an umbrella in the rain", "a person walking with an umbrella on a rainy day"}},
      {"a pizza",
       {"a pizza with cheese and pepperoni on a table", "a large pizza sitting on a wooden table",
        "a pizza cut into slices"}},
      {"a clock tower in the city",
       {"a tall clock tower in the middle of a city", "a clock tower with a blue sky behind it",
        "the clock on the tower shows the time"}},
      {"a boy throwing a frisbee",
       {"a young boy throwing a frisbee in a park", "a kid tosses a frisbee on the grass"}},
      {"an elephant walking through a river",
       {"an elephant walking across a shallow river", "a large elephant crossing the water",
        "an elephant in the river", "elephants wading through a river"}},
      {"a bowl of fruit on a table",
       {"a bowl filled with apples and oranges", "fruit in a bowl sitting on a kitchen table",
        "a bowl of fresh fruit on a wooden table"}},
      {"a skier going down a snowy hill",
       {"a skier skiing down a snowy mountain", "a person on skis going down a slope",
        "a man skiing down a hill covered in snow"}},
  };
  for (size_t i = 0; i < free.size(); ++i) {
    const std::string id = "free" + std::to_string(i);
    c.hyps[id] = words(free[i].first);
    for (const std::string& r : free[i].second) c.refs[id].push_back(words(r));
  }
  return c;
}

}  // namespace

TEST_CASE("BLEU-1…4, ROUGE-L and CIDEr-D agree with pycocoevalcap to 1e-6 on 72 clips") {
  const std::string python = source_path(".venv-hf/bin/python");
  require_python(python, "pycocoevalcap.bleu.bleu, pycocoevalcap.rouge.rouge, pycocoevalcap.cider.cider");
  const Corpus corpus = make_corpus();
  REQUIRE(corpus.hyps.size() == 72);

  TempDir dir("coco");
  nlohmann::json in;
  for (const auto& [id, h] : corpus.hyps) {
    in["res"][id] = {joined(h)};
    for (const Words& r : corpus.refs.at(id)) in["gts"][id].push_back(joined(r));
  }
  std::ofstream(dir / "corpus.json") << in.dump();
  std::ofstream(dir / "judge.py") << kJudge;
  REQUIRE(run_command(python + " " + (dir / "judge.py") + " " + (dir / "corpus.json") + " " + (dir / "theirs.json")) ==
          0);
  nlohmann::json theirs;
  std::ifstream(dir / "theirs.json") >> theirs;

  const BleuScores b = bleu(corpus.hyps, corpus.refs);
  const CorpusScore r = rouge_l(corpus.hyps, corpus.refs), c = cider_d(corpus.hyps, corpus.refs);
  double worst = 0;
  auto same = [&](double ours, double reference, const std::string& what) {
    worst = std::max(worst, std::abs(ours - reference));
    CHECK_MESSAGE(std::abs(ours - reference) <= 1e-6, what, ": ours ", ours, ", pycocoevalcap ", reference);
  };
  for (size_t k = 0; k < 4; ++k) same(b.corpus[k], theirs["bleu"][k], "BLEU-" + std::to_string(k + 1));
  same(r.corpus, theirs["rouge"], "ROUGE-L");
  same(c.corpus, theirs["cider"], "CIDEr-D");
  size_t n = 0;
  for (const auto& [id, h] : corpus.hyps) {
    const nlohmann::json& clip = theirs["clips"][id];
    for (size_t k = 0; k < 4; ++k) same(b.per_clip[n][k], clip["bleu"][k], id + " BLEU-" + std::to_string(k + 1));
    same(r.per_clip[n], clip["rouge"], id + " ROUGE-L");
    same(c.per_clip[n], clip["cider"], id + " CIDEr-D");
    ++n;
  }
  MESSAGE("corpus: BLEU-4 ", b.corpus[3], ", ROUGE-L ", r.corpus, ", CIDEr-D ", c.corpus,
          "; largest |ours − pycocoevalcap| ", worst);
  // The corpus must exercise the metrics: scores well away from 0 and from their maxima.
  CHECK(b.corpus[3] > 0.1);
  CHECK(b.corpus[3] < 0.9);
  CHECK(c.corpus > 0.3);
  CHECK(c.corpus < 8);
}
