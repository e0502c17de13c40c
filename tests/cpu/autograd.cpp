// The autograd engine: accumulation, leaves, hooks, no-grad, retain_graph, and view gradients.
#include <map>
#include <string>

#include "tests/support/check.h"
#include "tests/support/kernel_calls.h"

using namespace vb;
using vb::test::gradcheck;
using vb::test::uniform;

TEST_CASE("a tensor used twice receives the sum of both gradients") {
  Tensor x = uniform({3}, 1);
  x.set_requires_grad();
  Tensor y = cat({x, x}, 0);  // two uses of x through one node
  backward(y, Tensor::from_vector(std::vector<double>{1, 2, 3, 10, 20, 30}, {6}, DType::Float64));
  CHECK(x.grad().to_vector() == std::vector<double>{11, 22, 33});
}

TEST_CASE("a leaf's gradient accumulates across backward calls until reset") {
  Tensor x = uniform({2}, 2);
  x.set_requires_grad();
  Tensor g = Tensor::from_vector(std::vector<double>{1, 1}, {2}, DType::Float64);
  backward(clone(x), g);
  backward(clone(x), g);
  CHECK(x.grad().to_vector() == std::vector<double>{2, 2});
  x.set_grad(Tensor());
  backward(clone(x), g);
  CHECK(x.grad().to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("sums of gradients go in place only into memory nobody else holds") {
  // A leaf's gradient that nobody holds is added into where it is: the same memory after a second backward.
  Tensor x = uniform({4}, 5);
  x.set_requires_grad();
  const Tensor two = Tensor::from_vector(std::vector<double>{2, 2, 2, 2}, {4}, DType::Float64);
  // (clone's backward passes the root gradient on unchanged: a root the caller still holds would become the
  // leaf's gradient itself, and then it is never added into — the test passes temporaries.)
  backward(clone(x), clone(two));
  const void* memory = x.grad().data_ptr();
  backward(clone(x), clone(two));
  CHECK(x.grad().to_vector() == std::vector<double>{4, 4, 4, 4});
  CHECK(x.grad().data_ptr() == memory);
  // A gradient the user holds keeps its values: the sum goes into a new tensor.
  Tensor held = x.grad();
  backward(clone(x), clone(two));
  CHECK(held.to_vector() == std::vector<double>{4, 4, 4, 4});
  CHECK(x.grad().to_vector() == std::vector<double>{6, 6, 6, 6});
  CHECK(x.grad().data_ptr() != held.data_ptr());
  // The same for a root the caller holds that became the gradient.
  Tensor y = uniform({4}, 8);
  y.set_requires_grad();
  backward(clone(y), two);
  backward(clone(y), two);
  CHECK(two.to_vector() == std::vector<double>{2, 2, 2, 2});
  CHECK(y.grad().to_vector() == std::vector<double>{4, 4, 4, 4});
  // Inside one backward, gradients from several uses are summed right, and a root gradient the user passed
  // in is never written into (add's backward hands it unchanged to both of its inputs).
  Tensor a = uniform({4}, 6), b = uniform({4}, 7);
  a.set_requires_grad();
  b.set_requires_grad();
  Tensor root = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {4}, DType::Float64);
  Tensor s = add(a, b);
  backward(add(add(s, a), mul(s, 2.0)), root);  // ∂/∂a = 1 + 1 + 2 = 4·root, ∂/∂b = 1 + 2 = 3·root
  CHECK(root.to_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(a.grad().to_vector() == std::vector<double>{4, 8, 12, 16});
  CHECK(b.grad().to_vector() == std::vector<double>{3, 6, 9, 12});
}

TEST_CASE("hooks fire once per backward, with the complete gradient") {
  Tensor x = uniform({2}, 3);
  x.set_requires_grad();
  int calls = 0;
  std::vector<double> seen;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    seen = g.to_vector();
  });
  Tensor y = cat({x, narrow(x, 0, 1, 1), x}, 0);  // x reaches the root along three paths
  backward(y, Tensor::from_vector(std::vector<double>{1, 2, 5, 3, 4}, {5}, DType::Float64));
  CHECK(calls == 1);
  CHECK(seen == std::vector<double>{1 + 3, 2 + 5 + 4});
}

TEST_CASE("NoGradGuard records nothing; detach cuts the graph") {
  Tensor x = uniform({2}, 4);
  x.set_requires_grad();
  {
    NoGradGuard guard;
    Tensor y = clone(x);
    CHECK(!y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(clone(x).requires_grad());
  Tensor d = detach(x);
  CHECK(!d.requires_grad());
  CHECK(d.impl()->storage == x.impl()->storage);
  CHECK_THROWS_WITH_AS(backward(clone(d)), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("the graph is freed after backward unless retained") {
  Tensor x = uniform({2}, 5);
  x.set_requires_grad();
  Tensor g = Tensor::from_vector(std::vector<double>{1, 1}, {2}, DType::Float64);
  Tensor y = clone(x);
  backward(y, g, /*retain_graph=*/true);
  backward(y, g);
  CHECK(x.grad().to_vector() == std::vector<double>{2, 2});
  CHECK_THROWS_WITH_AS(backward(y, g), doctest::Contains("retain_graph"), Error);
}

TEST_CASE("backward checks the root and its gradient") {
  Tensor x = uniform({2, 2}, 6);
  x.set_requires_grad();
  CHECK_THROWS_WITH_AS(backward(clone(x)), doctest::Contains("non-scalar"), Error);
  CHECK_THROWS_WITH_AS(backward(clone(x), zeros({3}, DType::Float64)), doctest::Contains("gradient shape"), Error);
  Tensor result = clone(x);
  CHECK_THROWS_WITH_AS(result.set_requires_grad(), doctest::Contains("leaf"), Error);
}

TEST_CASE("gradients of views, copies and joins") {
  gradcheck([](const auto& in) { return reshape(in[0], {3, 4}); }, {uniform({2, 6}, 10)}, "reshape");
  gradcheck([](const auto& in) { return reshape(transpose(in[0], 0, 1), {12}); }, {uniform({2, 6}, 11)},
            "reshape of a transpose (copy)");
  gradcheck([](const auto& in) { return permute(in[0], {2, 0, 1}); }, {uniform({2, 3, 4}, 12)}, "permute");
  gradcheck([](const auto& in) { return narrow(in[0], 1, 1, 2); }, {uniform({2, 4}, 13)}, "narrow");
  gradcheck([](const auto& in) { return slice(in[0], 0, 1, 6, 2); }, {uniform({7, 2}, 14)}, "slice with step");
  gradcheck([](const auto& in) { return select(transpose(in[0], 0, 1), 0, 2); }, {uniform({3, 4}, 15)},
            "select of a transpose");
  gradcheck([](const auto& in) { return expand(in[0], {2, 3, 4}); }, {uniform({3, 1}, 16)}, "expand");
  gradcheck([](const auto& in) { return unsqueeze(squeeze(in[0]), 0); }, {uniform({1, 3, 1}, 17)},
            "squeeze/unsqueeze");
  gradcheck([](const auto& in) { return cat({in[0], transpose(in[1], 0, 1)}, 0); },
            {uniform({2, 3}, 18), uniform({3, 4}, 19)}, "cat of a transpose");
  gradcheck([](const auto& in) { return stack({in[0], in[1]}, 1); }, {uniform({2, 3}, 20), uniform({2, 3}, 21)},
            "stack");
  gradcheck([](const auto& in) { return split(in[0], 2, 1)[1]; }, {uniform({2, 5}, 22)}, "split");
  gradcheck([](const auto& in) { return to(to(in[0], DType::Float32), DType::Float64); }, {uniform({4}, 23)},
            "to(dtype) round trip", 1e-3, 1e-4, 1e-3);
}

TEST_CASE("the later gradients of a shared weight and input are added into their sums by the GEMM (Node::into)") {
  // Three linears read one x and one weight (through the views linear makes: reshape, transpose, unsqueeze).
  // The first gradient to reach each is written out; the other two are added into that sum by matmul_add,
  // with no gradient tensor and no addition of their own. Values against float64 finite differences; the
  // kernel profiler counts which products ran.
  const Tensor g1 = uniform({2, 3, 5}, 61), g2 = uniform({2, 3, 5}, 62), g3 = uniform({2, 3, 5}, 63);
  auto f = [&](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    const Tensor& w = in[1];
    const Tensor& b = in[2];
    return add(add(sum(mul(linear(x, w, b), g1)), sum(mul(linear(x, w, b), g2))),
               sum(mul(matmul(x, transpose(w, 0, 1)), g3)));
  };
  std::vector<Tensor> in = {uniform({2, 3, 4}, 64), uniform({5, 4}, 65), uniform({5}, 66)};
  for (Tensor& t : in) t.set_requires_grad(true);
  const Tensor loss = f(in);
  std::map<std::string, int64_t> calls = vb::test::kernel_calls([&] { backward(loss); });
  CHECK(calls["matmul float64"] == 2);      // the first gradient of x and of w
  CHECK(calls["matmul_add float64"] == 4);  // the other two of each
  CHECK(calls["binary add float64"] == 1);  // only the bias's two gradients are added
  // The gradients (the same path: later ones added into the sums) against float64 finite differences.
  gradcheck(f, {uniform({2, 3, 4}, 64), uniform({5, 4}, 65), uniform({5}, 66)}, "three linears sharing x and w");
}

TEST_CASE("a waiting sum is seen through view ops of the user's own") {
  // w's two gradients arrive through a transpose and through a reshape; whichever comes second is added by
  // matmul_add into the sum waiting behind its view, seen through that view. Against the formula in double.
  Tensor w = uniform({4, 6}, 70);
  w.set_requires_grad(true);
  const Tensor x = uniform({3, 6}, 71), y = uniform({2, 2}, 72), g = uniform({3, 4}, 73), r = uniform({2, 12}, 75);
  const Tensor loss = add(sum(mul(matmul(x, transpose(w, 0, 1)), g)), sum(mul(matmul(y, reshape(w, {2, 12})), r)));
  std::map<std::string, int64_t> calls = vb::test::kernel_calls([&] { backward(loss); });
  CHECK(calls["matmul_add float64"] == 1);
  CHECK(calls["binary add float64"] == 0);
  // gw = gᵀ·x + reshape(yᵀ·r, (4, 6)).
  const Tensor want = add(matmul(transpose(g, 0, 1), x), reshape(matmul(transpose(y, 0, 1), r), {4, 6}));
  vb::test::check_close(w.grad(), want, 1e-14, 1e-14, "w's gradient through the views");
}
