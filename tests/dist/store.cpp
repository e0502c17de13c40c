// dist-ranks: 3
// The rendezvous store (store.h) across three processes started by mpirun: set/get between ranks
// (binary values, a large one, a key set late), wait_for_all, progress reports and status(), and the
// errors of a second store: a key never set, a rank claimed twice, a job of another size, a port that
// nobody serves. The job's own store comes from init_process_group (its address travels by MPI); the
// second one is made here, its port passed through the first.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "kernels/dist/init.h"
#include "tests/support/check.h"
#include "tests/support/free_port.h"

using namespace vb;
using namespace vb::dist;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Every rank reaches `tag` before any leaves it: a barrier made of store keys, so that it reports no
// collective progress of its own.
void store_barrier(Store& store, const std::string& tag) {
  store.set(fmt::format("barrier/{}/{}", tag, store.rank()), "");
  for (int r = 0; r < store.world(); ++r) store.get(fmt::format("barrier/{}/{}", tag, r));
}


}  // namespace

TEST_CASE("the rendezvous store across ranks") {
  const Launch launch = detect_launch();
  REQUIRE_MESSAGE(launch.world == 3, "run under mpirun -np 3 (ctest does)");
  auto group = init_process_group(launch, CommOptions{"mpi", Device(), 30});
  Store& store = *group->store;
  const int me = store.rank(), world = store.world();
  REQUIRE(me == launch.rank);
  REQUIRE(world == 3);
  CHECK(store.port() > 0);

  SUBCASE("set and get between ranks") {
    // Binary values (a NUL, every byte value) and one of 1 MiB.
    std::string binary;
    for (int b = 0; b < 256; ++b) binary += char(b);
    store.set(fmt::format("rank/{}", me), fmt::format("from rank {}", me) + binary);
    if (me == 1) store.set("big", std::string(size_t(1) << 20, 'x'));
    for (int r = 0; r < world; ++r) CHECK(store.get(fmt::format("rank/{}", r)) == fmt::format("from rank {}", r) + binary);
    CHECK(store.get("big") == std::string(size_t(1) << 20, 'x'));
    // A get waits for a key that is set later; overwriting replaces the value.
    store_barrier(store, "before-late");
    const auto start = Clock::now();
    if (me == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      store.set("late", "first");
    }
    CHECK(store.get("late") == "first");
    if (me != 0) CHECK(seconds_since(start) > 0.2);
    store_barrier(store, "after-late");
    if (me == 2) store.set("late", "second");
    store_barrier(store, "overwritten");
    CHECK(store.get("late") == "second");
    store.wait_for_all();  // everyone is there already: returns at once
  }

  SUBCASE("progress and status") {
    store.report_progress(uint64_t(40 + me));
    // Heartbeats carry progress about every 100 ms; a store barrier afterwards and a wait make sure that
    // each rank's report has reached rank 0.
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    store_barrier(store, "progress");
    const auto status = store.status();
    REQUIRE(status.size() == 3);
    for (int r = 0; r < world; ++r) {
      CHECK_MESSAGE(status[size_t(r)].started == 40 + r, "rank ", r);
      CHECK_MESSAGE(!status[size_t(r)].exited, "rank ", r);
      CHECK_MESSAGE(status[size_t(r)].seconds_silent < 2.0, "rank ", r, " silent for ", status[size_t(r)].seconds_silent);
    }
    CHECK(store.exited_rank() == -1);
  }

  SUBCASE("a second store: errors, and a rank that leaves after a failure") {
    // Rank 0 serves on a free port, given to the others through the job's store; a short timeout.
    const double timeout = 1.0;
    std::unique_ptr<Store> second;
    if (me == 0) {
      second = std::make_unique<Store>("", 0, 0, world, timeout);
      store.set("second/port", std::to_string(second->port()));
    }
    const int port = std::stoi(store.get("second/port"));
    if (me != 0) second = std::make_unique<Store>("127.0.0.1", port, me, world, timeout);
    second->wait_for_all();

    // A key nobody sets: an error naming the key after the timeout.
    auto start = Clock::now();
    CHECK_THROWS_WITH_AS(second->get("never"), doctest::Contains("key 'never' was not set"), vb::Error);
    CHECK(seconds_since(start) >= 0.9);
    CHECK(seconds_since(start) < 5);

    if (me == 1) {
      CHECK_THROWS_WITH_AS(Store("127.0.0.1", port, 1, world, timeout), doctest::Contains("two processes claim rank 1"),
                           vb::Error);
      CHECK_THROWS_WITH_AS(Store("127.0.0.1", port, 1, world + 1, timeout),
                           doctest::Contains("joined a job of 4 ranks, but rank 0 started one of 3"), vb::Error);
      // Nobody listens: bounded retries, then an error naming the address and the time waited.
      const int dead = test::free_port();
      const std::string refused = fmt::format("could not connect to the rendezvous store at 127.0.0.1:{}", dead);
      start = Clock::now();
      CHECK_THROWS_WITH_AS(Store("127.0.0.1", dead, 1, world, 0.5), doctest::Contains(refused.c_str()), vb::Error);
      CHECK(seconds_since(start) < 3);
      CHECK_THROWS_WITH_AS(Store("no-such-host.invalid", dead, 1, world, 0.3), doctest::Contains("cannot resolve"),
                           vb::Error);
    }
    store_barrier(store, "second-errors");

    // Rank 2 gives up (as after a failure): the server shows it as exited, but does not announce it to
    // the others as a crash.
    if (me == 2) {
      second->abort();
      second.reset();
    }
    store_barrier(store, "rank-2-left");
    if (me != 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a few heartbeats
      const auto status = second->status();
      CHECK(status[2].exited);
      CHECK(!status[0].exited);
      CHECK(!status[1].exited);
      CHECK(second->exited_rank() == -1);
    }
    store_barrier(store, "second-status");
    // Rank 0's store, destroyed last, waits for rank 1's clean goodbye.
    if (me == 1) second.reset();
    store_barrier(store, "second-done");
    start = Clock::now();
    second.reset();
    CHECK(seconds_since(start) < 2);
  }
}
