// Asynchronous work on the emulated runtime's streams (kernels/runtime.h, vb::rt::emu).
//
// Every operation of the emulated runtime completes before it returns, so its streams are trivially in
// order. A collective of the emulated NCCL (kernels/emu/nccl.h) cannot: like NCCL's kernel on a GPU, it
// runs while the caller goes on (on its communicator's thread), and finishes when the other ranks have
// sent their data. Such work is a PendingWork enqueued on a stream, and the emulated runtime keeps
// CUDA's stream semantics around it:
//   - event_record(e, s) captures the work pending on s; event_done(e) says whether it has finished,
//     event_synchronize(e) waits for it, elapsed_ms counts to its end;
//   - stream_wait(s, e) makes e's captured work pending on s too; stream_synchronize(s) waits for s's
//     and synchronize() for every stream's;
//   - copy_async, memset_async and kernel launches (kernels/launch.h) on s wait for s's pending work
//     first, and the synchronous copy and memset for the null stream's, then run at once as before.
// Streams are independent (like the real runtime's, created cudaStreamNonBlocking). Nothing else
// changes: without pending work every call behaves exactly as before.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/runtime.h"

namespace vb::rt::emu {

// One piece of asynchronous work. Finished once, by whoever runs it, whether it succeeded or failed: a
// stream must never wait forever for failed work (on a GPU, the stream goes on once NCCL aborts its
// kernel).
class PendingWork {
 public:
  bool done() const;
  void finish();  // marks it done and wakes every waiter

 private:
  friend class PendingAccess;
  bool done_ = false;  // guarded by the runtime's mutex
  std::chrono::steady_clock::time_point finished_at_;
};

using PendingList = std::vector<std::shared_ptr<PendingWork>>;

// Makes `work` the work pending on `stream` and returns what was pending there before it: `work` must
// wait for that before it starts, as a kernel waits for the stream's earlier work.
PendingList enqueue_pending(Stream stream, std::shared_ptr<PendingWork> work);

// Blocks until every work in `list` has finished, or until `stop()` returns true (checked whenever some
// work finishes or wake_pending_waiters() is called); returns whether all finished.
bool wait_pending(const PendingList& list, const std::function<bool()>& stop = {});
void wake_pending_waiters();

// Blocks until the work pending on `stream` has finished: what every emulated operation on the stream
// does first (kernels/launch.h calls it before a kernel).
void wait_stream(Stream stream);

}  // namespace vb::rt::emu
