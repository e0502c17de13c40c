// The kernel profiler (kernels/profiler.h): the rows it records against the calls a known sequence of ops
// makes (counts by name, op and dtype), self time within the wall time and within total time, nothing
// recorded when it is off, a fresh start, the table's arithmetic, and misuse errors.
#include <chrono>
#include <map>
#include <string>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "kernels/profiler.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::uniform;

namespace {

std::map<std::string, KernelTime> by_name(const std::vector<KernelTime>& rows) {
  std::map<std::string, KernelTime> m;
  for (const KernelTime& r : rows) m[r.kernel] = r;
  return m;
}

}  // namespace

TEST_CASE("kernel profiler: one row per method, op and dtype, with the calls made") {
  const Tensor a = uniform({64, 32}, 1, -1, 1, DType::Float32), b = uniform({32, 48}, 2, -1, 1, DType::Float32);
  const Tensor c = uniform({64, 48}, 3, -1, 1, DType::Float32);
  const Tensor w = uniform({48, 32}, 4, -1, 1, DType::Float32);
  Tensor y;  // keeps the results alive past the recording (so no kernel runs in between)
  const auto start = std::chrono::steady_clock::now();
  kernel_profile_start();
  CHECK(kernel_profiling());
  for (int i = 0; i < 3; ++i) y = matmul(a, b);
  y = add(y, c);
  y = add(y, c);
  y = gelu(y);
  {
    AutocastGuard autocast(DType::BFloat16);
    y = linear(a, w);  // casts a and w to bfloat16, then a bfloat16 product with float32 sums
  }
  const std::vector<KernelTime> rows = kernel_profile_stop();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK_FALSE(kernel_profiling());
  const auto m = by_name(rows);
  REQUIRE(m.count("matmul float32") == 1);
  CHECK(m.at("matmul float32").calls == 3);
  REQUIRE(m.count("binary add float32") == 1);
  CHECK(m.at("binary add float32").calls == 2);
  REQUIRE(m.count("unary gelu float32") == 1);
  CHECK(m.at("unary gelu float32").calls == 1);
  REQUIRE(m.count("copy float32 → bfloat16") == 1);
  CHECK(m.at("copy float32 → bfloat16").calls == 2);
  REQUIRE(m.count("matmul bfloat16") == 1);
  CHECK(m.at("matmul bfloat16").calls == 1);
  double self = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(rows[i].kernel);
    CHECK(rows[i].calls > 0);
    CHECK(rows[i].self_seconds >= 0);
    CHECK(rows[i].self_seconds <= rows[i].total_seconds);
    if (i > 0) CHECK(rows[i].self_seconds <= rows[i - 1].self_seconds);  // largest first
    self += rows[i].self_seconds;
  }
  CHECK(self > 0);
  CHECK(self <= wall);  // one thread called the kernels: their times fit in the wall time around them

  // Off: nothing is recorded; a new start begins from nothing.
  y = matmul(a, b);
  kernel_profile_start();
  y = add(y, c);
  const auto again = by_name(kernel_profile_stop());
  CHECK(again.count("matmul float32") == 0);
  REQUIRE(again.count("binary add float32") == 1);
  CHECK(again.at("binary add float32").calls == 1);
}

TEST_CASE("kernel profiler: the table per step, the rest folded into one row, and the time outside kernels") {
  const std::vector<KernelTime> rows = {{"matmul float32", 20, 0.6, 0.6},
                                        {"unary gelu float32", 10, 0.2, 0.2},
                                        {"binary add float32", 40, 0.1, 0.1},
                                        {"copy float32", 4, 0.02, 0.02}};
  // Two steps of 0.5 s each: 1.0 s of wall time, 0.92 s in kernels.
  const std::string t = kernel_profile_table(rows, 1.0, 2, 2);
  CHECK(t.find("| matmul float32 | 10 | 300.00 | 60.0% | 30000.0 |") != std::string::npos);
  CHECK(t.find("| unary gelu float32 | 5 | 100.00 | 20.0% | 20000.0 |") != std::string::npos);
  CHECK(t.find("| the other 2 kernels | 22 | 60.00 | 12.0% | |") != std::string::npos);
  CHECK(t.find("| all kernels | | 460.00 | 92.0% | |") != std::string::npos);
  CHECK(t.find("| outside the kernels (autograd, allocation, the framework) | | 40.00 | 8.0% | |") !=
        std::string::npos);
  CHECK_THROWS_WITH_AS(kernel_profile_table(rows, 1.0, 0, 5), doctest::Contains("steps (0)"), Error);
}

TEST_CASE("kernel profiler: starting twice and stopping when off are errors") {
  kernel_profile_start();
  CHECK_THROWS_WITH_AS(kernel_profile_start(), doctest::Contains("already recording"), Error);
  kernel_profile_stop();
  CHECK_THROWS_WITH_AS(kernel_profile_stop(), doctest::Contains("not recording"), Error);
}

TEST_CASE("kernel profiler: with shapes, rows split by the tensors' shapes and a transposed operand's strides") {
  const Tensor a = uniform({64, 32}, 1, -1, 1, DType::Float32), b = uniform({32, 48}, 2, -1, 1, DType::Float32);
  const Tensor bt = transpose(uniform({48, 32}, 3, -1, 1, DType::Float32), 0, 1);  // (32, 48), strides (1, 32)
  // (matmul hands the backend 3-d views: a batch of one in front)
  const Tensor a2 = uniform({16, 32}, 4, -1, 1, DType::Float32);
  Tensor y;
  kernel_profile_start(/*shapes=*/true);
  for (int i = 0; i < 2; ++i) y = matmul(a, b);
  y = matmul(a, bt);
  y = matmul(a2, b);
  const auto m = by_name(kernel_profile_stop());
  REQUIRE(m.count("matmul float32 · 1×64×32, 1×32×48, 1×64×48") == 1);
  CHECK(m.at("matmul float32 · 1×64×32, 1×32×48, 1×64×48").calls == 2);
  REQUIRE(m.count("matmul float32 · 1×64×32, 1×32×48 (strides 32, 1, 32), 1×64×48") == 1);
  CHECK(m.at("matmul float32 · 1×64×32, 1×32×48 (strides 32, 1, 32), 1×64×48").calls == 1);
  REQUIRE(m.count("matmul float32 · 1×16×32, 1×32×48, 1×16×48") == 1);
  CHECK(m.count("matmul float32") == 0);

  // The next recording without shapes has the plain names again.
  kernel_profile_start();
  y = matmul(a, b);
  const auto plain = by_name(kernel_profile_stop());
  REQUIRE(plain.count("matmul float32") == 1);
  CHECK(plain.at("matmul float32").calls == 1);
  CHECK(plain.size() == 1);
}
