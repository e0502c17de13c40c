// The real CUDA runtime (kernels/runtime.h) over cudart; built when VB_HAVE_CUDA. Every call's
// error carries the caller's file:line and CUDA's own error string.
#include <cuda_runtime.h>

#include "kernels/runtime.h"

namespace vb::rt::cuda {
namespace {

cudaStream_t native(Stream stream) { return static_cast<cudaStream_t>(stream.handle); }
cudaEvent_t native(Event event) { return static_cast<cudaEvent_t>(event.handle); }

}  // namespace

void check(int code, const char* what, Where where) {
  const auto error = static_cast<cudaError_t>(code);
  if (error == cudaSuccess) return;
  // A failed call also leaves its error as the thread's "last error", which vb::launch reads after every
  // kernel: clear it here, or an error that was caught and handled (the allocator's out-of-memory retry)
  // resurfaces as the next launch's failure. Sticky errors (a faulted context) stay: every call reports them.
  (void)cudaGetLastError();
  throw Error(std::string(what) + ": " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error), where);
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // a missing driver is an answer here, not a sticky error
    return 0;
  }
  return count;
}

void set_device(int index, Where where) { check(cudaSetDevice(index), "cudaSetDevice", where); }

void* malloc(std::size_t bytes, Where where) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str(), where);
  return p;
}

void free(void* device_pointer, Where where) { check(cudaFree(device_pointer), "cudaFree", where); }

void copy(void* dst, const void* src, std::size_t bytes, Where where) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy", where);
}
void memset(void* device_pointer, int byte, std::size_t bytes, Where where) {
  check(cudaMemset(device_pointer, byte, bytes), "cudaMemset", where);
}
void copy_async(void* dst, const void* src, std::size_t bytes, Stream stream, Where where) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, native(stream)), "cudaMemcpyAsync", where);
}
void memset_async(void* device_pointer, int byte, std::size_t bytes, Stream stream, Where where) {
  check(cudaMemsetAsync(device_pointer, byte, bytes, native(stream)), "cudaMemsetAsync", where);
}

Stream stream_create(Where where) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate", where);
  return {s};
}
void stream_destroy(Stream stream, Where where) { check(cudaStreamDestroy(native(stream)), "cudaStreamDestroy", where); }
void stream_synchronize(Stream stream, Where where) {
  check(cudaStreamSynchronize(native(stream)), "cudaStreamSynchronize", where);
}
void stream_wait(Stream stream, Event event, Where where) {
  check(cudaStreamWaitEvent(native(stream), native(event), 0), "cudaStreamWaitEvent", where);
}

Event event_create(Where where) {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate", where);
  return {e};
}
void event_destroy(Event event, Where where) { check(cudaEventDestroy(native(event)), "cudaEventDestroy", where); }
void event_record(Event event, Stream stream, Where where) {
  check(cudaEventRecord(native(event), native(stream)), "cudaEventRecord", where);
}
void event_synchronize(Event event, Where where) {
  check(cudaEventSynchronize(native(event)), "cudaEventSynchronize", where);
}
float elapsed_ms(Event start, Event end, Where where) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, native(start), native(end)), "cudaEventElapsedTime", where);
  return ms;
}

void* host_malloc(std::size_t bytes, Where where) {
  void* p = nullptr;
  check(cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault), "cudaHostAlloc", where);
  return p;
}
void host_free(void* host_pointer, Where where) { check(cudaFreeHost(host_pointer), "cudaFreeHost", where); }
bool event_done(Event event, Where where) {
  const cudaError_t code = cudaEventQuery(native(event));
  if (code == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error: it must not fail the next launch's check
    return false;
  }
  check(code, "cudaEventQuery", where);
  return true;
}

void synchronize(Where where) { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize", where); }

}  // namespace vb::rt::cuda
