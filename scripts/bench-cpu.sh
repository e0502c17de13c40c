#!/usr/bin/env bash
# CPU op benchmark: our CPU backend against PyTorch on the CPU, same shapes, same thread count, one run,
# beside the machine's own limits (bench_cpu_ceiling: FMA peak and triad bandwidth at that thread count).
# Prints a markdown table and writes it to bench/results/cpu-ops-<date>.md.
# Usage: bash scripts/bench-cpu.sh [--quick]     (THREADS=N to choose the thread count; default all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
cmake --build "$build_dir" --target bench_cpu_ops bench_cpu_ceiling > /dev/null
tmp=$(mktemp -d)
load_start=$(cut -d" " -f1-3 /proc/loadavg)
OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" > "$tmp/ceiling.jsonl"
OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ops" "$@" > "$tmp/ours.jsonl"
/usr/bin/python3 bench/torch_cpu_ops.py --threads "$threads" "$@" > "$tmp/torch.jsonl"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
torch_version=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')
load_end=$(cut -d" " -f1-3 /proc/loadavg)
machine="Machine: ${cpu:-unknown CPU}, $threads threads, $(date -u +%Y-%m-%d), load average $load_start at the start and $load_end at the end. PyTorch $torch_version (Debian python3-torch)."
table=$(/usr/bin/python3 bench/compare.py "$tmp/ours.jsonl" "$tmp/torch.jsonl" --title "CPU ops: videobert vs PyTorch" \
  --machine "$machine" --ceiling "$tmp/ceiling.jsonl" --threads "$threads")
echo "$table"
if [[ "${1:-}" != "--quick" ]]; then
  mkdir -p bench/results
  out=bench/results/cpu-ops-$(date -u +%Y-%m-%d).md
  printf '%s\n' "$table" > "$out.tmp" && mv "$out.tmp" "$out"
  echo "written to $out"
fi
rm -rf "$tmp"
