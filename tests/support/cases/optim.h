// Cases of the optimizer methods: the fused AdamW step over several tensors of mixed dtypes (with and
// without weight decay; one of 70 000 elements, so the kernel's grid stride and several blocks are used),
// three steps from the same values and gradients; and the sums of squares behind the gradient norm.
#pragma once

namespace vb::backend_cases {

inline void add_optim_cases(std::vector<Case>& cases) {
  struct Spec {
    Shape shape;
    DType dtype;
    bool decay;
  };
  const std::vector<Spec> specs = {{{7, 13}, DType::Float32, true}, {{70000}, DType::Float32, true},
                                   {{33}, DType::Float32, false},   {{5, 9}, DType::BFloat16, true},
                                   {{1029}, DType::Float16, true},  {{3}, DType::Float32, true}};
  for (const double scale : {1.0, 0.3})
    cases.push_back({"adamw",
                     scale == 1 ? std::string("adamw: 3 steps over 6 tensors of float32, bfloat16 and float16")
                                : std::string("adamw with grad_scale 0.3 (clipping's factor): 3 steps, 6 tensors"),
                     [=](Device d) {
                       std::vector<AdamWSlot> slots;
                       for (size_t i = 0; i < specs.size(); ++i)
                         slots.push_back({on(values(specs[i].shape, 100 + i, specs[i].dtype), d), Tensor(),
                                          on(zeros(specs[i].shape), d), on(zeros(specs[i].shape), d), specs[i].decay});
                       for (int step = 1; step <= 3; ++step) {
                         for (size_t i = 0; i < specs.size(); ++i)
                           slots[i].grad = on(values(specs[i].shape, 200 + 10 * step + i, specs[i].dtype), d);
                         AdamWStep s;
                         s.lr = 1e-2 * step;
                         s.weight_decay = 0.1;
                         s.bias_correction1 = 1 - std::pow(s.beta1, step);
                         s.bias_correction2 = 1 - std::pow(s.beta2, step);
                         s.grad_scale = scale;
                         backend(d).adamw(slots, s);
                       }
                       // float32 may differ by a few ulp per step (sqrt, division), the half types by one
                       // rounding of the stored parameter.
                       Outputs o;
                       for (size_t i = 0; i < slots.size(); ++i) {
                         o.push_back(close(fmt::format("param {}", i), slots[i].param, 5));
                         o.push_back({fmt::format("exp_avg {}", i), slots[i].exp_avg, 1e-7, 1e-5});
                         o.push_back({fmt::format("exp_avg_sq {}", i), slots[i].exp_avg_sq, 1e-9, 1e-5});
                         o.push_back(exact(fmt::format("grad {} (left as it was)", i), slots[i].grad));
                       }
                       return o;
                     }});
  cases.push_back({"sum_squares", "sum_squares of 6 tensors of float32, bfloat16 and float16", [=](Device d) {
                     std::vector<Tensor> xs;
                     for (size_t i = 0; i < specs.size(); ++i)
                       xs.push_back(on(values(specs[i].shape, 300 + i, specs[i].dtype), d));
                     Tensor o = out({int64_t(xs.size())}, DType::Float32, d);
                     backend(d).sum_squares(xs, o);
                     return Outputs{{"out", o, 1e-5, 1e-5}};
                   }});
}

}  // namespace vb::backend_cases
