#!/usr/bin/env bash
# Model benchmark on the CPU: forward + backward of BERT tiny/base and ResNet-18/50, ours against PyTorch on
# the CPU, same shapes, same thread count, one run, with each step's fraction of the machine's FMA peak. Prints a markdown table and writes it to
# bench/results/cpu-models-<date>.md.
# On a GPU: DEVICE=cuda [BF16=1] [PYTHON=python3-with-CUDA-torch] bash scripts/bench-models.sh — ours on `cuda`
# against PyTorch eager on the same GPU (bfloat16 autocast on both with BF16=1), into gpu-models-<date>.md.
# Usage: bash scripts/bench-models.sh [--quick]     (THREADS=N to choose the thread count; default all cores;
#        BUILD_DIR=... for the build folder, default build; NO_BUILD=1 to time the bench_models_cpu already built; TORCH_LD_LIBRARY_PATH=DIR to give PyTorch another
#        BLAS, e.g. Debian's OpenBLAS folder /usr/lib/x86_64-linux-gnu/openblas-pthread)
# Debian's python3-torch does its matmuls through whatever libblas.so.3 the system selects; with only the
# reference BLAS (libblas3) installed that is ~20x slower than OpenBLAS, so the table names the BLAS used.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
if [[ -z "${NO_BUILD:-}" ]]; then cmake --build "$build_dir" --target bench_models_cpu bench_cpu_ceiling > /dev/null; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
device=${DEVICE:-cpu}
python=${PYTHON:-/usr/bin/python3}
dev_args=(--device "$device")
if [[ -n "${BF16:-}" ]]; then dev_args+=(--bf16); fi
OMP_NUM_THREADS=$threads "$build_dir/bench_models_cpu" "${dev_args[@]}" "$@" > "$tmp/ours.jsonl"
torch_env=(env OPENBLAS_NUM_THREADS="$threads")
if [[ -n "${TORCH_LD_LIBRARY_PATH:-}" ]]; then torch_env+=(LD_LIBRARY_PATH="$TORCH_LD_LIBRARY_PATH"); fi
"${torch_env[@]}" "$python" bench/torch_models_cpu.py --threads "$threads" "${dev_args[@]}" "$@" > "$tmp/torch.jsonl"
blas=$("${torch_env[@]}" "$python" -c "import torch; torch.ones(8, 8) @ torch.ones(8, 8); print(next((l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l), 'unknown'))")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
machine="Machine: ${cpu:-unknown CPU}, $threads threads, $(date -u +%Y-%m-%d), load average at the end $(cut -d" " -f1-3 /proc/loadavg) (a shared machine: other work competes for the cores). PyTorch $torch_version (Debian python3-torch), its BLAS $blas. One training step (forward + backward, train mode), median of 5 after a warm-up; FLOPs ≈ 3 × forward."
ceiling_args=()
if [[ "$device" == cpu ]]; then  # the machine's FMA peak and bandwidth at this thread count (bench_cpu_ceiling)
  OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json "$@" > "$tmp/ceiling.jsonl"
  ceiling_args=(--ceiling "$tmp/ceiling.jsonl" --threads "$threads")
fi
table=$("$python" bench/compare.py "$tmp/ours.jsonl" "$tmp/torch.jsonl" --title "${device^^}${BF16:+ bf16} models: videobert vs PyTorch" --machine "$machine" "${ceiling_args[@]}")
echo "$table"
if [[ "${1:-}" != "--quick" ]]; then
  mkdir -p bench/results
  out=bench/results/${device/cuda/gpu}-models-$(date -u +%Y-%m-%d).md
  printf '%s\n' "$table" > "$out.tmp" && mv "$out.tmp" "$out"
  echo "written to $out"
fi
