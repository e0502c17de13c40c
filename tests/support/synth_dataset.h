// A synthetic video–text dataset (train/data/synth.h) written once per test program into the temporary
// directory, for the tests that train, load or evaluate on real files.
#pragma once
#include <filesystem>
#include <string>

#include "train/data/synth.h"

namespace vb::test {

// Writes (anew) a dataset of `clips` clips of `frames` frames of size² pixels into temp/<name>.
inline std::filesystem::path synth_dataset(const std::string& name, int64_t clips, int64_t frames, int64_t size) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  data::SynthOptions o;
  o.clips = clips;
  o.frames = frames;
  o.size = size;
  data::write_synthetic_dataset(dir.string(), o);
  return dir;
}

}  // namespace vb::test
