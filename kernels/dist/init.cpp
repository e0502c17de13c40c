// Joining a job (init.h): the backend registry, MPI's start and end, the rendezvous store's address, and
// init_process_group(), which puts launch, store and communicator together in that order.
#include "kernels/dist/init.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(VB_HAVE_MPI)
#include <mpi.h>
#endif

namespace vb::dist {

namespace {

const char* device_type_name(DeviceType t) {
  switch (t) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::CUDA: return "cuda";
    case DeviceType::EMU: return "emu";
  }
  return "?";
}

// Filled by static initialisers of the backends' files as the library loads: constructed on first use,
// so that their order does not matter.
struct Registry {
  std::mutex mu;
  std::map<std::pair<std::string, DeviceType>, CommFactory> factories;
};
Registry& registry() {
  static Registry r;
  return r;
}

std::mutex mpi_mu;
bool mpi_is_started = false;
bool mpi_skip_finalize = false;  // a process group was aborted: MPI_Finalize would wait for failed ranks

#if defined(VB_HAVE_MPI)
std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, size_t(len));
}

void finalize_at_exit() {
  std::lock_guard lock(mpi_mu);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && !mpi_skip_finalize) MPI_Finalize();
}

// MPI_Bcast of rank 0's bytes over MPI_COMM_WORLD, polled so that it gives up after timeout_s.
void mpi_broadcast_bytes(std::string& bytes, double timeout_s, const std::string& what) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  auto bcast = [&](void* data, int count, MPI_Datatype type) {
    MPI_Request req;
    int rc = MPI_Ibcast(data, count, type, 0, MPI_COMM_WORLD, &req);
    int done = 0;
    while (rc == MPI_SUCCESS && !(rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE), done)) {
      VB_CHECK(std::chrono::steady_clock::now() < deadline, "[rank {}] {}: rank 0 did not broadcast it within {} s "
               "(has rank 0 failed or not started?)", rank, what, timeout_s);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    VB_CHECK(rc == MPI_SUCCESS, "[rank {}] {}: MPI_Ibcast failed: {}", rank, what, mpi_error(rc));
  };
  int64_t n = int64_t(bytes.size());
  bcast(&n, 1, MPI_INT64_T);
  VB_CHECK(n <= int64_t(1) << 30, "[rank {}] {}: {} bytes is more than a bootstrap message may hold", rank, what, n);
  if (rank != 0) bytes.resize(size_t(n));
  if (n > 0) bcast(bytes.data(), int(n), MPI_BYTE);
}

// Where the other ranks reach rank 0's store when the launch names no MASTER_ADDR: the loopback when
// they all run on this node, else an IPv4 address of this host that is not the loopback (the host
// name's when it resolves to one: Debian maps it to 127.0.1.1, hence the interface list after it).
std::string reachable_address(const Launch& launch) {
  if (launch.local_world == launch.world) return "127.0.0.1";
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  auto loopback = [](in_addr a) { return (ntohl(a.s_addr) >> 24) == 127; };
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host, nullptr, &hints, &found) == 0) {
    std::string addr;
    for (addrinfo* ai = found; ai && addr.empty(); ai = ai->ai_next) {
      const in_addr a = reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr;
      if (!loopback(a)) addr = host;
    }
    ::freeaddrinfo(found);
    if (!addr.empty()) return addr;
  }
  ifaddrs* ifs = nullptr;
  std::string addr;
  if (::getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i && addr.empty(); i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
      const in_addr a = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr;
      char text[INET_ADDRSTRLEN];
      if (!loopback(a) && ::inet_ntop(AF_INET, &a, text, sizeof(text))) addr = text;
    }
    ::freeifaddrs(ifs);
  }
  VB_CHECK(!addr.empty(), "rank 0 (host '{}') has no IPv4 address that the other nodes can reach (its name resolves "
           "to the loopback and no interface is up): set MASTER_ADDR and MASTER_PORT", host);
  return addr;
}
#endif

std::string default_backend(DeviceType t) { return t == DeviceType::CPU ? "mpi" : "nccl"; }

// The factory of `backend` for `device`, or an Error saying what is missing.
CommFactory find_factory(const std::string& backend, Device device) {
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    const auto it = r.factories.find({backend, device.type});
    if (it != r.factories.end()) return it->second;
  }
  const std::string have = available_backends();
  if (backend == "mpi" && !mpi_built())
    fail("device {} needs the mpi backend: this build has no MPI (install libopenmpi-dev, rebuild, and launch with "
         "mpirun); this build has: {}", device, have);
  if (backend == "mpi")
    fail("the mpi backend serves device cpu, not {}: use the nccl backend for cuda and emu (this build has: {})",
         device, have);
  if (backend == "nccl" && device.type == DeviceType::CPU)
    fail("the nccl backend serves devices cuda and emu, not cpu: device cpu uses the mpi backend (this build has: {})",
         have);
  if (backend == "nccl")
    fail("device {} needs the nccl backend, which this build lacks for {} ({}; this build has: {})", device,
         device_type_name(device.type),
         device.type == DeviceType::CUDA ? "NCCL was not found when building: set NCCL_ROOT"
                                         : "the emulated NCCL is not built",
         have);
  fail("unknown communication backend '{}' (expected mpi or nccl; this build has: {})", backend, have);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

void register_comm_backend(const std::string& name, DeviceType device, CommFactory factory) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.factories[{name, device}] = std::move(factory);
}

bool has_comm_backend(const std::string& name, DeviceType device) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.factories.count({name, device}) > 0;
}

std::string available_backends() {
  std::map<std::string, std::vector<std::string>> devices;  // backend → device types, in name order
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    for (const auto& [key, factory] : r.factories) devices[key.first].push_back(device_type_name(key.second));
  }
  if (devices.empty()) return "none (training runs on one process)";
  std::vector<std::string> parts;
  for (const auto& [name, types] : devices) {
    std::string part = fmt::format("{} on {}", name, fmt::join(types, ", "));
#if defined(VB_HAVE_MPI)
    if (name == "mpi") {
      // Callable before MPI_Init; its first clause is the name and version ("Open MPI v4.1.4").
      char version[MPI_MAX_LIBRARY_VERSION_STRING];
      int len = 0;
      MPI_Get_library_version(version, &len);
      std::string v(version, size_t(len));
      v = v.substr(0, v.find_first_of(",\n"));
      part += fmt::format(" ({})", v);
    }
#endif
    parts.push_back(part);
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

bool mpi_built() {
#if defined(VB_HAVE_MPI)
  return true;
#else
  return false;
#endif
}

void mpi_start() {
#if defined(VB_HAVE_MPI)
  std::lock_guard lock(mpi_mu);
  if (mpi_is_started) return;
  int initialized = 0, provided = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    // Someone else started it (the program itself): use it, and leave its end to them.
    MPI_Query_thread(&provided);
  } else {
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    VB_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed: {}", mpi_error(rc));
    std::atexit(finalize_at_exit);
  }
  VB_CHECK(provided >= MPI_THREAD_SERIALIZED, "MPI provides thread level {}, but the mpi backend needs "
           "MPI_THREAD_SERIALIZED ({}): its communication thread calls MPI while the main thread computes",
           provided, int(MPI_THREAD_SERIALIZED));
  mpi_is_started = true;
#else
  fail("MPI was requested, but this build has no MPI (install libopenmpi-dev and rebuild)");
#endif
}

bool mpi_started() {
  std::lock_guard lock(mpi_mu);
  return mpi_is_started;
}

void Bootstrap::broadcast(const std::string& key, std::string& bytes) {
  if (use_mpi_) {
#if defined(VB_HAVE_MPI)
    mpi_broadcast_bytes(bytes, timeout_s_, fmt::format("bootstrap '{}'", key));
    return;
#endif
  }
  VB_CHECK(store_, "Bootstrap::broadcast('{}'): neither MPI nor a rendezvous store", key);
  if (store_->rank() == 0) store_->set(key, bytes);
  else bytes = store_->get(key);
}

// ---------------------------------------------------------------------------------------------------

ProcessGroup::~ProcessGroup() {
  if (!aborted_ && std::uncaught_exceptions() > 0) abort();
  comm.reset();  // waits for its collectives unless aborted
  store.reset();
}

void ProcessGroup::abort() {
  aborted_ = true;
  if (comm) comm->abort();
  if (store) store->abort();
  std::lock_guard lock(mpi_mu);
  mpi_skip_finalize = true;
}

std::unique_ptr<ProcessGroup> init_process_group(const Launch& launch, const CommOptions& options) {
  VB_CHECK(launch.world >= 1 && launch.rank >= 0 && launch.rank < launch.world,
           "init_process_group: rank {} of {} is not a place in a job", launch.rank, launch.world);
  VB_CHECK(options.timeout_s > 0, "init_process_group: timeout {} s must be positive", options.timeout_s);
  const std::string backend = options.backend.empty() ? default_backend(options.device.type) : options.backend;
  const CommFactory factory = find_factory(backend, options.device);

  const bool under_mpirun = launch.launcher == "mpirun" || std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  if (backend == "mpi")
    VB_CHECK(under_mpirun || launch.launcher == "srun" || launch.world == 1, "device {} with the mpi backend needs "
             "its {} processes started by mpirun/mpiexec, but this job was launched by {} ({}): run `mpirun -np {} "
             "…`, or train on device cuda or emu with the nccl backend", options.device, launch.world,
             launch.launcher, launch.describe(), launch.world);
  const bool use_mpi = backend == "mpi" || (under_mpirun && mpi_built());

  auto group = std::make_unique<ProcessGroup>();
  group->launch = launch;
  if (use_mpi) {
    group->mpi = !mpi_started();
    mpi_start();
#if defined(VB_HAVE_MPI)
    int mpi_rank = 0, mpi_world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_world);
    VB_CHECK(mpi_rank == launch.rank && mpi_world == launch.world, "MPI_COMM_WORLD has {} processes (this one rank "
             "{}), but the launch says {}: the mpi backend needs all the job's processes started by one mpirun",
             mpi_world, mpi_rank, launch.describe());
#endif
  }

  std::string addr = launch.master_addr;
  int port = launch.master_port;
  if (addr.empty() && launch.world == 1) addr = "127.0.0.1";  // port 0: any free port
  if (!addr.empty()) {
    group->store = std::make_unique<Store>(addr, port, launch.rank, launch.world, options.timeout_s);
  } else {
    VB_CHECK(use_mpi, "rank {}: launched by {} without MASTER_ADDR and MASTER_PORT, and {}, so the ranks cannot find "
             "rank 0's rendezvous store: set MASTER_ADDR (rank 0's host) and MASTER_PORT (a free port)", launch.rank,
             launch.launcher, mpi_built() ? "not under mpirun" : "this build has no MPI to carry the address");
#if defined(VB_HAVE_MPI)
    // Rank 0 listens on a free port and sends "host:port", or "!" and its error so that the others fail
    // with rank 0's reason rather than a timeout.
    std::string where;
    std::string error;
    if (launch.rank == 0) {
      try {
        group->store = std::make_unique<Store>("", 0, 0, launch.world, options.timeout_s);
        where = fmt::format("{}:{}", reachable_address(launch), group->store->port());
      } catch (const Error& e) {
        error = e.what();
        where = "!" + error;
      }
    }
    mpi_broadcast_bytes(where, options.timeout_s, "the rendezvous address");
    VB_CHECK(error.empty(), "{}", error);
    VB_CHECK(where.empty() || where[0] != '!', "rank {}: rank 0 could not open the rendezvous store: {}", launch.rank,
             where.substr(1));
    if (launch.rank != 0) {
      const size_t colon = where.rfind(':');
      VB_CHECK(colon != std::string::npos, "rank {}: rank 0 sent '{}' as the rendezvous address", launch.rank, where);
      group->store = std::make_unique<Store>(where.substr(0, colon), std::stoi(where.substr(colon + 1)), launch.rank,
                                             launch.world, options.timeout_s);
    }
#endif
  }
  group->store->wait_for_all();

  Bootstrap bootstrap(group->store.get(), use_mpi, options.timeout_s);
  group->comm = factory(launch, options, group->store.get(), bootstrap);
  VB_CHECK(group->comm, "init_process_group: the {} backend made no communicator for device {}", backend,
           options.device);
  return group;
}

}  // namespace vb::dist
