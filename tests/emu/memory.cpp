// Device `emu`'s memory: the caching allocator's size classes, reuse, statistics, empty_cache, the
// out-of-memory message and poisoning; zero-byte copies; tensors moving between cpu and emu.
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "kernels/cuda/allocator.h"
#include "kernels/runtime.h"
#include "tests/support/check.h"

namespace {

using namespace vb;
const Device emu(DeviceType::EMU);

TEST_CASE("the emu device is registered") {
  CHECK(has_runtime(DeviceType::EMU));
  CHECK(runtime(DeviceType::EMU).device_count() == 1);
  CHECK(backend(emu).name() == "emu");
}

TEST_CASE("size classes: 512-byte steps to 1 MiB, then four per power of two") {
  CHECK(allocation_size_class(0) == 512);
  CHECK(allocation_size_class(1) == 512);
  CHECK(allocation_size_class(512) == 512);
  CHECK(allocation_size_class(513) == 1024);
  CHECK(allocation_size_class(1 << 20) == 1 << 20);
  CHECK(allocation_size_class((1 << 20) + 1) == (1 << 20) + (1 << 18));
  CHECK(allocation_size_class(3 << 20) == 3 << 20);
  CHECK(allocation_size_class((3 << 20) + 1) == (7 << 19));
  for (size_t n : {size_t(100), size_t(5000), size_t(3) << 22, (size_t(5) << 30) + 7}) {
    const size_t c = allocation_size_class(n);
    CHECK(c >= n);
    CHECK(double(c) <= 1.25 * double(n) + 512);
  }
}

TEST_CASE("freed blocks are reused; statistics; empty_cache returns them") {
  empty_cache(DeviceType::EMU);
  const MemoryStats before = memory_stats(DeviceType::EMU);
  void* first = nullptr;
  {
    Tensor t = empty({1000}, DType::Float32, emu);  // 4000 bytes → the 4096 class
    first = t.data_ptr();
    const MemoryStats s = memory_stats(DeviceType::EMU);
    CHECK(s.allocated == before.allocated + 4096);
    CHECK(s.reserved == before.reserved + 4096);
    CHECK(s.peak_allocated >= s.allocated);
  }
  const MemoryStats freed = memory_stats(DeviceType::EMU);
  CHECK(freed.allocated == before.allocated);
  CHECK(freed.reserved == before.reserved + 4096);  // cached, not returned
  {
    Tensor t = empty({1020}, DType::Float32, emu);  // same class: the same block
    CHECK(t.data_ptr() == first);
    CHECK(memory_stats(DeviceType::EMU).cache_hits == freed.cache_hits + 1);
    CHECK(memory_stats(DeviceType::EMU).device_allocations == freed.device_allocations);
  }
  empty_cache(DeviceType::EMU);
  CHECK(memory_stats(DeviceType::EMU).reserved == before.reserved);
  reset_peak_memory_stats(DeviceType::EMU);
  CHECK(memory_stats(DeviceType::EMU).peak_allocated == memory_stats(DeviceType::EMU).allocated);
}

TEST_CASE("out of memory: the message says what was asked and what is free and held") {
  const Tensor held = empty({4096}, DType::Float32, emu);
  try {
    (void)empty({int64_t(1) << 40, int64_t(1) << 20}, DType::Float32, emu);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find("emu: out of memory allocating 4611686018427387904 bytes") != std::string::npos, m);
    CHECK_MESSAGE(m.find("free of") != std::string::npos, m);
    CHECK_MESSAGE(m.find("reserved") != std::string::npos, m);
  }
  CHECK(memory_stats(DeviceType::EMU).allocated >= 4096 * 4);
}

TEST_CASE("poisoned allocations read as NaN, reused ones too") {
  set_poison_allocations(true);
  {
    Tensor t = full({100}, 1.0, DType::Float32, emu);
    CHECK(t.at_linear(7) == 1.0);
  }
  Tensor again = empty({100}, DType::Float32, emu);  // the block just freed, poisoned again
  CHECK(std::isnan(again.at_linear(7)));
  set_poison_allocations(false);
}

TEST_CASE("zero-byte copies and memsets accept null pointers, as CUDA's do") {
  // An empty host vector's data() is null. The sanitizer build (UndefinedBehaviorSanitizer) fails
  // here if the emulated runtime passes the null pointer on to memmove or memset.
  void* device = rt::emu::malloc(16);
  const rt::Stream stream = rt::emu::stream_create();
  rt::emu::copy(device, nullptr, 0);
  rt::emu::copy(nullptr, device, 0);
  rt::emu::copy_async(device, nullptr, 0, stream);
  rt::emu::memset(nullptr, 0, 0);
  rt::emu::memset_async(nullptr, 0, 0, stream);
  rt::emu::stream_destroy(stream);
  rt::emu::free(device);
}

TEST_CASE("tensors move between cpu and emu unchanged, in every dtype") {
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int32, DType::Int64, DType::Bool,
                  DType::Float64}) {
    const Tensor x = to(test::uniform({3, 5}, 3, -9, 9), t);
    const Tensor back = to(to(x, emu), Device());
    CHECK(back.device() == Device());
    test::check_close(back, x, 0, 0, std::string(dtype_name(t)));
  }
}

}  // namespace
#endif
