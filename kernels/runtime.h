// The CUDA runtime the framework uses: device memory, copies, streams, events and errors, twice
// over. vb::rt::cuda is the real runtime (built when VB_HAVE_CUDA); vb::rt::emu is the emulated one
// (built when VB_HAVE_EMU), where "device" memory is host memory and every operation of its own
// completes before it returns; the emulated NCCL's collectives are the one asynchronous work an emulated
// stream can hold, and the runtime orders around them as CUDA does (kernels/emu/pending_work.h). Both
// have the same functions, listed in
// kernels/runtime_api.inc; each takes the caller's source location so that errors name it.
#pragma once

#include <cstddef>
#include <source_location>
#include <stdexcept>
#include <string>

namespace vb::rt {

// A stream or event handle: cudaStream_t / cudaEvent_t in vb::rt::cuda; null is the default stream.
struct Stream {
  void* handle = nullptr;
};
struct Event {
  void* handle = nullptr;
};

// A failed runtime call: "<file>:<line>: <what was done>: <CUDA's error string>".
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, std::source_location where);
  const std::source_location& where() const { return where_; }

 private:
  std::source_location where_;
};

using Where = std::source_location;

namespace emu {
#include "kernels/runtime_api.inc"
}  // namespace emu

namespace cuda {
#include "kernels/runtime_api.inc"
// Throws Error unless `code` (a cudaError_t) is cudaSuccess.
void check(int code, const char* what, Where where = Where::current());
}  // namespace cuda

}  // namespace vb::rt
