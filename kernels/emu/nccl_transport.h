// How the ranks of the emulated NCCL (kernels/emu/nccl.h) find each other and move bytes: TCP sockets,
// NCCL's design in miniature.
//
//   bootstrap  ncclGetUniqueId opens a listener and starts the root thread; the id holds the listener's
//              address and a random magic. Each rank's ncclCommInitRank opens its own listener, registers
//              with the root (rank, nranks, its address) and gets back every rank's address once all
//              nranks have registered; the root then ends.
//   ring       rank r connects to rank r+1 (mod n): one connection carries r's data to r+1, and r
//              receives from r−1 on the connection r−1 opened. Every collective is a sequence of steps in
//              which a rank sends one message to its next rank while it receives one from its previous.
//   control    every pair of ranks also shares a connection on which a rank that fails tells every other
//              rank why (a desync, a lost peer), so that no rank waits for data that will never come, and
//              says goodbye when it finalises (how many collectives it ran) or aborts.
//
// Every message is a Frame (type, aux, bytes) and `bytes` of payload. All waits are poll() calls that
// also watch the communicator's abort eventfd, so ncclCommAbort wakes every one of them. A peer whose
// connection closes while this rank needs it is reported by name: it aborted, finalised early, or exited.
#pragma once

#include <poll.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/emu/nccl.h"

namespace vb::nccl_emu::detail {

// A failure inside the emulated library: the result the communicator reports and the message of
// ncclGetLastError. `from_peer`: another rank detected it (this rank need not tell the others).
struct Failure {
  ncclResult_t code;
  std::string message;
  bool from_peer = false;
};

// Thrown out of every wait when the communicator is aborted (ncclCommAbort).
struct Aborted {};

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release();
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// What an ncclUniqueId holds.
struct IdContents {
  char tag[8];     // "vbnccl1": an id made by this library
  uint64_t magic;  // random: a connection that does not carry it belongs to another job
  uint32_t ip;     // the root's IPv4 address and port, network byte order
  uint16_t port;
};
IdContents decode_id(const ncclUniqueId& id);  // throws Failure (ncclInvalidArgument) for a foreign id

// Opens the root's listener and starts its thread; returns the id to hand to every rank.
ncclUniqueId start_bootstrap_root();

enum FrameType : uint32_t { kRegister = 1, kTable, kHello, kHeader, kData, kError, kBye, kAbort };

struct Frame {
  uint32_t type;
  uint32_t aux;    // kError: the ncclResult_t; kHello: the sender's rank
  uint64_t bytes;  // payload bytes; kBye: the number of collectives the sender ran (no payload)
};

// One ring step's message to the next rank, and the one expected from the previous rank.
struct Outgoing {
  FrameType type;
  const void* data;
  size_t bytes;
};
struct Incoming {
  FrameType type;
  void* data;
  size_t bytes;  // exactly this many are expected
};

// The connections of one rank of a communicator.
class Links {
 public:
  Links(int rank, int nranks, int abort_fd) : rank_(rank), nranks_(nranks), abort_fd_(abort_fd) {}

  // Registers with the root of `id` and connects the ring and the control connections. Blocks until
  // every rank has registered (a rank that never calls is waited for, as by NCCL) or abort (Aborted).
  void connect(const IdContents& id);

  // One ring step: sends `out` to the next rank (when not null) while receiving `in` from the previous
  // one (when not null). `doing` names the collective in progress for messages ("ncclAllReduce #5
  // (count 100, ncclFloat32, ncclSum)"). Throws Failure (a peer's report, a peer lost) or Aborted.
  void exchange(const Outgoing* out, const Incoming* in, const std::string& doing);

  // While idle: waits until `queue_fd` (an eventfd) or a control connection is readable, or abort. Reads
  // what the peers sent; throws the Failure a peer reported. Returns false on abort.
  bool wait_idle(int queue_fd);

  // Best effort, never blocks: tells every other rank of a failure / that this rank aborts.
  void report_failure(const Failure& failure);
  void report_abort();
  // Tells every peer that this rank ran `collectives` collectives and leaves, closes this rank's half of
  // every connection, and waits (at most 5 s) until the peers close theirs, so that none is reset while a
  // peer still has this rank's last data to read.
  void say_goodbye(uint64_t collectives);
  // Shuts every connection down at once (abort): blocked peers see them close.
  void shut_down();

 private:
  struct Peer {  // a control connection
    Peer(int rank, Fd fd) : rank(rank), fd(std::move(fd)) {}
    int rank;
    Fd fd;
    std::string in;  // bytes received and not yet parsed
    bool closed = false, aborted = false, said_bye = false;
    uint64_t collectives = 0;  // from its goodbye
  };

  void read_control(Peer& peer);
  void drain_control(int timeout_ms, int watch_rank);
  // Appends a POLLIN entry for every open control connection to fds, and the connection to peers.
  void poll_control(std::vector<pollfd>& fds, std::vector<Peer*>& peers);
  [[noreturn]] void lost(int peer, const std::string& doing, bool said_bye, uint64_t collectives);
  Peer* control_of(int rank);

  int rank_, nranks_, abort_fd_;
  Fd send_fd_, recv_fd_;  // to rank+1, from rank−1
  std::vector<Peer> control_;
};

}  // namespace vb::nccl_emu::detail
