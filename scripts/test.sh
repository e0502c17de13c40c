#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and runs every test.
# Usage: bash scripts/test.sh [extra cmake -D options]
# Environment: BUILD_DIR (default build), JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

bash scripts/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVIDEOBERT_WERROR=ON "$@"
cmake --build "$build_dir" -j "$jobs"
# GPU tests exit with 77 ("skipped") on a machine without a GPU.
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
