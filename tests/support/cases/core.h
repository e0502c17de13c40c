// Cases of the core methods: copy, fill, arange, random, unary, binary, where, reduce, matmul,
// matmul_bias, matmul_add. The elementwise cases are generated from the op lists of kernels/backend.h: every op, at
// every dtype of its domain, so a new op in a list is tested on every backend without a line here.
// Shapes are small and odd (not multiples of 32, 256 or a 16-byte pack) to reach every tail.
#pragma once

namespace vb::backend_cases {

namespace core_detail {

// The dtypes an elementwise op of `domain` is tested at.
inline std::vector<DType> domain_dtypes(OpDomain domain) {
  switch (domain) {
    case OpDomain::Numeric:
      return {DType::Float32, DType::BFloat16, DType::Float16, DType::Int32, DType::Int64};
    case OpDomain::Floating:
      return {DType::Float32, DType::BFloat16, DType::Float16};
    case OpDomain::Compare:
      return {DType::Float32, DType::BFloat16, DType::Int64};
    case OpDomain::Logical:
      return {DType::Bool, DType::Float32, DType::Int32};
  }
  return {};
}

// Inputs for an elementwise op at `dtype`: in the op's domain of definition (positive where a log or root
// is taken, away from 0 for a divisor), and with repeated values where equality matters (comparisons,
// logic: values on a grid of 0.5, zeros among them).
inline Tensor operand(const Shape& shape, uint64_t seed, DType dtype, bool positive, bool grid) {
  if (dtype == DType::Bool) return gt(values(shape, seed, DType::Float32), 0.0);
  if (grid) {  // k/2 for integers k in [-6, 6) (integer dtypes truncate them: many equal values too)
    const Tensor k = to(to(values(shape, seed, DType::Float32, -6, 6), DType::Int64), DType::Float32);
    return contiguous(to(mul(k, 0.5), dtype));
  }
  return positive ? values(shape, seed, dtype, 0.25, 3) : values(shape, seed, dtype, -3, 3);
}

inline bool positive_unary(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Log1p || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt ||
         op == UnaryOp::Pow;
}

// The float32 tolerance of the CPU's math library against the GPU's (or glibc's under the emulator).
inline Output elementwise_result(Tensor value) {
  if (value.dtype() == DType::Float32) return {"out", std::move(value), 1e-5, 1e-5};
  return close("out", std::move(value));
}

}  // namespace core_detail

inline void add_core_cases(std::vector<Case>& cases) {
  using namespace core_detail;

  // ---- copy: every dtype conversion, from a strided (permuted, stepped) source; a stride-0 source ----
  const std::vector<DType> all_dtypes = {DType::Float32, DType::BFloat16, DType::Float16,
                                         DType::Int32,   DType::Int64,    DType::Bool};
  for (DType from : all_dtypes)
    for (DType into : all_dtypes)
      cases.push_back({"copy", fmt::format("copy {} → {} strided", dtype_str(from), dtype_str(into)), [=](Device d) {
                         const Tensor x = on(to(values({5, 7, 3}, 1, DType::Float32, -40, 40), from), d);
                         const Tensor src = slice(permute(x, {2, 0, 1}), 1, 1, 5, 2);  // (3, 2, 7), strided
                         Tensor dst = out(src.shape(), into, d);
                         backend(d).copy(src, dst);
                         return Outputs{exact("dst", dst)};
                       }});
  cases.push_back({"copy", "copy float16 broadcast (stride 0) into a slice", [](Device d) {
                     const Tensor x = on(values({7, 1}, 2, DType::Float16), d);
                     Tensor dst = on(values({4, 7, 9}, 3, DType::Float16), d);
                     Tensor view = slice(dst, 2, 2, 7, 1);  // (4, 7, 5) inside dst, strided
                     backend(d).copy(expand(x, {4, 7, 5}), view);
                     return Outputs{exact("dst", dst)};
                   }});

  // ---- fill, arange, random ----
  for (DType t : all_dtypes)
    cases.push_back({"fill", "fill " + dtype_str(t), [t](Device d) {
                       Tensor dst = out({37}, t, d);
                       backend(d).fill(dst, 3.75);
                       return Outputs{exact("dst", dst)};
                     }});
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int32, DType::Int64})
    cases.push_back({"arange", "arange " + dtype_str(t), [t](Device d) {
                       Tensor dst = out({169}, t, d);
                       backend(d).arange(dst, -3, 1.5);
                       return Outputs{exact("dst", dst)};
                     }});
  for (DType t : kFloats)
    for (RandomKind kind : {RandomKind::Uniform, RandomKind::Normal})
      cases.push_back({"random",
                       fmt::format("random {} {}", kind == RandomKind::Uniform ? "uniform" : "normal", dtype_str(t)),
                       [=](Device d) {
                         Tensor dst = out({301}, t, d);
                         backend(d).random(dst, kind, kind == RandomKind::Uniform ? -1 : 0.5, 2, 99, 5);
                         // Box-Muller's log/cos on a GPU may differ from glibc's by an ulp of float32, which
                         // can flip the rounding to a half type: one ulp of the stored dtype.
                         if (kind == RandomKind::Uniform) return Outputs{exact("dst", dst)};
                         const double rtol = t == DType::BFloat16 ? 8e-3 : t == DType::Float16 ? 1e-3 : 1e-5;
                         return Outputs{{"dst", dst, 1e-6, rtol}};
                       }});
  cases.push_back({"random", "random randint int64", [](Device d) {
                     Tensor dst = out({333}, DType::Int64, d);
                     backend(d).random(dst, RandomKind::Randint, -5, 1000, 7, 0);
                     return Outputs{exact("dst", dst)};
                   }});

  // ---- unary: every op of VB_UNARY_OPS at every dtype of its domain, contiguous and transposed ----
  for (UnaryOp op : kUnaryOps)
    for (DType t : domain_dtypes(op_domain(op)))
      for (bool transposed : {false, true}) {
        const bool integer = !is_floating(t) && t != DType::Bool;
        // alpha: a scalar that stays itself in every dtype (integers truncate); pow's exponent 2 takes the
        // kernels' square form, so the non-contiguous case tries 1.5.
        const double alpha = op == UnaryOp::Pow ? (transposed ? 1.5 : 2.0) : integer ? 3.0 : 0.75;
        cases.push_back({"unary",
                         fmt::format("unary {} {}{}", op_name(op), dtype_str(t), transposed ? " transposed" : ""),
                         [=](Device d) {
                           const Tensor x0 = on(operand({13, 9}, 4 + unsigned(op), t, positive_unary(op), false), d);
                           const Tensor x = transposed ? transpose(x0, 0, 1) : x0;
                           const bool logical = op_domain(op) == OpDomain::Logical;
                           Tensor y = out(x.shape(), logical ? DType::Bool : t, d);
                           backend(d).unary(op, x, y, alpha);
                           return Outputs{elementwise_result(y)};
                         }});
      }

  // ---- binary: every op of VB_BINARY_OPS at every dtype of its domain; b broadcast along a dim ----
  for (BinaryOp op : kBinaryOps)
    for (DType t : domain_dtypes(op_domain(op)))
      cases.push_back({"binary", fmt::format("binary {} {}", op_name(op), dtype_str(t)), [=](Device d) {
                         const OpDomain domain = op_domain(op);
                         const bool grid = domain == OpDomain::Compare || domain == OpDomain::Logical;
                         const Tensor a = on(operand({7, 11}, 20 + unsigned(op), t, false, grid), d);
                         // b: (1, 11) expanded over the rows (stride 0); a divisor stays away from 0.
                         const Tensor b = on(operand({1, 11}, 40 + unsigned(op), t, op == BinaryOp::Div, grid), d);
                         const bool logical = domain == OpDomain::Compare || domain == OpDomain::Logical;
                         Tensor y = out({7, 11}, logical ? DType::Bool : t, d);
                         backend(d).binary(op, a, expand(b, {7, 11}), y);
                         return Outputs{elementwise_result(y)};
                       }});

  // ---- where: cond, a and b broadcast from three shapes ----
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int64, DType::Bool})
    cases.push_back({"where", "where " + dtype_str(t), [t](Device d) {
                       const Tensor cond = on(gt(values({4, 1, 5}, 14, DType::Float32), 0.0), d);
                       const Tensor a = on(operand({4, 9, 5}, 12, t, false, false), d);
                       const Tensor b = on(operand({9, 1}, 13, t, false, false), d);
                       Tensor y = out({4, 9, 5}, t, d);
                       backend(d).where(expand(cond, {4, 9, 5}), a, expand(b, {4, 9, 5}), y);
                       return Outputs{exact("out", y)};
                     }});

  // ---- reduce: every op over several dim sets, of a strided input and of long rows ----
  const std::vector<std::vector<int>> dim_sets = {{0}, {1}, {2}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (ReduceOp op : kReduceOps)
    for (DType t : {DType::Float32, DType::BFloat16, DType::Float16, DType::Int64}) {
      if (op == ReduceOp::Mean && t == DType::Int64) continue;  // mean is for floating dtypes
      for (size_t s = 0; s < dim_sets.size() + 1; ++s) {
        const bool long_rows = s == dim_sets.size();
        const std::vector<int> dims = long_rows ? std::vector<int>{1} : dim_sets[s];
        if (op == ReduceOp::Argmax && dims.size() != 1) continue;
        cases.push_back({"reduce",
                         fmt::format("reduce {} {} over {}{}", op_name(op), dtype_str(t), fmt::join(dims, ","),
                                     long_rows ? " of long rows" : " of a transpose"),
                         [=](Device d) {
                           // (3, 37, 5) as the transpose of (5, 37, 3), or rows of 700 (several passes of 256).
                           const Tensor x = long_rows ? on(values({3, 700}, 16, t, -100, 100), d)
                                                      : transpose(on(values({5, 37, 3}, 15, t, -100, 100), d), 0, 2);
                           Shape shape = x.shape();
                           for (int k : dims) shape[size_t(k)] = 1;
                           Tensor y = out(shape, op == ReduceOp::Argmax ? DType::Int64 : t, d);
                           backend(d).reduce(op, x, dims, y);
                           // Sums of up to 700 values of ±100 in another order: scale float32's tolerance.
                           if (is_floating(y.dtype()) && op != ReduceOp::Amax && op != ReduceOp::Amin)
                             return Outputs{close("out", y, t == DType::Float32 ? 10 : 1)};
                           return Outputs{exact("out", y)};
                         }});
      }
    }

  // ---- matmul, matmul_bias: batched, transposed, broadcast and empty operands ----
  struct Product {
    const char* name;
    Shape a, b;
    bool transpose_b, broadcast_a;
  };
  const std::vector<Product> products = {
      {"batched, b broadcast over the batch", {3, 7, 13}, {1, 13, 9}, false, false},
      {"b a transposed view", {3, 7, 13}, {3, 9, 13}, true, false},
      {"a broadcast over the batch (stride 0)", {1, 7, 13}, {3, 13, 9}, false, true},
      {"M = 0", {2, 0, 5}, {2, 5, 4}, false, false},
      {"K = 0 (zeros)", {2, 5, 0}, {2, 0, 4}, false, false},
  };
  for (DType t : kFloats)
    for (const Product& p : products)
      for (const char* op : {"matmul", "matmul_bias", "matmul_add"})
        cases.push_back(
            {op, fmt::format("{} {} {}", op, p.name, dtype_str(t)), [=](Device d) {
               Tensor a = on(values(p.a, 18, t), d), b = on(values(p.b, 19, t), d);
               if (p.transpose_b) b = transpose(b, 1, 2);
               const int64_t batch = std::max(p.a[0], p.b[0]), m = p.a[1], n = b.size(2);
               if (p.a[0] == 1) a = expand(a, {batch, m, p.a[2]});
               if (p.b[0] == 1) b = expand(b, {batch, b.size(1), n});
               const std::string name = op;
               Tensor y = name == "matmul_add" ? on(values({batch, m, n}, 24, t), d) : out({batch, m, n}, t, d);
               if (name == "matmul_bias")
                 backend(d).matmul_bias(a, b, on(values({n}, 23, t), d), y);
               else if (name == "matmul_add")  // y += a·b
                 backend(d).matmul_add(a, b, y);
               else
                 backend(d).matmul(a, b, y);
               // Sums of 13 products (cuBLASLt may split them): 1e-4 for float32.
               if (t == DType::Float32) return Outputs{{"out", y, 1e-4, 1e-4}};
               return Outputs{close("out", y)};
             }});

  // ---- float64 is an error on a device, wherever it would arrive first (the CPU takes it) ----
  cases.push_back({"unary", "unary exp float64 (error on a device)",
                   [](Device d) {
                     const Tensor x = on(test::uniform({3, 4}, 25), d);
                     Tensor y = out({3, 4}, DType::Float64, d);
                     backend(d).unary(UnaryOp::Exp, x, y, 0);
                     return Outputs{};
                   },
                   "float64 is not supported", true});
}

}  // namespace vb::backend_cases
