#!/usr/bin/env bash
# CPU op benchmark: our CPU backend against PyTorch on the CPU, same shapes, same thread count, one run,
# beside the machine's own limits (bench_cpu_ceiling: FMA peak and triad bandwidth at that thread count).
# The baseline is PyTorch 2.x from PyPI (MKL, oneDNN) in the benchmark venv that scripts/bench-venv.sh
# makes (created on first use: a few GiB); Debian's python3-torch (1.13, OpenBLAS) is a second column.
# Prints a markdown table and writes it to bench/results/cpu-ops-<date>.md.
# Usage: bash scripts/bench-cpu.sh [--quick]
#   THREADS=N        thread count for every side (default: all cores)
#   PYTHON=...       a python3 whose torch is the baseline, instead of the venv's
#   SECOND_PYTHON=.. the second column's python3 (default /usr/bin/python3; empty: no second column)
#   ROUNDS=N         how many times each side runs the case list (default 2); each keeps its fastest median
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-$(bash scripts/bench-venv.sh --python)}
second=${SECOND_PYTHON-/usr/bin/python3}
if [[ -n "$second" ]] && ! "$second" -c 'import torch' 2> /dev/null; then second=""; fi
cmake --build "$build_dir" --target bench_cpu_ops bench_cpu_ceiling > /dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_start=$(cut -d" " -f1-3 /proc/loadavg)
# The machine's limits, measured at the start and again at the end; each keeps the better of the two (another
# process holding a core during one measurement once halved the 2-thread FMA peak of a table).
OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" > "$tmp/ceiling-all.jsonl"
# Every side runs the case list ROUNDS times, the sides taking turns; each keeps its fastest median per case,
# the one least disturbed by the machine's other work (as bench-train.sh does).
rounds=${ROUNDS:-2}
for ((round = 1; round <= rounds; ++round)); do
  OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ops" "$@" >> "$tmp/ours-all.jsonl"
  OMP_NUM_THREADS=$threads "$python" bench/torch_cpu_ops.py --threads "$threads" "$@" >> "$tmp/torch-all.jsonl"
  if [[ -n "$second" ]]; then
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$second" bench/torch_cpu_ops.py --threads "$threads" "$@" \
      >> "$tmp/second-all.jsonl"
  fi
done
OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" >> "$tmp/ceiling-all.jsonl"
/usr/bin/python3 bench/fastest.py "$tmp/ceiling-all.jsonl" > "$tmp/ceiling.jsonl"
/usr/bin/python3 bench/fastest.py "$tmp/ours-all.jsonl" > "$tmp/ours.jsonl"
/usr/bin/python3 bench/fastest.py "$tmp/torch-all.jsonl" > "$tmp/torch.jsonl"
also=()
if [[ -n "$second" ]]; then
  /usr/bin/python3 bench/fastest.py "$tmp/second-all.jsonl" > "$tmp/torch-second.jsonl"
  also=(--also "$tmp/torch-second.jsonl=$("$second" bench/torch_info.py --short)")
fi
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
load_end=$(cut -d" " -f1-3 /proc/loadavg)
machine="Machine: ${cpu:-unknown CPU}, $threads threads, $(date -u +%Y-%m-%d), load average $load_start at the start and $load_end at the end. Baseline: $("$python" bench/torch_info.py).${second:+ Second column: $(OPENBLAS_NUM_THREADS=$threads "$second" bench/torch_info.py).}"
machine+=" Each side ran the case list $rounds times, the sides taking turns; each keeps its fastest median per case. The machine's limits: the better of bench_cpu_ceiling at the start and at the end."
table=$(/usr/bin/python3 bench/compare.py "$tmp/ours.jsonl" "$tmp/torch.jsonl" --title "CPU ops: videobert vs PyTorch" \
  --baseline-name "$("$python" bench/torch_info.py --short)" "${also[@]}" \
  --machine "$machine" --ceiling "$tmp/ceiling.jsonl" --threads "$threads")
echo "$table"
if [[ "${1:-}" != "--quick" ]]; then
  mkdir -p bench/results
  out=bench/results/cpu-ops-$(date -u +%Y-%m-%d).md
  printf '%s\n' "$table" > "$out.tmp" && mv "$out.tmp" "$out"
  echo "written to $out"
fi
