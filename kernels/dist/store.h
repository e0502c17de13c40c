// The rendezvous store: a small key-value store over TCP, served by a thread of rank 0, to which every
// rank (rank 0 too) keeps one connection for the whole job. It is how ranks exchange what they must
// agree on before a communicator exists (NCCL's unique id when there is no MPI), and how they learn that
// another rank has exited or fallen behind, which NCCL and MPI themselves cannot say:
//   - the server notices a rank's connection close (the kernel closes the sockets of a killed process),
//     and tells every rank at its next heartbeat;
//   - each rank reports the sequence number of the collective it last started (in the background, about
//     every 100 ms while it changes), so a rank whose collective timed out can name the ranks that never
//     reached it.
// When rank 0 itself exits, every other rank's connection closes, and they report that instead.
//
// The protocol is length-prefixed binary messages on one TCP connection per rank; it is internal (both
// ends are this file) and carries no authentication: run jobs on a trusted network, as with PyTorch's
// TCPStore.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vb::dist {

class Store {
 public:
  // Rank 0 listens on `port` (0: a free port, see port()) on every interface and serves; every rank then
  // connects to addr:port, retrying with back-off for up to timeout_s (an Error names the address and
  // the time waited). Returns once the connection stands; wait_for_all() waits for the other ranks.
  Store(const std::string& addr, int port, int rank, int world, double timeout_s);
  // Leaves with a clean goodbye (unless aborted); rank 0 then serves until every rank has left (within
  // timeout_s), so that no rank takes the end of the job for rank 0's exit.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  int port() const { return port_; }  // the port rank 0 listens on

  // After a failure of this rank (ProcessGroup::abort): when destroyed, it leaves without the clean
  // goodbye, so the server shows it as exited (but does not announce it as the cause of the others'
  // failures), and rank 0's server stays only a few seconds for the others instead of waiting for every
  // rank to leave.
  void abort();

  // Blocks until all `world` ranks have connected (timeout_s; the Error lists the ranks missing).
  void wait_for_all();
  void set(const std::string& key, const std::string& value);
  // The value of `key`, waiting until some rank sets it (timeout_s; the Error names the key).
  std::string get(const std::string& key);

  // This rank started collective number `seq` (sent by the heartbeat thread; never blocks).
  void report_progress(uint64_t seq);

  struct RankStatus {
    int64_t started = -1;     // the last collective it reported starting (-1: none)
    bool exited = false;      // its connection closed
    double seconds_silent = 0;  // since its last heartbeat
  };
  // Every rank's status as the server knows it; an Error when the server cannot be reached.
  std::vector<RankStatus> status();
  // A rank whose exit this rank has learnt of (from its heartbeat), or -1; rank 0's own exit shows as 0.
  // Never blocks: collective waits poll it.
  int exited_rank() const { return exited_rank_.load(); }

 private:
  struct Impl;
  void heartbeat_loop();  // the heartbeat thread: reports progress, learns of exited ranks
  std::unique_ptr<Impl> impl_;
  int rank_, world_, port_ = 0;
  std::atomic<int> exited_rank_{-1};
};

}  // namespace vb::dist
