// Reads this process's place in the job from the launcher's environment variables (launch.h lists them).
// Every number is parsed strictly, so that a typo in a job script fails here with the variable's name
// rather than later as a rendezvous that never happens.
#include "kernels/dist/launch.h"

#include <cstdlib>
#include <optional>
#include <vector>

#include "tensor/error.h"

namespace vb::dist {

std::string Launch::describe() const {
  if (launcher == "none") return fmt::format("rank {} of {} (a single process, no launcher)", rank, world);
  return fmt::format("rank {} of {} (local {} of {}), launched by {}", rank, world, local_rank, local_world, launcher);
}

namespace {

class Env {
 public:
  explicit Env(const std::map<std::string, std::string>* env) : env_(env) {}

  std::optional<std::string> get(const std::string& name) const {
    if (env_) {
      const auto it = env_->find(name);
      if (it == env_->end()) return std::nullopt;
      return it->second;
    }
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  }
  bool has(const std::string& name) const { return get(name).has_value(); }

  // The integer in `name`, which must be set; `launcher` and `expected` go into the messages.
  int integer(const std::string& name, const char* launcher, const std::string& expected) const {
    const auto v = get(name);
    VB_CHECK(v, "{} launch: {} is not set; expected {}", launcher, name, expected);
    return parse(name, *v, launcher, expected);
  }
  int integer_or(const std::string& name, int fallback, const char* launcher, const std::string& expected) const {
    const auto v = get(name);
    return v ? parse(name, *v, launcher, expected) : fallback;
  }

  static int parse(const std::string& name, const std::string& v, const char* launcher, const std::string& expected) {
    // Whole string, decimal, no sign: a rank, size or port is never negative.
    bool ok = !v.empty() && v.size() <= 9;
    for (char c : v) ok = ok && c >= '0' && c <= '9';
    VB_CHECK(ok, "{} launch: {}='{}' is not a non-negative integer; expected {}", launcher, name, v, expected);
    return std::stoi(v);
  }

 private:
  const std::map<std::string, std::string>* env_;
};

// MASTER_ADDR and MASTER_PORT, both or neither (`required`: a torchrun-style launch needs them).
void read_master(const Env& env, const char* launcher, bool required, Launch& l) {
  const auto addr = env.get("MASTER_ADDR");
  const bool has_port = env.has("MASTER_PORT");
  if (!addr && !has_port && !required) return;
  VB_CHECK(addr && !addr->empty(), "{} launch of {} ranks: MASTER_ADDR is {}; expected the host name or address of "
           "rank 0, where the rendezvous store listens", launcher, l.world, addr ? "empty" : "not set");
  l.master_addr = *addr;
  l.master_port = env.integer("MASTER_PORT", launcher, "the TCP port (1-65535) the rendezvous store of rank 0 "
                              "listens on, e.g. 29500");
  VB_CHECK(l.master_port >= 1 && l.master_port <= 65535, "{} launch: MASTER_PORT={} is not a TCP port (1-65535)",
           launcher, l.master_port);
}

void check_ranks(const Launch& l, const char* rank_var, const char* world_var, const char* local_rank_var,
                 const char* local_world_var) {
  VB_CHECK(l.world >= 1, "{} launch: {}={}; expected at least 1 process", l.launcher, world_var, l.world);
  VB_CHECK(l.rank < l.world, "{} launch: {}={} but {}={}; expected a rank in [0, {})", l.launcher, rank_var, l.rank,
           world_var, l.world, l.world);
  VB_CHECK(l.local_world >= 1 && l.local_world <= l.world, "{} launch: {}={}; expected 1 to {}={} processes on this "
           "node", l.launcher, local_world_var, l.local_world, world_var, l.world);
  VB_CHECK(l.local_rank < l.local_world, "{} launch: {}={} but {}={}; expected a local rank in [0, {})", l.launcher,
           local_rank_var, l.local_rank, local_world_var, l.local_world, l.local_world);
}

Launch from_torchrun(const Env& env) {
  Launch l;
  l.launcher = "torchrun";
  const char* who = "torchrun-style";
  l.rank = env.integer("RANK", who, "this process's rank (0 to WORLD_SIZE-1), set with WORLD_SIZE");
  l.world = env.integer("WORLD_SIZE", who, "the number of processes, set with RANK");
  // A torchrun-style launcher that gives no local variables runs every rank on one node.
  if (env.has("LOCAL_RANK") || env.has("LOCAL_WORLD_SIZE")) {
    l.local_rank = env.integer("LOCAL_RANK", who, "this process's rank on its node, set with LOCAL_WORLD_SIZE");
    l.local_world = env.integer("LOCAL_WORLD_SIZE", who, "the number of processes on this node, set with LOCAL_RANK");
  } else {
    l.local_rank = l.rank;
    l.local_world = l.world;
  }
  check_ranks(l, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE");
  read_master(env, who, l.world > 1, l);
  return l;
}

Launch from_openmpi(const Env& env) {
  Launch l;
  l.launcher = "mpirun";
  const char* who = "mpirun (OpenMPI)";
  l.world = env.integer("OMPI_COMM_WORLD_SIZE", who, "the number of processes");
  l.rank = env.integer("OMPI_COMM_WORLD_RANK", who, "this process's rank, which mpirun sets beside "
                       "OMPI_COMM_WORLD_SIZE");
  l.local_rank = env.integer_or("OMPI_COMM_WORLD_LOCAL_RANK", l.rank, who, "this process's rank on its node");
  l.local_world = env.integer_or("OMPI_COMM_WORLD_LOCAL_SIZE", l.world, who, "the number of processes on this node");
  check_ranks(l, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
              "OMPI_COMM_WORLD_LOCAL_SIZE");
  read_master(env, who, false, l);
  return l;
}

// Slurm's compressed task counts: "2(x3),1" is 2, 2, 2, 1 (one entry per node of the step).
std::vector<int> expand_tasks_per_node(const std::string& name, const std::string& s) {
  std::vector<int> out;
  size_t i = 0;
  auto fail_here = [&] {
    fail("srun launch: {}='{}' is not a Slurm task count list such as '2(x3),1'", name, s);
  };
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 6) fail_here();
    const int count = std::stoi(s.substr(i, j - i));
    int repeat = 1;
    if (j < s.size() && s[j] == '(') {
      if (j + 1 >= s.size() || s[j + 1] != 'x') fail_here();
      size_t k = j + 2;
      while (k < s.size() && s[k] >= '0' && s[k] <= '9') ++k;
      if (k == j + 2 || k - j - 2 > 6 || k >= s.size() || s[k] != ')') fail_here();
      repeat = std::stoi(s.substr(j + 2, k - j - 2));
      j = k + 1;
    }
    out.insert(out.end(), size_t(repeat), count);
    if (j < s.size()) {
      if (s[j] != ',') fail_here();
      ++j;
    }
    i = j;
  }
  if (out.empty()) fail_here();
  return out;
}

Launch from_slurm(const Env& env) {
  Launch l;
  l.launcher = "srun";
  const char* who = "srun (Slurm job step)";
  l.rank = env.integer("SLURM_PROCID", who, "this task's rank in the job step");
  l.world = env.integer("SLURM_NTASKS", who, "the number of tasks in the job step (srun --ntasks)");
  l.local_rank = env.integer("SLURM_LOCALID", who, "this task's rank on its node");
  // The step's own count first: SLURM_NTASKS_PER_NODE is the job's request and may be absent.
  std::string per_node_var = "SLURM_STEP_TASKS_PER_NODE";
  auto per_node = env.get(per_node_var);
  if (!per_node) {
    per_node_var = "SLURM_NTASKS_PER_NODE";
    per_node = env.get(per_node_var);
  }
  VB_CHECK(per_node, "{} launch: neither SLURM_STEP_TASKS_PER_NODE nor SLURM_NTASKS_PER_NODE is set; expected the "
           "number of tasks on each node", who);
  const std::vector<int> counts = expand_tasks_per_node(per_node_var, *per_node);
  int node = 0;
  if (counts.size() > 1) {
    node = env.integer("SLURM_NODEID", who, fmt::format("this node's index in the step, as {} lists {} nodes",
                                                        per_node_var, counts.size()));
    VB_CHECK(node < int(counts.size()), "{} launch: SLURM_NODEID={} but {}='{}' lists {} nodes", who, node,
             per_node_var, *per_node, counts.size());
  }
  l.local_world = counts[size_t(node)];
  check_ranks(l, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", per_node_var.c_str());
  read_master(env, who, false, l);
  if (l.master_addr.empty() && l.world > 1) {
    std::string list_var = "SLURM_STEP_NODELIST";
    auto nodes = env.get(list_var);
    if (!nodes) {
      list_var = "SLURM_JOB_NODELIST";
      nodes = env.get(list_var);
    }
    VB_CHECK(nodes, "{} launch without MASTER_ADDR: neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set, so "
             "rank 0's host is unknown; set MASTER_ADDR and MASTER_PORT", who);
    l.master_addr = first_slurm_host(*nodes);
    const int job = env.integer("SLURM_JOB_ID", who, "the job's id, from which the rendezvous port is derived "
                                "(or set MASTER_PORT)");
    // Distinct jobs sharing a node get distinct ports.
    l.master_port = 20000 + job % 10000;
  }
  return l;
}

}  // namespace

Launch detect_launch(const std::map<std::string, std::string>* env_map) {
  const Env env(env_map);
  if (env.has("RANK") || env.has("WORLD_SIZE")) return from_torchrun(env);
  if (env.has("OMPI_COMM_WORLD_SIZE") || env.has("OMPI_COMM_WORLD_RANK")) return from_openmpi(env);
  // A batch script has SLURM_PROCID too but is one process: only a job step (srun) is a launch.
  if (env.has("SLURM_STEP_ID") && env.has("SLURM_PROCID")) return from_slurm(env);
  return Launch{};
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry, up to a comma outside brackets: "node[03-05,9]-ib,gpu1" → "node[03-05,9]-ib".
  // Within each bracket the first item's first number is taken as written (leading zeros are part of
  // the name): "node[03-05,9]-ib" → "node03-ib".
  std::string host;
  size_t i = 0;
  while (i < nodelist.size() && nodelist[i] != ',') {
    if (nodelist[i] != '[') {
      host += nodelist[i++];
      continue;
    }
    const size_t close = nodelist.find(']', i);
    VB_CHECK(close != std::string::npos, "Slurm host list '{}': '[' at {} is not closed", nodelist, i);
    const std::string inside = nodelist.substr(i + 1, close - i - 1);
    const size_t end = inside.find_first_of(",-");
    const std::string first = inside.substr(0, end);
    VB_CHECK(!first.empty() && first.find_first_not_of("0123456789") == std::string::npos,
             "Slurm host list '{}': '[{}]' does not start with a number", nodelist, inside);
    host += first;
    i = close + 1;
  }
  VB_CHECK(!host.empty(), "Slurm host list '{}' names no host", nodelist);
  return host;
}

}  // namespace vb::dist
