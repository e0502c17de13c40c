// The tensor layer: dtypes and their conversions, Philox, views, factories, printing, errors.
#include <cmath>
#include <limits>

#include "tests/support/check.h"

using namespace vb;

TEST_CASE("bfloat16 conversion rounds to nearest even and keeps specials") {
  CHECK(float(bf16(1.0f)) == 1.0f);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even → 1.
  CHECK(float(bf16(1.0f + 0.00390625f)) == 1.0f);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even → 1 + 2^-6.
  CHECK(float(bf16(1.0f + 3 * 0.00390625f)) == 1.0f + 0.015625f);
  CHECK(std::isinf(float(bf16(std::numeric_limits<float>::infinity()))));
  CHECK(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(float(bf16(-2.5f)) == -2.5f);
}

TEST_CASE("float16 conversion: normals, subnormals, overflow, ties to even") {
  CHECK(float(f16(1.0f)) == 1.0f);
  CHECK(f16(1.0f).bits == 0x3c00);
  CHECK(f16(-2.0f).bits == 0xc000);
  CHECK(f16(65504.0f).bits == 0x7bff);                // the largest half
  CHECK(f16(65520.0f).bits == 0x7c00);                // halfway to 65536 rounds to even: infinity
  CHECK(f16(65519.0f).bits == 0x7bff);
  CHECK(f16(std::ldexp(1.0f, -24)).bits == 0x0001);   // the smallest subnormal
  CHECK(f16(std::ldexp(1.0f, -25)).bits == 0x0000);   // halfway to it: ties to even → 0
  CHECK(f16(std::ldexp(3.0f, -25)).bits == 0x0002);   // 1.5 steps → 2 (even)
  CHECK(float(f16::to_float(0x0001)) == std::ldexp(1.0f, -24));
  CHECK(f16(1.0f + std::ldexp(1.0f, -11)).bits == 0x3c00);      // tie → even (1.0)
  CHECK(f16(1.0f + 3 * std::ldexp(1.0f, -11)).bits == 0x3c02);  // tie → even (1 + 2^-9)
  CHECK(std::isnan(float(f16(std::numeric_limits<float>::quiet_NaN()))));
  // Every half value survives float → half → float.
  for (uint32_t b = 0; b < 0x7c00; ++b) {
    const float f = f16::to_float(uint16_t(b));
    REQUIRE(f16(f).bits == b);
  }
}

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  Philox4 r = philox4x32_10(Philox4{0, 0, 0, 0}, 0, 0);
  CHECK(r.x0 == 0x6627e8d5u);
  CHECK(r.x1 == 0xe169c58du);
  CHECK(r.x2 == 0xbc57ac4cu);
  CHECK(r.x3 == 0x9b00dbd8u);
  r = philox4x32_10(Philox4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu);
  CHECK(r.x0 == 0x408f276du);
  CHECK(r.x1 == 0x41c83b0eu);
  CHECK(r.x2 == 0xa20bc7c6u);
  CHECK(r.x3 == 0x6d5451fdu);
  r = philox4x32_10(Philox4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u);
  CHECK(r.x0 == 0xd16cfe09u);
  CHECK(r.x1 == 0x94fdccebu);
  CHECK(r.x2 == 0x5001e420u);
  CHECK(r.x3 == 0x24126ea1u);
}

TEST_CASE("philox_uniform_block draws exactly philox_uniform's numbers") {
  // The vectorised block forms (dropout's: AVX-512 intrinsics where built for them, and the portable lane
  // loop) against the scalar definition: lengths that are and are not
  // multiples of the lane count, a start that is not, counters that cross 2^32 (the high word changes
  // inside a block) and a 64-bit seed.
  for (const uint64_t seed : {uint64_t(0), uint64_t(0x5eed), uint64_t(0x123456789abcdef0)}) {
    for (const uint64_t n0 : {uint64_t(0), uint64_t(3), (uint64_t(1) << 32) - 7, uint64_t(0xfffffffffffffff0)}) {
      for (const int64_t count : {int64_t(0), int64_t(1), int64_t(15), int64_t(16), int64_t(37), int64_t(200)}) {
        for (auto* block : {&philox_uniform_block, &detail::philox_uniform_block_portable}) {
          std::vector<float> u(size_t(count) + 1, -1.0f);
          block(seed, n0, count, u.data());
          for (int64_t i = 0; i < count; ++i)
            REQUIRE_MESSAGE(u[size_t(i)] == philox_uniform(seed, n0 + uint64_t(i)), "seed ", seed, " n0 ", n0, " i ", i,
                            block == &philox_uniform_block ? " (the build's block form)" : " (the portable form)");
          CHECK(u[size_t(count)] == -1.0f);  // nothing written past count
        }
      }
    }
  }
}

TEST_CASE("random draws depend only on (seed, offset) and the generator state round-trips") {
  Generator g{7, 0};
  Tensor a = rand({1000}, &g);
  CHECK(g.offset == 1000);
  Tensor b = rand({500}, &g);
  Generator whole{7, 0};
  Tensor c = rand({1500}, &whole);
  const auto av = a.to_vector(), bv = b.to_vector(), cv = c.to_vector();
  for (size_t i = 0; i < 1000; ++i) REQUIRE(av[i] == cv[i]);
  for (size_t i = 0; i < 500; ++i) REQUIRE(bv[i] == cv[1000 + i]);
  // Saved state reproduces the next draw.
  Generator saved = g;
  Tensor n1 = randn({64}, &g);
  Tensor n2 = randn({64}, &saved);
  CHECK(n1.to_vector() == n2.to_vector());
  // Moments of a large draw.
  Generator h{11, 0};
  const auto u = rand({100000}, &h).to_vector();
  const auto z = randn({100000}, &h).to_vector();
  double mu = 0, mz = 0, vz = 0;
  for (double x : u) mu += x;
  for (double x : z) mz += x;
  mu /= double(u.size());
  mz /= double(z.size());
  for (double x : z) vz += (x - mz) * (x - mz);
  vz /= double(z.size());
  CHECK(std::abs(mu - 0.5) < 0.01);
  CHECK(std::abs(mz) < 0.02);
  CHECK(std::abs(vz - 1.0) < 0.02);
  for (double x : u) REQUIRE((x >= 0.0 && x < 1.0));
  const auto ri = randint(3, 9, {10000}, &h).to_vector();
  for (double x : ri) REQUIRE((x >= 3 && x < 9));
}

TEST_CASE("factories and element access") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.is_contiguous());
  for (double v : z.to_vector()) CHECK(v == 0.0);
  CHECK(full({2}, 2.5, DType::BFloat16).at({1}) == 2.5);
  Tensor r = arange(5);
  CHECK(r.dtype() == DType::Int64);
  CHECK(r.to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(1.0, 2.0, 0.25, DType::Float32).to_vector() == std::vector<double>{1.0, 1.25, 1.5, 1.75});
  CHECK(Tensor::scalar(3.0).item() == 3.0);
  CHECK_THROWS_AS(zeros({2, 3}).item(), Error);
  CHECK_THROWS_AS(zeros({2}).at({2}), Error);
  CHECK(reinterpret_cast<uintptr_t>(zeros({3}).data_ptr()) % 64 == 0);
}

TEST_CASE("views share storage and compute the right elements") {
  Tensor x = arange(24, DType::Float32);
  Tensor m = reshape(x, {2, 3, 4});
  CHECK(m.impl()->storage == x.impl()->storage);
  CHECK(m.at({1, 2, 3}) == 23);
  Tensor t = transpose(m, 0, 2);  // (4, 3, 2)
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(!t.is_contiguous());
  CHECK(t.at({3, 2, 1}) == 23);
  CHECK(t.at({1, 0, 1}) == 13);
  Tensor p = permute(m, {1, 2, 0});  // (3, 4, 2)
  CHECK(p.at({2, 1, 0}) == m.at({0, 2, 1}));
  Tensor n = narrow(m, 2, 1, 2);  // (2, 3, 2)
  CHECK(n.at({1, 1, 0}) == m.at({1, 1, 1}));
  Tensor s = slice(x, 0, 1, 10, 3);  // 1, 4, 7
  CHECK(s.to_vector() == std::vector<double>{1, 4, 7});
  CHECK(slice(x, 0, -3, 24).to_vector() == std::vector<double>{21, 22, 23});
  Tensor sel = select(m, 1, -1);  // (2, 4)
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(sel.at({1, 0}) == 20);
  Tensor e = expand(reshape(arange(3, DType::Float32), {3, 1}), {2, 3, 4});
  CHECK(e.strides()[0] == 0);
  CHECK(e.at({1, 2, 3}) == 2);
  CHECK(unsqueeze(x, 0).shape() == Shape{1, 24});
  CHECK(squeeze(reshape(x, {1, 24, 1})).shape() == Shape{24});
  CHECK(squeeze(reshape(x, {1, 24, 1}), -1).shape() == Shape{1, 24});
  CHECK(flatten(m, 1).shape() == Shape{2, 12});
  // A transposed tensor cannot be viewed flat, but can be reshaped (with a copy).
  CHECK_THROWS_AS(view(t, {24}), Error);
  Tensor flat = reshape(t, {24});
  CHECK(flat.at({1}) == t.at({0, 0, 1}));
  Tensor c = contiguous(t);
  CHECK(c.is_contiguous());
  CHECK(c.to_vector() == t.to_vector());
  // view of a non-contiguous tensor where strides allow it: split a dim
  Tensor v = view(t, {2, 2, 3, 2});
  CHECK(v.at({1, 1, 2, 1}) == t.at({3, 2, 1}));
}

TEST_CASE("cat, stack, split and chunk") {
  Tensor a = reshape(arange(6, DType::Float32), {2, 3});
  Tensor b = reshape(arange(6.0, 10.0, 1.0, DType::Float32), {2, 2});
  Tensor c = cat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 5});
  CHECK(c.to_vector() == std::vector<double>{0, 1, 2, 6, 7, 3, 4, 5, 8, 9});
  Tensor s = stack({a, a}, 1);
  CHECK(s.shape() == Shape{2, 2, 3});
  CHECK(s.at({1, 1, 2}) == 5);
  auto parts = split(arange(7, DType::Float32), 3);
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].to_vector() == std::vector<double>{6});
  CHECK(chunk(arange(6, DType::Float32), 4).size() == 3);  // ceil(6/4) = 2 per chunk
  CHECK_THROWS_AS(cat({a, reshape(b, {4, 1})}, 1), Error);
  CHECK_THROWS_AS(cat({a, to(a, DType::Float64)}, 0), Error);
}

TEST_CASE("dtype conversion") {
  Tensor x = Tensor::from_vector(std::vector<double>{-1.7, 0.0, 2.5, 3.9}, {4}, DType::Float64);
  CHECK(to(x, DType::Int64).to_vector() == std::vector<double>{-1, 0, 2, 3});  // truncation toward zero
  CHECK(to(x, DType::Bool).to_vector() == std::vector<double>{1, 0, 1, 1});
  CHECK(to(to(x, DType::BFloat16), DType::Float32).at({2}) == 2.5);
  CHECK(to(x, DType::Float16).dtype() == DType::Float16);
  // Large int64 values survive the trip to float64 and back exactly.
  Tensor big = Tensor::from_vector(std::vector<int64_t>{(int64_t(1) << 52) + 1}, {1});
  CHECK(int64_t(to(to(big, DType::Float64), DType::Int64).at({0})) == (int64_t(1) << 52) + 1);
}

TEST_CASE("printing looks like PyTorch's") {
  Tensor x = reshape(arange(6, DType::Float32), {2, 3});
  const std::string s = x.str();
  CHECK(s.find("[[0.0000, 1.0000, 2.0000],") != std::string::npos);
  CHECK(s.find("shape=(2, 3), dtype=float32, device=cpu") != std::string::npos);
  const std::string big = arange(100).str();
  CHECK(big.find("[0, 1, 2, ..., 97, 98, 99]") != std::string::npos);
  CHECK(zeros({1}).set_requires_grad().str().find("requires_grad=True") != std::string::npos);
}

TEST_CASE("errors name the op, the shapes and what was expected") {
  Tensor x = zeros({2, 3});
  try {
    reshape(x, {4, 2});
    FAIL("reshape to a wrong element count must throw");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("reshape") != std::string::npos);
    CHECK(m.find("(2, 3)") != std::string::npos);
    CHECK(m.find("(4, 2)") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(transpose(x, 0, 2), doctest::Contains("dim 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(expand(x, {3, 3}), doctest::Contains("expand"), Error);
  CHECK_THROWS_WITH_AS(Device::parse("tpu"), doctest::Contains("expected cpu, cuda"), Error);
  CHECK_THROWS_WITH_AS(zeros({2}, DType::Int64).set_requires_grad(), doctest::Contains("int64"), Error);
  CHECK_THROWS_AS(narrow(x, 1, 2, 2), Error);
  CHECK_THROWS_AS(permute(x, {0, 0}), Error);
}

TEST_CASE("the CPU keeps freed large blocks by size class and hands them out again") {
  // Size classes: 64-byte multiples below 1 MiB (not cached), four classes per power of two above.
  CHECK(cpu_size_class(100) == 128);
  CHECK(cpu_size_class(size_t(1) << 20) == size_t(1) << 20);
  CHECK(cpu_size_class((size_t(1) << 20) + 1) == size_t(5) << 18);         // 1.25 MiB
  CHECK(cpu_size_class(size_t(3) << 20) == size_t(3) << 20);               // 3 MiB is a class
  CHECK(cpu_size_class((size_t(3) << 20) + 1) == size_t(7) << 19);         // 3.5 MiB
  CHECK(cpu_size_class(93763584) == size_t(96) << 20);                     // BERT-base's word embeddings
  if (!cpu_caches_blocks()) return;  // an AddressSanitizer build: every block goes back to malloc
  cpu_empty_cache();
  REQUIRE(cpu_cached_bytes() == 0);
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({int64_t(1) << 19});  // 2 MiB of float32
    first = t.data_ptr();
  }
  CHECK(cpu_cached_bytes() == size_t(2) << 20);
  {
    Tensor small = Tensor::empty({1000});           // below 1 MiB: malloc's, never cached
    Tensor u = Tensor::empty({(int64_t(1) << 19) - 25});  // 100 bytes less, the same 2 MiB class
    CHECK(u.data_ptr() == first);
    CHECK(cpu_cached_bytes() == 0);
    Tensor v = Tensor::empty({int64_t(3) << 18});  // 3 MiB: another class, a new block
    CHECK(v.data_ptr() != first);
    // A reused block works like a new one.
    fill_(u, 2.5);
    const float* pu = static_cast<const float*>(u.data_ptr());
    CHECK(pu[0] == 2.5f);
    CHECK(pu[u.numel() - 1] == 2.5f);
  }
  CHECK(cpu_cached_bytes() == (size_t(2) << 20) + (size_t(3) << 20));
  cpu_empty_cache();
  CHECK(cpu_cached_bytes() == 0);
}
