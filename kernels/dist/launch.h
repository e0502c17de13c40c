// How this process was launched: its rank in the job, read from the variables that the launchers people
// know set. No launcher of our own: mpirun, srun or a torchrun-style launcher starts one process per rank.
//
//   torchrun-style  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   mpirun/mpiexec  OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE (OpenMPI)
//   srun            SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE / SLURM_STEP_TASKS_PER_NODE,
//                   only inside a job step (SLURM_STEP_ID set): a batch script itself is rank 0 of 1
// Checked in that order, so that a torchrun-style launcher run under srun or mpirun wins. A launch that
// sets none of them is a single process (rank 0 of 1).
//
// The rendezvous address (store.h) is MASTER_ADDR:MASTER_PORT where set. Otherwise under mpirun it comes
// from rank 0 through MPI (when built with MPI), and under srun from the job: the first host of
// SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST) and port 20000 + SLURM_JOB_ID mod 10000.
#pragma once
#include <map>
#include <string>

namespace vb::dist {

struct Launch {
  std::string launcher = "none";  // "torchrun", "mpirun", "srun" or "none"
  int rank = 0, world = 1;
  int local_rank = 0, local_world = 1;  // within this node
  std::string master_addr;              // empty: not given (see above)
  int master_port = 0;

  bool distributed() const { return world > 1; }
  std::string describe() const;  // "rank 1 of 4 (local 1 of 2), launched by mpirun"
};

// Reads the launch from `env` (the process environment when null). An Error names the variable that is
// missing, not a number, or out of range (RANK ≥ WORLD_SIZE, a torchrun-style launch without
// MASTER_ADDR), and what was expected.
Launch detect_launch(const std::map<std::string, std::string>* env = nullptr);

// The first host name of a Slurm host list: "node[03-05,9],gpu1" → "node03".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace vb::dist
