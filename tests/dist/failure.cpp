// A rank that dies or stalls in a collective must not hang the others. This driver (one process) starts
// jobs of three ranks of this same program in a child mode: under mpirun on device cpu (the mpi
// backend), and started by itself torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT) on
// device emu (the emulated NCCL; skipped while this build has none). After three good all-reduces one rank
//   kill   is killed with SIGKILL while the others are inside the fourth,
//   sleep  sleeps instead of calling it (far beyond the timeout),
//   stop   stops itself with SIGSTOP (its heartbeat stops too).
// The other ranks must fail within the timeout with a CommError that names that rank and the collective
// (all_reduce #3), at once when a rank was killed, and exit non-zero; no process may be left behind.
//
// mpirun runs with --enable-recovery: without it OpenMPI kills the whole job the moment one rank dies,
// before the others can say anything (which is also what makes a plain mpirun job end). So a stalled
// rank outlives the others here, and the driver kills it once they have exited.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/dist/init.h"
#include "tests/support/check.h"
#include "tests/support/free_port.h"

using namespace vb;
using namespace vb::dist;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The child mode: VB_FAILURE_CHILD="<kill|sleep|stop>:<victim rank>:<device>:<timeout s>", and the folder
// where each rank writes pid.<rank> (at start) and result.<rank> (its failure: seconds, then message).
const char* kChildVar = "VB_FAILURE_CHILD";
const char* kDirVar = "VB_FAILURE_DIR";

struct Scenario {
  std::string mode;
  int victim = 1;
  std::string device = "cpu";
  double timeout_s = 2;

  std::string encode() const { return fmt::format("{}:{}:{}:{}", mode, victim, device, timeout_s); }
  static Scenario decode(const std::string& s) {
    Scenario out;
    std::stringstream in(s);
    std::string part;
    std::getline(in, out.mode, ':');
    std::getline(in, part, ':');
    out.victim = std::stoi(part);
    std::getline(in, out.device, ':');
    std::getline(in, part, ':');
    out.timeout_s = std::stod(part);
    return out;
  }
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
}
std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Records this rank's failure (seconds, then the message) and exits at once with `code`.
[[noreturn]] void report_and_exit(const fs::path& dir, int rank, double seconds, const std::string& message, int code) {
  write_file(dir / fmt::format("result.{}", rank), fmt::format("{:.3f}\n{}", seconds, message));
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

// One rank of the job.
[[noreturn]] void child_main(const Scenario& s, const fs::path& dir) {
  const Launch launch = detect_launch();
  const int me = launch.rank;
  write_file(dir / fmt::format("pid.{}", me), std::to_string(::getpid()));
  auto fail_with = [&](const std::string& message, double seconds, int code) {
    report_and_exit(dir, me, seconds, message, code);
  };
  std::unique_ptr<ProcessGroup> group;
  try {
    group = init_process_group(launch, CommOptions{"", Device::parse(s.device), s.timeout_s});
  } catch (const Error& e) {
    fail_with(fmt::format("init_process_group failed: {}", e.what()), 0, 4);
  }
  Communicator& comm = *group->comm;
  const Device dev = comm.device();
  Tensor small = to(Tensor::from_vector(std::vector<double>(16, 1.0), {16}, DType::Float32), dev);
  Tensor big = to(Tensor::from_vector(std::vector<double>(size_t(1) << 20, 1.0), {int64_t(1) << 20}, DType::Float32),
                  dev);
  try {
    for (int k = 0; k < 3; ++k) comm.all_reduce(small, dist::ReduceOp::Sum)->wait();  // #0, #1, #2
  } catch (const Error& e) {
    fail_with(fmt::format("a warm-up collective failed: {}", e.what()), 0, 4);
  }
  if (me == s.victim) {
    if (s.mode == "kill") {
      // Killed while the others wait inside #3. (Had it started #3 itself, its part would already be
      // sent, and the others would complete it without it.)
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ::raise(SIGKILL);
    } else if (s.mode == "sleep") {
      std::this_thread::sleep_for(std::chrono::seconds(600));
    } else {
      // Stopped a little later, as a rank that hangs mid-training would be: its heartbeats have told
      // the store by then that it finished #2.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ::raise(SIGSTOP);
    }
    std::_Exit(98);  // killed or stopped before this
  }
  const auto start = Clock::now();
  try {
    comm.all_reduce(big, dist::ReduceOp::Sum)->wait();
  } catch (const CommError& e) {
    const double seconds = seconds_since(start);
    // Write what happened before anything that might block; then leave without waiting for anyone
    // (abort, then the group's end: rank 0's store serves a few seconds more for the others).
    write_file(dir / fmt::format("result.{}", me), fmt::format("{:.3f}\n{}", seconds, e.what()));
    std::fprintf(stderr, "%s\n", e.what());
    std::fflush(stderr);
    group->abort();
    group.reset();
    std::_Exit(3);
  } catch (const Error& e) {
    fail_with(fmt::format("not a CommError: {}", e.what()), seconds_since(start), 5);
  }
  report_and_exit(dir, me, seconds_since(start),
                  "the collective completed although rank " + std::to_string(s.victim) + " never joined it", 6);
}

// Whether process `pid` still runs (a zombie does not: it only waits for its parent to collect it).
bool running(pid_t pid) {
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// Starts `argv` with `env` added to this environment, in its own process group, output to `log`.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env,
            const fs::path& log) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  return pid;
}

// Waits for `pid` (a child of this process) until `deadline`; true when it was collected.
bool reap(pid_t pid, Clock::time_point deadline) {
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }


// Runs one scenario with three ranks and checks what the two survivors reported.
void run_scenario(const Scenario& s, bool torchrun) {
  const int world = 3;
  const fs::path dir = fs::temp_directory_path() / fmt::format("vb-dist-failure-{}-{}", ::getpid(), s.encode());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path log = dir / "output.log";
  const std::vector<std::string> child_args = {self_exe(), "--test-case=failure child"};
  std::vector<std::pair<std::string, std::string>> env = {
      {kChildVar, s.encode()}, {kDirVar, dir.string()}, {"OMP_NUM_THREADS", "1"},
      {"OMPI_ALLOW_RUN_AS_ROOT", "1"}, {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}};
  const auto start = Clock::now();
  std::vector<pid_t> launched;  // our own children: mpirun, or the three ranks
  if (torchrun) {
    const int port = test::free_port();
    for (int r = 0; r < world; ++r) {
      auto e = env;
      e.insert(e.end(), {{"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(world)},
                         {"LOCAL_RANK", std::to_string(r)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
                         {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}});
      launched.push_back(spawn(child_args, e, log));
    }
  } else {
    std::vector<std::string> argv = {VB_MPIEXEC, "-np", std::to_string(world), "--oversubscribe", "--enable-recovery",
                                     "-x", kChildVar, "-x", kDirVar, "-x", "OMP_NUM_THREADS"};
    argv.insert(argv.end(), child_args.begin(), child_args.end());
    launched.push_back(spawn(argv, env, log));
  }

  // The survivors must report and exit: within the timeout plus start-up and rank 0's few seconds of
  // grace (generous, for a loaded CI machine), or the test fails.
  const auto bound = start + std::chrono::duration<double>(s.timeout_s + 30);
  std::vector<int> survivors;
  for (int r = 0; r < world; ++r)
    if (r != s.victim) survivors.push_back(r);
  auto pid_of = [&](int r) -> pid_t {
    const std::string text = read_file(dir / fmt::format("pid.{}", r));
    return text.empty() ? 0 : pid_t(std::stol(text));
  };
  auto survivors_gone = [&] {
    for (int r : survivors) {
      const pid_t pid = pid_of(r);
      if (pid == 0 || !fs::exists(dir / fmt::format("result.{}", r)) || running(pid)) return false;
    }
    return true;
  };
  while (!survivors_gone() && Clock::now() < bound) {
    // A launcher that has ended has nothing more to say.
    if (!torchrun && reap(launched[0], Clock::now())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double survivors_s = seconds_since(start);
  const bool in_time = survivors_gone();

  // Clean up whatever is left (the stalled rank, everything on a failure), then check nothing runs.
  std::vector<pid_t> ranks;
  for (int r = 0; r < world; ++r)
    if (pid_t pid = pid_of(r)) ranks.push_back(pid);
  int left_running = 0;
  for (pid_t pid : ranks)
    if (running(pid)) {
      ++left_running;
      ::kill(pid, SIGKILL);
    }
  for (pid_t pid : launched)
    if (!reap(pid, Clock::now() + std::chrono::seconds(10))) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      reap(pid, Clock::now() + std::chrono::seconds(5));
    }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (pid_t pid : ranks) CHECK_MESSAGE(!running(pid), "process ", pid, " still runs after the cleanup");

  // INFO keeps references: everything it shows must outlive the checks.
  const std::string context = fmt::format("scenario {} ({}); the job's output:\n{}", s.encode(),
                                          torchrun ? "torchrun-style" : "mpirun", read_file(log));
  INFO(context);
  CHECK_MESSAGE(in_time, "the survivors did not all report and exit within ", s.timeout_s + 30, " s");
  CHECK_MESSAGE(ranks.size() == size_t(world), "only ", ranks.size(), " ranks started");
  // Only the stalled rank may outlive the others (the driver kills it, as plain mpirun would).
  CHECK(left_running <= (s.mode == "kill" ? 0 : 1));
  for (int r : survivors) {
    const std::string result = read_file(dir / fmt::format("result.{}", r));
    INFO("rank ", r, " reported: ", result);
    REQUIRE_MESSAGE(!result.empty(), "rank ", r, " reported nothing");
    const double seconds = std::stod(result.substr(0, result.find('\n')));
    const std::string message = result.substr(result.find('\n') + 1);
    CHECK(message.find(fmt::format("[rank {}]", r)) == 0);
    CHECK(message.find("all_reduce #3") != std::string::npos);
    CHECK(message.find(fmt::format("rank {} ", s.victim)) != std::string::npos);
    if (s.mode == "kill") {
      // At once, not by the timeout.
      CHECK(message.find(fmt::format("rank {} has exited", s.victim)) != std::string::npos);
      CHECK(seconds < std::min(3.0, s.timeout_s));
    } else {
      // Its own deadline, or (emulated NCCL) another survivor that reached its deadline first and aborted:
      // either way the message names the stalled rank.
      CHECK((message.find("did not complete within") != std::string::npos ||
             message.find("aborted its communicator") != std::string::npos));
      if (s.victim == 0) CHECK(message.find("the rendezvous store on rank 0 does not answer") != std::string::npos);
      else CHECK(message.find(fmt::format("rank {} last started #2", s.victim)) != std::string::npos);
      CHECK(seconds >= s.timeout_s * 0.95);
      CHECK(seconds < s.timeout_s + 5);  // + up to 3 s for status() from a store that does not answer
    }
  }
  MESSAGE(fmt::format("{} {}: survivors reported and exited after {:.1f} s", torchrun ? "torchrun-style" : "mpirun",
                      s.encode(), survivors_s));
  if (!in_time || left_running > (s.mode == "kill" ? 0 : 1)) return;  // keep the folder for a look
  fs::remove_all(dir);
}

bool child_mode() { return std::getenv(kChildVar) != nullptr; }

}  // namespace

TEST_CASE("failure child") {
  if (!child_mode()) return;  // run by the driver below only
  child_main(Scenario::decode(std::getenv(kChildVar)), std::getenv(kDirVar));
}

TEST_CASE("mpirun: a rank killed in a collective") {
  if (child_mode()) return;
  run_scenario({"kill", 1, "cpu", 10}, false);
  run_scenario({"kill", 0, "cpu", 10}, false);  // rank 0 serves the store: its exit closes every connection
}

TEST_CASE("mpirun: a rank that stalls") {
  if (child_mode()) return;
  run_scenario({"sleep", 2, "cpu", 2}, false);
  run_scenario({"stop", 1, "cpu", 2}, false);
  // Rank 0 stopped: its store answers no more, which the others say instead of the ranks behind.
  run_scenario({"stop", 0, "cpu", 2}, false);
}

TEST_CASE("torchrun-style launch on device emu: a rank killed, a rank stopped") {
  if (child_mode()) return;
  if (!has_comm_backend("nccl", DeviceType::EMU)) {
    MESSAGE("skipped: this build has no nccl backend for device emu (available: ", available_backends(), ")");
    return;
  }
  run_scenario({"kill", 2, "emu", 10}, true);
  run_scenario({"stop", 1, "emu", 3}, true);
}
