// The data loader (see loader.h): an ordered window of samples loaded by worker threads.
#include "train/data/loader.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "autograd/ops.h"
#include "tensor/error.h"
#include "train/data/sample_rng.h"
#include "train/data/sampling.h"
#include "train/data/video.h"

namespace vb::data {

void LoaderOptions::validate() const {
  VB_CHECK(frames > 0, "loader: frames = {}, expected at least 1", frames);
  VB_CHECK(size > 0, "loader: size = {}, expected at least 1 pixel", size);
  VB_CHECK(max_length >= 2, "loader: max_length = {}, expected at least 2 ([CLS] and [SEP])", max_length);
  VB_CHECK(batch_size > 0, "loader: batch_size = {}, expected at least 1", batch_size);
  VB_CHECK(workers >= 0, "loader: workers = {}, expected 0 (load on the caller's thread) or more", workers);
  VB_CHECK(prefetch >= 0, "loader: prefetch = {}, expected ≥ 0", prefetch);
  VB_CHECK(world >= 1 && rank >= 0 && rank < world, "loader: rank {} of world {}: expected 0 ≤ rank < world", rank,
           world);
  augment.validate();
}

Sample load_sample(const Clip& clip, int64_t clip_index, uint64_t epoch, const WordPieceTokenizer& tokenizer,
                   const LoaderOptions& o) {
  const auto T = size_t(o.frames);
  const int S = int(o.size);
  const std::vector<double> positions = sample_positions(
      o.frames, o.train ? Sampling::Random : Sampling::Uniform, o.seed, epoch, uint64_t(clip_index));
  std::vector<Image> images;
  if (clip.is_video()) {
    images = decode_video_clip(clip.video, positions, clip.start, clip.end);
  } else {
    const std::vector<std::string> files = list_frames(clip.frames);
    const std::vector<int64_t> idx = positions_to_indices(positions, int64_t(files.size()));
    images.resize(T);
    for (size_t t = 0; t < T; ++t)  // a repeated index reuses the image already read
      images[t] = t > 0 && idx[t] == idx[t - 1] ? images[t - 1] : read_image(files[size_t(idx[t])]);
  }
  Sample s;
  s.frames.resize(T * size_t(S) * size_t(S) * 3);
  const size_t frame_floats = size_t(S) * size_t(S) * 3;
  if (o.train) {
    SampleRng rng(o.seed, epoch, uint64_t(clip_index), Purpose::Augment);
    const AugmentParams params = draw_augment(o.augment, images[0].width, images[0].height, rng);
    for (size_t t = 0; t < T; ++t) train_transform(images[t], S, params, s.frames.data() + t * frame_floats);
    s.flipped = params.flip;
  } else {
    for (size_t t = 0; t < T; ++t) eval_transform(images[t], S, s.frames.data() + t * frame_floats);
  }
  if (o.train && clip.captions.size() > 1) {
    SampleRng rng(o.seed, epoch, uint64_t(clip_index), Purpose::Caption);
    s.caption_index = rng.randint(0, int64_t(clip.captions.size()));
  }
  s.caption = clip.captions[size_t(s.caption_index)];
  if (s.flipped && !o.mirror_words.empty()) s.caption = mirror_text(s.caption, o.mirror_words);
  s.tokens = tokenizer.encode(s.caption, EncodeOptions{.add_special = true, .max_length = o.max_length, .pad_to = o.max_length});
  return s;
}

std::string mirror_text(const std::string& text, const std::vector<std::pair<std::string, std::string>>& pairs) {
  auto lower = [](std::string w) {
    for (char& c : w) c = char(std::tolower(static_cast<unsigned char>(c)));
    return w;
  };
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (!std::isalpha(static_cast<unsigned char>(text[i]))) {
      out += text[i++];
      continue;
    }
    size_t j = i;
    while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
    const std::string word = text.substr(i, j - i), key = lower(word);
    std::string replacement = word;
    for (const auto& [a, b] : pairs) {
      const std::string other = key == lower(a) ? b : key == lower(b) ? a : "";
      if (other.empty()) continue;
      replacement = other;
      if (std::isupper(static_cast<unsigned char>(word[0])) && !replacement.empty())
        replacement[0] = char(std::toupper(static_cast<unsigned char>(replacement[0])));
      break;
    }
    out += replacement;
    i = j;
  }
  return out;
}

Batch to_device(const Batch& b, Device device) {
  Batch out = b;
  for (Tensor* t : {&out.frames, &out.input_ids, &out.attention_mask, &out.token_type_ids, &out.clip_index,
                    &out.caption_index})
    *t = to(*t, device);
  return out;
}

DataLoader::DataLoader(const Manifest& manifest, WordPieceTokenizer tokenizer, LoaderOptions options)
    : DataLoader(manifest.split(options.split), std::move(tokenizer), options) {
  VB_CHECK(!clips_.empty(), "loader: {} has no clips in split \"{}\"", manifest.path, split_name(options.split));
}

DataLoader::DataLoader(std::vector<Clip> clips, WordPieceTokenizer tokenizer, LoaderOptions options)
    : clips_(std::move(clips)), tokenizer_(std::move(tokenizer)), options_(options) {
  options_.validate();
  VB_CHECK(clips_.size() < (size_t(1) << 32), "loader: {} clips, at most 2^32 are supported", clips_.size());
  if (options_.prefetch == 0) options_.prefetch = 2 * options_.batch_size;
}

DataLoader::~DataLoader() { stop_workers(); }

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch, int64_t first_sample) const {
  std::vector<int64_t> all(clips_.size());
  std::iota(all.begin(), all.end(), 0);
  if (options_.train && options_.shuffle) {  // Fisher–Yates from (seed, epoch)
    SampleRng rng(options_.seed, uint64_t(epoch), 0, Purpose::Shuffle);
    for (size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[size_t(rng.randint(0, int64_t(i)))]);
  }
  VB_CHECK(first_sample >= 0, "loader: first_sample = {}, expected ≥ 0", first_sample);
  const int64_t n = int64_t(all.size()), B = options_.batch_size, round = B * options_.world;
  std::vector<int64_t> mine;
  for (int64_t start = first_sample + options_.rank * B; start < n; start += round)
    for (int64_t i = start; i < std::min(n, start + B); ++i) mine.push_back(all[size_t(i)]);
  return mine;
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t B = options_.batch_size;
  if (options_.drop_last) return int64_t(clips_.size()) / (B * options_.world);
  return (int64_t(epoch_order(0).size()) + B - 1) / B;
}

void DataLoader::stop_workers() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_sample) {
  stop_workers();
  std::vector<int64_t> order = epoch_order(epoch, first_sample);
  {
    std::lock_guard lock(mu_);
    stop_ = false;
    started_ = true;
    epoch_ = epoch;
    order_ = std::move(order);
    claim_ = consume_ = 0;
    ready_.clear();
  }
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { work(); });
}

void DataLoader::work() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] {
      return stop_ || claim_ >= order_.size() || claim_ < consume_ + size_t(options_.prefetch);
    });
    if (stop_ || claim_ >= order_.size()) return;
    const size_t pos = claim_++;
    const int64_t index = order_[pos];
    const uint64_t epoch = uint64_t(epoch_);
    lock.unlock();
    Loaded loaded;
    try {
      loaded.sample = load_sample(clips_[size_t(index)], index, epoch, tokenizer_, options_);
    } catch (const std::exception& e) {
      loaded.error = e.what();
    }
    lock.lock();
    ready_.emplace(pos, std::move(loaded));
    cv_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  if (!started_) start_epoch(0);
  const int64_t B = options_.batch_size, T = options_.frames, S = options_.size, L = options_.max_length;
  std::vector<std::pair<int64_t, Sample>> samples;  // (clip index, sample)
  std::unique_lock lock(mu_);
  while (int64_t(samples.size()) < B && consume_ < order_.size()) {
    const size_t pos = consume_;
    const int64_t index = order_[pos];
    Loaded loaded;
    if (threads_.empty()) {  // no workers: load here
      lock.unlock();
      try {
        loaded.sample = load_sample(clips_[size_t(index)], index, uint64_t(epoch_), tokenizer_, options_);
      } catch (const std::exception& e) {
        loaded.error = e.what();
      }
      lock.lock();
    } else {
      cv_.wait(lock, [&] { return ready_.count(pos) > 0; });
      loaded = std::move(ready_.at(pos));
      ready_.erase(pos);
    }
    ++consume_;
    cv_.notify_all();
    if (loaded.error.empty()) {
      samples.emplace_back(index, std::move(loaded.sample));
      continue;
    }
    const Clip& clip = clips_[size_t(index)];
    const std::string message = fmt::format("clip \"{}\" (manifest line {}): {}", clip.id, clip.line, loaded.error);
    VB_CHECK(!options_.strict, "loader (strict): {}", message);
    skips_.push_back(message);
    if (!options_.quiet) std::fprintf(stderr, "videobert: warning: skipping %s\n", message.c_str());
  }
  lock.unlock();
  const auto n = int64_t(samples.size());
  if (n == 0 || (options_.drop_last && n < B)) return std::nullopt;

  Batch b;
  auto host = [&](const Shape& shape, DType dtype) {
    return options_.pin_memory_for == DeviceType::CPU ? Tensor::empty(shape, dtype)
                                                      : Tensor::empty_pinned(shape, dtype, options_.pin_memory_for);
  };
  b.frames = host({n, T, S, S, 3}, DType::Float32);
  b.input_ids = host({n, L}, DType::Int64);
  b.attention_mask = host({n, L}, DType::Int64);
  b.token_type_ids = host({n, L}, DType::Int64);
  b.clip_index = Tensor::empty({n}, DType::Int64);
  b.caption_index = Tensor::empty({n}, DType::Int64);
  float* frames = b.frames.data<float>();
  int64_t *ids = b.input_ids.data<int64_t>(), *mask = b.attention_mask.data<int64_t>(),
          *types = b.token_type_ids.data<int64_t>();
  const size_t sample_floats = size_t(T * S * S * 3);
  for (int64_t i = 0; i < n; ++i) {
    const auto& [index, s] = samples[size_t(i)];
    VB_CHECK(int64_t(s.tokens.ids.size()) == L, "loader: clip {} encoded to {} tokens, expected {}", index,
             s.tokens.ids.size(), L);
    std::memcpy(frames + size_t(i) * sample_floats, s.frames.data(), sample_floats * sizeof(float));
    std::copy(s.tokens.ids.begin(), s.tokens.ids.end(), ids + i * L);
    std::copy(s.tokens.attention_mask.begin(), s.tokens.attention_mask.end(), mask + i * L);
    std::copy(s.tokens.token_type_ids.begin(), s.tokens.token_type_ids.end(), types + i * L);
    b.clip_index.data<int64_t>()[i] = index;
    b.caption_index.data<int64_t>()[i] = s.caption_index;
    b.captions.push_back(s.caption);
    b.flipped.push_back(s.flipped);
  }
  return b;
}

int64_t DataLoader::skipped() const {
  std::lock_guard lock(mu_);
  return int64_t(skips_.size());
}

std::vector<std::string> DataLoader::skip_messages() const {
  std::lock_guard lock(mu_);
  return skips_;
}

}  // namespace vb::data
