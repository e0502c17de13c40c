// The loader: the same batches for 1 and 3 workers, shards that are disjoint and complete, batch layout,
// temporal consistency of augmentation, skipping (and strictly refusing) a corrupt frame.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "models/tokenizer.h"
#include "tensor/error.h"
#include "train/data/loader.h"
#include "train/data/synth.h"

namespace fs = std::filesystem;
using namespace vb::data;

namespace {

struct Dataset {
  fs::path dir;
  Manifest manifest;
  vb::WordPieceTokenizer tokenizer;

  explicit Dataset(const std::string& name, int64_t clips = 24)
      : dir(fs::temp_directory_path() / ("vb_loader_" + name + "_" + std::to_string(getpid()))),
        manifest(make(dir, clips)),
        tokenizer(vb::WordPieceTokenizer::load((dir / "vocab.txt").string())) {}
  ~Dataset() { fs::remove_all(dir); }

  static Manifest make(const fs::path& dir, int64_t clips) {
    fs::remove_all(dir);
    write_synthetic_dataset(dir.string(), SynthOptions{.clips = clips, .frames = 6, .size = 24, .seed = 11});
    return load_manifest(dir.string());
  }
};

LoaderOptions small_options() {
  LoaderOptions o;
  o.frames = 3;
  o.size = 16;
  o.max_length = 16;
  o.batch_size = 4;
  o.seed = 5;
  o.quiet = true;
  return o;
}

// Every batch of `epochs` epochs.
std::vector<Batch> all_batches(DataLoader& loader, int epochs) {
  std::vector<Batch> out;
  for (int e = 0; e < epochs; ++e) {
    loader.start_epoch(e);
    while (auto b = loader.next()) out.push_back(std::move(*b));
  }
  return out;
}

bool same_tensor(const vb::Tensor& a, const vb::Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.data_ptr(), b.data_ptr(), size_t(a.numel() * a.element_size())) == 0;
}

std::vector<int64_t> ints(const vb::Tensor& t) {
  const int64_t* p = t.data<int64_t>();
  return std::vector<int64_t>(p, p + t.numel());
}

}  // namespace

TEST_CASE("loader: batches are the same for 1 and 3 workers, and laid out as documented") {
  Dataset d("workers");
  LoaderOptions o = small_options();
  o.workers = 1;
  DataLoader one(d.manifest, d.tokenizer, o);
  o.workers = 3;
  o.prefetch = 5;
  DataLoader three(d.manifest, d.tokenizer, o);
  o.workers = 0;  // loading on the caller's thread gives them too
  DataLoader none(d.manifest, d.tokenizer, o);
  const std::vector<Batch> a = all_batches(one, 2), b = all_batches(three, 2), c = all_batches(none, 2);
  const int64_t n_train = int64_t(d.manifest.split(Split::Train).size());
  CHECK(one.batches_per_epoch() == (n_train + 3) / 4);
  REQUIRE(a.size() == size_t(2 * one.batches_per_epoch()));
  REQUIRE(b.size() == a.size());
  REQUIRE(c.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    for (const std::vector<Batch>* other : {&b, &c}) {
      const Batch& x = (*other)[i];
      CHECK(same_tensor(a[i].frames, x.frames));
      CHECK(same_tensor(a[i].input_ids, x.input_ids));
      CHECK(same_tensor(a[i].attention_mask, x.attention_mask));
      CHECK(same_tensor(a[i].clip_index, x.clip_index));
      CHECK(same_tensor(a[i].caption_index, x.caption_index));
      CHECK(a[i].captions == x.captions);
    }
  }
  // Layout: (B, T, S, S, 3) float32 frames; (B, L) int64 ids [CLS] … [SEP] [PAD]…, mask, token types.
  const Batch& first = a[0];
  CHECK(first.frames.shape() == vb::Shape{4, 3, 16, 16, 3});
  CHECK(first.frames.dtype() == vb::DType::Float32);
  CHECK(first.input_ids.shape() == vb::Shape{4, 16});
  CHECK(first.input_ids.dtype() == vb::DType::Int64);
  CHECK(first.clip_index.shape() == vb::Shape{4});
  const std::vector<int64_t> ids = ints(first.input_ids), mask = ints(first.attention_mask),
                             types = ints(first.token_type_ids);
  for (int64_t r = 0; r < 4; ++r) {
    const std::string& caption = first.captions[size_t(r)];
    std::vector<int64_t> expect = d.tokenizer.encode(caption, true);
    const int64_t clip = ints(first.clip_index)[size_t(r)];
    const int64_t pick = ints(first.caption_index)[size_t(r)];
    CHECK(caption == one.clips()[size_t(clip)].captions[size_t(pick)]);
    for (int64_t j = 0; j < 16; ++j) {
      const bool token = j < int64_t(expect.size());
      CHECK(ids[size_t(r * 16 + j)] == (token ? expect[size_t(j)] : d.tokenizer.pad_id()));
      CHECK(mask[size_t(r * 16 + j)] == (token ? 1 : 0));
      CHECK(types[size_t(r * 16 + j)] == 0);
    }
  }
  // Training picks among the captions (not always the first) and shuffles differently each epoch.
  std::set<int64_t> picks;
  for (const Batch& batch : a)
    for (int64_t p : ints(batch.caption_index)) picks.insert(p);
  CHECK(picks.size() >= 2);
  CHECK(one.epoch_order(0) != one.epoch_order(1));
  // Moving a batch to the CPU keeps it.
  const Batch moved = to_device(first, vb::Device());
  CHECK(same_tensor(moved.frames, first.frames));
  CHECK(same_tensor(moved.input_ids, first.input_ids));
}

TEST_CASE("loader: evaluation order, first captions, and uniform frames") {
  Dataset d("eval");
  LoaderOptions o = small_options();
  o.train = false;
  o.split = Split::Test;
  DataLoader loader(d.manifest, d.tokenizer, o);
  std::vector<int64_t> seen;
  while (auto b = loader.next()) {
    for (int64_t i = 0; i < b->size(); ++i) {
      const int64_t clip = ints(b->clip_index)[size_t(i)];
      seen.push_back(clip);
      CHECK(ints(b->caption_index)[size_t(i)] == 0);
      CHECK(b->captions[size_t(i)] == loader.clips()[size_t(clip)].captions[0]);
    }
  }
  std::vector<int64_t> expect(loader.clips().size());
  for (size_t i = 0; i < expect.size(); ++i) expect[i] = int64_t(i);
  CHECK(seen == expect);
  CHECK(loader.skipped() == 0);
}

TEST_CASE("loader: rank shards are disjoint and together complete, every epoch") {
  Dataset d("shards", 31);
  const size_t n = d.manifest.split(Split::Train).size();
  for (int world : {1, 2, 3, 4}) {
    for (int64_t epoch : {0, 1, 2}) {
      CAPTURE(world);
      CAPTURE(epoch);
      std::multiset<int64_t> all;
      for (int rank = 0; rank < world; ++rank) {
        LoaderOptions o = small_options();
        o.rank = rank;
        o.world = world;
        DataLoader loader(d.manifest, d.tokenizer, o);
        const std::vector<int64_t> order = loader.epoch_order(epoch);
        loader.start_epoch(epoch);
        std::vector<int64_t> served;
        while (auto b = loader.next())
          for (int64_t c : ints(b->clip_index)) served.push_back(c);
        CHECK(served == order);
        all.insert(order.begin(), order.end());
      }
      CHECK(all.size() == n);
      for (size_t i = 0; i < n; ++i) CHECK(all.count(int64_t(i)) == 1);
    }
  }
  LoaderOptions bad = small_options();
  bad.rank = 2;
  bad.world = 2;
  CHECK_THROWS_WITH_AS(DataLoader(d.manifest, d.tokenizer, bad), doctest::Contains("rank 2 of world 2"), vb::Error);
}

// The k-th batches of w ranks with batch B, in rank order, are the k-th batch of one process with batch
// w·B: what makes a data-parallel step independent of the world size. The same from a position inside an
// epoch (a resume), also when the resumed run has another world size and batch size.
TEST_CASE("loader: the ranks' k-th batches together are one process's k-th batch of w·B") {
  Dataset d("blocks", 40);
  auto batches = [&](int rank, int world, int64_t batch, int64_t first) {
    LoaderOptions o = small_options();
    o.rank = rank;
    o.world = world;
    o.batch_size = batch;
    o.drop_last = true;
    DataLoader loader(d.manifest, d.tokenizer, o);
    loader.start_epoch(1, first);
    std::vector<std::vector<int64_t>> out;
    while (auto b = loader.next()) out.push_back(ints(b->clip_index));
    return out;
  };
  for (int64_t first : {0, 6}) {
    CAPTURE(first);
    const auto whole = batches(0, 1, 6, first);
    REQUIRE(whole.size() >= 3);
    for (int world : {2, 3}) {
      CAPTURE(world);
      std::vector<std::vector<std::vector<int64_t>>> ranks;
      for (int r = 0; r < world; ++r) ranks.push_back(batches(r, world, 6 / world, first));
      for (size_t k = 0; k < whole.size(); ++k) {
        std::vector<int64_t> joined;
        for (int r = 0; r < world; ++r) {
          REQUIRE(ranks[size_t(r)].size() > k);
          joined.insert(joined.end(), ranks[size_t(r)][k].begin(), ranks[size_t(r)][k].end());
        }
        CHECK(joined == whole[k]);
      }
    }
  }
  // A position inside an epoch: the first batch from sample 6 is the second batch of a batch-6 epoch.
  CHECK(batches(0, 1, 6, 6)[0] == batches(0, 1, 6, 0)[1]);
}

TEST_CASE("loader: a corrupt frame skips its sample with a warning and a count; strict mode stops") {
  Dataset d("corrupt", 20);
  const std::vector<Clip> train = d.manifest.split(Split::Train);
  // Corrupt every frame of the third training clip.
  const Clip& victim = train[2];
  for (const auto& entry : fs::directory_iterator(victim.frames))
    std::ofstream(entry.path(), std::ios::binary | std::ios::trunc) << "not a png at all";
  LoaderOptions o = small_options();
  o.workers = 2;
  DataLoader loader(d.manifest, d.tokenizer, o);
  int64_t served = 0;
  std::set<int64_t> clips;
  while (auto b = loader.next()) {
    served += b->size();
    for (int64_t c : ints(b->clip_index)) clips.insert(c);
  }
  CHECK(served == int64_t(train.size()) - 1);
  CHECK(clips.count(2) == 0);
  CHECK(loader.skipped() == 1);
  const std::string msg = loader.skip_messages().at(0);
  CHECK(msg.find(victim.id) != std::string::npos);
  CHECK(msg.find(victim.frames) != std::string::npos);  // the file
  CHECK(msg.find("cannot be read") != std::string::npos);
  // The count accumulates over epochs.
  loader.start_epoch(1);
  while (loader.next()) {
  }
  CHECK(loader.skipped() == 2);

  o.strict = true;
  DataLoader strict(d.manifest, d.tokenizer, o);
  bool thrown = false;
  try {
    while (strict.next()) {
    }
  } catch (const vb::Error& e) {
    thrown = true;
    CHECK(std::string(e.what()).find(victim.frames) != std::string::npos);
  }
  CHECK(thrown);
}

TEST_CASE("loader: one augmentation for every frame of a clip") {
  // A clip whose frames are all the same image: after augmentation its T frames must still be equal.
  const fs::path dir = fs::temp_directory_path() / ("vb_loader_same_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "f");
  Image img(40, 30);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t((i * 131) % 251);
  for (int i = 0; i < 5; ++i) write_png((dir / "f" / ("frame_" + std::to_string(i) + ".png")).string(), img);
  const Manifest m = parse_manifest(R"({"frames": "f", "caption": "a clip"})", dir.string(), "test");
  const vb::WordPieceTokenizer tok({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "clip"});
  LoaderOptions o = small_options();
  o.frames = 4;
  o.augment.rotate_degrees = 20;
  for (uint64_t epoch = 0; epoch < 4; ++epoch) {
    const Sample s = load_sample(m.clips[0], 0, epoch, tok, o);
    const size_t frame = 16 * 16 * 3;
    REQUIRE(s.frames.size() == 4 * frame);
    for (size_t t = 1; t < 4; ++t)
      CHECK(std::memcmp(s.frames.data(), s.frames.data() + t * frame, frame * sizeof(float)) == 0);
    CHECK(s.tokens.ids.size() == 16);
  }
  // Different epochs draw different augmentations.
  CHECK(load_sample(m.clips[0], 0, 0, tok, o).frames != load_sample(m.clips[0], 0, 1, tok, o).frames);
  fs::remove_all(dir);
}

TEST_CASE("mirror_text swaps whole words either way round and keeps everything else") {
  const std::vector<std::pair<std::string, std::string>> lr = {{"left", "right"}};
  CHECK(mirror_text("a red circle moves to the left", lr) == "a red circle moves to the right");
  CHECK(mirror_text("Right, then left.", lr) == "Left, then right.");
  CHECK(mirror_text("leftover rights stay", lr) == "leftover rights stay");  // whole words only
  CHECK(mirror_text("", lr).empty());
  CHECK(mirror_text("up and down", {{"left", "right"}, {"up", "down"}}) == "down and up");
}

// A horizontal flip mirrors the frames; with mirror_words the caption says what the mirrored frames show.
TEST_CASE("loader: a flipped clip's caption has its direction words swapped, and the batch says it was flipped") {
  Dataset d("mirror", 40);
  LoaderOptions o = small_options();
  o.train = true;
  o.shuffle = false;
  o.augment.flip = true;
  o.augment.flip_p = 1.0;  // every clip
  o.mirror_words = {{"left", "right"}};
  DataLoader flipped(d.manifest, d.tokenizer, o);
  o.augment.flip = false;
  DataLoader plain(d.manifest, d.tokenizer, o);
  int swapped = 0;
  auto a = flipped.next(), b = plain.next();
  while (a && b) {
    REQUIRE(a->flipped.size() == size_t(a->size()));
    for (int64_t i = 0; i < a->size(); ++i) {
      CHECK(a->flipped[size_t(i)]);
      CHECK_FALSE(b->flipped[size_t(i)]);
      CHECK(a->captions[size_t(i)] == mirror_text(b->captions[size_t(i)], {{"left", "right"}}));
      swapped += a->captions[size_t(i)] != b->captions[size_t(i)];
    }
    a = flipped.next();
    b = plain.next();
  }
  CHECK(swapped > 0);  // the synthetic data has clips that move left or right
}
