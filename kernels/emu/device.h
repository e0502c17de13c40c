// What a kernel sees under the emulator: the built-in index variables, barriers, warp intrinsics,
// atomics and math intrinsics, with the semantics of CUDA's (see docs/EMULATOR.md). Included
// through kernels/emu/emu.h.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

// The current fiber's indices: real variables (one per OS thread, rewritten at every fiber switch)
// so that a debugger can print them and break on them.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
inline constexpr int warpSize = 32;

namespace vb::emulator::detail {

using Site = std::source_location;

// One lane's part in a warp-wide operation. The lane posts pointers into its own (suspended)
// stack; when every lane named in `mask` has arrived at the same site, `resolve` runs once, reading
// every lane's `in` and writing every lane's `out`.
struct WarpOp {
  const char* name;
  void (*resolve)(WarpOp* const* lanes, unsigned mask);  // lanes[32]: null where not in mask
  unsigned mask;
  const void* in;
  void* out;
  int operand = 0;  // source lane, delta or lane mask
  int width = 32;
  bool gather = false;  // no mask: completes with whichever lanes are there once all have blocked
};

// Blocks the calling fiber until its warp's rendezvous completes (or throws from the launch).
void warp_sync(WarpOp& op, Site site);
// Blocks until every thread of the block arrives at this site; returns how many passed a nonzero
// predicate.
int block_sync(int predicate, Site site);
unsigned lane_id();
[[noreturn]] void fail(const std::string& message);
std::string where(const Site& site);  // "cuda/softmax.cu:42"

void cp_async(void* shared_dst, const void* global_src, int cp_bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int newest_pending);

inline constexpr unsigned char poison_byte = 0xFF;  // reads of what no lane supplied

enum class Shfl { idx, up, down, bfly };

// shfl.sync as the PTX ISA defines it: c = ((32 - width) << 8) | clamp, where clamp is 0 for .up
// and 31 otherwise; an out-of-range source returns the lane's own value.
template <class T, Shfl mode>
void resolve_shfl(WarpOp* const* lanes, unsigned mask) {
  T results[32];
  for (int lane = 0; lane < 32; ++lane) {
    if (!lanes[lane]) continue;
    const WarpOp& op = *lanes[lane];
    const int segmask = 32 - op.width;
    const int min_lane = lane & segmask;
    const int max_lane = mode == Shfl::up ? min_lane : (min_lane | (31 & ~segmask));
    int src = lane;
    bool in_range = true;
    switch (mode) {
      case Shfl::idx: src = min_lane | (op.operand & 31 & ~segmask); break;
      case Shfl::up: src = lane - op.operand; in_range = src >= max_lane; break;
      case Shfl::down: src = lane + op.operand; in_range = src <= max_lane; break;
      case Shfl::bfly: src = lane ^ op.operand; in_range = src <= max_lane; break;
    }
    if (!in_range) src = lane;
    if (src >= 0 && src < 32 && (mask >> src & 1u))
      std::memcpy(&results[lane], lanes[src]->in, sizeof(T));
    else
      std::memset(&results[lane], poison_byte, sizeof(T));  // undefined on a GPU
  }
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[lane]) std::memcpy(lanes[lane]->out, &results[lane], sizeof(T));
}

template <class T, Shfl mode>
T shfl(const char* name, unsigned mask, T value, int operand, int width, Site site) {
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail(std::string(name) + " at " + where(site) + ": width " +
         std::to_string(width) + " is not a power of two in 1..32");
  T result;
  WarpOp op{name, &resolve_shfl<T, mode>, mask, &value, &result, operand, width};
  warp_sync(op, site);
  return result;
}

// Vote and reduction operations combine one 32-bit value per lane.
template <class T, class Combine>
void resolve_combine(WarpOp* const* lanes, unsigned mask) {
  bool first = true;
  T total{};
  for (int lane = 0; lane < 32; ++lane) {
    if (!lanes[lane]) continue;
    const T value = *static_cast<const T*>(lanes[lane]->in);
    total = first ? value : Combine{}(total, value);
    first = false;
  }
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[lane]) *static_cast<T*>(lanes[lane]->out) = total;
}

template <class T, class Combine>
T combine(const char* name, unsigned mask, T value, Site site) {
  T result;
  WarpOp op{name, &resolve_combine<T, Combine>, mask, &value, &result};
  warp_sync(op, site);
  return result;
}

struct BallotBit {
  unsigned operator()(unsigned a, unsigned b) const { return a | b; }
};
struct Min {
  template <class T> T operator()(T a, T b) const { return b < a ? b : a; }
};
struct Max {
  template <class T> T operator()(T a, T b) const { return a < b ? b : a; }
};
struct Plus {
  template <class T> T operator()(T a, T b) const {
    return static_cast<T>(static_cast<unsigned>(a) + static_cast<unsigned>(b));  // wraps like a GPU
  }
};

template <class T>
void resolve_match_any(WarpOp* const* lanes, unsigned mask) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!lanes[lane]) continue;
    unsigned same = 0;
    for (int other = 0; other < 32; ++other)
      if (lanes[other] && std::memcmp(lanes[lane]->in, lanes[other]->in, sizeof(T)) == 0)
        same |= 1u << other;
    *static_cast<unsigned*>(lanes[lane]->out) = same;
  }
}

struct MatchAll {
  unsigned mask;
  int predicate;
};
template <class T>
void resolve_match_all(WarpOp* const* lanes, unsigned mask) {
  const void* reference = nullptr;
  bool all_equal = true;
  for (int lane = 0; lane < 32; ++lane) {
    if (!lanes[lane]) continue;
    if (!reference) reference = lanes[lane]->in;
    all_equal = all_equal && std::memcmp(reference, lanes[lane]->in, sizeof(T)) == 0;
  }
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[lane]) *static_cast<MatchAll*>(lanes[lane]->out) = {all_equal ? mask : 0u, all_equal};
}

inline void resolve_nothing(WarpOp* const*, unsigned) {}

inline void resolve_gathered_mask(WarpOp* const* lanes, unsigned mask) {
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[lane]) *static_cast<unsigned*>(lanes[lane]->out) = mask;
}

// An atomic read-modify-write of any 2-, 4- or 8-byte value through compare-and-swap on its bits;
// `update(old)` gives the new value. Real atomics, because blocks run on several OS threads.
template <class T, class Update>
T atomic_update(T* address, Update update) {
  using Bits = std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                  std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
  static_assert(sizeof(T) == sizeof(Bits));
  std::atomic_ref<Bits> bits(*reinterpret_cast<Bits*>(address));
  Bits expected = bits.load(std::memory_order_relaxed);
  for (;;) {
    const T old = std::bit_cast<T>(expected);
    const Bits desired = std::bit_cast<Bits>(static_cast<T>(update(old)));
    if (bits.compare_exchange_weak(expected, desired, std::memory_order_seq_cst)) return old;
  }
}

}  // namespace vb::emulator::detail

// ---- Barriers and warp intrinsics. The trailing std::source_location names the call site: lanes
// ---- (or threads) meet only when they call from the same site.
inline void __syncthreads(vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  vb::emulator::detail::block_sync(0, site);
}
inline int __syncthreads_count(int predicate,
                               vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  return vb::emulator::detail::block_sync(predicate, site);
}
inline int __syncthreads_and(int predicate,
                             vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  return vb::emulator::detail::block_sync(predicate, site) ==
         static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline int __syncthreads_or(int predicate,
                            vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  return vb::emulator::detail::block_sync(predicate, site) > 0;
}

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  vb::emulator::detail::WarpOp op{"__syncwarp", &vb::emulator::detail::resolve_nothing, mask,
                                  nullptr, nullptr};
  vb::emulator::detail::warp_sync(op, site);
}

// The lanes that reach this __activemask together: those of the warp that arrive at it before
// every lane has blocked somewhere (the emulator's stand-in for convergence).
inline unsigned __activemask(vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  unsigned result;
  WarpOp op{"__activemask", &resolve_gathered_mask, 0, nullptr, &result};
  op.gather = true;
  warp_sync(op, site);
  return result;
}

template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = warpSize,
              vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return shfl<T, Shfl::idx>("__shfl_sync", mask, value, src_lane, width, site);
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize,
                 vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return shfl<T, Shfl::up>("__shfl_up_sync", mask, value, static_cast<int>(delta), width, site);
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize,
                   vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return shfl<T, Shfl::down>("__shfl_down_sync", mask, value, static_cast<int>(delta), width, site);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize,
                  vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return shfl<T, Shfl::bfly>("__shfl_xor_sync", mask, value, lane_mask, width, site);
}

inline unsigned __ballot_sync(unsigned mask, int predicate,
                              vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  const unsigned bit = predicate ? 1u << lane_id() : 0u;
  return combine<unsigned, BallotBit>("__ballot_sync", mask, bit, site);
}
inline int __any_sync(unsigned mask, int predicate,
                      vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return combine<unsigned, Max>("__any_sync", mask, predicate ? 1u : 0u, site) != 0;
}
inline int __all_sync(unsigned mask, int predicate,
                      vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  return combine<unsigned, Min>("__all_sync", mask, predicate ? 1u : 0u, site) != 0;
}

#define VB_EMU_REDUCE(name, T, Combine)                                                          \
  inline T name(unsigned mask, T value,                                                          \
                vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {       \
    return vb::emulator::detail::combine<T, Combine>(#name, mask, value, site);                  \
  }
VB_EMU_REDUCE(__reduce_add_sync, unsigned, vb::emulator::detail::Plus)
VB_EMU_REDUCE(__reduce_add_sync, int, vb::emulator::detail::Plus)
VB_EMU_REDUCE(__reduce_min_sync, unsigned, vb::emulator::detail::Min)
VB_EMU_REDUCE(__reduce_min_sync, int, vb::emulator::detail::Min)
VB_EMU_REDUCE(__reduce_max_sync, unsigned, vb::emulator::detail::Max)
VB_EMU_REDUCE(__reduce_max_sync, int, vb::emulator::detail::Max)
VB_EMU_REDUCE(__reduce_and_sync, unsigned, std::bit_and<unsigned>)
VB_EMU_REDUCE(__reduce_or_sync, unsigned, std::bit_or<unsigned>)
VB_EMU_REDUCE(__reduce_xor_sync, unsigned, std::bit_xor<unsigned>)
#undef VB_EMU_REDUCE

template <class T>
unsigned __match_any_sync(unsigned mask, T value,
                          vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  unsigned result;
  WarpOp op{"__match_any_sync", &resolve_match_any<T>, mask, &value, &result};
  warp_sync(op, site);
  return result;
}
template <class T>
unsigned __match_all_sync(unsigned mask, T value, int* predicate,
                          vb::emulator::detail::Site site = vb::emulator::detail::Site::current()) {
  using namespace vb::emulator::detail;
  MatchAll result;
  WarpOp op{"__match_all_sync", &resolve_match_all<T>, mask, &value, &result};
  warp_sync(op, site);
  *predicate = result.predicate;
  return result.mask;
}

// ---- Atomics: each returns the old value, as CUDA's do.
template <class T>
  requires(std::is_arithmetic_v<T>)
T atomicAdd(T* address, std::type_identity_t<T> value) {
  if constexpr (std::is_integral_v<T>)
    return std::atomic_ref<T>(*address).fetch_add(value);  // unsigned wraps; int as two's complement
  else
    return vb::emulator::detail::atomic_update(address, [value](T old) { return old + value; });
}
inline __half atomicAdd(__half* address, __half value) {
  return vb::emulator::detail::atomic_update(address, [value](__half old) { return __hadd(old, value); });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 value) {
  return vb::emulator::detail::atomic_update(
      address, [value](__nv_bfloat16 old) { return __hadd(old, value); });
}
template <class T>
  requires(std::is_integral_v<T>)
T atomicSub(T* address, std::type_identity_t<T> value) {
  return std::atomic_ref<T>(*address).fetch_sub(value);
}
template <class T>
T atomicExch(T* address, std::type_identity_t<T> value) {
  return vb::emulator::detail::atomic_update(address, [value](T) { return value; });
}
template <class T>
  requires(std::is_integral_v<T>)
T atomicCAS(T* address, std::type_identity_t<T> compare, std::type_identity_t<T> value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
  return compare;  // the old value either way
}
template <class T>
  requires(std::is_arithmetic_v<T>)
T atomicMax(T* address, std::type_identity_t<T> value) {
  return vb::emulator::detail::atomic_update(address, [value](T old) { return old < value ? value : old; });
}
template <class T>
  requires(std::is_arithmetic_v<T>)
T atomicMin(T* address, std::type_identity_t<T> value) {
  return vb::emulator::detail::atomic_update(address, [value](T old) { return value < old ? value : old; });
}
template <class T>
  requires(std::is_integral_v<T>)
T atomicAnd(T* address, std::type_identity_t<T> value) {
  return std::atomic_ref<T>(*address).fetch_and(value);
}
template <class T>
  requires(std::is_integral_v<T>)
T atomicOr(T* address, std::type_identity_t<T> value) {
  return std::atomic_ref<T>(*address).fetch_or(value);
}
template <class T>
  requires(std::is_integral_v<T>)
T atomicXor(T* address, std::type_identity_t<T> value) {
  return std::atomic_ref<T>(*address).fetch_xor(value);
}
// CUDA's wrap rules: Inc counts 0..limit then back to 0; Dec counts down from limit to 0, and
// jumps to limit from 0 or from anything above limit.
inline unsigned atomicInc(unsigned* address, unsigned limit) {
  return vb::emulator::detail::atomic_update(address,
                                             [limit](unsigned old) { return old >= limit ? 0u : old + 1; });
}
inline unsigned atomicDec(unsigned* address, unsigned limit) {
  return vb::emulator::detail::atomic_update(
      address, [limit](unsigned old) { return (old == 0 || old > limit) ? limit : old - 1; });
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- Math and bit intrinsics: the fast-math variants compute the accurate result.
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float2int_rd(float x) { return static_cast<int>(std::floor(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return static_cast<unsigned>(std::nearbyint(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned>(x)) + 1; }
inline int __ffsll(long long x) {
  return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1;
}
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  const unsigned long long bytes = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= ((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31));
}
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFF) * (b & 0xFFFFFF); }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline int max(int a, int b) { return a < b ? b : a; }
inline unsigned max(unsigned a, unsigned b) { return a < b ? b : a; }
inline long long max(long long a, long long b) { return a < b ? b : a; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a < b ? b : a; }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
template <class T>
T __ldg(const T* address) { return *address; }
inline long long clock64() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}
