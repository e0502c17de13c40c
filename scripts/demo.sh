#!/usr/bin/env bash
# The README's main job: installs what is missing, builds the `videobert` program and runs the demo.
# Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

bash scripts/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build_dir" -j "$(nproc)" --target videobert_cli
"$build_dir/videobert" info
echo
"$build_dir/videobert" demo
