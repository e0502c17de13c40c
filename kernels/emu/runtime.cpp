// The emulated CUDA runtime (kernels/runtime.h): "device" memory is host memory, filled with 0xFF
// bytes (NaN in every float type) when allocated so that reads of unwritten memory show, and every
// operation of its own is complete when it returns. Streams may also hold asynchronous work that runs
// elsewhere (an emulated NCCL collective, kernels/emu/pending_work.h): events capture it, and every
// operation on a stream first waits for it, so that each stream still runs in order.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>

#include "kernels/emu/insight_detail.h"
#include "kernels/emu/pending_work.h"
#include "kernels/runtime.h"

namespace vb::rt::emu {

// Lets this file read a PendingWork's fields under the runtime's mutex.
class PendingAccess {
 public:
  static bool done(const PendingWork& w) { return w.done_; }
  static std::chrono::steady_clock::time_point finished_at(const PendingWork& w) { return w.finished_at_; }
  static void finish(PendingWork& w) {
    w.done_ = true;
    w.finished_at_ = std::chrono::steady_clock::now();
  }
};

namespace {

constexpr std::align_val_t alignment{256};  // cudaMalloc's guarantee

struct Allocations {
  std::mutex mutex;
  std::unordered_map<void*, std::size_t> live;  // pointer → bytes
};
Allocations& allocations() {
  static Allocations a;
  return a;
}

// The work pending on a stream: what its next operation waits for.
struct StreamState {
  PendingList pending;
};

struct EventState {
  std::chrono::steady_clock::time_point time;  // when it was recorded
  PendingList captured;                         // the stream's pending work at that moment
  bool recorded = false;
};

// One mutex and condition variable for every stream, event and pending work: asynchronous work is rare
// (a collective every few milliseconds at most), and one lock keeps the stream graph consistent.
struct Streams {
  std::mutex mutex;
  std::condition_variable changed;
  StreamState null_stream;
  std::unordered_set<StreamState*> created;
};
Streams& streams() {
  static Streams& s = *new Streams;  // never destroyed: streams may be used by other statics at exit
  return s;
}

StreamState& stream_state(Stream stream) {
  return stream.handle ? *static_cast<StreamState*>(stream.handle) : streams().null_stream;
}

EventState& state(Event event, const char* what, Where where) {
  if (!event.handle) throw Error(std::string(what) + ": the event was not created by event_create", where);
  return *static_cast<EventState*>(event.handle);
}

// Drops the finished work of a list (the caller holds the mutex).
void prune(PendingList& list) {
  std::erase_if(list, [](const std::shared_ptr<PendingWork>& w) { return PendingAccess::done(*w); });
}

}  // namespace

bool PendingWork::done() const {
  std::lock_guard lock(streams().mutex);
  return done_;
}

void PendingWork::finish() {
  {
    std::lock_guard lock(streams().mutex);
    PendingAccess::finish(*this);
  }
  streams().changed.notify_all();
}

PendingList enqueue_pending(Stream stream, std::shared_ptr<PendingWork> work) {
  std::lock_guard lock(streams().mutex);
  StreamState& s = stream_state(stream);
  prune(s.pending);
  PendingList before = std::move(s.pending);
  s.pending = {std::move(work)};  // the new work finishes after everything before it
  return before;
}

bool wait_pending(const PendingList& list, const std::function<bool()>& stop) {
  std::unique_lock lock(streams().mutex);
  for (;;) {
    const bool all = std::all_of(list.begin(), list.end(), [](const auto& w) { return PendingAccess::done(*w); });
    if (all) return true;
    if (stop && stop()) return false;
    streams().changed.wait(lock);
  }
}

void wake_pending_waiters() {
  { std::lock_guard lock(streams().mutex); }  // a waiter between its check and its wait sees the change
  streams().changed.notify_all();
}

void wait_stream(Stream stream) {
  PendingList pending;
  {
    std::lock_guard lock(streams().mutex);
    StreamState& s = stream_state(stream);
    prune(s.pending);
    if (s.pending.empty()) return;  // the common case: nothing asynchronous on this stream
    pending = s.pending;
  }
  wait_pending(pending);
}

int device_count() { return 1; }
void set_device(int index, Where where) {
  if (index != 0) throw Error("set_device(" + std::to_string(index) + "): the emulator has one device, 0", where);
}

void* malloc(std::size_t bytes, Where where) {
  void* p = ::operator new(bytes ? bytes : 1, alignment, std::nothrow);
  if (!p) throw Error("malloc of " + std::to_string(bytes) + " bytes: out of memory", where);
  std::memset(p, 0xFF, bytes);
  std::lock_guard lock(allocations().mutex);
  allocations().live.emplace(p, bytes);
  return p;
}

std::vector<std::pair<uintptr_t, uintptr_t>> allocation_ranges() {
  std::lock_guard lock(allocations().mutex);
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  for (const auto& [p, bytes] : allocations().live)
    out.emplace_back(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + bytes);
  return out;
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
// The synchronous copy and memset are ordered after the null stream's work, as cudaMemcpy is.
void copy(void* dst, const void* src, std::size_t bytes, Where) {
  wait_stream({});
  if (bytes) std::memmove(dst, src, bytes);
}
void memset(void* device_pointer, int byte, std::size_t bytes, Where) {
  wait_stream({});
  if (bytes) std::memset(device_pointer, byte, bytes);
}
void copy_async(void* dst, const void* src, std::size_t bytes, Stream stream, Where) {
  wait_stream(stream);
  if (bytes) std::memmove(dst, src, bytes);
}
void memset_async(void* device_pointer, int byte, std::size_t bytes, Stream stream, Where) {
  wait_stream(stream);
  if (bytes) std::memset(device_pointer, byte, bytes);
}

// Emulated pinned memory is ordinary host memory: copies from it complete before they return anyway.
void* host_malloc(std::size_t bytes, Where where) {
  void* p = ::operator new(bytes ? bytes : 1, alignment, std::nothrow);
  if (!p) throw Error("host_malloc of " + std::to_string(bytes) + " bytes: out of memory", where);
  return p;
}
void host_free(void* host_pointer, Where) { ::operator delete(host_pointer, alignment); }

Stream stream_create(Where) {
  auto* s = new StreamState;
  std::lock_guard lock(streams().mutex);
  streams().created.insert(s);
  return {s};
}
// As cudaStreamDestroy: returns at once; work still pending finishes on its own (its owners hold it).
void stream_destroy(Stream stream, Where where) {
  if (!stream.handle) return;
  auto* s = static_cast<StreamState*>(stream.handle);
  {
    std::lock_guard lock(streams().mutex);
    if (streams().created.erase(s) == 0)
      throw Error("stream_destroy of a stream that stream_create did not return (or that was destroyed)", where);
  }
  delete s;
}
void stream_synchronize(Stream stream, Where) { wait_stream(stream); }
void stream_wait(Stream stream, Event event, Where where) {
  std::lock_guard lock(streams().mutex);
  EventState& e = state(event, "stream_wait", where);
  if (!e.recorded) throw Error("stream_wait on an event never recorded", where);
  StreamState& s = stream_state(stream);
  prune(s.pending);
  for (const auto& w : e.captured)
    if (!PendingAccess::done(*w)) s.pending.push_back(w);
}

Event event_create(Where) { return {new EventState}; }
void event_destroy(Event event, Where) {
  std::lock_guard lock(streams().mutex);
  delete static_cast<EventState*>(event.handle);
}
void event_record(Event event, Stream stream, Where where) {
  std::lock_guard lock(streams().mutex);
  EventState& e = state(event, "event_record", where);
  StreamState& s = stream_state(stream);
  prune(s.pending);
  e.captured = s.pending;
  e.time = std::chrono::steady_clock::now();
  e.recorded = true;
}
void event_synchronize(Event event, Where where) {
  PendingList captured;
  {
    std::lock_guard lock(streams().mutex);
    captured = state(event, "event_synchronize", where).captured;
  }
  wait_pending(captured);
}
bool event_done(Event event, Where where) {
  std::lock_guard lock(streams().mutex);
  EventState& e = state(event, "event_done", where);
  prune(e.captured);
  return e.captured.empty();  // the emulator's own work is finished when its call returns
}
// An event's time is when the work it captured finished (or when it was recorded, if later).
float elapsed_ms(Event start, Event end, Where where) {
  std::lock_guard lock(streams().mutex);
  const EventState& a = state(start, "elapsed_ms", where);
  const EventState& b = state(end, "elapsed_ms", where);
  if (!a.recorded || !b.recorded) throw Error("elapsed_ms: both events must have been recorded", where);
  auto time = [&](const EventState& e) {
    auto t = e.time;
    for (const auto& w : e.captured) {
      if (!PendingAccess::done(*w))
        throw Error("elapsed_ms: an event's work has not finished (cudaErrorNotReady)", where);
      t = std::max(t, PendingAccess::finished_at(*w));
    }
    return t;
  };
  return std::chrono::duration<float, std::milli>(time(b) - time(a)).count();
}

void synchronize(Where) {
  PendingList all;
  {
    std::lock_guard lock(streams().mutex);
    all = streams().null_stream.pending;
    for (StreamState* s : streams().created) all.insert(all.end(), s->pending.begin(), s->pending.end());
  }
  wait_pending(all);
}

}  // namespace vb::rt::emu
