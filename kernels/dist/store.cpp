// The TCP rendezvous store of store.h: a server thread on rank 0 (one poll() loop over the listening
// socket and every rank's connection) and, on every rank, one client connection shared by the caller's
// requests and a heartbeat thread.
//
// Wire format, both directions: a frame is a u32 byte count and that many bytes, numbers in the host's
// byte order (little-endian on every machine we build for). A request
// opens with its Op; a reply with a Reply code. Strings are a u32 length and the bytes. Every request has
// exactly one reply, so a connection is a strict request/reply sequence guarded by one mutex; waiting (for
// a key, for every rank) is polling on the client, so that the server never holds a request back and the
// heartbeat is never stuck behind a waiting get.
//
// Ranks leave in one of three ways, which the server tells apart:
//   - Goodbye(clean): the job ended here; nobody is told.
//   - Goodbye(failed): this rank gave up after a failure of its own (ProcessGroup::abort); its status shows
//     it exited, but it is not announced to the others as the cause (they fail on their own, naming the
//     rank that really stalled or died, instead of the first rank that noticed).
//   - the connection closes without a Goodbye: the process was killed or crashed; every rank learns it at
//     its next heartbeat, and collectives waiting on it fail at once.
// Every socket operation is non-blocking under poll() with a deadline, so nothing here waits forever
// (getaddrinfo, which resolves MASTER_ADDR, is the system resolver's and keeps its own timeouts).
#include "kernels/dist/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "tensor/error.h"

namespace vb::dist {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}
int poll_ms_until(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return int(std::clamp<int64_t>(ms + 1, 0, 1000));
}

constexpr double kHeartbeatS = 0.1;      // how often each rank reports progress and learns of exits
constexpr double kHeartbeatMinS = 0.01;  // the least time between two heartbeats
constexpr double kStatusDeadlineS = 3;   // status() answers within this or says the server does not
constexpr double kAbortGraceS = 3;       // rank 0's server outlives an abort so that others can read it
constexpr uint32_t kMaxFrame = 1u << 30;  // a frame larger than this is a protocol error, not a value

enum class Op : uint8_t { Hello = 1, Set, Get, Missing, Heartbeat, Status, Goodbye };
enum class Reply : uint8_t { Ok = 0, Error, Found, NotFound };

// Serialisation of one frame's body.
struct Writer {
  std::string buf;
  Writer& u8(uint8_t v) { return raw(&v, 1); }
  Writer& i32(int32_t v) { return raw(&v, 4); }
  Writer& i64(int64_t v) { return raw(&v, 8); }
  Writer& f64(double v) { return raw(&v, 8); }
  Writer& str(const std::string& s) {
    u32(uint32_t(s.size()));
    buf += s;
    return *this;
  }
  Writer& u32(uint32_t v) { return raw(&v, 4); }
  Writer& raw(const void* p, size_t n) {
    buf.append(static_cast<const char*>(p), n);
    return *this;
  }
  // The body with its length in front.
  std::string frame() const {
    std::string f(4, '\0');
    const uint32_t n = uint32_t(buf.size());
    std::memcpy(f.data(), &n, 4);
    return f + buf;
  }
};

struct Reader {
  std::string buf;  // owned: replies arrive as temporaries
  size_t pos = 0;
  explicit Reader(std::string b) : buf(std::move(b)) {}
  template <typename T>
  T get() {
    VB_CHECK(pos + sizeof(T) <= buf.size(), "rendezvous store: a truncated message ({} bytes)", buf.size());
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    const uint32_t n = get<uint32_t>();
    VB_CHECK(pos + n <= buf.size(), "rendezvous store: a truncated string ({} bytes)", n);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

std::string errno_text(int e) { return std::strerror(e); }

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }
void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// An I/O failure of the client connection: `closed` when the other end closed it (rank 0 is gone),
// otherwise a deadline passed or the socket failed.
class IoError : public Error {
 public:
  IoError(const std::string& what, bool closed) : Error(what), closed(closed) {}
  bool closed;
};

// ---------------------------------------------------------------------------------------------------
// The server (rank 0).

class Server {
 public:
  Server(int port, int world) : world_(world), ranks_(size_t(world)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VB_CHECK(fd_ >= 0, "rendezvous store: rank 0 could not create a socket: {}", errno_text(errno));
    const int one = 1;
    // A job restarted at once on the same MASTER_PORT finds the old connections in TIME_WAIT.
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(port));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd_, SOMAXCONN) != 0) {
      const int e = errno;
      ::close(fd_);
      fail("rendezvous store: rank 0 could not listen on port {}: {}{}", port, errno_text(e),
           e == EADDRINUSE ? " (another job or process holds it: choose another MASTER_PORT)" : "");
    }
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    set_nonblocking(fd_);
    started_ = Clock::now();
    for (RankState& r : ranks_) r.last = started_;
    thread_ = std::thread([this] { run(); });
  }

  ~Server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (Conn& c : conns_) ::close(c.fd);
    ::close(fd_);
  }

  int port() const { return port_; }

  // Waits until every rank that connected has left or exited, or until `deadline`.
  void wait_for_departures(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] {
      return std::all_of(ranks_.begin(), ranks_.end(),
                         [](const RankState& r) { return !r.connected || r.left || r.exited; });
    });
  }

 private:
  struct Conn {
    int fd = -1;
    int rank = -1;  // -1 until its Hello
    std::string in, out;
    bool closing = false;  // close once `out` is sent
  };
  struct RankState {
    bool connected = false;
    bool left = false;       // said Goodbye(clean)
    bool exited = false;     // gone without a clean Goodbye
    int64_t started = -1;
    Clock::time_point last;
  };

  void run() {
    std::vector<pollfd> fds;
    while (!stop_) {
      fds.clear();
      fds.push_back({fd_, POLLIN, 0});
      for (const Conn& c : conns_) fds.push_back({c.fd, short(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
      // The timeout bounds how late the destructor's stop is seen.
      if (::poll(fds.data(), fds.size(), 100) < 0) continue;
      std::lock_guard lock(mu_);
      for (size_t i = 1; i < fds.size(); ++i) serve(conns_[i - 1], fds[i].revents);
      if (fds[0].revents & POLLIN) accept_all();
      const auto gone = std::remove_if(conns_.begin(), conns_.end(), [](const Conn& c) { return c.fd < 0; });
      conns_.erase(gone, conns_.end());
    }
  }

  void accept_all() {
    while (true) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN: none left; anything else: the client gave up, it will retry
      set_nodelay(fd);
      Conn c;
      c.fd = fd;
      conns_.push_back(std::move(c));
    }
  }

  void serve(Conn& c, short revents) {
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      while (true) {
        const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
        if (n > 0) {
          c.in.append(buf, size_t(n));
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        drop(c);  // closed by the peer, or reset
        return;
      }
      while (c.in.size() >= 4) {
        uint32_t len;
        std::memcpy(&len, c.in.data(), 4);
        if (len > kMaxFrame) {
          drop(c);
          return;
        }
        if (c.in.size() < 4 + size_t(len)) break;
        const std::string body = c.in.substr(4, len);
        c.in.erase(0, 4 + size_t(len));
        Writer reply;
        try {
          handle(c, body, reply);
        } catch (const Error& e) {
          reply = Writer();
          reply.u8(uint8_t(Reply::Error)).str(e.what());
        }
        c.out += reply.frame();
      }
    }
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, size_t(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      drop(c);
      return;
    }
    if (c.closing && c.out.empty()) drop(c);
  }

  void drop(Conn& c) {
    if (c.fd < 0) return;
    ::close(c.fd);
    c.fd = -1;
    if (c.rank >= 0) {
      RankState& r = ranks_[size_t(c.rank)];
      if (!r.left && !r.exited) {
        r.exited = true;
        if (first_exited_ < 0) first_exited_ = c.rank;
      }
      cv_.notify_all();
    }
  }

  void handle(Conn& c, const std::string& body, Writer& reply) {
    Reader in(body);
    const Op op = Op(in.get<uint8_t>());
    if (op == Op::Hello) {
      const int rank = in.get<int32_t>(), world = in.get<int32_t>();
      VB_CHECK(world == world_, "rank {} joined a job of {} ranks, but rank 0 started one of {} (do all ranks see the "
               "same WORLD_SIZE, or is another job using this MASTER_PORT?)", rank, world, world_);
      VB_CHECK(rank >= 0 && rank < world_, "a process claims rank {} of a job of {} ranks", rank, world_);
      RankState& r = ranks_[size_t(rank)];
      VB_CHECK(!r.connected, "two processes claim rank {} of this job (check the launcher's RANK, or another job uses "
               "this MASTER_PORT)", rank);
      r.connected = true;
      r.last = Clock::now();
      c.rank = rank;
      reply.u8(uint8_t(Reply::Ok));
      return;
    }
    VB_CHECK(c.rank >= 0, "rendezvous store: a request before the rank said hello");
    RankState& me = ranks_[size_t(c.rank)];
    me.last = Clock::now();
    switch (op) {
      case Op::Set: {
        std::string key = in.str();
        kv_[key] = in.str();
        reply.u8(uint8_t(Reply::Ok));
        return;
      }
      case Op::Get: {
        const auto it = kv_.find(in.str());
        if (it == kv_.end()) reply.u8(uint8_t(Reply::NotFound));
        else reply.u8(uint8_t(Reply::Found)).str(it->second);
        return;
      }
      case Op::Missing: {
        std::vector<int32_t> missing;
        for (int r = 0; r < world_; ++r)
          if (!ranks_[size_t(r)].connected) missing.push_back(r);
        reply.u8(uint8_t(Reply::Ok)).u32(uint32_t(missing.size()));
        for (int32_t r : missing) reply.i32(r);
        return;
      }
      case Op::Heartbeat:
        me.started = in.get<int64_t>();
        reply.u8(uint8_t(Reply::Ok)).i32(first_exited_);
        return;
      case Op::Status: {
        const auto now = Clock::now();
        reply.u8(uint8_t(Reply::Ok)).u32(uint32_t(world_));
        for (const RankState& r : ranks_)
          reply.i64(r.started).u8(r.exited ? 1 : 0).f64(seconds_between(r.connected ? r.last : started_, now));
        return;
      }
      case Op::Goodbye: {
        const bool clean = in.get<uint8_t>() != 0;
        if (clean) me.left = true;
        else me.exited = true;
        c.closing = true;
        cv_.notify_all();
        reply.u8(uint8_t(Reply::Ok));
        return;
      }
      case Op::Hello: break;
    }
    fail("rendezvous store: unknown request {}", int(op));
  }

  int fd_ = -1, port_ = 0, world_;
  Clock::time_point started_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // everything below, between the loop and wait_for_departures
  std::condition_variable cv_;
  std::vector<Conn> conns_;
  std::vector<RankState> ranks_;
  std::map<std::string, std::string> kv_;
  int first_exited_ = -1;
};

// ---------------------------------------------------------------------------------------------------
// The client side: one connection, connected with retries.

// Connects to addr:port, retrying with back-off until `deadline`; -1 and `last_error` when it could not.
int try_connect(const std::string& addr, int port, Clock::time_point deadline, std::string& last_error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
    last_error = fmt::format("cannot resolve '{}': {}", addr, ::gai_strerror(rc));
    return -1;
  }
  int result = -1;
  for (addrinfo* ai = found; ai && result < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_error = errno_text(errno);
      continue;
    }
    int err = 0;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        // A remote host that drops SYNs takes its time: wait up to 2 s per attempt, then retry.
        const auto attempt_end = std::min(deadline, after(2.0));
        int ready = 0;
        while ((ready = ::poll(&p, 1, poll_ms_until(attempt_end))) == 0 && Clock::now() < attempt_end) {}
        socklen_t len = sizeof(err);
        if (ready > 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        else err = ETIMEDOUT;
      }
    }
    if (err == 0) {
      set_nodelay(fd);
      result = fd;
    } else {
      last_error = errno_text(err);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  return result;
}

class Connection {
 public:
  Connection(std::string addr, int port, int rank) : addr_(std::move(addr)), port_(port), rank_(rank) {}
  ~Connection() { close(); }

  void open(double timeout_s) {
    const auto start = Clock::now(), deadline = after(timeout_s);
    std::string last_error;
    double backoff = 0.01;
    int attempts = 0;
    while (true) {
      ++attempts;
      fd_ = try_connect(addr_, port_, deadline, last_error);
      if (fd_ >= 0) return;
      if (Clock::now() + std::chrono::duration<double>(backoff) >= deadline) break;
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 1.0);
    }
    fail("rank {} could not connect to the rendezvous store at {}:{} in {:.1f} s ({} attempts; last error: {}): is "
         "rank 0 running, and do MASTER_ADDR and MASTER_PORT name its host and a port it can open?",
         rank_, addr_, port_, seconds_between(start, Clock::now()), attempts, last_error);
  }

  // Sends one request and returns its reply's body. Holds the connection for the round trip; gives up at
  // `deadline` (also when another request holds it that long). An IoError leaves the connection closed:
  // a reply that might still come would be read as the answer to the next request.
  std::string request(const Writer& body, Clock::time_point deadline, const char* what) {
    std::unique_lock lock(mu_, std::defer_lock);
    if (!lock.try_lock_until(deadline))
      throw IoError(fmt::format("{} did not get the connection before its deadline", describe(what)), false);
    if (fd_ < 0) throw IoError(fmt::format("{}: the connection is closed after an earlier failure", describe(what)),
                               closed_by_peer_);
    try {
      send_all(body.frame(), deadline, what);
      std::string len_bytes = recv_exact(4, deadline, what);
      uint32_t len;
      std::memcpy(&len, len_bytes.data(), 4);
      if (len > kMaxFrame) throw IoError(fmt::format("{}: a reply of {} bytes", describe(what), len), false);
      return recv_exact(len, deadline, what);
    } catch (const IoError& e) {
      closed_by_peer_ = e.closed;
      close_locked();
      throw;
    }
  }

  void close() {
    std::lock_guard lock(mu_);
    close_locked();
  }
  // Wakes a request blocked on this connection from another thread (it fails as closed): shutdown()
  // leaves the descriptor itself to the thread that holds it.
  void interrupt() {
    const int fd = fd_.load();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  bool is_open() {
    std::lock_guard lock(mu_);
    return fd_ >= 0;
  }
  std::string endpoint() const { return fmt::format("{}:{}", addr_, port_); }

 private:
  std::string describe(const char* what) const {
    return fmt::format("rank {}: the rendezvous store at {}:{} ({})", rank_, addr_, port_, what);
  }
  void close_locked() {
    const int fd = fd_.exchange(-1);
    if (fd >= 0) ::close(fd);
  }
  void wait_ready(short events, Clock::time_point deadline, const char* what) {
    pollfd p{fd_, events, 0};
    while (true) {
      const int n = ::poll(&p, 1, poll_ms_until(deadline));
      if (n > 0) return;
      if (n < 0 && errno != EINTR) throw IoError(fmt::format("{}: poll: {}", describe(what), errno_text(errno)), false);
      if (Clock::now() >= deadline)
        throw IoError(fmt::format("{} did not answer in time (rank 0 stalled, or its host is unreachable)",
                                  describe(what)), false);
    }
  }
  void send_all(const std::string& data, Clock::time_point deadline, const char* what) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += size_t(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wait_ready(POLLOUT, deadline, what);
      } else {
        const bool closed = errno == EPIPE || errno == ECONNRESET;
        throw IoError(fmt::format("{}: {}", describe(what), closed ? "closed the connection" : errno_text(errno)),
                      closed);
      }
    }
  }
  std::string recv_exact(size_t len, Clock::time_point deadline, const char* what) {
    std::string out(len, '\0');
    size_t done = 0;
    while (done < len) {
      const ssize_t n = ::recv(fd_, out.data() + done, len - done, 0);
      if (n > 0) {
        done += size_t(n);
      } else if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        throw IoError(fmt::format("{} closed the connection", describe(what)), true);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        wait_ready(POLLIN, deadline, what);
      } else {
        throw IoError(fmt::format("{}: {}", describe(what), errno_text(errno)), false);
      }
    }
    return out;
  }

  std::string addr_;
  int port_, rank_;
  std::atomic<int> fd_{-1};  // atomic for interrupt(); otherwise used under mu_
  bool closed_by_peer_ = false;
  std::timed_mutex mu_;
};

// The deadline of one request of a polling loop that ends at `deadline`: the server answers a poll at
// once, so the loop's own deadline decides; a poll sent just before it still gets a few seconds (a
// request that times out closes the connection).
Clock::time_point poll_deadline(Clock::time_point deadline, double timeout_s) {
  return std::max(deadline, after(std::min(timeout_s, 5.0)));
}

// The reply's code; an Error with the server's message when it is Error.
Reply reply_code(Reader& r) {
  const Reply code = Reply(r.get<uint8_t>());
  if (code == Reply::Error) throw Error(r.str());
  return code;
}

}  // namespace

struct Store::Impl {
  Impl(const std::string& addr, int port, int rank) : conn(addr, port, rank) {}
  double timeout_s = 0;
  std::unique_ptr<Server> server;  // rank 0
  Connection conn;
  std::thread heartbeat;
  std::mutex heartbeat_mu;
  std::condition_variable heartbeat_cv;
  bool stop = false;            // guarded by heartbeat_mu
  bool heartbeat_done = false;  // guarded by heartbeat_mu
  std::atomic<int64_t> progress{-1};
  std::atomic<bool> aborted{false};
};

Store::Store(const std::string& addr, int port, int rank, int world, double timeout_s) : rank_(rank), world_(world) {
  VB_CHECK(world >= 1 && rank >= 0 && rank < world, "rendezvous store: rank {} of a job of {} ranks", rank, world);
  VB_CHECK(port >= 0 && port <= 65535, "rendezvous store: port {} is not a TCP port", port);
  VB_CHECK(timeout_s > 0, "rendezvous store: timeout {} s must be positive", timeout_s);
  // Rank 0 reaches its own server through the loopback: its host name may resolve to an interface
  // that the other ranks use but a local firewall treats differently.
  std::unique_ptr<Server> server;
  if (rank == 0) {
    server = std::make_unique<Server>(port, world);
    port = server->port();
  }
  port_ = port;
  impl_ = std::make_unique<Impl>(rank == 0 ? "127.0.0.1" : addr, port, rank);
  impl_->timeout_s = timeout_s;
  impl_->server = std::move(server);
  const auto deadline = after(timeout_s);
  impl_->conn.open(timeout_s);
  Reader hello_reply(impl_->conn.request(Writer().u8(uint8_t(Op::Hello)).i32(rank).i32(world), deadline, "hello"));
  try {
    reply_code(hello_reply);
  } catch (const IoError&) {
    throw;
  } catch (const Error& e) {
    fail("rank {} was refused by the rendezvous store at {}:{}: {}", rank, addr, port, e.what());
  }
  impl_->heartbeat = std::thread([this] {
    heartbeat_loop();
    std::lock_guard lock(impl_->heartbeat_mu);
    impl_->heartbeat_done = true;
    impl_->heartbeat_cv.notify_all();
  });
}

void Store::heartbeat_loop() {
  Impl& im = *impl_;
  std::unique_lock lock(im.heartbeat_mu);
  while (!im.stop) {
    lock.unlock();
    try {
      // A heartbeat may wait as long as any request: rank 0 busy is not rank 0 gone.
      Reader r(im.conn.request(Writer().u8(uint8_t(Op::Heartbeat)).i64(im.progress.load()), after(im.timeout_s),
                               "heartbeat"));
      reply_code(r);
      const int exited = r.get<int32_t>();
      int none = -1;
      if (exited >= 0) exited_rank_.compare_exchange_strong(none, exited);
    } catch (const IoError& e) {
      lock.lock();
      int none = -1;
      // Closed by the other end while this rank still runs: rank 0 is gone. (The destructor closes it
      // itself when rank 0 stopped answering; that is no news.)
      if (e.closed && !im.aborted && !im.stop) exited_rank_.compare_exchange_strong(none, 0);
      return;  // the connection is gone; status() and collectives report it
    } catch (const Error&) {
      return;
    }
    // Next heartbeat after kHeartbeatS, or sooner (but at least kHeartbeatMinS later) when a new
    // collective starts, so that the store knows where a rank stands even if it stops right after.
    const int64_t sent = im.progress.load();
    lock.lock();
    im.heartbeat_cv.wait_for(lock, std::chrono::duration<double>(kHeartbeatMinS), [&] { return im.stop; });
    im.heartbeat_cv.wait_for(lock, std::chrono::duration<double>(kHeartbeatS - kHeartbeatMinS),
                             [&] { return im.stop || im.progress.load() != sent; });
  }
}

Store::~Store() {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.heartbeat_mu);
    im.stop = true;
  }
  im.heartbeat_cv.notify_all();
  {
    // A heartbeat waiting for a rank 0 that stopped answering would hold the thread up to timeout_s:
    // after a few seconds, shut the socket under it.
    std::unique_lock lock(im.heartbeat_mu);
    if (!im.heartbeat_cv.wait_for(lock, std::chrono::duration<double>(kStatusDeadlineS),
                                  [&] { return im.heartbeat_done; })) {
      lock.unlock();
      im.conn.interrupt();
    }
  }
  if (im.heartbeat.joinable()) im.heartbeat.join();
  const bool clean = !im.aborted;
  try {
    if (im.conn.is_open())
      im.conn.request(Writer().u8(uint8_t(Op::Goodbye)).u8(clean ? 1 : 0), after(std::min(im.timeout_s, 5.0)),
                      "goodbye");
  } catch (const Error&) {
    // Leaving regardless: the server counts a closed connection as an exit.
  }
  im.conn.close();
  if (im.server) {
    // The others may still be finishing their last collective or, after a failure, reading status().
    im.server->wait_for_departures(after(clean ? im.timeout_s : std::min(im.timeout_s, kAbortGraceS)));
    im.server.reset();
  }
}

void Store::abort() { impl_->aborted = true; }

void Store::wait_for_all() {
  const auto start = Clock::now(), deadline = after(impl_->timeout_s);
  double backoff = 0.001;
  std::vector<int> missing;
  while (true) {
    Reader r(impl_->conn.request(Writer().u8(uint8_t(Op::Missing)), poll_deadline(deadline, impl_->timeout_s),
                                 "waiting for every rank"));
    reply_code(r);
    missing.resize(r.get<uint32_t>());
    for (int& m : missing) m = r.get<int32_t>();
    if (missing.empty()) return;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    backoff = std::min(backoff * 2, 0.05);
  }
  fail("rank {}: {} of {} ranks did not connect to the rendezvous store at {} within {:.1f} s: rank{} {} (did they "
       "start, and do they use the same MASTER_ADDR/MASTER_PORT?)", rank_, missing.size(), world_,
       impl_->conn.endpoint(), seconds_between(start, Clock::now()), missing.size() == 1 ? "" : "s",
       fmt::join(missing, ", "));
}

void Store::set(const std::string& key, const std::string& value) {
  Reader r(impl_->conn.request(Writer().u8(uint8_t(Op::Set)).str(key).str(value), after(impl_->timeout_s), "set"));
  reply_code(r);
}

std::string Store::get(const std::string& key) {
  const auto start = Clock::now(), deadline = after(impl_->timeout_s);
  double backoff = 0.001;
  while (true) {
    Reader r(impl_->conn.request(Writer().u8(uint8_t(Op::Get)).str(key), poll_deadline(deadline, impl_->timeout_s),
                                 "get"));
    if (reply_code(r) == Reply::Found) return r.str();
    const int gone = exited_rank();
    VB_CHECK(gone < 0, "rank {} waited for key '{}' in the rendezvous store at {}, but rank {} has exited", rank_, key,
             impl_->conn.endpoint(), gone);
    VB_CHECK(Clock::now() < deadline, "rank {}: key '{}' was not set in the rendezvous store at {} within {:.1f} s",
             rank_, key, impl_->conn.endpoint(), seconds_between(start, Clock::now()));
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    backoff = std::min(backoff * 2, 0.05);
  }
}

void Store::report_progress(uint64_t seq) {
  impl_->progress = int64_t(seq);
  impl_->heartbeat_cv.notify_one();  // without the lock: a wake-up missed costs one heartbeat period
}

std::vector<Store::RankStatus> Store::status() {
  Reader r(impl_->conn.request(Writer().u8(uint8_t(Op::Status)), after(kStatusDeadlineS), "status"));
  reply_code(r);
  std::vector<RankStatus> out(r.get<uint32_t>());
  for (RankStatus& s : out) {
    s.started = r.get<int64_t>();
    s.exited = r.get<uint8_t>() != 0;
    s.seconds_silent = r.get<double>();
  }
  return out;
}

}  // namespace vb::dist
