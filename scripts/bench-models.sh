#!/usr/bin/env bash
# Model benchmark on the CPU: forward + backward of BERT tiny/base and ResNet-18/50, ours against PyTorch on
# the CPU, same shapes, same thread count, one run, with each step's fraction of the machine's FMA peak.
# The baseline is PyTorch 2.x from PyPI (MKL, oneDNN) in the benchmark venv that scripts/bench-venv.sh makes
# (created on first use: a few GiB); Debian's python3-torch (1.13) is a second column. Prints a markdown
# table and writes it to bench/results/cpu-models-<date>.md.
# On a GPU: DEVICE=cuda [BF16=1] bash scripts/bench-models.sh — ours on `cuda` against PyTorch eager on the
# same GPU (the venv's torch has CUDA; bfloat16 autocast on both with BF16=1), into gpu-models-<date>.md.
# BF16=1 on the CPU: both sides under bfloat16 autocast, "of limit" against the AMX bfloat16 peak where the CPU
# has one, into cpu-models-bf16-<date>.md.
# Usage: bash scripts/bench-models.sh [--quick]
#   THREADS=N        thread count for every side (default: all cores)
#   BUILD_DIR=DIR    the build folder (default build); NO_BUILD=1 times the bench_models_cpu already built
#   PYTHON=...       a python3 whose torch is the baseline, instead of the venv's
#   SECOND_PYTHON=.. the second column's python3 (default /usr/bin/python3; empty: none; CPU only)
#   TORCH_LD_LIBRARY_PATH=DIR  another BLAS for the second column's torch, e.g. Debian's OpenBLAS folder
#                    /usr/lib/x86_64-linux-gnu/openblas-pthread (Debian's torch does its matmuls through
#                    whatever libblas.so.3 the system selects; the reference libblas3 is ~20x slower)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
if [[ -z "${NO_BUILD:-}" ]]; then cmake --build "$build_dir" --target bench_models_cpu bench_cpu_ceiling > /dev/null; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
device=${DEVICE:-cpu}
python=${PYTHON:-$(bash scripts/bench-venv.sh --python)}
second=${SECOND_PYTHON-/usr/bin/python3}
if [[ "$device" != cpu ]] || { [[ -n "$second" ]] && ! "$second" -c 'import torch' 2> /dev/null; }; then second=""; fi
dev_args=(--device "$device")
if [[ -n "${BF16:-}" ]]; then dev_args+=(--bf16); fi
# The machine's limits, at the start and again at the end (below); each keeps the better of the two.
if [[ "$device" == cpu ]]; then OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" > "$tmp/ceiling-all.jsonl"; fi
OMP_NUM_THREADS=$threads "$build_dir/bench_models_cpu" "${dev_args[@]}" "$@" > "$tmp/ours.jsonl"
OMP_NUM_THREADS=$threads "$python" bench/torch_models_cpu.py --threads "$threads" "${dev_args[@]}" "$@" > "$tmp/torch.jsonl"
second_env=(env OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads")
if [[ -n "${TORCH_LD_LIBRARY_PATH:-}" ]]; then second_env+=(LD_LIBRARY_PATH="$TORCH_LD_LIBRARY_PATH"); fi
also=()
if [[ -n "$second" ]]; then
  "${second_env[@]}" "$second" bench/torch_models_cpu.py --threads "$threads" "${dev_args[@]}" "$@" > "$tmp/torch-second.jsonl"
  also=(--also "$tmp/torch-second.jsonl=$("$second" bench/torch_info.py --short)")
fi
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
machine="Machine: ${cpu:-unknown CPU}, $threads threads, $(date -u +%Y-%m-%d), load average at the end $(cut -d" " -f1-3 /proc/loadavg) (a shared machine: other work competes for the cores). Baseline: $("$python" bench/torch_info.py).${second:+ Second column: $("${second_env[@]}" "$second" bench/torch_info.py).} One training step (forward + backward, train mode), median of 5 after a warm-up; FLOPs ≈ 3 × forward."
ceiling_args=()
if [[ "$device" == cpu ]]; then  # the machine's FMA peak and bandwidth at this thread count (bench_cpu_ceiling)
  OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" >> "$tmp/ceiling-all.jsonl"
  /usr/bin/python3 bench/fastest.py "$tmp/ceiling-all.jsonl" > "$tmp/ceiling.jsonl"
  ceiling_args=(--ceiling "$tmp/ceiling.jsonl" --threads "$threads")
  if [[ -n "${BF16:-}" ]]; then ceiling_args+=(--bf16); fi
fi
table=$(/usr/bin/python3 bench/compare.py "$tmp/ours.jsonl" "$tmp/torch.jsonl" --title "${device^^}${BF16:+ bf16} models: videobert vs PyTorch" \
  --baseline-name "$("$python" bench/torch_info.py --short)" "${also[@]}" \
  --machine "$machine" "${ceiling_args[@]}")
echo "$table"
if [[ "${1:-}" != "--quick" ]]; then
  mkdir -p bench/results
  out=bench/results/${device/cuda/gpu}-models$([[ "$device" == cpu && -n "${BF16:-}" ]] && echo -bf16)-$(date -u +%Y-%m-%d).md
  printf '%s\n' "$table" > "$out.tmp" && mv "$out.tmp" "$out"
  echo "written to $out"
fi
