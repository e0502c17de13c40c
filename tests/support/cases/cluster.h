// Cases of the clustering method: nearest_centroid gives the CPU's bits on every device (its contract in
// kernels/backend_methods.def), at shapes one past and one short of the kernel's 128-row blocks, with
// K = 1 and D = 1. Ties, NaNs and the errors are tests/support/nearest_centroid_cases.h.
#pragma once

namespace vb::backend_cases {

inline void add_cluster_cases(std::vector<Case>& cases) {
  struct Size {
    int64_t n, k, d;
  };
  const std::vector<Size> sizes = {{1, 1, 1}, {129, 1, 7}, {127, 16, 32}, {129, 17, 33}, {0, 3, 4}};
  for (DType t : kFloats)
    for (const Size& s : sizes)
      cases.push_back({"nearest_centroid",
                       fmt::format("nearest_centroid {} N={} K={} D={}", dtype_str(t), s.n, s.k, s.d), [=](Device d) {
                         Tensor index = out({s.n}, DType::Int64, d), distance = out({s.n}, DType::Float32, d);
                         backend(d).nearest_centroid(on(values({s.n, s.d}, 10 + uint64_t(s.n), t), d),
                                                     on(values({s.k, s.d}, 20 + uint64_t(s.k), t), d), index, distance);
                         return Outputs{exact("index", index), exact("distance", distance)};
                       }});
}

}  // namespace vb::backend_cases
