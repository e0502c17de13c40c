#!/usr/bin/env bash
# Installs every Debian package that videobert.cu's build, tests and benchmarks need.
# Idempotent: when everything is present it only checks and exits.
# Usage: scripts/install-deps.sh        (run as root, or with sudo available)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  binutils             # addr2line: the insight names source lines; c++filt: scripts/ladder_registers.py
  libeigen3-dev        # CPU GEMM and vectorised math
  doctest-dev          # unit tests
  libfmt-dev           # formatting
  nlohmann-json3-dev   # configs, safetensors headers
  libcli11-dev         # command line
  libutf8proc-dev      # Unicode categories and NFD/NFC for the WordPiece tokenizer
  libstb-dev           # PNG/JPEG frames
  libdnnl-dev          # oneDNN: the CPU backend's convolutions where it is faster (kernels/cpu/conv_onednn.h)
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev   # video files
  openmpi-bin libopenmpi-dev   # data-parallel training on CPUs (the mpi communicator) and the dist tests
  libopenblas0-pthread # an optimised BLAS, so that PyTorch baselines are not measured on the reference BLAS
  python3 python3-numpy python3-torch python3-torchvision     # golden fixtures, torch-labelled tests, baselines
  python3-mpmath       # scripts/fit_normal_cdf.py (the test cpu/normal_cdf_table)
  python3-venv         # .venv-hf below
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Hugging Face transformers, for the torch-labelled test that loads an exported BERT folder with
# BertModel.from_pretrained (tests/torch/hf_transformers.cpp). It is not in Debian: a venv that sees Debian's
# torch (Debian's /usr/bin/python3, --system-site-packages) gets a transformers from PyPI pinned to a version that supports torch 1.13.
# Without network this step only warns, and that test skips itself.
hf_version=4.38.2
hf_transformers=transformers==$hf_version
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-hf"
have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("transformers"))' 2>/dev/null || true)
if [[ "$have" == "$hf_version" ]]; then
  echo "install-deps: $venv has transformers"
else
  echo "install-deps: creating $venv with $hf_transformers"
  if ! { /usr/bin/python3 -m venv --system-site-packages "$venv" && "$venv/bin/pip" install -q "$hf_transformers"; }; then
    echo "install-deps: warning: could not install $hf_transformers into $venv; tests/torch/hf_transformers skips" >&2
  fi
fi

# pycocoevalcap, the judge of the caption metrics (tests/torch/caption_metrics_coco.cpp), in the same venv. Its
# BLEU, ROUGE-L and CIDEr scorers are pure Python over numpy (Debian's, seen through --system-site-packages).
# --no-deps: its one declared dependency, pycocotools, serves only its COCO-annotation driver (eval.py), which the
# test does not use, and would otherwise be built from source. Without network this only warns; the test skips.
coco_version=1.2
have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pycocoevalcap"))' 2>/dev/null || true)
if [[ "$have" == "$coco_version" ]]; then
  echo "install-deps: $venv has pycocoevalcap"
else
  echo "install-deps: adding pycocoevalcap==$coco_version to $venv"
  if ! { { [[ -x "$venv/bin/pip" ]] || /usr/bin/python3 -m venv --system-site-packages "$venv"; } &&
         "$venv/bin/pip" install -q --no-deps "pycocoevalcap==$coco_version"; }; then
    echo "install-deps: warning: could not install pycocoevalcap==$coco_version into $venv;" \
      "tests/torch/caption_metrics_coco skips" >&2
  fi
fi
