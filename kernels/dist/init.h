// Joining a job: this process's launch, rendezvous store and communicator, made once per process.
//
//   Launch launch = detect_launch();                 // launch.h
//   auto group = init_process_group(launch, {"", Device::parse("emu"), 600});
//   group->comm->all_reduce(t, ReduceOp::Avg)->wait();
//
// Under mpirun (and a build with MPI) MPI is started first: the mpi backend needs it, and it carries the
// rendezvous address and NCCL's unique id from rank 0 when MASTER_ADDR is not set. Otherwise both go
// through the store at MASTER_ADDR:MASTER_PORT (launch.h says where that comes from).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "kernels/dist/communicator.h"
#include "kernels/dist/launch.h"
#include "kernels/dist/store.h"

namespace vb::dist {

// Exchanges bytes from rank 0 to every rank before a communicator exists: MPI_Bcast when MPI runs, else
// the store (rank 0 sets `key`, the others get it).
class Bootstrap {
 public:
  Bootstrap(Store* store, bool use_mpi, double timeout_s = 600)
      : store_(store), use_mpi_(use_mpi), timeout_s_(timeout_s) {}
  // Rank 0's `bytes` on every rank (rank 0 passes them, the others receive them into `bytes`); an Error
  // after timeout_s.
  void broadcast(const std::string& key, std::string& bytes);
  bool uses_mpi() const { return use_mpi_; }

 private:
  Store* store_;
  bool use_mpi_;
  double timeout_s_;
};

struct ProcessGroup {
  Launch launch;
  bool mpi = false;  // MPI was started by this process group (it is finalised at exit, see mpi_start)
  std::unique_ptr<Store> store;
  std::unique_ptr<Communicator> comm;

  // Waits for the communicator's collectives and leaves the store cleanly; destroyed while an exception
  // unwinds the stack, it aborts instead (the other ranks may never reach the collectives it would wait
  // for).
  ~ProcessGroup();
  // After a failure: aborts the communicator and skips MPI_Finalize (which would wait for the ranks that
  // failed), so that this process can exit at once.
  void abort();

 private:
  bool aborted_ = false;
};

// Starts MPI if needed, opens the store, creates the communicator of options.backend for options.device.
// Errors name what is missing: a backend not built (e.g. mpi without OpenMPI), a device the backend does
// not serve, a rendezvous that did not happen within the timeout.
std::unique_ptr<ProcessGroup> init_process_group(const Launch& launch, const CommOptions& options);

// Which backends this build has: "mpi" (OpenMPI found), "nccl" on cuda (NCCL found), "nccl" on emu (the
// emulator is built). For `videobert info`.
std::string available_backends();

// Backends register a factory when the library loads (kernels/cuda/nccl_comm_*.cpp, comm_mpi.cpp).
using CommFactory = std::function<std::unique_ptr<Communicator>(const Launch& launch, const CommOptions& options,
                                                                 Store* store, Bootstrap& bootstrap)>;
void register_comm_backend(const std::string& name, DeviceType device, CommFactory factory);
// Whether backend `name` serves devices of type `device` in this build (tests skip what is not built).
bool has_comm_backend(const std::string& name, DeviceType device);

// MPI, when this build has it (VB_HAVE_MPI): started once with MPI_THREAD_SERIALIZED (the mpi backend
// calls MPI from its one communication thread) and finalised at exit unless a failure said not to
// (ProcessGroup::abort). At exit rather than with the process group, because MPI cannot start twice: a
// process may make several process groups one after another (the tests do).
bool mpi_built();
void mpi_start();
bool mpi_started();

}  // namespace vb::dist
