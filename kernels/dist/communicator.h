// Collective communication between the ranks of a data-parallel job: the one interface the trainer uses,
// whatever carries the bytes.
//
// A Communicator joins the size() processes of one job, rank() being this one's place. Each rank holds
// its tensors on its own device (device()), and every collective is called by every rank in the same
// order with the same count, dtype and op. Backends:
//   mpi    device cpu: OpenMPI (comm_mpi.cpp); the collectives run on a communication thread.
//   nccl   device cuda: NCCL (kernels/cuda/nccl_comm.inc) on a communication stream that waits for the
//          framework's stream, so that a collective overlaps the kernels queued after it. Device emu: the
//          same source over the emulated NCCL (kernels/emu/nccl.h), which also reports ranks that
//          disagree on a collective (a desync) instead of hanging as NCCL does.
//
// Every collective returns at once with a Work. Work::wait() returns when the result is in the output
// tensor (on a GPU: when the framework's stream is ordered after the collective), and gives up after the
// communicator's timeout with a CommError that names this rank, the collective and its sequence number
// and, where the rendezvous store knows it (store.h), the ranks that never reached it or have exited.
// Until a Work completes, its tensors must be neither written nor freed by the caller (the Work keeps
// them alive).
//
// Counts and shards. all_reduce and broadcast take any number of elements (0 too). reduce_scatter and
// all_gather split a tensor of n elements into size() shards with shard_range(): shard r is
// [r·c, min(n, (r+1)·c)) with c = ⌈n / size⌉, so that the last shards may be shorter or empty (ZeRO's
// flat buffers, padded to a multiple of size, give equal shards).
//
// Supported dtypes: float32, bfloat16, float16, float64, int32, int64 (bool is not reduced). bfloat16 and
// float16 are summed in float32 and rounded once per reduction step. Avg is the sum divided by size().
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "tensor/error.h"
#include "tensor/tensor.h"

namespace vb::dist {

enum class ReduceOp : uint8_t { Sum, Avg, Max, Min };
const char* reduce_op_name(ReduceOp op);  // "sum", "avg", "max", "min"

// A collective that failed: a timeout, a rank that exited, a desync, an error of the library below.
// The message begins with "[rank r] ".
class CommError : public Error {
 public:
  using Error::Error;
};

struct ShardRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
// Shard `rank` of n elements split into `world` shards of ⌈n / world⌉ (the last ones shorter or empty).
ShardRange shard_range(int64_t n, int world, int rank);

// One collective in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the collective completed (see above); a CommError after the timeout or on failure.
  virtual void wait() = 0;
  // Whether it completed, without blocking; a CommError when it failed.
  virtual bool completed() = 0;
};

struct CommOptions {
  std::string backend;      // "mpi" or "nccl"; empty: the device's (cpu → mpi, cuda and emu → nccl)
  Device device;            // the device of this rank's tensors (cuda: cuda:<local rank>)
  double timeout_s = 600;   // every wait gives up after this long (PyTorch's default collective timeout)
};

class Store;  // kernels/dist/store.h

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  Device device() const { return device_; }
  double timeout_s() const { return timeout_s_; }
  virtual std::string backend() const = 0;
  // How many collectives this rank has started: the sequence number of the next one.
  uint64_t sequence() const { return seq_; }

  // t ← op over every rank's t, in place. t contiguous on device().
  std::shared_ptr<Work> all_reduce(Tensor& t, ReduceOp op);
  // output ← shard rank() of op over every rank's input; input contiguous (n), output (its shard's size).
  std::shared_ptr<Work> reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op);
  // output (n) ← every rank's input placed at its shard; input holds this rank's shard of n.
  std::shared_ptr<Work> all_gather(const Tensor& input, Tensor& output);
  // t ← root's t on every rank.
  std::shared_ptr<Work> broadcast(Tensor& t, int root);
  // Returns when every rank has called barrier (within the timeout).
  void barrier();

  // Tears the communicator down after a failure without waiting for the other ranks (NCCL's abort);
  // every later call fails. Destroying a communicator that is not aborted waits for its collectives.
  virtual void abort() = 0;

 protected:
  Communicator(int rank, int size, Device device, double timeout_s, Store* store)
      : rank_(rank), size_(size), device_(device), timeout_s_(timeout_s), store_(store) {}

  // What the backends implement: equal shards (count elements per rank), validated arguments,
  // contiguous tensors on device(). `seq` numbers the collective for messages.
  struct Call {
    uint64_t seq;
    const char* name;  // "all_reduce", "reduce_scatter", "all_gather", "broadcast", "barrier"
    int64_t count;     // elements per rank (all_reduce, broadcast: the whole tensor)
    DType dtype;
    ReduceOp op;
    int root;
    std::string describe() const;  // "all_reduce #57 (1048576 × float32, sum)"
  };
  virtual std::shared_ptr<Work> do_all_reduce(const Call& call, Tensor& t) = 0;
  virtual std::shared_ptr<Work> do_reduce_scatter(const Call& call, const Tensor& input, Tensor& output) = 0;
  virtual std::shared_ptr<Work> do_all_gather(const Call& call, const Tensor& input, Tensor& output) = 0;
  virtual std::shared_ptr<Work> do_broadcast(const Call& call, Tensor& t) = 0;
  virtual std::shared_ptr<Work> do_barrier(const Call& call) = 0;

  // The CommError of a wait that timed out: names the call and, from the store, the ranks behind it.
  CommError timeout_error(const Call& call) const;
  // What the store knows of the ranks behind `call`: "rank 1 last started #2 (last heard from 2.8 s ago);
  // rank 3 has exited", "" when every rank has started it, or that the store does not answer. For the
  // messages of failures that another rank's reaction caused (it gave up and aborted), so that every
  // survivor names the rank that stalled.
  std::string ranks_behind(const Call& call) const;
  // "[rank r] " + what.
  std::string prefixed(const std::string& what) const;

  Store* store() const { return store_; }

 private:
  Call next_call(const char* name, int64_t count, DType dtype, ReduceOp op, int root);

  int rank_, size_;
  Device device_;
  double timeout_s_;
  Store* store_;
  uint64_t seq_ = 0;
};

}  // namespace vb::dist
