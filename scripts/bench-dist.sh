#!/usr/bin/env bash
# Data-parallel benchmarks on this machine's CPU (docs/DISTRIBUTED.md): the collectives through the mpi
# communicator (bench_dist_collectives, nccl-tests' algbw and busbw) for 2 ranks, and training throughput
# (bench_dist_train) of one process × all cores against one rank per core, with the fraction of the
# gradients' communication hidden behind backward. Writes bench/results/dist-cpu-<date>.md.
# Usage: bash scripts/bench-dist.sh [--quick]
#   BUILD_DIR=DIR   the build folder (default build); NO_BUILD=1 runs what is built
#   RANKS=N         ranks of the data-parallel runs (default: the number of cores)
# OMP_WAIT_POLICY=passive on every run (see bench-train.sh): idle OpenMP workers must not hold the cores
# that the other ranks need.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cores=$(nproc)
ranks=${RANKS:-$cores}
quick=()
[[ ${1:-} == --quick ]] && quick=(--quick)
if [[ -z "${NO_BUILD:-}" ]]; then cmake --build "$build_dir" --target bench_dist_collectives bench_dist_train > /dev/null; fi
export OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun -np "$ranks" --oversubscribe)
threads_per_rank=$((cores / ranks > 0 ? cores / ranks : 1))
load_start=$(cut -d" " -f1-3 /proc/loadavg)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

{
  echo "## Data parallel on the CPU: collectives and training throughput"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cores cores, $(date +%F), load average $load_start at the start."
  echo "Open MPI $(mpirun --version | head -1 | awk '{print $NF}'), shared memory between the ranks of one machine; OMP_WAIT_POLICY=passive."
  echo
  echo "### Collectives, $ranks ranks, float32 (bench_dist_collectives; median of 10 after 3 warm-ups, slowest rank)"
  echo
  max_bytes=$(( ${#quick[@]} ? 1048576 : 268435456 ))
  echo '```'
  OMP_NUM_THREADS=1 "${mpirun[@]}" "$build_dir/bench_dist_collectives" --device cpu --max-bytes "$max_bytes" 2> /dev/null
  echo '```'
  echo
  echo "### Training steps (bench_dist_train: the Trainer's step on synthetic batches, median after 2 warm-ups)"
  echo
  echo "Throughput of the same global batch on one process with every core, and split over ranks of"
  echo "$threads_per_rank thread(s) each. Backward, in flight, exposed and hidden are the data-parallel run's"
  echo "host timestamps: the backward pass, the time some gradient bucket's all-reduce was in flight, the part"
  echo "of it after backward ended, and the fraction of it hidden behind backward."
  echo
  echo "| case | step | throughput | backward | in flight | exposed | hidden |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  run_case() {  # run_case ARGS...: one process, then the ranks
    OMP_NUM_THREADS=$cores "$build_dir/bench_dist_train" "${quick[@]}" "$@" 2> /dev/null
    OMP_NUM_THREADS=$threads_per_rank "${mpirun[@]}" "$build_dir/bench_dist_train" "${quick[@]}" "$@" 2> /dev/null
  }
  run_case --preset tiny --global-batch 16
  run_case --preset tiny --global-batch 16 --bucket-mb 0.1
  run_case --preset tiny --global-batch 16 --zero
  if ((${#quick[@]} == 0)); then
    # base: BERT-base + ResNet-50 at 224² (bench_train_cpu's reduced case: 2 frames, a global batch of 2)
    run_case --preset base --global-batch "$ranks" --steps 3 frames=2 precision=float32
  fi
  echo
  echo "Load average at the end: $(cut -d" " -f1-3 /proc/loadavg)."
} | tee "$out"
if ((${#quick[@]} == 0)); then
  dest=bench/results/dist-cpu-$(date +%F).md
  cp "$out" "$dest"
  echo "wrote $dest"
fi
