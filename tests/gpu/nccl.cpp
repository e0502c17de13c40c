// The nccl communicator on real GPUs (device cuda), end to end. With one GPU: a world of one rank through
// NCCL — every collective, and data-parallel training steps over it, which must match training without a
// communicator. With two GPUs or more: two ranks (processes forked with torchrun-style variables, one GPU
// each) all-reduce. Exits 77 (skipped) without a GPU, without NCCL in the build, and the two-GPU case skips
// itself on a machine with one GPU.
#include "tests/support/gpu_only.h"

#if defined(VB_HAVE_CUDA) && defined(VB_HAVE_NCCL)
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "kernels/dist/init.h"
#include "tests/support/check.h"
#include "tests/support/free_port.h"
#include "tests/support/synth_dataset.h"
#include "train/config.h"
#include "train/trainer.h"

using namespace vb;

namespace {

std::unique_ptr<dist::ProcessGroup> one_rank() {
  dist::CommOptions o;
  o.backend = "nccl";
  o.device = Device(DeviceType::CUDA);
  o.timeout_s = 60;
  return dist::init_process_group(dist::Launch{}, o);
}

}  // namespace

TEST_CASE("one rank through NCCL: every collective returns its input (avg too)") {
  auto group = one_rank();
  dist::Communicator& comm = *group->comm;
  CHECK(comm.backend() == "nccl");
  for (DType dt : {DType::Float32, DType::BFloat16, DType::Float16, DType::Float64, DType::Int32, DType::Int64}) {
    CAPTURE(dt);
    for (int64_t n : {0, 1, 1000, 1 << 20}) {
      CAPTURE(n);
      Tensor x = to(randint(-50, 50, {n}, nullptr, DType::Int64), dt);
      for (dist::ReduceOp op : {dist::ReduceOp::Sum, dist::ReduceOp::Max, dist::ReduceOp::Min}) {
        Tensor t = to(x, comm.device());
        comm.all_reduce(t, op)->wait();
        CHECK(to(t, Device()).to_vector() == x.to_vector());
      }
      Tensor y = to(x, comm.device()), out = empty({n}, dt, comm.device());
      comm.broadcast(y, 0)->wait();
      comm.all_gather(y, out)->wait();
      CHECK(to(out, Device()).to_vector() == x.to_vector());
      comm.reduce_scatter(y, out, dist::ReduceOp::Sum)->wait();
      CHECK(to(out, Device()).to_vector() == x.to_vector());
    }
  }
  comm.barrier();
}

TEST_CASE("data-parallel steps over a one-rank NCCL communicator equal steps without one") {
  auto group = one_rank();
  const auto data = test::synth_dataset("vb_gpu_nccl_data", 24, 4, 32);
  nlohmann::json c = train::load_config("tiny");
  train::apply_overrides(c, {"frames=2", "image_size=32", "max_text_len=12", "batch_size=4", "workers=0", "steps=3",
                             "warmup_steps=1", "lr=0.003"});
  auto run = [&](dist::Communicator* comm) {
    WordPieceTokenizer tok = WordPieceTokenizer::load((data / "vocab.txt").string());
    data::Manifest manifest = data::load_manifest(data.string());
    manual_seed(c["seed"]);
    auto task = train::make_task(c, tok);
    task->module().to(Device(DeviceType::CUDA));
    task->module().train();
    train::Trainer trainer(*task, c, Device(DeviceType::CUDA), comm, comm ? group->store.get() : nullptr);
    data::LoaderOptions lo;
    lo.frames = 2;
    lo.size = 32;
    lo.max_length = 12;
    lo.batch_size = 4;
    lo.drop_last = true;
    lo.workers = 0;
    data::DataLoader loader(manifest, tok, lo);
    train::BatchStream stream(loader, 1, 1);
    std::vector<double> losses;
    for (int s = 1; s <= 3; ++s) losses.push_back(trainer.step(stream.next_step(), s).terms.at("loss"));
    return losses;
  };
  const auto with = run(group->comm.get()), without = run(nullptr);
  for (size_t i = 0; i < with.size(); ++i) CHECK(with[i] == doctest::Approx(without[i]).epsilon(1e-5));
}

TEST_CASE("two GPUs, two ranks: all-reduce through NCCL") {
  if (rt::cuda::device_count() < 2) {
    MESSAGE("skipped: this machine has one GPU (NCCL refuses two ranks on one GPU)");
    return;
  }
  const int port = test::free_port();
  std::vector<pid_t> children;
  for (int r = 0; r < 2; ++r) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", "2", 1);
      ::setenv("LOCAL_WORLD_SIZE", "2", 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      int code = 1;
      try {
        rt::cuda::set_device(r);  // GPU = local rank, as train/distributed.cpp's join_job does
        dist::CommOptions o;
        o.device = Device(DeviceType::CUDA);
        o.timeout_s = 60;
        auto g = dist::init_process_group(dist::detect_launch(), o);
        Tensor t = full({1000}, double(r + 1), DType::Float32, o.device);
        g->comm->all_reduce(t, dist::ReduceOp::Sum)->wait();
        code = to(t, Device()).to_vector() == std::vector<double>(1000, 3.0) ? 0 : 2;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
      }
      std::_Exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}

#else
#include <cstdlib>
namespace {
// A CUDA build without NCCL: nothing to test here.
[[maybe_unused]] const bool skipped = [] {
  std::exit(77);
  return true;
}();
}  // namespace
#endif
