#!/usr/bin/env bash
# Training benchmark on the CPU: full pretraining steps (forward + losses + backward + clip + AdamW) of the
# tiny, tiny-late, tiny-dual presets at their batch and of base at a reduced batch (bench/train_cpu.cpp
# says which), ours against the same model and step in PyTorch (bench/torch_train_cpu.py), same threads,
# one run. Prints a markdown table of samples/s and writes it to bench/results/train-cpu-<date>.md.
# The baseline is PyTorch 2.x from PyPI (MKL, oneDNN) in the benchmark venv that scripts/bench-venv.sh makes
# (created on first use: a few GiB); Debian's python3-torch (1.13) is a second column.
# Usage: bash scripts/bench-train.sh [--quick] [preset ...]
#   THREADS=N       thread count for both sides (default: all cores)
#   BUILD_DIR=DIR   the build folder (default build); NO_BUILD=1 times the bench_train_cpu already built
#   PROFILE=1       both sides also print the median time of each phase of the step (stderr)
#   OMP_WAIT_POLICY passive unless set (both sides use GNU OpenMP): on this shared 2-core VM the default
#                   spin-waiting lets an idle worker hold a core that a runnable thread needs, and a loaded
#                   machine then slows both sides 15-25x, by however many parallel regions each runs; set it
#                   empty (OMP_WAIT_POLICY=) for the runtime's default
#   PYTHON=...      a python3 whose torch is the baseline, instead of the venv's
#   SECOND_PYTHON=.. the second column's python3 (default /usr/bin/python3; empty: none; CPU only)
#   TORCH_LD_LIBRARY_PATH=DIR  another BLAS for the second column's torch (see scripts/bench-models.sh)
#   ROUNDS=N        how many times the case list runs (default 2); each side keeps its fastest median
#   BF16=1          both sides under bfloat16 autocast (ours --bf16, as pretrain's precision=bfloat16; PyTorch
#                   torch.autocast("cpu", torch.bfloat16)); "of limit" against the bfloat16 peak of the path the
#                   products take (AMX, else AVX512-BF16) where the CPU has one; writes train-cpu-bf16-<date>.md
#   DEVICE=cuda     the GPU comparison instead: ours with --device cuda --bf16 (autocast, as pretrain's
#                   precision=bfloat16), PyTorch eager with bf16 autocast; writes train-gpu-<date>.md.
#                   against the venv's torch, which has CUDA
# --quick (a smoke run: small batches, one step) and a preset list print the table without writing it.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
if [[ -z "${NO_BUILD:-}" ]]; then cmake --build "$build_dir" --target bench_train_cpu bench_cpu_ceiling > /dev/null; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wait_policy=${OMP_WAIT_POLICY-passive}
if [[ -n "$wait_policy" ]]; then export OMP_WAIT_POLICY=$wait_policy; else unset OMP_WAIT_POLICY; fi
load_start=$(cut -d" " -f1-3 /proc/loadavg)
device=${DEVICE:-cpu}
python=${PYTHON:-$(bash scripts/bench-venv.sh --python)}
second=${SECOND_PYTHON-/usr/bin/python3}
if [[ "$device" != cpu ]] || { [[ -n "$second" ]] && ! "$second" -c 'import torch' 2> /dev/null; }; then second=""; fi
# No second column under BF16: Debian's PyTorch 1.13 CPU autocast stops at BERT's layer_norm ("expected scalar
# type BFloat16 but found Float": a bfloat16 input with float32 weights).
if [[ -n "${BF16:-}" ]]; then second=""; fi
flags=() presets=()
for a in "$@"; do if [[ $a == -* ]]; then flags+=("$a"); else presets+=("$a"); fi; done
if [[ ${#presets[@]} -eq 0 ]]; then presets=(tiny tiny-late tiny-dual base); fi
if [[ -n "${PROFILE:-}" ]]; then flags+=(--profile); fi
torch_flags=(--threads "$threads")
if [[ "$device" != cpu ]]; then flags+=(--device "$device" --bf16); torch_flags+=(--device "$device" --bf16)
elif [[ -n "${BF16:-}" ]]; then flags+=(--bf16); torch_flags+=(--bf16); fi
if [[ -n "${PROFILE:-}" ]]; then torch_flags+=(--profile); fi
torch_env=(env OMP_NUM_THREADS="$threads")
second_env=(env OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads")
if [[ -n "${TORCH_LD_LIBRARY_PATH:-}" ]]; then second_env+=(LD_LIBRARY_PATH="$TORCH_LD_LIBRARY_PATH"); fi
# Each case runs ours then PyTorch back to back, and the whole list ROUNDS times; each side keeps its
# fastest median, the one least disturbed by the machine's other work.
rounds=${ROUNDS:-2}
ceiling_flags=$([[ " ${flags[*]-} " == *" --quick "* ]] && echo --quick || true)
# The machine's limits, at the start and again at the end (below); each keeps the better of the two.
if [[ "$device" == cpu ]]; then OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json $ceiling_flags > "$tmp/ceiling-all.jsonl"; fi
for ((round = 1; round <= rounds; ++round)); do
  for preset in "${presets[@]}"; do
    OMP_NUM_THREADS=$threads "$build_dir/bench_train_cpu" "${flags[@]}" "$preset" > "$tmp/case.jsonl"
    if [[ ! -s "$tmp/case.jsonl" ]]; then continue; fi  # e.g. base under --quick
    cat "$tmp/case.jsonl" >> "$tmp/ours-all.jsonl"
    "${torch_env[@]}" "$python" bench/torch_train_cpu.py --cases "$tmp/case.jsonl" "${torch_flags[@]}" >> "$tmp/torch-all.jsonl"
    if [[ -n "$second" ]]; then
      "${second_env[@]}" "$second" bench/torch_train_cpu.py --cases "$tmp/case.jsonl" "${torch_flags[@]}" >> "$tmp/second-all.jsonl"
    fi
  done
done
/usr/bin/python3 bench/fastest.py "$tmp/ours-all.jsonl" > "$tmp/ours.jsonl"
/usr/bin/python3 bench/fastest.py "$tmp/torch-all.jsonl" > "$tmp/torch.jsonl"
also=()
if [[ -n "$second" ]]; then
  /usr/bin/python3 bench/fastest.py "$tmp/second-all.jsonl" > "$tmp/second.jsonl"
  also=(--also "$tmp/second.jsonl=$("$second" bench/torch_info.py --short)")
fi
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
machine="Machine: ${cpu:-unknown CPU}, $threads threads, $(date -u +%Y-%m-%d), load average $load_start at the start and $(cut -d" " -f1-3 /proc/loadavg) at the end (a shared machine: other work competes for the cores), OMP_WAIT_POLICY=${wait_policy:-default} on both sides. Baseline: $("$python" bench/torch_info.py).${second:+ Second column: $("${second_env[@]}" "$second" bench/torch_info.py).} PyTorch eager attention, torchvision ResNets (NCHW). One full training step (forward + losses + backward + loss items + clip_grad_norm + AdamW) on pre-generated synthetic batches, float32, train mode; median seconds per step of 10 steps (tiny presets) or 3 (base) after 2 warm-up steps, each case run ours then PyTorch, $rounds rounds, each side's fastest median kept; samples/s = batch / step time; the same parameter count on both sides (checked)."
title="CPU training steps: videobert vs PyTorch"
if [[ "$device" == cpu && -n "${BF16:-}" ]]; then
  machine=${machine/synthetic batches, float32, train mode/synthetic batches, bfloat16 autocast on both sides (ours: matmul, linear and convolution on bfloat16 operands with float32 results, attention in float32 — docs/TRAINING.md; PyTorch: the lists of its CPU autocast; float32 weights, losses and optimizer on both), train mode}
  title="CPU training steps, bfloat16 autocast: videobert vs PyTorch"
fi
if [[ "$device" != cpu ]]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  machine="GPU: ${gpu:-unknown}, $(date -u +%Y-%m-%d). Ours: --device $device, bf16 autocast (matmul, conv, attention in bfloat16; float32 weights and optimizer). PyTorch $torch_version eager, torch.autocast(bfloat16), its attention as torch_train_cpu.py's --attention auto picks. Otherwise as on the CPU: full training steps on pre-generated synthetic batches, median of 10 (tiny) or 3 (base) after 2 warm-ups, $rounds rounds, fastest median kept; the same parameter count on both sides (checked)."
  title="GPU training steps: videobert vs PyTorch"
fi
ceiling_args=()
if [[ "$device" == cpu ]]; then  # the machine's FMA peak at this thread count, for the products' FLOPs per step
  OMP_NUM_THREADS=$threads "$build_dir/bench_cpu_ceiling" --json $ceiling_flags >> "$tmp/ceiling-all.jsonl"
  /usr/bin/python3 bench/fastest.py "$tmp/ceiling-all.jsonl" > "$tmp/ceiling.jsonl"
  ceiling_args=(--ceiling "$tmp/ceiling.jsonl" --threads "$threads")
  machine+=" \"of limit\": the matrix products' FLOPs of one step (GEMM and convolution, as the CPU backend counts them; attention's loops and elementwise work not counted) at the $([[ -n "${BF16:-}" ]] && echo "bfloat16 (AMX or AVX512-BF16)" || echo FMA) peak (the better of bench_cpu_ceiling at the start and at the end), over the step time."
  if [[ -n "${BF16:-}" ]]; then ceiling_args+=(--bf16); fi
fi
table=$(/usr/bin/python3 bench/compare.py "$tmp/ours.jsonl" "$tmp/torch.jsonl" --title "$title" --machine "$machine" "${ceiling_args[@]}" \
  --baseline-name "$("$python" bench/torch_info.py --short)" "${also[@]}")
echo "$table"
if [[ $# -eq 0 ]]; then
  mkdir -p bench/results
  out=bench/results/train-$([[ "$device" == cpu ]] && echo "cpu${BF16:+-bf16}" || echo gpu)-$(date -u +%Y-%m-%d).md
  printf '%s\n' "$table" > "$out.tmp" && mv "$out.tmp" "$out"
  echo "written to $out"
fi
