#!/usr/bin/env bash
# The CPU benchmarks' baseline: PyTorch 2.x from PyPI (its wheels bring MKL and oneDNN), in a virtual
# environment used by the benchmark scripts only. The tests never need it.
#
# The PyPI wheel for Linux x86-64 also pulls NVIDIA's CUDA libraries (a few GiB on disk), which is why this
# is a separate, opt-in step and not part of scripts/install-deps.sh. The venv is not in git (.gitignore).
#
# Usage: bash scripts/bench-venv.sh          create it, or say it exists (idempotent)
#        bash scripts/bench-venv.sh --python print the venv's python, creating the venv first if needed
#   BENCH_VENV=DIR        where (default .venv-bench in the repository)
#   BENCH_TORCH="torch==2.15.0"  which PyTorch (default: the newest 2.x on PyPI)
# scripts/bench-cpu.sh, bench-models.sh and bench-train.sh call `bench-venv.sh --python` and compare against
# that PyTorch, with Debian's python3-torch (1.13) as a second column.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv=${BENCH_VENV:-$root/.venv-bench}
spec=${BENCH_TORCH:-torch>=2,<3}
packages=("$spec" torchvision numpy)  # torchvision: the ResNets of bench-models and bench-train
python="$venv/bin/python"
log() { echo "bench-venv: $*" >&2; }

# A venv is complete when its stamp names the spec it was made for; anything else is rebuilt from nothing,
# so an interrupted install is never mistaken for a working one.
if [[ -f "$venv/.complete" && "$(cat "$venv/.complete")" == "${packages[*]}" ]] && "$python" -c 'import torch' 2> /dev/null; then
  log "$venv has torch $("$python" -c 'import torch; print(torch.__version__)')"
else
  if ! /usr/bin/python3 -c 'import ensurepip' 2> /dev/null; then
    log "error: python3 cannot make a venv with pip (Debian: apt install python3-venv, which scripts/install-deps.sh does)"
    exit 1
  fi
  log "creating $venv with ${packages[*]} from PyPI (a few GiB: the wheel pulls CUDA libraries)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$python" -m pip install -q --upgrade pip
  "$python" -m pip install -q "${packages[@]}"
  "$python" -c 'import torch; assert torch.__version__.startswith("2."), torch.__version__'
  printf '%s' "${packages[*]}" > "$venv/.complete"
  log "done: torch $("$python" -c 'import torch; print(torch.__version__)')"
fi
if [[ "${1:-}" == --python ]]; then echo "$python"; fi
