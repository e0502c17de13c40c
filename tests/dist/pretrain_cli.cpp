// `videobert pretrain` launched by mpirun, as a user runs it: N ranks train like one process with N times
// the batch (cpu through MPI, emu through the emulated NCCL), a run interrupted on 2 ranks resumes on 1
// and on 4, and a rank that is killed or stalls ends the job within dist_timeout with a message that names
// it, leaving the last complete checkpoint loadable. This program is the driver: it starts mpirun itself.
//
// Tolerance: per-step losses relative 1e-4 (the same float32 computation summed in another order, as in
// tests/dist/data_parallel.cpp; metrics.jsonl prints 17 significant digits).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tensor/safetensors.h"
#include "tests/support/check.h"
#include "tests/support/synth_dataset.h"
#include "train/report.h"

namespace fs = std::filesystem;
using namespace vb;
using Clock = std::chrono::steady_clock;

namespace {

const std::string& binary() {
  static const std::string bin = std::string(VB_BUILD_DIR) + "/videobert";
  return bin;
}

const fs::path& dataset() {
  static const fs::path dir = test::synth_dataset("vb_dist_cli_data", 48, 4, 32);
  return dir;
}

struct Run {
  int status = -1;  // exit status (128 + signal when killed)
  std::string output;
  double seconds = 0;
};

// Runs a shell command, capturing stdout and stderr together.
Run shell(const std::string& command) {
  Run r;
  const auto t0 = Clock::now();
  FILE* p = ::popen(("(" + command + ") 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

std::string mpirun(int ranks) { return fmt::format("{} -np {} --oversubscribe", VB_MPIEXEC, ranks); }

// The common arguments of a small run.
std::string pretrain_args(const fs::path& out, const std::string& device, const std::string& extra) {
  return fmt::format("{} pretrain --config tiny --data {} --out {} --device {} frames=2 image_size=32 max_text_len=12 "
                     "workers=1 eval_every=0 checkpoint_every=0 warmup_steps=1 lr=0.003 sync_bn=true {}",
                     binary(), dataset().string(), out.string(), device, extra);
}

std::vector<nlohmann::json> steps_of(const fs::path& run) {
  std::vector<nlohmann::json> out;
  for (const auto& row : train::read_metrics((run / "metrics.jsonl").string()))
    if (row.contains("loss")) out.push_back(row);
  return out;
}

void check_same_losses(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b, size_t from = 0) {
  REQUIRE(a.size() == b.size());
  for (size_t s = from; s < a.size(); ++s)
    for (const char* k : {"loss", "mlm", "mfm", "matching", "contrastive"}) {
      if (!a[s].contains(k)) continue;
      INFO("step " << a[s]["step"] << " " << k);
      REQUIRE(b[s].contains(k));
      const double x = a[s][k].get<double>(), y = b[s][k].get<double>();
      CHECK(std::abs(x - y) <= 1e-6 + 1e-4 * std::abs(x));
    }
}

// The pids of the processes whose environment says OpenMPI rank `rank` and whose command line names `run`.
std::vector<pid_t> rank_pids(int rank, const fs::path& run) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(e.path() / "cmdline"), env(e.path() / "environ");
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), {}), environ((std::istreambuf_iterator<char>(env)), {});
    if (cmdline.find(run.string()) == std::string::npos || cmdline.find("pretrain") == std::string::npos) continue;
    if (environ.find(fmt::format("OMPI_COMM_WORLD_RANK={}", rank) + '\0') == std::string::npos) continue;
    out.push_back(pid_t(std::stol(name)));
  }
  return out;
}

bool any_alive(const fs::path& run) {
  for (int r = 0; r < 8; ++r)
    if (!rank_pids(r, run).empty()) return true;
  return false;
}

}  // namespace

TEST_CASE("mpirun -np 2 videobert pretrain logs the losses of one process with twice the batch (cpu)") {
  const fs::path one = fs::temp_directory_path() / "vb_dist_cli_one", two = fs::temp_directory_path() / "vb_dist_cli_two";
  fs::remove_all(one);
  fs::remove_all(two);
  const Run a = shell(pretrain_args(one, "cpu", "steps=5 batch_size=8"));
  REQUIRE_MESSAGE(a.status == 0, a.output);
  const Run b = shell(mpirun(2) + " " + pretrain_args(two, "cpu", "steps=5 batch_size=4"));
  REQUIRE_MESSAGE(b.status == 0, b.output);
  CHECK(b.output.find("pretraining single_stream on 2 ranks × cpu (mpi)") != std::string::npos);
  // Rank 0 alone wrote the run: one line per step, the report, the final weights.
  const auto l1 = steps_of(one), l2 = steps_of(two);
  CHECK(l2.size() == 5);
  check_same_losses(l1, l2);
  for (const char* f : {"config.json", "report.md", "model.safetensors", "eval_test.json"}) CHECK(fs::exists(two / f));
}

TEST_CASE("the same through the emulated NCCL (device emu)") {
  const fs::path one = fs::temp_directory_path() / "vb_dist_cli_emu_one",
                 two = fs::temp_directory_path() / "vb_dist_cli_emu_two";
  fs::remove_all(one);
  fs::remove_all(two);
  const std::string small = "steps=2 frames=2 image_size=16 objectives.mfm=0";
  const Run a = shell(pretrain_args(one, "emu", small + " batch_size=4"));
  if (a.output.find("device emu: not available") != std::string::npos) {
    MESSAGE("skipped: this build has no emulator");
    return;
  }
  REQUIRE_MESSAGE(a.status == 0, a.output);
  const Run b = shell(mpirun(2) + " " + pretrain_args(two, "emu", small + " batch_size=2"));
  REQUIRE_MESSAGE(b.status == 0, b.output);
  CHECK(b.output.find("2 ranks × emu (nccl)") != std::string::npos);
  check_same_losses(steps_of(one), steps_of(two));
}

TEST_CASE("a run interrupted on 2 ranks resumes on 1 and on 4 ranks and continues the same trajectory") {
  const fs::path whole = fs::temp_directory_path() / "vb_dist_cli_whole";
  fs::remove_all(whole);
  const Run w = shell(mpirun(2) + " " + pretrain_args(whole, "cpu", "steps=6 batch_size=4"));
  REQUIRE_MESSAGE(w.status == 0, w.output);
  const auto reference = steps_of(whole);
  for (int ranks : {1, 4}) {
    CAPTURE(ranks);
    const fs::path parts = fs::temp_directory_path() / fmt::format("vb_dist_cli_parts_{}", ranks);
    fs::remove_all(parts);
    const Run first = shell(mpirun(2) + " " + pretrain_args(parts, "cpu", "steps=6 batch_size=4") + " --stop-after 3");
    REQUIRE_MESSAGE(first.status == 130, first.output);
    // The same global batch of 8: batch_size 8 on 1 rank, 2 on 4 ranks.
    const Run second = shell(mpirun(ranks) + " " +
                             pretrain_args(parts, "cpu", fmt::format("steps=6 batch_size={}", 8 / ranks)) + " --resume");
    REQUIRE_MESSAGE(second.status == 0, second.output);
    CHECK(second.output.find("written by 2 ranks × batch 4") != std::string::npos);
    check_same_losses(reference, steps_of(parts));
  }
}

// A rank killed (SIGKILL) or stalled (SIGSTOP) mid-run: the job ends within dist_timeout (3 s here) plus
// start-up slack, the survivors' message names the rank, no process is left, and the last complete
// checkpoint resumes.
TEST_CASE("a killed or stalled rank ends the job within dist_timeout, naming the rank; the checkpoint survives") {
  for (const int sig : {SIGKILL, SIGSTOP}) {
    CAPTURE(sig);
    const fs::path run = fs::temp_directory_path() / fmt::format("vb_dist_cli_fail_{}", sig);
    fs::remove_all(run);
    fs::create_directories(run);
    const std::string log = (run / "log.txt").string();
    const std::string cmd = mpirun(3) + " " +
                            pretrain_args(run, "cpu", "steps=100000 batch_size=2 checkpoint_every=2 dist_timeout=3") +
                            " > " + log + " 2>&1";
    pid_t launcher = ::fork();
    REQUIRE(launcher >= 0);
    if (launcher == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Wait for a complete checkpoint, then hit rank 1.
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (Clock::now() < deadline && !fs::exists(run / "checkpoints" / "step_00000004" / "state.json"))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::vector<pid_t> victims = rank_pids(1, run);
    REQUIRE(victims.size() == 1);
    const auto hit = Clock::now();
    ::kill(victims[0], sig);
    int status = 0;
    bool ended = false;
    while (Clock::now() - hit < std::chrono::seconds(60)) {
      if (::waitpid(launcher, &status, WNOHANG) == launcher) {
        ended = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double took = std::chrono::duration<double>(Clock::now() - hit).count();
    if (!ended) {  // clean up before failing
      ::kill(launcher, SIGKILL);
      ::waitpid(launcher, &status, 0);
    }
    std::ifstream in(log);
    const std::string output((std::istreambuf_iterator<char>(in)), {});
    INFO(output);
    REQUIRE(ended);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 0);
    CHECK(took < 3 + 10);  // dist_timeout plus slack for mpirun's tear-down on 2 loaded cores
    CHECK(output.find("rank 1") != std::string::npos);
    MESSAGE((sig == SIGKILL ? "SIGKILL" : "SIGSTOP") << ": the job ended " << took << " s after the signal");
    for (int i = 0; i < 100 && any_alive(run); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK_FALSE(any_alive(run));
    // The newest complete checkpoint loads: one more step on one process.
    const Run resumed = shell(pretrain_args(run, "cpu", "batch_size=6 steps=1000000 dist_timeout=3") + " --resume --stop-after 1");
    CHECK_MESSAGE(resumed.status == 130, resumed.output);
  }
}
