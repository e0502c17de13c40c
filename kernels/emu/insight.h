// Memory-access insight from the kernel emulator, without a GPU: while a Recorder lives, every global and
// shared memory access of every lane of an *instrumented* kernel is observed and counted per kernel and
// per source line, as Nsight Compute counts them on a GPU:
//
//   - global memory: requests (one per warp-wide load or store instruction executed) and the 32-byte
//     sectors each touches. A warp reading 32 consecutive floats asks for 128 bytes: 4 sectors per
//     request, the ideal; 32 floats 128 bytes apart touch 32 sectors for the same 128 useful bytes.
//   - shared memory: requests and wavefronts. Shared memory has 32 banks of 4 bytes (bank = address / 4
//     mod 32); lanes reading different 4-byte words of one bank are served one after another, so a
//     request takes as many wavefronts as the most-used bank has distinct words (lanes reading the same
//     word share it: a broadcast costs nothing). 8-byte accesses are served per half-warp and 16-byte
//     accesses per quarter-warp (each phase up to 128 bytes), so their ideal is 2 and 4 wavefronts.
//     "ways" is the worst request's wavefronts per phase: 1 is conflict-free, 32 is fully serialised.
//   - divergent branches: per warp, the points where lanes that ran the same basic blocks so far part ways;
//   - barriers (__syncthreads completed per block), and the launch shape.
//
// How: the instrumented kernel sources are compiled by g++ with -fsanitize=thread (and
// -fsanitize-coverage=trace-pc, which reports each basic block entered), which makes the
// compiler call __tsan_read4(address), __tsan_write16(address), … before every memory access; the
// emulator defines those functions itself (no ThreadSanitizer runtime is linked) and records the address,
// the size and the return address (which identifies the instruction, hence the source line through the
// debug information). An address is global memory when it lies in an allocation of the emulated device,
// and shared memory when it lies in the block's dynamic shared memory or in the running thread's
// thread-local storage of a module holding instrumented code (where the emulator keeps __shared__
// arrays; under VB_EMU_INSIGHT, kernels/emu/emu.h registers the module), the emulator's own index
// variables excepted; anything else (locals, parameters) is not counted. The CUDA build is untouched, and
// so is the ordinary emulated build: only the sources compiled for insight call the hooks.
//
// A warp-wide instruction is reconstructed from the lanes, which the emulator runs one after another: the
// k-th execution of an instruction by each lane of a warp between two barriers is one request. A lane
// that executes it fewer times (divergence) is simply absent from the later requests, as on a GPU.
// Recording runs the launches with one worker OS thread and in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <vector_types.h>

namespace vb::emulator::insight {

// What one source line (or, without debug information, one instruction) did in one kernel.
struct LineStats {
  std::string location;  // "kernels/cuda/softmax.cu:42"
  int64_t global_loads = 0, global_stores = 0;                // requests
  int64_t global_load_sectors = 0, global_store_sectors = 0;  // 32-byte sectors touched, summed over requests
  int64_t global_load_bytes = 0, global_store_bytes = 0;      // bytes the lanes asked for
  int64_t shared_loads = 0, shared_stores = 0;                // requests
  int64_t shared_wavefronts = 0, shared_ideal_wavefronts = 0;
  int64_t shared_bytes = 0;
  int max_ways = 0;  // the worst request's wavefronts per phase (0: no shared access)
  // Where a warp's lanes, having run the same basic blocks so far, part ways (different next blocks, or
  // some exit while others go on): charged to the last block they shared (-fsanitize-coverage=trace-pc).
  int64_t divergent_branches = 0;
  // One request seen whole: the first one of the first warp of the first block to reach this line, each
  // active lane's byte address (lane order), for drawing (format_svg). Empty when the line made none.
  std::vector<int> sample_lanes;
  std::vector<uintptr_t> sample_addresses;
  int sample_bytes = 0;
  bool sample_shared = false, sample_store = false;

  void add(const LineStats& other);  // sums; max_ways is the maximum
};

struct KernelStats {
  std::string kernel;  // the kernel's name, demangled
  dim3 grid{0, 0, 0}, block{0, 0, 0};
  std::size_t dynamic_shared_bytes = 0;
  int64_t launches = 0, blocks = 0, barriers = 0;
  std::vector<LineStats> lines;  // in order of location
  LineStats total;
};

struct Report {
  std::vector<KernelStats> kernels;  // in order of first launch
  const KernelStats* find(const std::string& kernel_name_part) const;  // the first whose name contains it
};

// While a Recorder lives, launches of instrumented kernels from any host thread are observed (one
// Recorder at a time; an Error otherwise); launches made from the Recorder's own thread run with one worker,
// in order. report() symbolises and returns what was counted so far.
class Recorder {
 public:
  Recorder();
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  Report report() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The report as a table per kernel: per line, global requests and sectors per request, shared requests,
// wavefronts and ways, divergent branches, and the bytes moved.
std::string format_report(const Report& report);
// One warp's access pattern per line of a kernel, as an SVG: a row per line, a column per lane, each cell
// coloured by the 32-byte sector (global) or the bank (shared) the lane touches, so that a coalesced
// request is a few wide bands and a conflict a column of one colour.
std::string format_svg(const KernelStats& kernel);

// The shared-memory cost of one warp-wide request, exposed for the tests' planted patterns: lanes' byte
// addresses (one per active lane, lane order) each accessing `bytes` (1, 2, 4, 8 or 16).
struct SharedCost {
  int wavefronts = 0, ideal = 0, ways = 0;
};
SharedCost shared_request_cost(const std::vector<uintptr_t>& lane_addresses, const std::vector<int>& lanes, int bytes);
// The 32-byte sectors one warp-wide global request touches.
int64_t global_request_sectors(const std::vector<uintptr_t>& lane_addresses, int bytes);

// One access made on a lane's behalf by the emulator rather than by the lane's own code (ldmatrix's row,
// cp.async's read and write: kernels/ptx.h calls it under VB_EMU_INSIGHT), recorded at the caller's
// instruction as the compiler's hooks record the others.
void record_access(const void* address, int bytes, bool store);

// Called by each instrumented translation unit (emu.h under VB_EMU_INSIGHT) with an address inside its
// module (executable or shared library).
void register_module(const void* address_in_module);

}  // namespace vb::emulator::insight
