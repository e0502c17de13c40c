// Pinned host memory and asynchronous host → device copies (Tensor::empty_pinned, the caching allocator's
// pinned blocks, the loader's pinned batches). Included by tests/emu/pinned.cpp and tests/gpu/pinned.cpp
// after their device harness (tests/support/emu_harness.h, gpu_harness.h: device_under_test()). Under the emulator every copy completes before it returns, so there the
// cases check the bookkeeping; on a GPU the copies really are asynchronous and the reuse case would catch a
// pinned block handed out again while a copy still reads it (64 MiB: the copy takes milliseconds).
#pragma once
#include "autograd/ops.h"
#include "kernels/cuda/allocator.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/data/loader.h"

#include <filesystem>

namespace vb::pinned_test {

inline int64_t big() { return device_under_test().type == DeviceType::CUDA ? int64_t(16) << 20 : int64_t(1) << 16; }

inline void fill_iota(Tensor& t, float start) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = start + float(i % 1000003);
}

TEST_CASE("pinned tensors: CPU tensors in page-locked memory, copied to the device with their values") {
  const DeviceType type = device_under_test().type;
  Tensor h = Tensor::empty_pinned({3, 5}, DType::Float32, type);
  CHECK(h.device().is_cpu());
  CHECK(h.is_pinned());
  CHECK_FALSE(Tensor::empty({3, 5}).is_pinned());
  CHECK(memory_stats(type).pinned_reserved > 0);
  fill_iota(h, 1);
  Tensor d = to(h, device_under_test());
  test::check_close(to(d, Device()), h, 0, 0, "pinned → device");
  // A view of a pinned tensor is pinned memory too (the same storage), and copies from it.
  Tensor row = select(h, 0, 1);
  CHECK(row.is_pinned());
  test::check_close(to(to(row, device_under_test()), Device()), row, 0, 0, "pinned view → device");
}

TEST_CASE("a pinned block is not handed out again while a copy from it may still run") {
  const DeviceType type = device_under_test().type;
  const int64_t n = big();
  Tensor expected = Tensor::empty({n});
  fill_iota(expected, 7);
  Tensor d;
  {
    Tensor a = Tensor::empty_pinned({n}, DType::Float32, type);
    fill_iota(a, 7);
    d = to(a, device_under_test());  // asynchronous on a GPU
  }  // a is freed with its copy perhaps still queued
  Tensor b = Tensor::empty_pinned({n}, DType::Float32, type);
  fill_iota(b, -1000);  // were b the block of a, this would corrupt d's copy
  test::check_close(to(d, Device()), expected, 0, 0, "device copy of a freed pinned block");
  // Once the device is idle the freed block is reused: no new pinned memory for the same size.
  runtime(type).synchronize(device_under_test());
  { Tensor c = Tensor::empty_pinned({n}, DType::Float32, type); }  // b holds one block; c takes the other
  const size_t reserved = memory_stats(type).pinned_reserved;
  for (int i = 0; i < 3; ++i) {
    Tensor c = Tensor::empty_pinned({n}, DType::Float32, type);
    Tensor e = to(c, device_under_test());  // a copy from it, so that its free records an event
  }
  CHECK(memory_stats(type).pinned_reserved == reserved);
}

TEST_CASE("the loader's pinned batches reach the device with the values of ordinary ones") {
  namespace fs = std::filesystem;
  const fs::path dir = test::synth_dataset("vb_pinned_loader_" + device_under_test().str(), 12, 2, 16);
  const data::Manifest manifest = data::load_manifest(dir.string());
  const WordPieceTokenizer tokenizer = WordPieceTokenizer::load((dir / "vocab.txt").string());
  auto first_batch = [&](DeviceType pin) {
    data::LoaderOptions o;
    o.frames = 2;
    o.size = 16;
    o.max_length = 12;
    o.batch_size = 4;
    o.workers = 1;
    o.quiet = true;
    o.pin_memory_for = pin;
    data::DataLoader loader(manifest, tokenizer, o);
    loader.start_epoch(0);
    auto b = loader.next();
    REQUIRE(b.has_value());
    CHECK(b->frames.is_pinned() == (pin != DeviceType::CPU));
    CHECK(b->input_ids.is_pinned() == (pin != DeviceType::CPU));
    return data::to_device(*b, device_under_test());
  };
  const data::Batch pinned = first_batch(device_under_test().type), plain = first_batch(DeviceType::CPU);
  CHECK(pinned.frames.device() == device_under_test());
  test::check_close(to(pinned.frames, Device()), to(plain.frames, Device()), 0, 0, "frames");
  test::check_close(to(pinned.input_ids, Device()), to(plain.input_ids, Device()), 0, 0, "ids");
  test::check_close(to(pinned.attention_mask, Device()), to(plain.attention_mask, Device()), 0, 0, "mask");
  fs::remove_all(dir);
}

}  // namespace vb::pinned_test
