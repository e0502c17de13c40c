// The emulated CUDA runtime (kernels/runtime.h): "device" memory is host memory, filled with 0xFF
// bytes (NaN in every float type) when allocated so that reads of unwritten memory show, and every
// operation is complete when it returns, so each stream runs in order.
#include <chrono>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_set>

#include "kernels/runtime.h"

namespace vb::rt::emu {
namespace {

constexpr std::align_val_t alignment{256};  // cudaMalloc's guarantee

struct Allocations {
  std::mutex mutex;
  std::unordered_set<void*> live;
};
Allocations& allocations() {
  static Allocations a;
  return a;
}

struct EventState {
  std::chrono::steady_clock::time_point time;
  bool recorded = false;
};

EventState& state(Event event, const char* what, Where where) {
  if (!event.handle) throw Error(std::string(what) + ": the event was not created by event_create", where);
  return *static_cast<EventState*>(event.handle);
}

}  // namespace

int device_count() { return 1; }

void* malloc(std::size_t bytes, Where where) {
  void* p = ::operator new(bytes ? bytes : 1, alignment, std::nothrow);
  if (!p) throw Error("malloc of " + std::to_string(bytes) + " bytes: out of memory", where);
  std::memset(p, 0xFF, bytes);
  std::lock_guard lock(allocations().mutex);
  allocations().live.insert(p);
  return p;
}

void free(void* device_pointer, Where where) {
  if (!device_pointer) return;
  {
    std::lock_guard lock(allocations().mutex);
    if (allocations().live.erase(device_pointer) == 0)
      throw Error("free of a pointer that malloc did not return (or that was freed already)", where);
  }
  ::operator delete(device_pointer, alignment);
}

// CUDA accepts a zero-byte copy or memset whatever the pointers (an empty host vector's data() is null);
// std::memmove and std::memset do not, even for zero bytes (UndefinedBehaviorSanitizer reports it).
void copy(void* dst, const void* src, std::size_t bytes, Where) {
  if (bytes) std::memmove(dst, src, bytes);
}
void memset(void* device_pointer, int byte, std::size_t bytes, Where) {
  if (bytes) std::memset(device_pointer, byte, bytes);
}
void copy_async(void* dst, const void* src, std::size_t bytes, Stream, Where) {
  if (bytes) std::memmove(dst, src, bytes);
}
void memset_async(void* device_pointer, int byte, std::size_t bytes, Stream, Where) {
  if (bytes) std::memset(device_pointer, byte, bytes);
}

// Emulated pinned memory is ordinary host memory: copies from it complete before they return anyway.
void* host_malloc(std::size_t bytes, Where where) {
  void* p = ::operator new(bytes ? bytes : 1, alignment, std::nothrow);
  if (!p) throw Error("host_malloc of " + std::to_string(bytes) + " bytes: out of memory", where);
  return p;
}
void host_free(void* host_pointer, Where) { ::operator delete(host_pointer, alignment); }

Stream stream_create(Where) { return {new int(0)}; }  // a distinct non-null handle
void stream_destroy(Stream stream, Where) { delete static_cast<int*>(stream.handle); }
void stream_synchronize(Stream, Where) {}
void stream_wait(Stream, Event event, Where where) {
  if (!state(event, "stream_wait", where).recorded) throw Error("stream_wait on an event never recorded", where);
}

Event event_create(Where) { return {new EventState}; }
void event_destroy(Event event, Where) { delete static_cast<EventState*>(event.handle); }
void event_record(Event event, Stream, Where where) {
  EventState& s = state(event, "event_record", where);
  s.time = std::chrono::steady_clock::now();
  s.recorded = true;
}
void event_synchronize(Event event, Where where) { state(event, "event_synchronize", where); }
bool event_done(Event event, Where where) {
  state(event, "event_done", where);
  return true;  // emulated work is finished when its call returns
}
float elapsed_ms(Event start, Event end, Where where) {
  const EventState& a = state(start, "elapsed_ms", where);
  const EventState& b = state(end, "elapsed_ms", where);
  if (!a.recorded || !b.recorded) throw Error("elapsed_ms: both events must have been recorded", where);
  return std::chrono::duration<float, std::milli>(b.time - a.time).count();
}

void synchronize(Where) {}

}  // namespace vb::rt::emu
