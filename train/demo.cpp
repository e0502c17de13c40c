#include "train/demo.h"

#include <cmath>
#include <vector>

#include "autograd/ops.h"

namespace vb {

DemoResult run_mlp_demo(const DemoOptions& opt, const std::function<void(int, double)>& log) {
  Generator gen{opt.seed, 0};
  // Data: x (N, 4), y (N, 1).
  Tensor x = sub(mul(rand({opt.samples, 4}, &gen), 2.0), ones({1}));
  Tensor x0 = select(x, 1, 0), x1 = select(x, 1, 1), x2 = select(x, 1, 2), x3 = select(x, 1, 3);
  std::vector<double> target(size_t(opt.samples));
  for (int64_t i = 0; i < opt.samples; ++i) {
    target[size_t(i)] = std::sin(M_PI * x0.at({i})) * std::cos(x1.at({i})) + x2.at({i}) * x3.at({i}) / 2;
  }
  Tensor y = Tensor::from_vector(target, {opt.samples, 1});

  // Parameters, initialised like nn.Linear: U(−1/√fan_in, 1/√fan_in).
  auto init = [&](const Shape& shape, int64_t fan_in) {
    const double bound = 1.0 / std::sqrt(double(fan_in));
    Tensor p = sub(mul(rand(shape, &gen), 2 * bound), full({1}, bound));
    p.set_requires_grad();
    return p;
  };
  std::vector<Tensor> params = {init({opt.hidden, 4}, 4), init({opt.hidden}, 4), init({1, opt.hidden}, opt.hidden),
                                init({1}, opt.hidden)};
  std::vector<Tensor> m1, m2;  // Adam moments
  for (const Tensor& p : params) {
    m1.push_back(zeros_like(p));
    m2.push_back(zeros_like(p));
  }
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

  DemoResult result;
  for (int step = 1; step <= opt.steps; ++step) {
    Tensor h = relu(linear(x, params[0], params[1]));  // (N, hidden)
    Tensor pred = linear(h, params[2], params[3]);     // (N, 1)
    Tensor loss = mean(pow(sub(pred, y), 2.0));
    for (Tensor& p : params) p.set_grad(Tensor());
    backward(loss);
    {
      NoGradGuard no_grad;
      const double c1 = 1 - std::pow(beta1, step), c2 = 1 - std::pow(beta2, step);
      for (size_t i = 0; i < params.size(); ++i) {
        Tensor g = params[i].grad();
        m1[i] = add(mul(m1[i], beta1), mul(g, 1 - beta1));
        m2[i] = add(mul(m2[i], beta2), mul(mul(g, g), 1 - beta2));
        Tensor update = div(mul(m1[i], opt.lr / c1), add(sqrt(mul(m2[i], 1 / c2)), eps));
        copy_(params[i], sub(params[i], update));
      }
    }
    const double l = loss.item();
    if (step == 1) result.first_loss = l;
    result.last_loss = l;
    log(step, l);
  }
  return result;
}

}  // namespace vb
