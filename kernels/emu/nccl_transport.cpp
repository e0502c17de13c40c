// The emulated NCCL's sockets (kernels/emu/nccl_transport.h): the bootstrap root, the ring and control
// connections, one ring step, and the messages that name a peer lost. Plain POSIX TCP over IPv4.
#include "kernels/emu/nccl_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <system_error>
#include <thread>

#include <fmt/format.h>

namespace vb::nccl_emu::detail {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}
Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}
int Fd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

namespace {

constexpr char kIdTag[8] = "vbnccl1";
constexpr int kPromptMs = 30000;  // for a peer that has connected and must answer at once

struct RegisterMsg {  // rank → root
  uint64_t magic;
  int32_t nranks, rank;
  uint32_t ip;  // where this rank listens for its peers (network byte order)
  uint16_t port;
  uint16_t pad;
  int32_t pid;
  char host[64];
};
struct Endpoint {  // root → every rank, one per rank
  uint32_t ip;
  uint16_t port;
  uint16_t pad;
};
struct HelloMsg {  // the first message on a ring or control connection
  uint64_t magic;
  uint32_t control;  // 0: ring data to the next rank, 1: control
  uint32_t pad;
};

std::string system_message(int e) { return std::system_category().message(e); }

[[noreturn]] void system_failure(const std::string& what, int e) {
  throw Failure{ncclSystemError, what + ": " + system_message(e)};
}
[[noreturn]] void aborted() { throw Aborted{}; }

std::string address_text(uint32_t ip, uint16_t port) {
  char text[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &ip, text, sizeof text);
  return fmt::format("{}:{}", text, ntohs(port));
}

// poll() that restarts after signals; timeout_ms < 0 waits forever. Returns poll's count.
int poll_fds(pollfd* fds, size_t n, int timeout_ms) {
  for (;;) {
    const int r = ::poll(fds, n, timeout_ms);
    if (r >= 0) return r;
    if (errno != EINTR) system_failure("poll", errno);
  }
}

// Waits until `fd` has `events` (or an error), or abort (throws), or the timeout (returns false).
bool wait_fd(int fd, short events, int abort_fd, int timeout_ms) {
  pollfd fds[2] = {{fd, events, 0}, {abort_fd, POLLIN, 0}};
  if (poll_fds(fds, abort_fd >= 0 ? 2 : 1, timeout_ms) == 0) return false;
  if (abort_fd >= 0 && fds[1].revents) aborted();
  return true;
}

void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Sends every byte on a non-blocking socket. Throws Failure naming `what` when the peer has gone.
void send_all(int fd, const void* data, size_t n, int abort_fd, int timeout_ms, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= size_t(k);
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(fd, POLLOUT, abort_fd, timeout_ms)) throw Failure{ncclSystemError, what + ": timed out"};
    } else if (k < 0 && errno != EINTR) {
      system_failure(what, errno);
    }
  }
}

// Receives exactly n bytes. Throws Failure naming `what` when the connection closes first.
void recv_all(int fd, void* data, size_t n, int abort_fd, int timeout_ms, const std::string& what) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= size_t(k);
    } else if (k == 0) {
      throw Failure{ncclSystemError, what + ": the connection closed"};
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(fd, POLLIN, abort_fd, timeout_ms)) throw Failure{ncclSystemError, what + ": timed out"};
    } else if (errno != EINTR) {
      system_failure(what, errno);
    }
  }
}

void send_frame(int fd, FrameType type, uint32_t aux, const void* payload, size_t bytes, int abort_fd,
                const std::string& what) {
  const Frame frame{type, aux, bytes};
  send_all(fd, &frame, sizeof frame, abort_fd, kPromptMs, what);
  if (bytes) send_all(fd, payload, bytes, abort_fd, kPromptMs, what);
}

// A listener on every interface, on a port the kernel picks (returned in network byte order).
Fd listen_any(uint16_t& port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) system_failure("socket", errno);
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) system_failure("bind", errno);
  if (::listen(fd.get(), 256) != 0) system_failure("listen", errno);
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) system_failure("getsockname", errno);
  port = addr.sin_port;
  return fd;
}

// A non-blocking connection to ip:port. A refused connection is retried for about a second (a listener
// that is being created), then reported as `what`.
Fd connect_to(uint32_t ip, uint16_t port, int abort_fd, const std::string& what) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = ip;
  addr.sin_port = port;
  for (int attempt = 0;; ++attempt) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) system_failure("socket", errno);
    int err = 0;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        if (!wait_fd(fd.get(), POLLOUT, abort_fd, kPromptMs)) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof err;
          ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err == 0) {
      set_nodelay(fd.get());
      return fd;
    }
    if ((err != ECONNREFUSED && err != ETIMEDOUT && err != EINTR) || attempt == 20)
      throw Failure{ncclSystemError, fmt::format("{} at {}: {}", what, address_text(ip, port), system_message(err))};
    if (wait_fd(abort_fd, POLLIN, -1, 50)) aborted();  // sleeps 50 ms unless aborted
  }
}

// The root's thread: waits for nranks registrations, checks that they agree, answers each rank with
// every rank's address (or with what went wrong), and ends.
void serve_root(int listener_fd, uint64_t magic) noexcept {
  Fd listener(listener_fd);
  try {
    struct Member {
      Fd fd;
      RegisterMsg msg;
    };
    std::vector<Member> members;
    // The root's thread lives in one rank's process: that rank, once answered, may finish and end its
    // process, and this thread with it. So every other rank is answered first and the root's own last.
    const int32_t own_pid = int32_t(::getpid());
    auto fail_all = [&](Fd& newcomer, const RegisterMsg& newcomer_msg, const std::string& message) {
      auto tell = [&](Fd& fd) {
        try {
          send_frame(fd.get(), kError, ncclInvalidUsage, message.data(), message.size(), -1, "root");
        } catch (const Failure&) {
        }
      };
      for (const bool own : {false, true}) {
        for (Member& m : members)
          if ((m.msg.pid == own_pid) == own) tell(m.fd);
        if ((newcomer_msg.pid == own_pid) == own) tell(newcomer);
      }
    };
    for (;;) {
      Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!conn) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      Frame frame{};
      RegisterMsg msg{};
      try {
        recv_all(conn.get(), &frame, sizeof frame, -1, kPromptMs, "root");
        if (frame.type != kRegister || frame.bytes != sizeof msg) continue;  // not one of ours
        recv_all(conn.get(), &msg, sizeof msg, -1, kPromptMs, "root");
      } catch (const Failure&) {
        continue;
      }
      msg.host[sizeof msg.host - 1] = 0;
      if (msg.magic != magic) continue;  // another job's stale id
      const RegisterMsg* first = members.empty() ? &msg : &members.front().msg;
      for (const Member& m : members) {
        if (m.msg.rank == msg.rank) {
          fail_all(conn, msg, fmt::format("ncclCommInitRank: two processes joined as rank {} of {} (pid {} on {} and pid {} "
                                     "on {}): every rank must be given once",
                                     msg.rank, msg.nranks, m.msg.pid, m.msg.host, msg.pid, msg.host));
          return;
        }
      }
      if (msg.nranks != first->nranks) {
        fail_all(conn, msg, fmt::format("ncclCommInitRank: rank {} was given nranks {} but rank {} nranks {}: every rank "
                                   "must be given the same nranks",
                                   first->rank, first->nranks, msg.rank, msg.nranks));
        return;
      }
      members.push_back({std::move(conn), msg});
      if (int(members.size()) < msg.nranks) continue;
      std::vector<Endpoint> table(members.size());
      for (const Member& m : members) table[size_t(m.msg.rank)] = {m.msg.ip, m.msg.port, 0};
      for (const bool own : {false, true})  // the root's own process last, as in fail_all
        for (Member& m : members) {
          if ((m.msg.pid == own_pid) != own) continue;
          try {
            send_frame(m.fd.get(), kTable, 0, table.data(), table.size() * sizeof(Endpoint), -1, "root");
          } catch (const Failure&) {  // that rank has gone; it is the others' concern now
          }
        }
      return;
    }
  } catch (...) {
  }
}

}  // namespace

IdContents decode_id(const ncclUniqueId& id) {
  IdContents c;
  std::memcpy(&c, id.internal, sizeof c);
  if (std::memcmp(c.tag, kIdTag, sizeof kIdTag) != 0)
    throw Failure{ncclInvalidArgument, "ncclCommInitRank: the ncclUniqueId was not made by this library's "
                                       "ncclGetUniqueId (or it was not passed to this rank intact)"};
  return c;
}

ncclUniqueId start_bootstrap_root() {
  uint32_t ip = htonl(INADDR_LOOPBACK);
  if (const char* addr = std::getenv("VB_NCCL_EMU_ADDR"); addr && *addr) {
    if (inet_pton(AF_INET, addr, &ip) != 1)
      throw Failure{ncclInvalidArgument, fmt::format("VB_NCCL_EMU_ADDR={}: expected this host's IPv4 address, such "
                                                     "as 10.0.0.5, for the other ranks to reach the bootstrap root",
                                                     addr)};
  }
  uint16_t port = 0;
  Fd listener = listen_any(port);
  std::random_device entropy;
  const uint64_t magic = (uint64_t(entropy()) << 32) ^ entropy();
  IdContents c{};
  std::memcpy(c.tag, kIdTag, sizeof kIdTag);
  c.magic = magic;
  c.ip = ip;
  c.port = port;
  ncclUniqueId id{};
  std::memcpy(id.internal, &c, sizeof c);
  std::thread(serve_root, listener.get(), magic).detach();
  listener.release();  // the root's thread owns it now
  return id;
}

void Links::connect(const IdContents& id) {
  uint16_t my_port = 0;
  Fd listener = listen_any(my_port);
  const std::string root = "the bootstrap root at " + address_text(id.ip, id.port);
  Fd to_root = connect_to(id.ip, id.port, abort_fd_,
                          "rank " + std::to_string(rank_) +
                              " cannot reach the bootstrap root (has the process that called ncclGetUniqueId exited?)");
  sockaddr_in local{};
  socklen_t len = sizeof local;
  if (::getsockname(to_root.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0)
    system_failure("getsockname", errno);

  RegisterMsg msg{};
  msg.magic = id.magic;
  msg.nranks = nranks_;
  msg.rank = rank_;
  msg.ip = local.sin_addr.s_addr;  // the interface that reaches the root reaches this rank too
  msg.port = my_port;
  msg.pid = int32_t(::getpid());
  ::gethostname(msg.host, sizeof msg.host - 1);
  send_frame(to_root.get(), kRegister, 0, &msg, sizeof msg, abort_fd_, "registering with " + root);

  // The answer comes once every rank has registered: a rank that never calls is waited for, as by NCCL.
  const std::string waiting = fmt::format("rank {} waiting for {} to hear from all {} ranks (the root's process "
                                          "exited, or another job used this ncclUniqueId?)",
                                          rank_, root, nranks_);
  Frame reply{};
  recv_all(to_root.get(), &reply, sizeof reply, abort_fd_, -1, waiting);
  if (reply.type == kError) {
    std::string message(std::min<uint64_t>(reply.bytes, 1 << 16), '\0');
    recv_all(to_root.get(), message.data(), message.size(), abort_fd_, kPromptMs, waiting);
    throw Failure{ncclResult_t(reply.aux), message};
  }
  if (reply.type != kTable || reply.bytes != uint64_t(nranks_) * sizeof(Endpoint))
    throw Failure{ncclInternalError, "the bootstrap root answered with an unexpected message"};
  std::vector<Endpoint> table(static_cast<size_t>(nranks_));
  recv_all(to_root.get(), table.data(), reply.bytes, abort_fd_, kPromptMs, waiting);
  to_root = Fd();
  if (nranks_ == 1) return;

  // Outgoing: the ring connection to the next rank, and control connections to every lower rank.
  auto open = [&](int peer, uint32_t control) {
    Fd fd = connect_to(table[size_t(peer)].ip, table[size_t(peer)].port, abort_fd_,
                       fmt::format("rank {} connecting to rank {}", rank_, peer));
    const HelloMsg hello{id.magic, control, 0};
    send_frame(fd.get(), kHello, uint32_t(rank_), &hello, sizeof hello, abort_fd_,
               fmt::format("rank {} greeting rank {}", rank_, peer));
    return fd;
  };
  const int next = (rank_ + 1) % nranks_, prev = (rank_ + nranks_ - 1) % nranks_;
  send_fd_ = open(next, 0);
  for (int peer = 0; peer < rank_; ++peer) control_.emplace_back(peer, open(peer, 1));

  // Incoming: the ring connection from the previous rank, and control connections from every higher rank.
  int missing = 1 + (nranks_ - 1 - rank_);
  while (missing > 0) {
    wait_fd(listener.get(), POLLIN, abort_fd_, -1);
    Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) continue;
    Frame frame{};
    HelloMsg hello{};
    try {
      recv_all(fd.get(), &frame, sizeof frame, abort_fd_, kPromptMs, "hello");
      if (frame.type != kHello || frame.bytes != sizeof hello) continue;
      recv_all(fd.get(), &hello, sizeof hello, abort_fd_, kPromptMs, "hello");
    } catch (const Failure&) {
      continue;  // a stray connection
    }
    const int peer = int(frame.aux);
    if (hello.magic != id.magic || peer < 0 || peer >= nranks_) continue;
    set_nodelay(fd.get());
    if (hello.control == 0 && peer == prev && !recv_fd_) {
      recv_fd_ = std::move(fd);
      --missing;
    } else if (hello.control == 1 && peer > rank_ && !control_of(peer)) {
      control_.emplace_back(peer, std::move(fd));
      --missing;
    }
  }
  std::sort(control_.begin(), control_.end(), [](const Peer& a, const Peer& b) { return a.rank < b.rank; });
}

Links::Peer* Links::control_of(int rank) {
  for (Peer& p : control_)
    if (p.rank == rank) return &p;
  return nullptr;
}

// Reads what a peer sent on its control connection; throws the failure it reports.
void Links::read_control(Peer& peer) {
  char buffer[4096];
  for (;;) {
    const ssize_t k = ::recv(peer.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (k > 0) {
      peer.in.append(buffer, size_t(k));
      continue;
    }
    if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) peer.closed = true;
    if (k < 0 && errno == EINTR) continue;
    break;
  }
  while (peer.in.size() >= sizeof(Frame)) {
    Frame frame;
    std::memcpy(&frame, peer.in.data(), sizeof frame);
    const size_t payload = frame.type == kError ? size_t(frame.bytes) : 0;
    if (peer.in.size() < sizeof frame + payload) break;
    std::string message = peer.in.substr(sizeof frame, payload);
    peer.in.erase(0, sizeof frame + payload);
    if (frame.type == kError) throw Failure{ncclResult_t(frame.aux), message, true};
    if (frame.type == kBye) {
      peer.said_bye = true;
      peer.collectives = frame.bytes;
    }
    if (frame.type == kAbort) peer.aborted = true;
  }
}

void Links::poll_control(std::vector<pollfd>& fds, std::vector<Peer*>& peers) {
  for (Peer& p : control_) {
    if (p.closed) continue;
    fds.push_back({p.fd.get(), POLLIN, 0});
    peers.push_back(&p);
  }
}

// Reads the control connections for up to timeout_ms, or until `watch_rank` has said why it left.
void Links::drain_control(int timeout_ms, int watch_rank) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<pollfd> fds;
  std::vector<Peer*> peers;
  for (;;) {
    const Peer* watched = control_of(watch_rank);
    if (watched && (watched->closed || watched->aborted || watched->said_bye)) return;
    fds.clear();
    peers.clear();
    fds.push_back({abort_fd_, POLLIN, 0});
    poll_control(fds, peers);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || peers.empty()) return;
    if (poll_fds(fds.data(), fds.size(), int(left.count())) == 0) return;
    if (fds[0].revents) aborted();
    for (size_t i = 0; i < peers.size(); ++i)
      if (fds[i + 1].revents) read_control(*peers[i]);
  }
}

void Links::lost(int peer, const std::string& doing, bool said_bye, uint64_t collectives) {
  // A rank that fails tells the others why before its connections close: give its report a moment to
  // arrive, since it explains this close better (read_control throws it).
  drain_control(250, peer);
  const Peer* p = control_of(peer);
  if (p && p->said_bye) {
    said_bye = true;
    collectives = p->collectives;
  }
  std::string what;
  if (p && p->aborted)
    what = fmt::format("rank {} aborted its communicator (ncclCommAbort) while rank {} was in {}", peer, rank_, doing);
  else if (said_bye)
    what = fmt::format("rank {} finalised its communicator after {} collectives while rank {} was in {}: the ranks "
                       "did not call the same number of collectives",
                       peer, collectives, rank_, doing);
  else
    what = fmt::format("rank {} closed its connection while rank {} was in {}: rank {} has exited (or was killed)",
                       peer, rank_, doing, peer);
  throw Failure{ncclRemoteError, what};
}

void Links::exchange(const Outgoing* out, const Incoming* in, const std::string& doing) {
  const int next = (rank_ + 1) % nranks_, prev = (rank_ + nranks_ - 1) % nranks_;
  const Frame out_frame{out ? uint32_t(out->type) : 0u, 0, out ? out->bytes : 0};
  const size_t out_total = out ? sizeof(Frame) + out->bytes : 0;
  const size_t in_total = in ? sizeof(Frame) + in->bytes : 0;
  size_t sent = 0, got = 0;
  Frame in_frame{};
  std::vector<pollfd> fds;
  std::vector<Peer*> peers;
  while (sent < out_total || got < in_total) {
    fds.clear();
    peers.clear();
    fds.push_back({abort_fd_, POLLIN, 0});
    poll_control(fds, peers);
    const size_t send_at = fds.size();
    if (sent < out_total) fds.push_back({send_fd_.get(), POLLOUT, 0});
    const size_t recv_at = fds.size();
    if (got < in_total) fds.push_back({recv_fd_.get(), POLLIN, 0});
    poll_fds(fds.data(), fds.size(), -1);  // a stalled peer is waited for, as by NCCL
    if (fds[0].revents) aborted();
    // The peers' reports first: they explain whatever happens on the ring connections.
    for (size_t i = 0; i < peers.size(); ++i)
      if (fds[i + 1].revents) read_control(*peers[i]);

    if (got < in_total && fds[recv_at].revents) {
      while (got < in_total) {
        char* dst = got < sizeof(Frame) ? reinterpret_cast<char*>(&in_frame) + got
                                        : static_cast<char*>(in->data) + (got - sizeof(Frame));
        const size_t want = got < sizeof(Frame) ? sizeof(Frame) - got : in_total - got;
        const ssize_t k = ::recv(recv_fd_.get(), dst, want, MSG_DONTWAIT);
        if (k == 0) lost(prev, doing, false, 0);
        if (k < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          if (errno == ECONNRESET) lost(prev, doing, false, 0);
          system_failure(fmt::format("rank {} receiving from rank {} in {}", rank_, prev, doing), errno);
        }
        const bool frame_done = got < sizeof(Frame) && got + size_t(k) >= sizeof(Frame);
        got += size_t(k);
        if (frame_done) {
          if (in_frame.type == kBye) lost(prev, doing, true, in_frame.bytes);
          if (in_frame.type != in->type || in_frame.bytes != in->bytes)
            throw Failure{
                ncclInternalError,
                fmt::format("rank {} in {}: rank {} sent a message of type {} and {} bytes where type {} and "
                            "{} bytes were expected",
                            rank_, doing, prev, in_frame.type, in_frame.bytes, uint32_t(in->type), in->bytes)};
        }
      }
    }

    if (sent < out_total && fds[send_at].revents) {
      while (sent < out_total) {
        iovec parts[2];
        int count = 0;
        if (sent < sizeof(Frame)) parts[count++] = {const_cast<char*>(reinterpret_cast<const char*>(&out_frame)) + sent,
                                                    sizeof(Frame) - sent};
        const size_t body_sent = sent > sizeof(Frame) ? sent - sizeof(Frame) : 0;
        if (out->bytes > body_sent)
          parts[count++] = {const_cast<char*>(static_cast<const char*>(out->data)) + body_sent, out->bytes - body_sent};
        msghdr message{};
        message.msg_iov = parts;
        message.msg_iovlen = size_t(count);
        const ssize_t k = ::sendmsg(send_fd_.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          if (errno == EPIPE || errno == ECONNRESET) lost(next, doing, false, 0);
          system_failure(fmt::format("rank {} sending to rank {} in {}", rank_, next, doing), errno);
        }
        sent += size_t(k);
      }
    }
  }
}

bool Links::wait_idle(int queue_fd) {
  std::vector<pollfd> fds;
  std::vector<Peer*> peers;
  fds.push_back({abort_fd_, POLLIN, 0});
  fds.push_back({queue_fd, POLLIN, 0});
  poll_control(fds, peers);
  poll_fds(fds.data(), fds.size(), -1);
  if (fds[0].revents) return false;
  for (size_t i = 0; i < peers.size(); ++i)
    if (fds[i + 2].revents) read_control(*peers[i]);
  return true;
}

// Best effort and never blocking: a frame that does not fit in the socket's buffer is dropped (the peer
// then learns of the failure from its ring connection instead).
void Links::report_failure(const Failure& failure) {
  for (Peer& p : control_) {
    if (p.closed) continue;
    std::string bytes(sizeof(Frame), '\0');
    const Frame frame{kError, uint32_t(failure.code), failure.message.size()};
    std::memcpy(bytes.data(), &frame, sizeof frame);
    bytes += failure.message;
    [[maybe_unused]] const ssize_t k = ::send(p.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
}

void Links::report_abort() {
  const Frame frame{kAbort, 0, 0};
  for (Peer& p : control_)
    [[maybe_unused]] const ssize_t k = ::send(p.fd.get(), &frame, sizeof frame, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// A graceful close: goodbye on every connection, then our half closed, then what the peers still send
// read until they close theirs (at most a few seconds), so that no connection is reset while a peer
// still has our last data to read.
void Links::say_goodbye(uint64_t collectives) {
  const Frame bye{kBye, 0, collectives};
  std::vector<int> open;
  if (send_fd_) open.push_back(send_fd_.get());
  if (recv_fd_) open.push_back(recv_fd_.get());
  for (Peer& p : control_) open.push_back(p.fd.get());
  for (int fd : open) {
    if (fd != recv_fd_.get())  // the previous rank never reads there
      [[maybe_unused]] const ssize_t k = ::send(fd, &bye, sizeof bye, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char sink[4096];
  while (!open.empty()) {
    std::vector<pollfd> fds;
    fds.push_back({abort_fd_, POLLIN, 0});
    for (int fd : open) fds.push_back({fd, POLLIN, 0});
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll_fds(fds.data(), fds.size(), int(left.count())) == 0 || fds[0].revents) break;
    std::vector<int> still;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) {
        still.push_back(fds[i].fd);
        continue;
      }
      ssize_t k;
      while ((k = ::recv(fds[i].fd, sink, sizeof sink, MSG_DONTWAIT)) > 0) {
      }
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) still.push_back(fds[i].fd);
    }
    open = std::move(still);
  }
  // The sockets stay open until the communicator is freed: an abort on another thread may still shut
  // them down.
}

void Links::shut_down() {
  if (send_fd_) ::shutdown(send_fd_.get(), SHUT_RDWR);
  if (recv_fd_) ::shutdown(recv_fd_.get(), SHUT_RDWR);
  for (Peer& p : control_) ::shutdown(p.fd.get(), SHUT_RDWR);
}

}  // namespace vb::nccl_emu::detail
