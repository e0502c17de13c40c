// The CPU's bfloat16 GEMM (kernels/cpu/gemm_bf16.cpp): AMX tiles where the machine and the OS allow them,
// AVX512-BF16 dot products where the machine has those, and the float32 GEMM on widened operands. Every path
// the machine has is run here (the others say so) and judged against a float64 loop over the same bfloat16
// values: every product is exact in float32, so what remains is the float32 summation, held to the bound of
// the float32 GEMM's own test — twice the error of a naive float32 loop plus 4·K·u (u = 2⁻²⁴). A wrong tile,
// pair order, swapped B sub-panel or lost K slice is off by ~0.1.
// Cases: the edges of the tiling (32 × 32 blocks, 32-k tiles, K slices of 256, B blocks of up to 2048 columns),
// each operand layout the packing distinguishes (row-major, column-major, strided, row generator),
// accumulation into C, bitwise equality on 1, 2 and 3 threads; and convolution (forward, both gradients)
// in bfloat16 against float32 on the same rounded values.
#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <string>
#include <tuple>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm.h"
#include "tests/support/check.h"

using namespace vb;
using vb::test::check_close;
using vb::test::uniform;

namespace {

enum class Layout { kRowMajor, kColumnMajor, kStrided, kGenerator };

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::kRowMajor: return "row-major";
    case Layout::kColumnMajor: return "column-major";
    case Layout::kStrided: return "strided";
    case Layout::kGenerator: return "row generator";
  }
  return "";
}

// A (rows, cols) bfloat16 operand holding values(i, j), stored in `layout`; `storage` keeps its memory.
struct Operand {
  std::vector<bf16> storage;
  cpu::GemmOperand<bf16> op;
  std::vector<double> values;  // row-major, the bfloat16 values as doubles
};

Operand make_operand(int64_t rows, int64_t cols, uint64_t seed, Layout layout) {
  Operand o;
  const std::vector<double> u = uniform({rows, cols}, seed).to_vector();
  o.values.resize(u.size());
  for (size_t i = 0; i < u.size(); ++i) o.values[i] = double(float(bf16(float(u[i]))));
  auto at = [&](int64_t i, int64_t j) { return bf16(float(o.values[size_t(i * cols + j)])); };
  switch (layout) {
    case Layout::kRowMajor:
    case Layout::kGenerator:
      o.storage.resize(size_t(rows * cols));
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) o.storage[size_t(i * cols + j)] = at(i, j);
      o.op = cpu::GemmOperand<bf16>::strided(o.storage.data(), cols, 1);
      if (layout == Layout::kGenerator) {
        const bf16* data = o.storage.data();
        o.op = {};
        o.op.row = [data, cols](int64_t i, int64_t j0, int64_t n, bf16* dst) {
          std::copy(data + i * cols + j0, data + i * cols + j0 + n, dst);
        };
      }
      break;
    case Layout::kColumnMajor:
      o.storage.resize(size_t(rows * cols));
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) o.storage[size_t(j * rows + i)] = at(i, j);
      o.op = cpu::GemmOperand<bf16>::strided(o.storage.data(), 1, rows);
      break;
    case Layout::kStrided:  // rows 3·cols + 1 apart, columns 3 apart
      o.storage.resize(size_t(rows * (3 * cols + 1)));
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) o.storage[size_t(i * (3 * cols + 1) + 3 * j)] = at(i, j);
      o.op = cpu::GemmOperand<bf16>::strided(o.storage.data(), 3 * cols + 1, 3);
      break;
  }
  return o;
}

// C = c0 (+ A·B when accumulating), by loops: in double (the reference) and in float, k ascending (the
// naive product whose error the GEMM's is judged against).
template <typename T>
std::vector<T> loop_product(const Operand& a, const Operand& b, int64_t m, int64_t k, int64_t n,
                            const std::vector<float>& c0) {
  std::vector<T> out(c0.begin(), c0.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const T x = T(a.values[size_t(i * k + p)]);
      for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] += x * T(b.values[size_t(p * n + j)]);
    }
  return out;
}

// Runs gemm_bf16 on (m, k, n) with A and B in the given layouts, checks it against the loops; returns C.
std::vector<float> check_product(int64_t m, int64_t k, int64_t n, Layout la, Layout lb, bool accumulate,
                                 const std::string& path) {
  const Operand a = make_operand(m, k, uint64_t(1000 + m + 7 * k), la), b = make_operand(k, n, uint64_t(2000 + n + 5 * k), lb);
  std::vector<float> c0(size_t(m * n), 0.0f);
  if (accumulate) {
    const std::vector<double> u = uniform({m, n}, 3000).to_vector();
    for (size_t i = 0; i < c0.size(); ++i) c0[i] = float(u[i]);
  }
  std::vector<float> c = c0;
  cpu::gemm_bf16(m, n, k, a.op, b.op, c.data(), n, accumulate, /*parallel=*/true);
  const std::vector<double> ref = loop_product<double>(a, b, m, k, n, c0);
  const std::vector<float> naive = loop_product<float>(a, b, m, k, n, c0);
  double err = 0, naive_err = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    err = std::max(err, std::abs(double(c[i]) - ref[i]));
    naive_err = std::max(naive_err, std::abs(double(naive[i]) - ref[i]));
  }
  const double slack = 4.0 * double(k) * std::ldexp(1.0, -24);
  CHECK_MESSAGE(err <= 2 * naive_err + slack, path, " ", m, "x", k, "x", n, " A ", layout_name(la), ", B ",
                layout_name(lb), std::string(accumulate ? ", accumulating" : ""), ": max |error| ", err,
                " vs naive float32 ", naive_err);
  return c;
}

// Runs body once per path this machine and build have: AMX tiles, AVX512-BF16 dot products (each where it
// exists: the rest are ruled out one by one with gemm_bf16_allow) and the float32 GEMM.
template <typename F>
void on_each_path(F&& body) {
  using cpu::GemmBf16Path;
  const GemmBf16Path first = cpu::gemm_bf16_path();
  for (GemmBf16Path path : {GemmBf16Path::kAmx, GemmBf16Path::kDot, GemmBf16Path::kFloat32}) {
    if (cpu::gemm_bf16_path() == path) {
      body(std::string(cpu::gemm_bf16_path_name(path)));
    } else {
      MESSAGE("this machine, its OS or the build gives no ", std::string(cpu::gemm_bf16_path_name(path)), ": not run");
    }
    if (path != GemmBf16Path::kFloat32) cpu::gemm_bf16_allow(path, false);
  }
  REQUIRE(cpu::gemm_bf16_path() == GemmBf16Path::kFloat32);
  cpu::gemm_bf16_allow(GemmBf16Path::kAmx, true);
  cpu::gemm_bf16_allow(GemmBf16Path::kDot, true);
  CHECK(cpu::gemm_bf16_path() == first);
}

}  // namespace

TEST_CASE("bfloat16 GEMM at the edges of its tiles, K slices and B blocks") {
  // 32 × 32 C blocks, 32-k tiles (odd K leaves half a pair), K slices of ≤ 256, B blocks of ≤ 2048 columns
  // (1 MB, half the dev VM's L2, over 256 k).
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},    {1, 65, 1},    {15, 31, 17},  {32, 32, 32},   {33, 33, 33},   {31, 64, 47},
      {16, 513, 16}, {70, 1100, 45}, {40, 96, 1100}, {3, 2, 300},    {129, 7, 33},   {64, 1024, 64},
      {20, 300, 2100},
  };
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n] : shapes) check_product(m, k, n, Layout::kRowMajor, Layout::kRowMajor, false, path);
  });
}

TEST_CASE("bfloat16 GEMM operand layouts: column-major (weights, gradients' Aᵀ), strided, generated rows") {
  const std::vector<std::array<int64_t, 3>> shapes = {{13, 37, 21}, {40, 96, 50}, {300, 65, 70}, {33, 700, 33}};
  const Layout layouts[] = {Layout::kRowMajor, Layout::kColumnMajor, Layout::kStrided, Layout::kGenerator};
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n] : shapes)
      for (Layout la : layouts)
        for (Layout lb : layouts) check_product(m, k, n, la, lb, false, path);
  });
}

TEST_CASE("bfloat16 GEMM accumulates into C (edge and whole blocks, several K slices)") {
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{32, 64, 32}, {45, 600, 77}, {7, 3, 5}})
      check_product(m, k, n, Layout::kRowMajor, Layout::kColumnMajor, true, path);
  });
}

TEST_CASE("bfloat16 GEMM epilogue: bias and rounding as the sums leave the tiles, the passes' bits") {
  // The reference is the plain GEMM into C, then C + bias and bf16(·) (tensor/dtype.h) element by element:
  // what matmul_bias did before the epilogue existed. Shapes cross the 32 × 32 blocks and the K slices
  // (the epilogue runs on the last slice only), with and without accumulating. A's first row holds values
  // whose sums round at bfloat16's edges: NaN (quieted), ±inf, subnormal floats (which VCVTNEPS2BF16 would
  // flush to zero) and ties to even, both ways.
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{32, 32, 32}, {45, 600, 77}, {7, 3, 5}, {70, 257, 40}})
      for (const bool accumulate : {false, true})
        for (const bool with_bias : {false, true})
          for (const bool to_bf16 : {false, true}) {
            if (!with_bias && !to_bf16) continue;
            Operand a = make_operand(m, k, uint64_t(10 + m), Layout::kRowMajor);
            Operand b = make_operand(k, n, uint64_t(20 + n), Layout::kColumnMajor);
            // Row 0 of A: zero but for A[0, 0] = 1, so that C[0, j] = c0[0, j] + B[0, j]; with B[0, j] = 0 for
            // j < 8 (column-major: at j·k), c0's specials are the sums there.
            for (int64_t p = 0; p < k; ++p) a.storage[size_t(p)] = bf16(p == 0 ? 1.0f : 0.0f);
            for (int64_t j = 0; j < std::min<int64_t>(n, 8); ++j) b.storage[size_t(j * k)] = bf16(0.0f);
            std::vector<float> c0(size_t(m * n), 0.0f), bias(static_cast<size_t>(n), 0.0f);
            const std::vector<double> u = uniform({m, n}, 31).to_vector(), ub = uniform({n}, 32).to_vector();
            for (size_t i = 0; i < c0.size(); ++i) c0[i] = accumulate ? float(u[i]) : 0.0f;
            for (int64_t j = 0; j < n; ++j) bias[size_t(j)] = float(ub[size_t(j)]);
            const float specials[] = {NAN, INFINITY, -INFINITY, 1e-39f, -3e-40f, 1.00390625f, 1.01171875f, 5e-39f};
            if (accumulate)
              for (int64_t j = 0; j < std::min<int64_t>(n, 8); ++j) c0[size_t(j)] = specials[j];
            std::vector<float> ref = c0;
            cpu::gemm_bf16(m, n, k, a.op, b.op, ref.data(), n, accumulate, true);
            std::vector<float> c = c0;
            std::vector<bf16> out(size_t(m * n));
            cpu::GemmBf16Epilogue ep;
            ep.bias = with_bias ? bias.data() : nullptr;
            ep.out = to_bf16 ? out.data() : nullptr;
            ep.ldo = n;
            cpu::gemm_bf16(m, n, k, a.op, b.op, c.data(), n, accumulate, true, ep);
            int64_t wrong = 0, first = -1;
            for (int64_t i = 0; i < m * n; ++i) {
              const float v = with_bias ? ref[size_t(i)] + bias[size_t(i % n)] : ref[size_t(i)];
              const uint32_t want = to_bf16 ? bf16(v).bits : std::bit_cast<uint32_t>(v);
              const uint32_t got = to_bf16 ? out[size_t(i)].bits : std::bit_cast<uint32_t>(c[size_t(i)]);
              if (want != got && !(std::isnan(v) && !to_bf16 && std::isnan(c[size_t(i)]))) {
                if (first < 0) first = i;
                ++wrong;
              }
            }
            const std::string what = path + " " + std::to_string(m) + "x" + std::to_string(k) + "x" +
                                     std::to_string(n) + (accumulate ? " accumulating" : "") +
                                     (with_bias ? " + bias" : "") + (to_bf16 ? " → bfloat16" : " → float32");
            CHECK_MESSAGE(wrong == 0, what, ": ", wrong, " elements differ from the passes, the first at ", first);
          }
  });
}

TEST_CASE("bfloat16 GEMM: the sums between K slices give the same bits in blocks of their own as in C") {
  // On the tiles the sums of the first K slices wait in contiguous 32 × 32 blocks (gemm_bf16_sums_limit),
  // or, past the limit, in C: the same operations in the same order, so the same bits — with edge blocks,
  // several slices, accumulating, and the epilogue. (On the float32 path the limit changes nothing.)
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n] : std::vector<std::array<int64_t, 3>>{{45, 600, 77}, {64, 513, 64}, {33, 1100, 100}})
      for (const bool accumulate : {false, true}) {
        const Operand a = make_operand(m, k, 40, Layout::kRowMajor), b = make_operand(k, n, 41, Layout::kColumnMajor);
        std::vector<float> c0(size_t(m * n), 0.0f);
        const std::vector<double> u = uniform({m, n}, 42).to_vector();
        for (size_t i = 0; i < c0.size(); ++i) c0[i] = accumulate ? float(u[i]) : 0.0f;
        std::vector<float> in_blocks = c0, in_c = c0, bias(size_t(n), 0.25f);
        std::vector<bf16> out_blocks(size_t(m * n)), out_c(size_t(m * n));
        cpu::GemmBf16Epilogue ep;
        ep.bias = bias.data(), ep.ldo = n;
        cpu::gemm_bf16(m, n, k, a.op, b.op, in_blocks.data(), n, accumulate, true);
        ep.out = out_blocks.data();
        std::vector<float> scratch = c0;  // (with an output, C is scratch)
        cpu::gemm_bf16(m, n, k, a.op, b.op, scratch.data(), n, accumulate, true, ep);
        const int64_t saved = cpu::gemm_bf16_sums_limit(0);
        cpu::gemm_bf16(m, n, k, a.op, b.op, in_c.data(), n, accumulate, true);
        scratch = c0;
        ep.out = out_c.data();
        cpu::gemm_bf16(m, n, k, a.op, b.op, scratch.data(), n, accumulate, true, ep);
        cpu::gemm_bf16_sums_limit(saved);
        const std::string what = path + " " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                                 (accumulate ? " accumulating" : "");
        CHECK_MESSAGE(in_blocks == in_c, what);
        CHECK_MESSAGE(std::equal(out_blocks.begin(), out_blocks.end(), out_c.begin(),
                                 [](bf16 x, bf16 y) { return x.bits == y.bits; }),
                      what, " + bias → bfloat16");
      }
  });
}

TEST_CASE("bfloat16 GEMM: each A panel through a run of K slices gives the same bits as the slices outermost") {
  // On the tiles each A panel runs through a run of consecutive K slices (all of K where B's columns for it
  // fit half the L2) before the next panel (gemm_bf16_k_inner): the same sums in the same order as one slice
  // at a time, so the same bits — with edge blocks, one run and several, several column blocks, a
  // column-major A (packed 8 panels at a time), accumulating, and the epilogue. (On the float32 path the
  // setting changes nothing.)
  on_each_path([&](const std::string& path) {
    for (auto [m, k, n, a_layout] : std::vector<std::tuple<int64_t, int64_t, int64_t, Layout>>{
             {45, 600, 77, Layout::kRowMajor},
             {64, 513, 64, Layout::kRowMajor},
             {70, 1000, 700, Layout::kRowMajor},
             {300, 600, 96, Layout::kColumnMajor},
             {40, 2100, 70, Layout::kRowMajor},  // 9 slices in 3 runs of 3
             {300, 1500, 96, Layout::kColumnMajor}})  // 6 slices in 2 runs of 3
      for (const bool accumulate : {false, true}) {
        const Operand a = make_operand(m, k, 50, a_layout), b = make_operand(k, n, 51, Layout::kColumnMajor);
        std::vector<float> c0(size_t(m * n), 0.0f);
        const std::vector<double> u = uniform({m, n}, 52).to_vector();
        for (size_t i = 0; i < c0.size(); ++i) c0[i] = accumulate ? float(u[i]) : 0.0f;
        std::vector<float> bias(size_t(n), 0.25f);
        std::vector<float> c_inner[2] = {c0, c0}, scratch[2] = {c0, c0};
        std::vector<bf16> out[2] = {std::vector<bf16>(size_t(m * n)), std::vector<bf16>(size_t(m * n))};
        for (int inner = 0; inner < 2; ++inner) {
          const bool saved = cpu::gemm_bf16_k_inner(inner == 1);
          cpu::GemmBf16Epilogue ep;
          ep.bias = bias.data(), ep.ldo = n, ep.out = out[inner].data();
          cpu::gemm_bf16(m, n, k, a.op, b.op, c_inner[inner].data(), n, accumulate, true);
          cpu::gemm_bf16(m, n, k, a.op, b.op, scratch[inner].data(), n, accumulate, true, ep);
          cpu::gemm_bf16_k_inner(saved);
        }
        const std::string what = path + " " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                                 (a_layout == Layout::kColumnMajor ? " (column-major A)" : "") +
                                 (accumulate ? " accumulating" : "");
        CHECK_MESSAGE(c_inner[0] == c_inner[1], what);
        CHECK_MESSAGE(std::equal(out[0].begin(), out[0].end(), out[1].begin(),
                                 [](bf16 x, bf16 y) { return x.bits == y.bits; }),
                      what, " + bias → bfloat16");
      }
  });
}

TEST_CASE("bfloat16 GEMM results are bitwise the same on 1, 2 and 3 threads") {
  const int saved = omp_get_max_threads();
  on_each_path([&](const std::string& path) {
    omp_set_num_threads(1);
    const std::vector<float> one = check_product(200, 777, 330, Layout::kRowMajor, Layout::kColumnMajor, false, path);
    const std::vector<float> one_t = check_product(150, 300, 96, Layout::kColumnMajor, Layout::kRowMajor, false, path);
    for (int threads : {2, 3}) {
      omp_set_num_threads(threads);
      CHECK(check_product(200, 777, 330, Layout::kRowMajor, Layout::kColumnMajor, false, path) == one);
      CHECK(check_product(150, 300, 96, Layout::kColumnMajor, Layout::kRowMajor, false, path) == one_t);
    }
    omp_set_num_threads(saved);
  });
}

TEST_CASE("bfloat16 matmul and convolution (forward and both gradients) match float32 on the same values") {
  // The backend's bfloat16 ops run gemm_bf16 into float32 and round once: within half a bfloat16 ulp of the
  // float32 result on the same rounded inputs (plus the float32 summation differences, far smaller).
  auto rounded = [](const Tensor& t) { return to(to(t, DType::BFloat16), DType::Float32); };
  const double rtol = 1.0 / 128, atol = 1e-3;
  on_each_path([&](const std::string& path) {
    const Tensor a = rounded(uniform({3, 40, 70}, 11, -1, 1, DType::Float32));
    const Tensor b = rounded(uniform({70, 50}, 12, -1, 1, DType::Float32));
    check_close(to(matmul(to(a, DType::BFloat16), to(b, DType::BFloat16)), DType::Float32), matmul(a, b), atol, rtol,
                path + " matmul");
    // conv: stride 1 (input gradient by the flipped kernel), stride 2 (columns and col2im), 1×1, groups.
    struct Case {
      Shape x, w;
      Conv2dParams p;
    };
    const std::vector<Case> cases = {
        {{2, 9, 9, 16}, {24, 3, 3, 16}, {1, 1, 1, 1, 1, 1, 1}},
        {{2, 9, 9, 16}, {24, 3, 3, 16}, {2, 2, 1, 1, 1, 1, 1}},
        {{2, 7, 7, 40}, {36, 1, 1, 40}, {1, 1, 0, 0, 1, 1, 1}},
        {{1, 8, 8, 12}, {8, 3, 3, 6}, {1, 1, 1, 1, 1, 1, 2}},
    };
    for (const Case& c : cases) {
      const std::string what = path + " conv " + shape_str(c.x) + " * " + shape_str(c.w);
      const Tensor x = rounded(uniform(c.x, 21, -1, 1, DType::Float32)), w = rounded(uniform(c.w, 22, -1, 1, DType::Float32));
      const Tensor y32 = conv2d(x, w, {}, c.p);
      check_close(to(conv2d(to(x, DType::BFloat16), to(w, DType::BFloat16), {}, c.p), DType::Float32), y32, atol, rtol,
                  what + " forward");
      const Tensor gy = rounded(uniform(y32.shape(), 23, -1, 1, DType::Float32));
      Tensor gx32 = Tensor::empty(x.shape()), gw32 = Tensor::empty(w.shape());
      Tensor gx = Tensor::empty(x.shape(), DType::BFloat16), gw = Tensor::empty(w.shape(), DType::BFloat16);
      cpu_backend().conv2d_backward_input(gy, w, c.p, gx32);
      cpu_backend().conv2d_backward_weight(gy, x, c.p, gw32);
      cpu_backend().conv2d_backward_input(to(gy, DType::BFloat16), to(w, DType::BFloat16), c.p, gx);
      cpu_backend().conv2d_backward_weight(to(gy, DType::BFloat16), to(x, DType::BFloat16), c.p, gw);
      check_close(to(gx, DType::Float32), gx32, atol, rtol, what + " input gradient");
      check_close(to(gw, DType::Float32), gw32, atol, rtol, what + " weight gradient");
    }
  });
}
