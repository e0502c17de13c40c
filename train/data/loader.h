// The data loader: background worker threads turn a split's clips into batches.
//
// Each epoch, the clip indices are shuffled (training; a permutation drawn from (seed, epoch)) and the
// order is dealt out in blocks of batch_size B: rank r of world w takes blocks r, r + w, r + 2w …, i.e.
// positions [(k·w + r)·B, (k·w + r + 1)·B) for its k-th batch. The ranks' shares are disjoint and together
// complete, and the k-th batches of all ranks, concatenated in rank order, are exactly the k-th batch that
// one process with batch w·B would get: a data-parallel step sees the same samples for any world size
// (docs/DISTRIBUTED.md). An epoch may start at any global sample position (start_epoch's first_sample),
// which is how a run resumes, possibly with another world size or batch size. Workers claim positions in
// order and load each sample on their own:
//   frames:   T positions (sampling.h: random sparse for training, uniform for evaluation), read from the
//             frames folder or decoded from the video, transformed (image.h: one augmentation per clip for
//             training, resize + centre crop for evaluation) → (T, S, S, 3) float32
//   caption:  training picks one of the clip's captions at random, evaluation the first; tokenised as
//             [CLS] caption [SEP], truncated to L and padded with [PAD] → ids, attention mask, token types
// Every random choice comes from (seed, epoch, clip index) (sample_rng.h), and the consumer takes samples
// in position order, so the batches are the same for any number of workers.
// The prefetch queue holds at most `prefetch` loaded samples ahead of the consumer.
// A sample whose media cannot be read (missing file, corrupt image or video) is skipped: a warning on
// stderr names the clip, the file and the reason, and skipped() counts it; with strict, next() throws
// the first such error instead. Skips happen in position order, so they too are deterministic.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "models/tokenizer.h"
#include "tensor/tensor.h"
#include "train/data/image.h"
#include "train/data/manifest.h"

namespace vb::data {

struct LoaderOptions {
  Split split = Split::Train;
  bool train = true;  // random frames, augmentation, a random caption; false: uniform frames, centre crop, first
  bool shuffle = true;  // shuffle the order each epoch (only when train)
  int64_t frames = 8;          // T
  int64_t size = 64;           // S
  int64_t max_length = 32;     // L, [CLS] and [SEP] included
  int64_t batch_size = 8;      // B
  bool drop_last = false;      // drop an epoch's last, smaller batch
  AugmentOptions augment;
  uint64_t seed = 0;
  int workers = 2;
  int64_t prefetch = 0;  // samples loaded ahead of the consumer; 0: two batches
  int rank = 0, world = 1;
  // A horizontally flipped clip's caption has these words swapped (either way round), so that "moves to
  // the left" stays true of the mirrored frames: mirror_text(). Empty: captions are left as they are.
  std::vector<std::pair<std::string, std::string>> mirror_words;
  bool strict = false;  // the first unreadable sample is an error instead of a skip
  bool quiet = false;   // no warnings on stderr (skips are still counted)
  // Batches in host memory pinned for copies to this device type (CUDA, EMU), so that to_device's copies
  // are asynchronous; CPU: ordinary memory.
  DeviceType pin_memory_for = DeviceType::CPU;

  void validate() const;
};

// One batch, on the CPU until to_device moves it.
struct Batch {
  Tensor frames;          // (B, T, S, S, 3) float32, ImageNet-normalised
  Tensor input_ids;       // (B, L) int64, [PAD]-padded
  Tensor attention_mask;  // (B, L) int64, 1 for tokens, 0 for padding
  Tensor token_type_ids;  // (B, L) int64, all 0 (one segment)
  Tensor clip_index;      // (B,) int64, index into the loader's clips()
  Tensor caption_index;   // (B,) int64, which of the clip's captions was picked
  std::vector<std::string> captions;  // as tokenised (mirrored for flipped clips)
  std::vector<bool> flipped;          // whether each clip's frames were flipped horizontally

  int64_t size() const { return int64_t(captions.size()); }
};

// One loaded sample.
struct Sample {
  std::vector<float> frames;  // T · S · S · 3
  Encoding tokens;
  int64_t caption_index = 0;
  std::string caption;  // the text tokenised (mirrored when flipped)
  bool flipped = false;
};

// `text` with every whole word of a pair replaced by the other (case kept: "Left" ↔ "Right"); words are
// runs of letters. What a horizontal flip does to a description of the frames.
std::string mirror_text(const std::string& text, const std::vector<std::pair<std::string, std::string>>& pairs);

// Loads clip `clip_index` of `clip` for `epoch` as the loader does (also for evaluating single clips).
Sample load_sample(const Clip& clip, int64_t clip_index, uint64_t epoch, const WordPieceTokenizer& tokenizer,
                   const LoaderOptions& options);

// Moves a batch's tensors to `device` with vb::to. From a pinned batch (LoaderOptions::pin_memory_for) the
// copies to a GPU are queued on the framework's stream and return at once, overlapping the previous step's
// kernels.
Batch to_device(const Batch& batch, Device device);

class DataLoader {
 public:
  // The clips of options.split.
  DataLoader(const Manifest& manifest, WordPieceTokenizer tokenizer, LoaderOptions options);
  DataLoader(std::vector<Clip> clips, WordPieceTokenizer tokenizer, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts (or restarts) loading epoch `epoch` at global sample position first_sample (the blocks are
  // then dealt from there); next() starts epoch 0 when none was started.
  void start_epoch(int64_t epoch, int64_t first_sample = 0);
  // The next batch of the epoch, or nothing when the epoch is over.
  std::optional<Batch> next();

  // This rank's clip indices for `epoch` from global position first_sample, in the order they are served.
  std::vector<int64_t> epoch_order(int64_t epoch, int64_t first_sample = 0) const;
  // Batches per epoch without skips; with drop_last, those of complete rounds of w·B samples (every rank
  // has a full batch in each), which is what a data-parallel step takes.
  int64_t batches_per_epoch() const;
  const std::vector<Clip>& clips() const { return clips_; }
  const LoaderOptions& options() const { return options_; }

  // Samples skipped so far (all epochs) and why, one line each.
  int64_t skipped() const;
  std::vector<std::string> skip_messages() const;

 private:
  struct Loaded {
    Sample sample;
    std::string error;  // non-empty: the sample could not be loaded
  };
  void stop_workers();
  void work();

  std::vector<Clip> clips_;
  WordPieceTokenizer tokenizer_;
  LoaderOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  bool started_ = false, stop_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  size_t claim_ = 0;    // next position a worker takes
  size_t consume_ = 0;  // next position the consumer takes
  std::map<size_t, Loaded> ready_;
  std::vector<std::string> skips_;
};

}  // namespace vb::data
