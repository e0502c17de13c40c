#!/usr/bin/env bash
# Installs every Debian package that videobert.cu's build, tests and benchmarks need.
# Idempotent: when everything is present it only checks and exits.
# Usage: scripts/install-deps.sh        (run as root, or with sudo available)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev        # CPU GEMM and vectorised math
  doctest-dev          # unit tests
  libfmt-dev           # formatting
  nlohmann-json3-dev   # configs, safetensors headers
  libcli11-dev         # command line
  libutf8proc-dev      # Unicode categories and NFD/NFC for the WordPiece tokenizer
  libstb-dev           # PNG/JPEG frames
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev   # video files
  python3 python3-numpy python3-torch python3-torchvision     # golden fixtures, torch-labelled tests, baselines
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
