// The emulator's memory-access insight (kernels/emu/insight.h): the hooks that -fsanitize=thread makes the
// compiler call before every access of an instrumented kernel, the grouping of lanes' accesses into
// warp-wide requests, their cost in sectors and shared-memory wavefronts, and the symbolisation of the
// instructions into source lines (addr2line over the debug information).
//
// This file itself is not instrumented: nothing here calls a hook.
#include "kernels/emu/insight.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include <cxxabi.h>

#include "kernels/emu/emulator.h"
#include "kernels/emu/insight_detail.h"

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

namespace vb::emulator::insight {

void LineStats::add(const LineStats& o) {
  global_loads += o.global_loads;
  global_stores += o.global_stores;
  global_load_sectors += o.global_load_sectors;
  global_store_sectors += o.global_store_sectors;
  global_load_bytes += o.global_load_bytes;
  global_store_bytes += o.global_store_bytes;
  shared_loads += o.shared_loads;
  shared_stores += o.shared_stores;
  shared_wavefronts += o.shared_wavefronts;
  shared_ideal_wavefronts += o.shared_ideal_wavefronts;
  shared_bytes += o.shared_bytes;
  max_ways = std::max(max_ways, o.max_ways);
  divergent_branches += o.divergent_branches;
  if (sample_addresses.empty() && !o.sample_addresses.empty()) {
    sample_lanes = o.sample_lanes;
    sample_addresses = o.sample_addresses;
    sample_bytes = o.sample_bytes;
    sample_shared = o.sample_shared;
    sample_store = o.sample_store;
  }
}

const KernelStats* Report::find(const std::string& part) const {
  for (const KernelStats& k : kernels)
    if (k.kernel.find(part) != std::string::npos) return &k;
  return nullptr;
}

// ---------------------------------------------------------------- the cost of one request

int64_t global_request_sectors(const std::vector<uintptr_t>& addresses, int bytes) {
  std::set<uintptr_t> sectors;
  for (uintptr_t a : addresses)
    for (uintptr_t s = a >> 5; s <= (a + uintptr_t(bytes) - 1) >> 5; ++s) sectors.insert(s);
  return int64_t(sectors.size());
}

SharedCost shared_request_cost(const std::vector<uintptr_t>& addresses, const std::vector<int>& lanes, int bytes) {
  // 8-byte accesses are served per half-warp, 16-byte ones per quarter-warp: each phase moves at most
  // 128 bytes. Within a phase, a bank serves one 4-byte word per wavefront; lanes on one word share it.
  const int phases = bytes <= 4 ? 1 : bytes == 8 ? 2 : 4;
  const int lanes_per_phase = 32 / phases;
  SharedCost cost;
  for (int p = 0; p < phases; ++p) {
    std::array<std::set<uintptr_t>, 32> words;
    bool any = false;
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (lanes[i] / lanes_per_phase != p) continue;
      any = true;
      for (uintptr_t w = addresses[i] >> 2; w <= (addresses[i] + uintptr_t(bytes) - 1) >> 2; ++w) words[w % 32].insert(w);
    }
    if (!any) continue;
    int ways = 1;
    for (const auto& b : words) ways = std::max(ways, int(b.size()));
    cost.wavefronts += ways;
    cost.ideal += 1;
    cost.ways = std::max(cost.ways, ways);
  }
  return cost;
}

// ---------------------------------------------------------------- recording

namespace {

enum Kind : uint8_t { kLoad = 0, kStore = 1 };
enum Space : uint8_t { kGlobal = 0, kShared = 1 };

struct Access {
  uintptr_t pc, address;
  uint32_t thread, occurrence;
  uint8_t bytes, kind, space;
};

struct KernelRecord {
  KernelStats stats;  // everything but lines and total
  uintptr_t address = 0;
  std::map<uintptr_t, LineStats> by_pc;
};

struct State {
  std::mutex mutex;  // one launch at a time is recorded
  // The current launch.
  KernelRecord* kernel = nullptr;
  std::vector<std::pair<uintptr_t, uintptr_t>> global;  // device allocations [begin, end), sorted
  uintptr_t dynamic_begin = 0, dynamic_end = 0;
  // This thread's thread-local storage of the instrumented modules (__shared__ arrays live there), and
  // the emulator's index variables inside it, which are not shared memory.
  std::vector<std::pair<uintptr_t, uintptr_t>> shared_tls, not_shared;
  std::vector<Access> phase;  // the accesses since the last barrier
  bool first_block = false;   // the block running is the launch's first (its requests are sampled)
  std::unordered_map<uint64_t, uint32_t> occurrences;  // (thread, pc) → executions so far in the phase
  std::vector<std::vector<uintptr_t>> blocks_run;      // per thread: the basic blocks it entered this phase
  bool traced = false;                                 // some code reported basic blocks
  // Everything recorded.
  std::vector<std::unique_ptr<KernelRecord>> kernels;
  std::map<std::string, KernelRecord*> by_name;
};

std::atomic<State*> g_state{nullptr};
thread_local bool t_in_block = false;  // a block's threads are running on this OS thread (not its scheduler)

bool in_ranges(const std::vector<std::pair<uintptr_t, uintptr_t>>& ranges, uintptr_t a) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(a, ~uintptr_t(0)));
  if (it == ranges.begin()) return false;
  --it;
  return a >= it->first && a < it->second;
}

void record(const void* address, int bytes, uint8_t kind, uintptr_t pc) {
  if (!t_in_block) return;
  State* s = g_state.load(std::memory_order_relaxed);
  if (!s || !s->kernel) return;
  const auto a = reinterpret_cast<uintptr_t>(address);
  uint8_t space;
  if (in_ranges(s->global, a)) space = kGlobal;
  else if ((a >= s->dynamic_begin && a < s->dynamic_end) || (in_ranges(s->shared_tls, a) && !in_ranges(s->not_shared, a)))
    space = kShared;
  else return;  // a local variable, a kernel parameter, the emulator's own state
  const uint32_t thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const uint32_t occurrence = s->occurrences[(uint64_t(thread) << 48) ^ pc]++;
  s->phase.push_back({pc, a, thread, occurrence, uint8_t(bytes), kind, space});
}

void record_basic_block(uintptr_t pc) {
  if (!t_in_block) return;
  State* s = g_state.load(std::memory_order_relaxed);
  if (!s || !s->kernel) return;
  const uint32_t thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if (thread >= s->blocks_run.size()) s->blocks_run.resize(thread + 1);
  s->blocks_run[thread].push_back(pc);
  s->traced = true;
}

// Divergence: per warp, the lanes' sequences of basic blocks in a trie. Where lanes that ran the same
// blocks so far part ways — different next blocks, or some lanes end while others go on — is one
// divergent branch, charged to the last block they shared.
void count_divergence(State& s) {
  const size_t threads = s.blocks_run.size();
  for (size_t w = 0; w * 32 < threads; ++w) {
    struct Node {
      std::map<uintptr_t, size_t> next;
      bool ends = false;
      uintptr_t pc = 0;
    };
    std::vector<Node> trie(1);
    for (size_t l = w * 32; l < std::min(threads, w * 32 + 32); ++l) {
      const std::vector<uintptr_t>& seq = s.blocks_run[l];
      size_t at = 0;
      for (uintptr_t pc : seq) {
        auto it = trie[at].next.find(pc);
        if (it == trie[at].next.end()) {
          trie.push_back(Node{});
          trie.back().pc = pc;
          it = trie[at].next.emplace(pc, trie.size() - 1).first;
        }
        at = it->second;
      }
      trie[at].ends = true;
    }
    for (const Node& n : trie)
      if (n.next.size() + (n.ends ? 1 : 0) > 1 && n.pc) s.kernel->by_pc[n.pc].divergent_branches += 1;
  }
  for (auto& seq : s.blocks_run) seq.clear();
}

// Groups the phase's accesses into warp-wide requests and adds their cost to the kernel's instructions.
void flush_phase(State& s) {
  std::vector<Access>& v = s.phase;
  std::sort(v.begin(), v.end(), [](const Access& x, const Access& y) {
    return std::make_tuple(x.pc, x.thread / 32, x.occurrence, x.kind, x.bytes, x.thread) <
           std::make_tuple(y.pc, y.thread / 32, y.occurrence, y.kind, y.bytes, y.thread);
  });
  for (size_t b = 0; b < v.size();) {
    size_t e = b;
    while (e < v.size() && v[e].pc == v[b].pc && v[e].thread / 32 == v[b].thread / 32 &&
           v[e].occurrence == v[b].occurrence && v[e].kind == v[b].kind && v[e].bytes == v[b].bytes)
      ++e;
    std::vector<uintptr_t> addresses;
    std::vector<int> lanes;
    int64_t bytes = 0;
    for (size_t i = b; i < e; ++i) {
      addresses.push_back(v[i].address);
      lanes.push_back(int(v[i].thread % 32));
      bytes += v[i].bytes;
    }
    LineStats& st = s.kernel->by_pc[v[b].pc];
    const bool store = v[b].kind == kStore;
    if (s.first_block && st.sample_addresses.empty() && v[b].thread / 32 == 0) {
      st.sample_lanes = lanes;
      st.sample_addresses = addresses;
      st.sample_bytes = v[b].bytes;
      st.sample_shared = v[b].space == kShared;
      st.sample_store = store;
    }
    if (v[b].space == kGlobal) {
      const int64_t sectors = global_request_sectors(addresses, v[b].bytes);
      (store ? st.global_stores : st.global_loads) += 1;
      (store ? st.global_store_sectors : st.global_load_sectors) += sectors;
      (store ? st.global_store_bytes : st.global_load_bytes) += bytes;
    } else {
      const SharedCost c = shared_request_cost(addresses, lanes, v[b].bytes);
      (store ? st.shared_stores : st.shared_loads) += 1;
      st.shared_wavefronts += c.wavefronts;
      st.shared_ideal_wavefronts += c.ideal;
      st.shared_bytes += bytes;
      st.max_ways = std::max(st.max_ways, c.ways);
    }
    b = e;
  }
  v.clear();
  s.occurrences.clear();
  count_divergence(s);
}

// The calling thread's thread-local storage of every module that holds one of `markers`: [begin, end).
std::vector<std::pair<uintptr_t, uintptr_t>> module_tls(const std::vector<uintptr_t>& markers) {
  struct Search {
    const std::vector<uintptr_t>* markers;
    std::vector<std::pair<uintptr_t, uintptr_t>> out;
  } search{&markers, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& s = *static_cast<Search*>(data);
        bool holds = false;
        uintptr_t tls_size = 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type == PT_TLS) tls_size = ph.p_memsz;
          if (ph.p_type != PT_LOAD) continue;
          const uintptr_t begin = info->dlpi_addr + ph.p_vaddr, end = begin + ph.p_memsz;
          for (uintptr_t m : *s.markers) holds |= m >= begin && m < end;
        }
        if (holds && tls_size && info->dlpi_tls_data) {
          const auto begin = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
          s.out.emplace_back(begin, begin + tls_size);
        }
        return 0;
      },
      &search);
  std::sort(search.out.begin(), search.out.end());
  return search.out;
}

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

// "…/kernels/cuda/softmax.cu:42 (discriminator 3)" → "cuda/softmax.cu:42": the last two components.
std::string short_location(std::string text) {
  if (auto sp = text.find(' '); sp != std::string::npos) text.resize(sp);
  const size_t colon = text.rfind(':');
  const std::string path = colon == std::string::npos ? text : text.substr(0, colon);
  size_t cut = path.rfind('/');
  if (cut != std::string::npos && cut > 0) cut = path.rfind('/', cut - 1);
  return (cut == std::string::npos ? text : text.substr(cut + 1));
}

// Source locations of instruction addresses (return addresses of the hooks), through addr2line; with
// `functions`, the names of the functions at the addresses instead (addresses of functions, not returns).
std::map<uintptr_t, std::string> symbolise(const std::set<uintptr_t>& pcs, bool functions = false) {
  std::map<uintptr_t, std::string> out;
  std::map<std::string, std::vector<std::pair<uintptr_t, uintptr_t>>> by_module;  // file → (pc, offset)
  for (uintptr_t pc : pcs) {
    Dl_info info{};
    const uintptr_t at = functions ? pc : pc - 1;  // a return address points after its call
    if (dladdr(reinterpret_cast<void*>(at), &info) && info.dli_fname && info.dli_fname[0]) {
      by_module[info.dli_fname].push_back({pc, at - reinterpret_cast<uintptr_t>(info.dli_fbase)});
    }
    char hex[32];
    std::snprintf(hex, sizeof hex, "pc 0x%zx", size_t(pc));
    out[pc] = hex;
  }
  for (const auto& [module, list] : by_module) {
    // Locations with -i: the chain of inlined calls, innermost first; each address is followed by the
    // address 0, whose "??" line marks where the next chain starts.
    std::string command = std::string("addr2line ") + (functions ? "-f -C " : "-i ") + "-e '" + module + "'";
    for (const auto& [pc, offset] : list) {
      char hex[48];
      std::snprintf(hex, sizeof hex, functions ? " 0x%zx" : " 0x%zx 0x0", size_t(offset));
      command += hex;
    }
    command += " 2>/dev/null";
    FILE* p = ::popen(command.c_str(), "r");
    if (!p) continue;
    char line[4096];
    auto next_line = [&](std::string& text) {
      if (!std::fgets(line, sizeof line, p)) return false;
      text = line;
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      return true;
    };
    std::string text;
    for (const auto& entry : list) {
      if (functions) {
        if (!next_line(text)) break;
        if (text.rfind("??", 0) != 0) out[entry.first] = text;
        if (!next_line(text)) break;  // the location line that follows the name
        continue;
      }
      // The innermost frame in the kernel's own code: frames inside the emulator's and the PTX helpers'
      // headers (kernels/ptx.h, kernels/emu/, CUDA's and the C++ library's headers) are skipped, so that
      // ldmatrix's row or an atomic lands on the kernel line that issued it, and an access in a helper
      // of the kernel's file stays on the helper's line.
      std::string chosen, outermost;
      while (next_line(text) && text.rfind("??", 0) != 0) {
        outermost = text;
        const bool framework = text.find("/kernels/ptx.h:") != std::string::npos ||
                               text.find("/kernels/emu/") != std::string::npos ||
                               text.find("/include/") != std::string::npos;
        if (chosen.empty() && !framework) chosen = text;
      }
      if (chosen.empty()) chosen = outermost;
      if (!chosen.empty()) out[entry.first] = short_location(chosen);
    }
    ::pclose(p);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- the scheduler's calls

namespace detail {

bool active() { return g_state.load(std::memory_order_relaxed) != nullptr; }

void launch_begin(const char* kernel, const void* kernel_address, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
                  const std::vector<std::pair<uintptr_t, uintptr_t>>& allocations) {
  State* s = g_state.load();
  if (!s) return;
  s->mutex.lock();
  std::string name = demangle(kernel);
  KernelRecord*& k = s->by_name[name];
  if (!k) {
    s->kernels.push_back(std::make_unique<KernelRecord>());
    k = s->kernels.back().get();
    k->stats.kernel = name;
    k->address = reinterpret_cast<uintptr_t>(kernel_address);
  }
  k->stats.grid = grid;
  k->stats.block = block;
  k->stats.dynamic_shared_bytes = dynamic_shared_bytes;
  ++k->stats.launches;
  s->kernel = k;
  s->global = allocations;
  std::sort(s->global.begin(), s->global.end());
  s->shared_tls = module_tls(module_markers());  // this thread runs the blocks (one worker)
  auto range = [](const void* p, std::size_t bytes) {
    return std::make_pair(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + bytes);
  };
  s->not_shared = {range(&threadIdx, sizeof threadIdx), range(&blockIdx, sizeof blockIdx),
                   range(&blockDim, sizeof blockDim), range(&gridDim, sizeof gridDim)};
  std::sort(s->not_shared.begin(), s->not_shared.end());
  s->phase.clear();
  s->occurrences.clear();
}

void block_begin(const void* dynamic_shared, std::size_t bytes) {
  State* s = g_state.load();
  if (!s || !s->kernel) return;
  s->dynamic_begin = reinterpret_cast<uintptr_t>(dynamic_shared);
  s->dynamic_end = s->dynamic_begin + (dynamic_shared ? bytes : 0);
  s->first_block = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && s->kernel->stats.launches == 1;
  ++s->kernel->stats.blocks;
}

void threads_running(bool on) { t_in_block = on; }

void barrier() {
  State* s = g_state.load();
  if (!s || !s->kernel) return;
  ++s->kernel->stats.barriers;
  flush_phase(*s);
}

void block_end() {
  t_in_block = false;
  State* s = g_state.load();
  if (!s || !s->kernel) return;
  flush_phase(*s);
}

void launch_end() {
  State* s = g_state.load();
  if (!s || !s->kernel) return;
  t_in_block = false;
  s->phase.clear();
  s->kernel = nullptr;
  s->mutex.unlock();
}

}  // namespace detail

__attribute__((noinline)) void record_access(const void* address, int bytes, bool store) {
  record(address, bytes, store ? 1 : 0, uintptr_t(__builtin_return_address(0)));
}

void register_module(const void* address_in_module) {
  static std::mutex m;
  std::lock_guard lock(m);
  detail::module_markers().push_back(reinterpret_cast<uintptr_t>(address_in_module));
}

namespace detail {
std::vector<uintptr_t>& module_markers() {
  static std::vector<uintptr_t> markers;
  return markers;
}
}  // namespace detail

// ---------------------------------------------------------------- Recorder

struct Recorder::Impl {
  State state;
};

Recorder::Recorder() : impl_(std::make_unique<Impl>()) {
  State* expected = nullptr;
  if (!g_state.compare_exchange_strong(expected, &impl_->state))
    throw Error("insight: a Recorder already exists (one at a time)");
}

Recorder::~Recorder() { g_state.store(nullptr); }

Report Recorder::report() const {
  const State& s = impl_->state;
  std::set<uintptr_t> pcs;
  for (const auto& k : s.kernels)
    for (const auto& [pc, _] : k->by_pc) pcs.insert(pc);
  const std::map<uintptr_t, std::string> where = symbolise(pcs);
  std::set<uintptr_t> unnamed;  // kernels dladdr could not name (not exported): named from the debug information
  for (const auto& k : s.kernels)
    if (k->stats.kernel.rfind("at 0x", 0) == 0 && k->address) unnamed.insert(k->address);
  const std::map<uintptr_t, std::string> names = symbolise(unnamed, true);
  Report r;
  for (const auto& k : s.kernels) {
    KernelStats ks = k->stats;
    if (auto it = names.find(k->address); it != names.end() && it->second.rfind("pc ", 0) != 0) ks.kernel = it->second;
    // By file, then line number (":101" after ":82").
    auto order = [](const std::string& a, const std::string& b) {
      const size_t ca = a.rfind(':'), cb = b.rfind(':');
      const std::string fa = a.substr(0, ca), fb = b.substr(0, cb);
      if (fa != fb || ca == std::string::npos || cb == std::string::npos) return a < b;
      return std::atol(a.c_str() + ca + 1) < std::atol(b.c_str() + cb + 1);
    };
    std::map<std::string, LineStats, decltype(order)> lines(order);
    for (const auto& [pc, st] : k->by_pc) {
      LineStats& l = lines[where.at(pc)];
      l.location = where.at(pc);
      l.add(st);
    }
    for (auto& [loc, st] : lines) {
      ks.total.add(st);
      ks.lines.push_back(st);
    }
    ks.total.location = "total";
    r.kernels.push_back(std::move(ks));
  }
  return r;
}

std::string format_report(const Report& report) {
  std::string out;
  char buf[512];
  auto ratio = [](int64_t a, int64_t b) { return b ? double(a) / double(b) : 0.0; };
  for (const KernelStats& k : report.kernels) {
    std::snprintf(buf, sizeof buf, "kernel %s: grid (%u, %u, %u), block (%u, %u, %u), %zu B dynamic shared; %lld launch%s, "
                  "%lld blocks, %lld barriers\n",
                  k.kernel.c_str(), k.grid.x, k.grid.y, k.grid.z, k.block.x, k.block.y, k.block.z,
                  k.dynamic_shared_bytes, (long long)k.launches, k.launches == 1 ? "" : "es", (long long)k.blocks,
                  (long long)k.barriers);
    out += buf;
    std::snprintf(buf, sizeof buf, "%-34s %10s %9s %10s %9s %10s %9s %10s %6s %9s\n", "line", "gld req", "sect/req",
                  "gst req", "sect/req", "shared req", "wavefr", "ideal", "ways", "divergent");
    out += buf;
    std::vector<LineStats> rows = k.lines;
    rows.push_back(k.total);
    for (const LineStats& l : rows) {
      // A long location keeps its end (the line number).
      const std::string where = l.location.size() > 34 ? "…" + l.location.substr(l.location.size() - 33) : l.location;
      std::snprintf(buf, sizeof buf, "%-34s %10lld %9.2f %10lld %9.2f %10lld %9lld %10lld %6d %9lld\n",
                    where.c_str(), (long long)l.global_loads,
                    ratio(l.global_load_sectors, l.global_loads), (long long)l.global_stores,
                    ratio(l.global_store_sectors, l.global_stores), (long long)(l.shared_loads + l.shared_stores),
                    (long long)l.shared_wavefronts, (long long)l.shared_ideal_wavefronts, l.max_ways,
                    (long long)l.divergent_branches);
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "global: %lld B asked for, %lld B in sectors moved; shared: %lld B\n",
                  (long long)(k.total.global_load_bytes + k.total.global_store_bytes),
                  (long long)(32 * (k.total.global_load_sectors + k.total.global_store_sectors)),
                  (long long)k.total.shared_bytes);
    out += buf;
  }
  return out;
}

std::string format_svg(const KernelStats& k) {
  std::vector<const LineStats*> rows;
  for (const LineStats& l : k.lines)
    if (!l.sample_addresses.empty()) rows.push_back(&l);
  const double cell = 22, left = 250, top = 60, height = cell + 14;
  std::string svg;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"monospace\" "
                "font-size=\"10\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                left + 32 * cell + 20, top + height * double(rows.size()) + 40);
  svg += buf;
  std::string title = k.kernel.substr(0, 110);
  for (const char* from : {"&", "<", ">"}) {
    const std::string to = std::string(from) == "&" ? "&amp;" : std::string(from) == "<" ? "&lt;" : "&gt;";
    for (size_t at = 0; (at = title.find(from, at)) != std::string::npos; at += to.size()) title.replace(at, 1, to);
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"10\" y=\"18\" font-size=\"12\">%s</text>\n<text x=\"10\" y=\"36\">one warp's first "
                "request per line: colour = 32-byte sector (global) or bank (shared); the number: sector offset or "
                "bank</text>\n",
                title.c_str());
  svg += buf;
  for (int lane = 0; lane < 32; ++lane) {
    std::snprintf(buf, sizeof buf, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n",
                  left + cell * lane + cell / 2, top - 4, lane);
    svg += buf;
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    const LineStats& l = *rows[r];
    const double y = top + height * double(r);
    int64_t sectors = 0;
    int ways = 0;
    if (l.sample_shared) {
      ways = shared_request_cost(l.sample_addresses, l.sample_lanes, l.sample_bytes).ways;
    } else {
      sectors = global_request_sectors(l.sample_addresses, l.sample_bytes);
    }
    std::snprintf(buf, sizeof buf, "<text x=\"10\" y=\"%.0f\">%s %s %s, %dB</text>\n", y + cell * 0.65,
                  l.location.c_str(), l.sample_shared ? "shared" : "global", l.sample_store ? "st" : "ld",
                  l.sample_bytes);
    svg += buf;
    std::snprintf(buf, sizeof buf, "<text x=\"10\" y=\"%.0f\" fill=\"#555\">%s</text>\n", y + cell + 9,
                  l.sample_shared ? ("ways " + std::to_string(ways)).c_str()
                                  : (std::to_string(sectors) + " sectors").c_str());
    svg += buf;
    const uintptr_t base = *std::min_element(l.sample_addresses.begin(), l.sample_addresses.end()) >> 5;
    for (size_t i = 0; i < l.sample_addresses.size(); ++i) {
      const uintptr_t a = l.sample_addresses[i];
      const long label = l.sample_shared ? long((a >> 2) % 32) : long((a >> 5) - base);
      const int hue = int((label * 47) % 360);
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"hsl(%d,70%%,75%%)\" "
                    "stroke=\"#999\"/><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%ld</text>\n",
                    left + cell * l.sample_lanes[i], y, cell, cell, hue, left + cell * l.sample_lanes[i] + cell / 2,
                    y + cell * 0.65, label);
      svg += buf;
    }
  }
  return svg + "</svg>\n";
}

}  // namespace vb::emulator::insight

// ---------------------------------------------------------------- the hooks -fsanitize=thread calls

extern "C" {

#define VB_INSIGHT_ACCESS(n)                                                                                       \
  void __tsan_read##n(void* p) { vb::emulator::insight::record(p, n, 0, uintptr_t(__builtin_return_address(0))); } \
  void __tsan_write##n(void* p) { vb::emulator::insight::record(p, n, 1, uintptr_t(__builtin_return_address(0))); } \
  void __tsan_unaligned_read##n(void* p) {                                                                         \
    vb::emulator::insight::record(p, n, 0, uintptr_t(__builtin_return_address(0)));                               \
  }                                                                                                                \
  void __tsan_unaligned_write##n(void* p) {                                                                        \
    vb::emulator::insight::record(p, n, 1, uintptr_t(__builtin_return_address(0)));                               \
  }
VB_INSIGHT_ACCESS(1)
VB_INSIGHT_ACCESS(2)
VB_INSIGHT_ACCESS(4)
VB_INSIGHT_ACCESS(8)
VB_INSIGHT_ACCESS(16)
#undef VB_INSIGHT_ACCESS

// A struct copy: one access of its size (a float4 moved as a whole is one 16-byte access).
void __tsan_read_range(void* p, unsigned long n) {
  vb::emulator::insight::record(p, int(n), 0, uintptr_t(__builtin_return_address(0)));
}
void __tsan_write_range(void* p, unsigned long n) {
  vb::emulator::insight::record(p, int(n), 1, uintptr_t(__builtin_return_address(0)));
}
void __tsan_init() {}
// -fsanitize-coverage=trace-pc: called on entering each basic block (divergence).
void __sanitizer_cov_trace_pc() { vb::emulator::insight::record_basic_block(uintptr_t(__builtin_return_address(0))); }
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}

// Atomics: performed (sequentially consistent), and counted as stores of their size.
#define VB_INSIGHT_ATOMIC(bits, T)                                                                                   \
  T __tsan_atomic##bits##_load(const volatile T* a, int) {                                                           \
    vb::emulator::insight::record((const void*)a, bits / 8, 0, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                                     \
  }                                                                                                                  \
  void __tsan_atomic##bits##_store(volatile T* a, T v, int) {                                                        \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                                        \
  }                                                                                                                  \
  T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                                                        \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                              \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                                                       \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                               \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                                                       \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                               \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                                                       \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                               \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                                                        \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                                \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                                                       \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                               \
  }                                                                                                                  \
  T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) {                                                      \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                                              \
  }                                                                                                                  \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                            \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                          \
  }                                                                                                                  \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                              \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                           \
  }                                                                                                                  \
  T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                                  \
    vb::emulator::insight::record((const void*)a, bits / 8, 1, uintptr_t(__builtin_return_address(0)));             \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                                \
    return c;                                                                                                        \
  }
VB_INSIGHT_ATOMIC(8, int8_t)
VB_INSIGHT_ATOMIC(16, int16_t)
VB_INSIGHT_ATOMIC(32, int32_t)
VB_INSIGHT_ATOMIC(64, int64_t)
#undef VB_INSIGHT_ATOMIC
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

}  // extern "C"
