// A synthetic video–text dataset for learning and testing (`videobert data synth`, docs/DATA.md).
//
// Each clip is one coloured shape on a plain or lightly noisy dark background, rendered frame by frame
// (pixel-centre tests, no anti-aliasing) into DIR/clips/<id>/frame_000.png …, with attributes
//   color:  red green blue yellow purple orange
//   shape:  circle square triangle star diamond
//   size:   small large
//   motion: moves left, moves right, moves up, moves down, grows, shrinks, rotates, stays still
//           (a circle does not "rotate": its motion is drawn from the others)
// and 2–3 captions from a small grammar with paraphrases. The first caption is the canonical one,
// "a small red circle moves to the left" (synth_caption); the others pick a template
//   the {size} {color} {shape} {motion} | a {color} {shape} that is {size} {motion} |
//   there is a {size} {color} {shape} and it {motion}
// and a synonym for the size, shape and motion ("the little red ball slides left").
// Each clip also carries six questions (manifest "qa", docs/DATA.md), balanced by construction:
//   color   "what color is the shape?"            → the colour        (open-ended)
//   shape   "what shape is it?"                    → the shape
//   size    "is the shape small or large?"         → the size
//   motion  "what does the shape do?"              → the motion ("moves left", "grows", …)
//   yesno   "is the shape <colour>?"               → yes or no, the colour asked true half of the time
//   choice  "what does the <colour> <shape> do?"   → five motions, the true one among them (multiple choice)
// Splits: clip i is val when i mod 10 = 8, test when i mod 10 = 9, train otherwise (80/10/10).
// DIR/vocab.txt holds the BERT specials, every word of the grammar, and every single character with its
// "##" form, so WordPiece never needs [UNK] for lower-case ASCII text.
// Everything is a function of the seed: the same seed writes byte-identical files.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vb::data {

struct SynthOptions {
  int64_t clips = 400;
  int64_t frames = 8;
  int64_t size = 64;
  uint64_t seed = 0;
};

// The grammar: attribute values (the canonical word first in each synonym list) and the templates.
struct SynthGrammar {
  std::vector<std::string> colors, shapes, sizes, motions;
  std::map<std::string, std::vector<std::string>> shape_words;     // "circle" → circle, ball, disc
  std::map<std::string, std::vector<std::string>> size_words;      // "small" → small, little, tiny
  std::map<std::string, std::vector<std::string>> motion_phrases;  // "moves left" → moves to the left, …
  std::vector<std::string> templates;  // with {size} {color} {shape} {motion}; the first is canonical
  std::vector<std::string> questions;  // the question templates above, with {color} {shape}
};
const SynthGrammar& synth_grammar();

// The canonical caption: "a {size} {color} {shape} {motion phrase}" with the first synonym of each.
std::string synth_caption(const std::string& color, const std::string& shape, const std::string& size,
                          const std::string& motion);

// Every token of vocab.txt, in order.
std::vector<std::string> synth_vocabulary();

struct SynthSummary {
  int64_t clips = 0, train = 0, val = 0, test = 0, vocab_size = 0;
};

// Writes the dataset into `out_dir` (created if missing): manifest.jsonl and vocab.txt atomically,
// the frames under clips/.
SynthSummary write_synthetic_dataset(const std::string& out_dir, const SynthOptions& options);

}  // namespace vb::data
