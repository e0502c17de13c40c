// The memory of devices `cuda` and `emu`: a caching allocator over vb::rt::cuda / vb::rt::emu.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of microseconds, and a training step
// allocates and frees thousands of tensors of the same few sizes. So freed blocks are kept in bins by
// size class and handed out again:
// - size classes: multiples of 512 B up to 1 MiB, then four classes per power of two (1, 1.25, 1.5,
//   1.75 MiB, 2, 2.5, 3, 3.5 MiB, ...): at most 25% of a large block is slack;
// - a block is reused only on the stream that freed it (work on that stream is ordered after the
//   free, so no synchronisation is needed); the framework uses the default stream;
// - when the device runs out of memory, the cache is returned to the device and the allocation tried
//   once more; if that fails too, vb::Error says how much was asked for and how much is free and held.
//
// With VB_POISON_ALLOC=1 in the environment (or set_poison_allocations(true)) every allocation, cached or
// fresh, is filled with 0xFF bytes — NaN in every float type — so that a kernel that leaves an output
// element unwritten fails its test.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/device.h"

namespace vb {

struct MemoryStats {
  size_t allocated = 0;       // bytes in blocks handed out now (size-class rounded)
  size_t reserved = 0;        // bytes obtained from the device: allocated + cached
  size_t peak_allocated = 0;  // the largest `allocated` since the start or reset_peak_memory_stats
  size_t peak_reserved = 0;
  size_t device_allocations = 0;  // calls to the device's malloc
  size_t cache_hits = 0;          // allocations served from the cache
  size_t pinned_reserved = 0;     // page-locked host bytes held (Tensor::empty_pinned), live and cached
};

// The statistics of device type `t` (CUDA or EMU); an Error when it has no caching allocator.
MemoryStats memory_stats(DeviceType t);
void reset_peak_memory_stats(DeviceType t);
// Returns every cached block to the device (after synchronising it); allocated blocks stay.
void empty_cache(DeviceType t);
// Fill every allocation with 0xFF bytes (default: VB_POISON_ALLOC=1 in the environment).
void set_poison_allocations(bool on);
bool poison_allocations();
// The size class an allocation of `bytes` is rounded up to.
size_t allocation_size_class(size_t bytes);

}  // namespace vb
