// detect_launch() on hand-made environments of each launcher (torchrun-style, mpirun, srun), their
// precedence, every error it raises; first_slurm_host() on Slurm host lists.
#include <map>
#include <string>

#include "kernels/dist/launch.h"
#include "tests/support/check.h"

using vb::dist::detect_launch;
using vb::dist::first_slurm_host;
using vb::dist::Launch;
using Env = std::map<std::string, std::string>;

// The message must contain `text`; the macro keeps the failing line's number.
#define CHECK_CONTAINS(message, text)                                                         \
  do {                                                                                      \
    const std::string m_ = (message);                                                       \
    CHECK_MESSAGE(m_.find(text) != std::string::npos, "expected \"", text, "\" in: ", m_); \
  } while (0)

namespace {

Launch launch_of(const Env& env) { return detect_launch(&env); }
std::string error_of_env(const Env& env) {
  return vb::test::error_of([&] { launch_of(env); });
}

const Env torchrun = {{"RANK", "3"},        {"WORLD_SIZE", "8"},          {"LOCAL_RANK", "1"},
                      {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node01"}, {"MASTER_PORT", "29500"}};
const Env openmpi = {{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
const Env slurm = {{"SLURM_STEP_ID", "0"},          {"SLURM_PROCID", "5"},         {"SLURM_NTASKS", "7"},
                   {"SLURM_LOCALID", "1"},          {"SLURM_NODEID", "2"},         {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1"},
                   {"SLURM_STEP_NODELIST", "gpu[07-10]"}, {"SLURM_JOB_NODELIST", "gpu[01-20]"}, {"SLURM_JOB_ID", "123456"}};

Env with(Env env, const Env& changes) {
  for (const auto& [k, v] : changes) env[k] = v;
  return env;
}
Env without(Env env, const std::string& key) {
  env.erase(key);
  return env;
}

}  // namespace

TEST_CASE("no launcher: a single process") {
  const Launch l = launch_of({});
  CHECK(l.launcher == "none");
  CHECK(l.rank == 0);
  CHECK(l.world == 1);
  CHECK(l.local_rank == 0);
  CHECK(l.local_world == 1);
  CHECK(l.master_addr.empty());
  CHECK(!l.distributed());
  CHECK(l.describe() == "rank 0 of 1 (a single process, no launcher)");
  // MASTER_* alone launch nothing, and a Slurm batch script (no job step) is one process too.
  CHECK(launch_of({{"MASTER_ADDR", "x"}}).launcher == "none");
  CHECK(launch_of(without(slurm, "SLURM_STEP_ID")).launcher == "none");
}

TEST_CASE("torchrun-style launch") {
  const Launch l = launch_of(torchrun);
  CHECK(l.launcher == "torchrun");
  CHECK(l.rank == 3);
  CHECK(l.world == 8);
  CHECK(l.local_rank == 1);
  CHECK(l.local_world == 2);
  CHECK(l.master_addr == "node01");
  CHECK(l.master_port == 29500);
  CHECK(l.distributed());
  CHECK(l.describe() == "rank 3 of 8 (local 1 of 2), launched by torchrun");

  // Without the local variables every rank is on one node.
  const Launch one_node = launch_of(without(without(torchrun, "LOCAL_RANK"), "LOCAL_WORLD_SIZE"));
  CHECK(one_node.local_rank == 3);
  CHECK(one_node.local_world == 8);
  // One process needs no rendezvous address.
  const Launch single = launch_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  CHECK(single.world == 1);
  CHECK(single.master_addr.empty());
}

TEST_CASE("torchrun-style launch: errors name the variable") {
  CHECK_CONTAINS(error_of_env(without(torchrun, "WORLD_SIZE")), "WORLD_SIZE is not set");
  CHECK_CONTAINS(error_of_env(without(torchrun, "RANK")), "RANK is not set");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"RANK", "8"}})), "RANK=8 but WORLD_SIZE=8");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"RANK", "x"}})), "RANK='x' is not a non-negative integer");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"RANK", "-1"}})), "RANK='-1'");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"RANK", "3 "}})), "RANK='3 '");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"WORLD_SIZE", "0"}, {"RANK", "0"}})), "WORLD_SIZE=0");
  CHECK_CONTAINS(error_of_env(without(torchrun, "MASTER_ADDR")), "MASTER_ADDR is not set");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"MASTER_ADDR", ""}})), "MASTER_ADDR is empty");
  CHECK_CONTAINS(error_of_env(without(torchrun, "MASTER_PORT")), "MASTER_PORT is not set");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"MASTER_PORT", "70000"}})), "MASTER_PORT=70000 is not a TCP port");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"MASTER_PORT", "0"}})), "MASTER_PORT=0");
  CHECK_CONTAINS(error_of_env(without(torchrun, "LOCAL_WORLD_SIZE")), "LOCAL_WORLD_SIZE is not set");
  CHECK_CONTAINS(error_of_env(without(torchrun, "LOCAL_RANK")), "LOCAL_RANK is not set");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"LOCAL_RANK", "2"}})), "LOCAL_RANK=2 but LOCAL_WORLD_SIZE=2");
  CHECK_CONTAINS(error_of_env(with(torchrun, {{"LOCAL_WORLD_SIZE", "9"}})), "LOCAL_WORLD_SIZE=9");
}

TEST_CASE("mpirun (OpenMPI) launch") {
  const Launch l = launch_of(openmpi);
  CHECK(l.launcher == "mpirun");
  CHECK(l.rank == 2);
  CHECK(l.world == 4);
  CHECK(l.local_rank == 0);
  CHECK(l.local_world == 2);
  CHECK(l.master_addr.empty());  // MPI carries it from rank 0
  CHECK(l.describe() == "rank 2 of 4 (local 0 of 2), launched by mpirun");
  const Launch given = launch_of(with(openmpi, {{"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}}));
  CHECK(given.master_addr == "10.0.0.1");
  CHECK(given.master_port == 1234);

  CHECK_CONTAINS(error_of_env(without(openmpi, "OMPI_COMM_WORLD_RANK")), "OMPI_COMM_WORLD_RANK is not set");
  CHECK_CONTAINS(error_of_env(without(openmpi, "OMPI_COMM_WORLD_SIZE")), "OMPI_COMM_WORLD_SIZE is not set");
  CHECK_CONTAINS(error_of_env(with(openmpi, {{"OMPI_COMM_WORLD_RANK", "4"}})), "OMPI_COMM_WORLD_RANK=4 but OMPI_COMM_WORLD_SIZE=4");
  CHECK_CONTAINS(error_of_env(with(openmpi, {{"OMPI_COMM_WORLD_LOCAL_RANK", "2"}})), "OMPI_COMM_WORLD_LOCAL_RANK=2 but OMPI_COMM_WORLD_LOCAL_SIZE=2");
  CHECK_CONTAINS(error_of_env(with(openmpi, {{"MASTER_ADDR", "h"}})), "MASTER_PORT is not set");
  CHECK_CONTAINS(error_of_env(with(openmpi, {{"MASTER_PORT", "1"}})), "MASTER_ADDR is not set");
}

TEST_CASE("srun launch inside a job step") {
  const Launch l = launch_of(slurm);
  CHECK(l.launcher == "srun");
  CHECK(l.rank == 5);
  CHECK(l.world == 7);
  CHECK(l.local_rank == 1);
  CHECK(l.local_world == 2);  // node 2 of "2(x3),1"
  CHECK(l.master_addr == "gpu07");  // the step's first host, not the job's
  CHECK(l.master_port == 20000 + 123456 % 10000);

  const Launch last_node = launch_of(with(slurm, {{"SLURM_NODEID", "3"}, {"SLURM_PROCID", "6"}, {"SLURM_LOCALID", "0"}}));
  CHECK(last_node.local_world == 1);
  CHECK(launch_of(without(slurm, "SLURM_STEP_NODELIST")).master_addr == "gpu01");
  const Launch given = launch_of(with(slurm, {{"MASTER_ADDR", "head"}, {"MASTER_PORT", "4000"}}));
  CHECK(given.master_addr == "head");
  CHECK(given.master_port == 4000);
  // The job's tasks per node serve when the step's are absent; one entry needs no SLURM_NODEID.
  const Launch per_node = launch_of(with(without(without(slurm, "SLURM_STEP_TASKS_PER_NODE"), "SLURM_NODEID"),
                                         {{"SLURM_NTASKS_PER_NODE", "4"}, {"SLURM_NTASKS", "8"}}));
  CHECK(per_node.local_world == 4);

  CHECK_CONTAINS(error_of_env(without(slurm, "SLURM_NTASKS")), "SLURM_NTASKS is not set");
  CHECK_CONTAINS(error_of_env(without(slurm, "SLURM_LOCALID")), "SLURM_LOCALID is not set");
  CHECK_CONTAINS(error_of_env(with(slurm, {{"SLURM_PROCID", "7"}})), "SLURM_PROCID=7 but SLURM_NTASKS=7");
  CHECK_CONTAINS(error_of_env(without(slurm, "SLURM_NODEID")), "SLURM_NODEID is not set");
  CHECK_CONTAINS(error_of_env(with(slurm, {{"SLURM_NODEID", "4"}})), "SLURM_NODEID=4 but SLURM_STEP_TASKS_PER_NODE='2(x3),1' lists 4 nodes");
  CHECK_CONTAINS(error_of_env(without(slurm, "SLURM_STEP_TASKS_PER_NODE")), "neither SLURM_STEP_TASKS_PER_NODE nor SLURM_NTASKS_PER_NODE");
  CHECK_CONTAINS(error_of_env(with(slurm, {{"SLURM_STEP_TASKS_PER_NODE", "2(3)"}})), "SLURM_STEP_TASKS_PER_NODE='2(3)' is not a Slurm task count list");
  CHECK_CONTAINS(error_of_env(with(slurm, {{"SLURM_LOCALID", "2"}})), "SLURM_LOCALID=2 but SLURM_STEP_TASKS_PER_NODE=2");
  CHECK_CONTAINS(error_of_env(without(without(slurm, "SLURM_STEP_NODELIST"), "SLURM_JOB_NODELIST")), "neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST");
  CHECK_CONTAINS(error_of_env(without(slurm, "SLURM_JOB_ID")), "SLURM_JOB_ID is not set");
}

TEST_CASE("precedence: torchrun-style, then mpirun, then srun") {
  Env all = torchrun;
  for (const Env* e : {&openmpi, &slurm})
    for (const auto& [k, v] : *e) all[k] = v;
  CHECK(launch_of(all).launcher == "torchrun");
  CHECK(launch_of(without(without(all, "RANK"), "WORLD_SIZE")).launcher == "mpirun");
  Env mpi_and_slurm = slurm;
  for (const auto& [k, v] : openmpi) mpi_and_slurm[k] = v;
  CHECK(launch_of(mpi_and_slurm).launcher == "mpirun");
  // WORLD_SIZE alone already means a torchrun-style launch (and then RANK is missing).
  CHECK_CONTAINS(error_of_env(with(openmpi, {{"WORLD_SIZE", "4"}})), "RANK is not set");
}

TEST_CASE("first_slurm_host") {
  CHECK(first_slurm_host("node[03-05,9],gpu1") == "node03");
  CHECK(first_slurm_host("gpu1") == "gpu1");
  CHECK(first_slurm_host("a,b[1-2]") == "a");
  CHECK(first_slurm_host("node[7]") == "node7");
  CHECK(first_slurm_host("node[9,3-5]") == "node9");
  CHECK(first_slurm_host("rack[2-3]-node[007,9]") == "rack2-node007");
  CHECK(first_slurm_host("node[10-12]-ib,other") == "node10-ib");
  CHECK_CONTAINS(vb::test::error_of([] { first_slurm_host(""); }), "names no host");
  CHECK_CONTAINS(vb::test::error_of([] { first_slurm_host("node[1-2"); }), "is not closed");
  CHECK_CONTAINS(vb::test::error_of([] { first_slurm_host("node[a-b]"); }), "does not start with a number");
  CHECK_CONTAINS(vb::test::error_of([] { first_slurm_host("node[]"); }), "does not start with a number");
}
