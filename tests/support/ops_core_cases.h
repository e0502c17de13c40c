// The core ops (copy, fill, arange, random, unary, binary, where, reductions, matmul), forward and
// backward, on a device backend against the CPU backend. Included by tests/emu/ops_core.cpp (device
// `emu`) and tests/gpu/ops_core.cpp (device `cuda`), which define `device_under_test()` first.
// Shapes are small and odd (not multiples of 32, 256 or a 16-byte pack) to keep the emulator fast and
// reach every tail.
#pragma once

#include "tests/support/device_ops.h"

namespace {

using namespace vb;
using vb::device_test::compare;
using vb::device_test::floating_dtypes;
using vb::device_test::uniform;
using Inputs = std::vector<Tensor>;

TEST_CASE("copy: any strides, every dtype conversion") {
  const Device dev = device_under_test();
  const Tensor x = uniform({5, 7, 3}, 1, -40, 40);
  const std::vector<DType> dtypes = {DType::Float32, DType::BFloat16, DType::Float16, DType::Int32, DType::Int64,
                                     DType::Bool};
  for (DType from : dtypes) {
    for (DType into : dtypes) {
      const std::string what = fmt::format("copy {} → {}", from, into);
      // contiguous(permute) runs the strided kernel; to(dtype) the converting one; slices with steps too.
      auto f = [into](const Inputs& v) {
        Tensor p = contiguous(permute(v[0], {2, 0, 1}));
        return to(slice(p, 1, 1, 5, 2), into);
      };
      compare(dev, what, f, {to(x, from)}, from, false, {0, 0});
    }
  }
  // A same-dtype contiguous copy (the runtime's copy) and a broadcast (stride-0) source.
  compare(dev, "clone", [](const Inputs& v) { return clone(v[0]); }, {x}, DType::Float32);
  compare(dev, "expand", [](const Inputs& v) { return contiguous(expand(v[0], {4, 5, 7, 3})); }, {x},
          DType::Float16);
}

TEST_CASE("fill, arange, random: the CPU's values") {
  const Device dev = device_under_test();
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int32, DType::Int64, DType::Bool}) {
    CAPTURE(t);
    test::check_close(to(full({37}, 3.75, t, dev), Device()), full({37}, 3.75, t), 0, 0, "full");
    test::check_close(to(arange(-3, 250, 1.5, t == DType::Bool ? DType::Int32 : t, dev), Device()),
                      arange(-3, 250, 1.5, t == DType::Bool ? DType::Int32 : t), 0, 0, "arange");
  }
  for (DType t : floating_dtypes) {
    CAPTURE(t);
    Generator a{99, 5}, b{99, 5};
    test::check_close(to(rand({301}, &a, t, dev), Device()), rand({301}, &b, t), 0, 0, "rand");
    // Box-Muller's log/cos on a GPU may differ from glibc's by an ulp of float32, which can flip the
    // rounding to bfloat16/float16: allow one ulp of the stored dtype (2^-7, 2^-10 relative).
    const double randn_rtol = t == DType::BFloat16 ? 8e-3 : t == DType::Float16 ? 1e-3 : 1e-5;
    test::check_close(to(randn({301}, &a, t, dev), Device()), randn({301}, &b, t), 1e-6, randn_rtol, "randn");
    CHECK(a.offset == b.offset);
  }
  Generator a{7, 0}, b{7, 0};
  test::check_close(to(randint(-5, 1000, {333}, &a, DType::Int64, dev), Device()),
                    randint(-5, 1000, {333}, &b, DType::Int64), 0, 0, "randint");
}

TEST_CASE("unary ops, forward and backward, every floating dtype, non-contiguous inputs") {
  const Device dev = device_under_test();
  const Tensor x = uniform({9, 13}, 2);
  const Tensor positive = uniform({9, 13}, 3, 0.1, 3);
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    bool positive_only;
  };
  const std::vector<Case> cases = {
      {"neg", [](const Tensor& v) { return neg(v); }, false},
      {"exp", [](const Tensor& v) { return exp(v); }, false},
      {"log", [](const Tensor& v) { return log(v); }, true},
      {"log1p", [](const Tensor& v) { return log1p(v); }, true},
      {"sqrt", [](const Tensor& v) { return sqrt(v); }, true},
      {"rsqrt", [](const Tensor& v) { return rsqrt(v); }, true},
      {"abs", [](const Tensor& v) { return abs(v); }, false},
      {"sign", [](const Tensor& v) { return sign(v); }, false},
      {"tanh", [](const Tensor& v) { return tanh(v); }, false},
      {"sigmoid", [](const Tensor& v) { return sigmoid(v); }, false},
      {"relu", [](const Tensor& v) { return relu(v); }, false},
      {"gelu", [](const Tensor& v) { return gelu(v); }, false},
      {"gelu_tanh", [](const Tensor& v) { return gelu(v, true); }, false},
      {"pow 2", [](const Tensor& v) { return pow(v, 2.0); }, false},
      {"pow 1.7", [](const Tensor& v) { return pow(v, 1.7); }, true},
      {"add scalar", [](const Tensor& v) { return add(v, 0.625); }, false},
      {"mul scalar", [](const Tensor& v) { return mul(v, -1.5); }, false},
      {"rsub scalar", [](const Tensor& v) { return rsub(v, 2.0); }, false},
      {"clamp", [](const Tensor& v) { return clamp(v, -0.5, 0.75); }, false},
  };
  for (const Case& c : cases) {
    for (DType t : floating_dtypes) {
      // Contiguous (the vectorised path) and transposed (the strided path).
      compare(dev, c.name, [&](const Inputs& v) { return c.f(v[0]); }, {c.positive_only ? positive : x}, t);
      compare(dev, std::string(c.name) + " of a transpose",
              [&](const Inputs& v) { return c.f(transpose(v[0], 0, 1)); }, {c.positive_only ? positive : x}, t);
    }
  }
  // Integer dtypes where the CPU allows them; logical_not on bool.
  const Tensor ints = to(uniform({7, 11}, 4, -50, 50), DType::Int32);
  for (DType t : {DType::Int32, DType::Int64}) {
    for (const Case& c : cases) {
      const std::string n = c.name;
      if (n != "neg" && n != "abs" && n != "sign" && n != "relu" && n != "add scalar" && n != "mul scalar" &&
          n != "rsub scalar" && n != "clamp")
        continue;
      compare(dev, n + " (integers)", [&](const Inputs& v) { return c.f(transpose(v[0], 0, 1)); }, {to(ints, t)}, t,
              false, {0, 0});
    }
  }
  compare(dev, "logical_not", [](const Inputs& v) { return logical_not(v[0]); }, {gt(x, 0.0)}, DType::Bool, false,
          {0, 0});
}

TEST_CASE("binary ops with broadcasting, forward and backward") {
  const Device dev = device_under_test();
  const Tensor a = uniform({6, 1, 19}, 5), b = uniform({5, 19}, 6), bt = uniform({19, 5}, 7);
  const Tensor positive = uniform({5, 19}, 8, 0.5, 2);
  using B = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::vector<std::pair<const char*, B>> arith = {
      {"add", [](const Tensor& x, const Tensor& y) { return add(x, y); }},
      {"sub", [](const Tensor& x, const Tensor& y) { return sub(x, y); }},
      {"mul", [](const Tensor& x, const Tensor& y) { return mul(x, y); }},
      {"div", [](const Tensor& x, const Tensor& y) { return div(x, y); }},
      {"maximum", [](const Tensor& x, const Tensor& y) { return maximum(x, y); }},
      {"minimum", [](const Tensor& x, const Tensor& y) { return minimum(x, y); }},
  };
  for (const auto& [name, f] : arith) {
    for (DType t : floating_dtypes) {
      const bool is_div = std::string(name) == "div";
      compare(dev, std::string(name) + " broadcast", [&](const Inputs& v) { return f(v[0], v[1]); },
              {a, is_div ? positive : b}, t);
      // b arrives transposed: a strided operand in every dim.
      compare(dev, std::string(name) + " transposed", [&](const Inputs& v) { return f(v[0], transpose(v[1], 0, 1)); },
              {b, is_div ? transpose(positive, 0, 1) : bt}, t);
      // Same-shape contiguous: the vectorised path.
      compare(dev, std::string(name) + " contiguous", [&](const Inputs& v) { return f(v[0], v[1]); },
              {b, is_div ? positive : uniform({5, 19}, 9)}, t);
    }
  }
  const Tensor ia = to(uniform({6, 1, 19}, 10, -20, 20), DType::Int32), ib = to(uniform({5, 19}, 11, -20, 20), DType::Int32);
  for (DType t : {DType::Int32, DType::Int64}) {
    for (const auto& [name, f] : arith) {
      if (std::string(name) == "div") continue;
      compare(dev, std::string(name) + " (integers)", [&](const Inputs& v) { return f(v[0], v[1]); },
              {to(ia, t), to(ib, t)}, t, false, {0, 0});
    }
  }
  // Comparisons and logic write bool; ties are made likely by rounding to quarters.
  const Tensor qa = div(to(to(mul(a, 4.0), DType::Int32), DType::Float32), Tensor::scalar(4.0));
  const Tensor qb = div(to(to(mul(b, 4.0), DType::Int32), DType::Float32), Tensor::scalar(4.0));
  const std::vector<std::pair<const char*, B>> tests = {
      {"eq", [](const Tensor& x, const Tensor& y) { return eq(x, y); }},
      {"ne", [](const Tensor& x, const Tensor& y) { return ne(x, y); }},
      {"lt", [](const Tensor& x, const Tensor& y) { return lt(x, y); }},
      {"le", [](const Tensor& x, const Tensor& y) { return le(x, y); }},
      {"gt", [](const Tensor& x, const Tensor& y) { return gt(x, y); }},
      {"ge", [](const Tensor& x, const Tensor& y) { return ge(x, y); }},
      {"logical_and", [](const Tensor& x, const Tensor& y) { return logical_and(gt(x, 0.0), lt(y, 0.5)); }},
      {"logical_or", [](const Tensor& x, const Tensor& y) { return logical_or(gt(x, 0.0), lt(y, 0.5)); }},
  };
  for (const auto& [name, f] : tests) {
    for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int64}) {
      compare(dev, name, [&](const Inputs& v) { return f(v[0], v[1]); },
              {is_floating(t) ? qa : to(qa, t), is_floating(t) ? qb : to(qb, t)}, t, false, {0, 0});
    }
  }
}

TEST_CASE("where and masked_fill, forward and backward") {
  const Device dev = device_under_test();
  const Tensor x = uniform({4, 9, 5}, 12), y = uniform({9, 1}, 13), c = uniform({4, 1, 5}, 14);
  for (DType t : floating_dtypes) {
    compare(dev, "where", [](const Inputs& v) { return where(gt(v[2], 0.0), v[0], v[1]); }, {x, y, c}, t);
    compare(dev, "masked_fill", [](const Inputs& v) { return masked_fill(v[0], lt(v[1], 0.0), -3.0); }, {x, c}, t);
  }
}

TEST_CASE("reductions over any dims, forward and backward") {
  const Device dev = device_under_test();
  const Tensor x = uniform({5, 37, 3}, 15);
  const Tensor long_rows = uniform({3, 700}, 16);  // more than one pass of 256 threads
  const std::vector<std::vector<int>> dim_sets = {{0}, {1}, {2}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (DType t : floating_dtypes) {
    for (const auto& dims : dim_sets) {
      const std::string d = fmt::format(" over {}", fmt::join(dims, ","));
      compare(dev, "sum" + d, [&](const Inputs& v) { return sum(v[0], dims); }, {x}, t);
      compare(dev, "mean" + d, [&](const Inputs& v) { return mean(v[0], dims, true); }, {x}, t);
      compare(dev, "amax" + d, [&](const Inputs& v) { return amax(v[0], dims); }, {x}, t);
      compare(dev, "amin of a transpose" + d, [&](const Inputs& v) { return amin(transpose(v[0], 0, 2), dims); }, {x},
              t);
    }
    for (int dim = 0; dim < 3; ++dim)
      compare(dev, fmt::format("argmax over {}", dim), [dim](const Inputs& v) { return argmax(v[0], dim); }, {x}, t,
              false, {0, 0});
    compare(dev, "sum of long rows", [](const Inputs& v) { return sum(v[0], {1}); }, {long_rows}, t);
    compare(dev, "amax of long rows", [](const Inputs& v) { return amax(v[0], {1}); }, {long_rows}, t);
    compare(dev, "argmax of long rows", [](const Inputs& v) { return argmax(v[0], 1); }, {long_rows}, t, false, {0, 0});
    compare(dev, "sum of everything", [](const Inputs& v) { return sum(v[0]); }, {long_rows}, t);
  }
  const Tensor ints = to(uniform({5, 37, 3}, 17, -100, 100), DType::Int64);
  compare(dev, "integer sum", [](const Inputs& v) { return sum(v[0], {1}); }, {ints}, DType::Int64, false, {0, 0});
  compare(dev, "integer amax", [](const Inputs& v) { return amax(v[0], {0, 2}); }, {ints}, DType::Int64, false, {0, 0});
  compare(dev, "integer argmax", [](const Inputs& v) { return argmax(v[0], 1); }, {ints}, DType::Int64, false, {0, 0});
}

TEST_CASE("matmul: batched, transposed and broadcast operands, forward and backward") {
  const Device dev = device_under_test();
  const Tensor a = uniform({3, 7, 13}, 18), b = uniform({13, 9}, 19), bt = uniform({3, 9, 13}, 20);
  for (DType t : floating_dtypes) {
    const device_test::Tolerance tol = t == DType::Float32 ? device_test::Tolerance{1e-4, 1e-4}
                                                           : device_test::tolerance(t);
    compare(dev, "matmul broadcast b", [](const Inputs& v) { return matmul(v[0], v[1]); }, {a, b}, t, true, tol);
    compare(dev, "matmul transposed b", [](const Inputs& v) { return matmul(v[0], transpose(v[1], 1, 2)); }, {a, bt}, t,
            true, tol);
    // With a bias: one product whose epilogue adds it (cuBLASLt's bias epilogue on a GPU).
    compare(dev, "linear", [](const Inputs& v) { return linear(v[0], v[1], v[2]); },
            {uniform({11, 13}, 21), uniform({6, 13}, 22), uniform({6}, 23)}, t, true, tol);
    compare(dev, "linear of a 3-d input", [](const Inputs& v) { return linear(v[0], v[1], v[2]); },
            {uniform({2, 5, 13}, 32), uniform({7, 13}, 33), uniform({7}, 34)}, t, true, tol);
    compare(dev, "linear of a 1-d input", [](const Inputs& v) { return linear(v[0], v[1], v[2]); },
            {uniform({13}, 35), uniform({7, 13}, 36), uniform({7}, 37)}, t, true, tol);
    compare(dev, "linear with no input features", [](const Inputs& v) { return linear(v[0], v[1], v[2]); },
            {uniform({4, 0}, 38), uniform({3, 0}, 39), uniform({3}, 40)}, t, true, tol);
    // The left operand broadcast over the right's batch: batch stride 0 on the GPU, not foldable into M.
    compare(dev, "matmul broadcast a", [](const Inputs& v) { return matmul(v[0], v[1]); },
            {uniform({7, 13}, 28), uniform({3, 13, 9}, 29)}, t, true, tol);
    compare(dev, "matmul with M = 0", [](const Inputs& v) { return matmul(v[0], v[1]); },
            {uniform({2, 0, 5}, 30), uniform({2, 5, 4}, 31)}, t, true, tol);
    // An empty inner dimension sums nothing: zeros (cuBLASLt takes no K = 0, so the GPU fills instead).
    compare(dev, "matmul with K = 0", [](const Inputs& v) { return matmul(v[0], v[1]); },
            {uniform({2, 5, 0}, 26), uniform({2, 0, 4}, 27)}, t, true, tol);
  }
}

TEST_CASE("float64 is rejected with a clear error") {
  const Device dev = device_under_test();
  const Tensor x = to(uniform({3, 4}, 24), dev);
  const Tensor x64 = to(test::uniform({3, 4}, 25), dev);
  CHECK_THROWS_WITH_AS(exp(x64), doctest::Contains("float64 is not supported"), vb::Error);
  CHECK_THROWS_WITH_AS(to(x, DType::Float64), doctest::Contains("float64 is not supported"), vb::Error);
}

}  // namespace
