#!/usr/bin/env bash
# The GPU check (docs/GPU.md): on a machine with an NVIDIA GPU, builds videobert.cu with the CUDA backend,
# runs every test (the `gpu` label included: there the GPU tests must run, not skip), the GPU kernel
# benchmarks with their PyTorch baselines, compute-sanitizer (memcheck, racecheck) over the GPU test
# programs, and, where Nsight Compute (ncu) exists, its memory counters for every kernel-ladder rung beside
# the emulator's (docs/KERNELS.md); then writes a markdown report, gpu-check.md, and the raw logs into the
# output folder.
#
# Made for a lent device machine (one command of at most 10 minutes, 16 cores, no internet, none of our
# Debian -dev packages): it builds against the folder .gpu-deps/ that scripts/gpu-deps.sh made on the dev
# machine and the call carried, with FFmpeg off, and keeps inside a time budget: a stage that would overrun
# is cut short and the report says so. The report is rewritten after every stage, so a run killed at its
# limit still leaves one. At most 6 files are written (the device machine returns 8): ncu's CSVs go into
# bench.log.
#
# Usage: bash scripts/gpu-check.sh [options]
#   --out DIR          report and logs go here (default: $OUT, which the device machine sets)
#   --build-dir DIR    build folder (default: build-gpu)
#   --skip-build       neither configure nor build: use the build folder as it is (a warm machine's last build)
#   --only LIST        run only these of tests,bench,sanitizer,ncu (comma-separated; default: all four);
#                      the build runs first unless --skip-build
#   --targets "T …"    build only these targets (default: everything); pair it with --tests
#   --tests REGEX      run only the tests whose names match (ctest -R)
#   --jobs N           parallel build and test jobs (default: all cores)
#   --deps DIR|none    the carried dependencies (default: .gpu-deps); none: the system's, as on a Debian box
#   --ffmpeg on|off    build with FFmpeg (default: off with carried deps, on with --deps none)
#   --cuda-arch LIST   CMAKE_CUDA_ARCHITECTURES (default: the GPU's compute capability, e.g. 90)
#   --budget SECONDS   wall-clock budget of the whole run (default: 560; 0: none)
#   --sanitizer-timeout SECONDS   per program and tool (default: 240)
#   --racecheck-exclude PATTERN   doctest test cases racecheck leaves out (default: "*BERT shapes*", the
#                      full-size attention case: the small odd shapes run the same kernels; "" for none)
#   --werror           build with -DVIDEOBERT_WERROR=ON
#   --commit HASH      the commit the tree is at, for the report (default: git's, where .git is present)
#   --allow-no-gpu     go on without a GPU: build and run the tests (GPU tests then skip), leave out the
#                      sanitizer and the GPU benchmarks; for trying the script itself
# Exit status: 0 everything passed; 1 a test failed, a GPU test skipped on a GPU, compute-sanitizer found
# an error or a benchmark failed; 2 the build failed, there is no GPU (without --allow-no-gpu) or the
# options are wrong; 3 all that ran passed, but the time budget cut a stage short. The report is written
# in every case once the output folder is known.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD
started=$SECONDS
command_line="bash scripts/gpu-check.sh${*:+ $*}"

out=${OUT:-}
build_dir=build-gpu
skip_build=0
stages="tests,bench,sanitizer,ncu"
targets=""
tests_regex=""
jobs=$(nproc)
deps=.gpu-deps
ffmpeg=""
cuda_arch=""
budget=560
sanitizer_timeout=240
racecheck_exclude="*BERT shapes*"
werror=0
commit=""
allow_no_gpu=0

usage() { sed -n '/^# Usage:/,/^# in every case/s/^# \{0,1\}//p' "$0"; }
while (($#)); do
  case $1 in
    --out) out=$2; shift ;;
    --build-dir) build_dir=$2; shift ;;
    --skip-build) skip_build=1 ;;
    --only) stages=$2; shift ;;
    --targets) targets=$2; shift ;;
    --tests) tests_regex=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --deps) deps=$2; shift ;;
    --ffmpeg) ffmpeg=$2; shift ;;
    --cuda-arch) cuda_arch=$2; shift ;;
    --budget) budget=$2; shift ;;
    --sanitizer-timeout) sanitizer_timeout=$2; shift ;;
    --racecheck-exclude) racecheck_exclude=$2; shift ;;
    --werror) werror=1 ;;
    --commit) commit=$2; shift ;;
    --allow-no-gpu) allow_no_gpu=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $out ]]; then
  echo "gpu-check: no output folder: give --out DIR (on a lent device machine \$OUT is set)" >&2
  exit 2
fi
for s in ${stages//,/ }; do
  [[ $s =~ ^(tests|bench|sanitizer|ncu)$ ]] || { echo "gpu-check: --only takes tests, bench, sanitizer and ncu, not '$s'" >&2; exit 2; }
done
[[ $jobs =~ ^[0-9]+$ && $jobs -ge 1 ]] || { echo "gpu-check: --jobs $jobs is not a positive number" >&2; exit 2; }
[[ $budget =~ ^[0-9]+$ ]] || { echo "gpu-check: --budget $budget is not a number of seconds" >&2; exit 2; }
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
if [[ $deps != none ]]; then
  [[ $deps = /* ]] || deps=$root/$deps
fi
want() { [[ ,$stages, == *,$1,* ]]; }

report=$out/gpu-check.md
env_log=$out/env.log
build_log=$out/build.log
tests_log=$out/tests.log
bench_log=$out/bench.log
sanitizer_log=$out/sanitizer.log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$env_log"

say() { echo "gpu-check [$((SECONDS - started)) s]: $*"; }
# Seconds left of the budget, less `reserve` for what follows (a large number when there is no budget).
left() {
  local reserve=${1:-0}
  if ((budget == 0)); then echo 86400; else echo $((budget - (SECONDS - started) - reserve)); fi
}
# A log cut to 15 MiB (the device machine returns files up to 16 MiB): its head and its tail.
cap_log() {
  local f=$1 max=$((15 * 1024 * 1024))
  [[ -f $f ]] || return 0
  local size
  size=$(stat -c %s "$f")
  ((size > max)) || return 0
  { head -c $((max / 2)) "$f"; printf '\n\n[... %d bytes cut by gpu-check ...]\n\n' $((size - max)); tail -c $((max / 2)) "$f"; } > "$f.cut"
  mv "$f.cut" "$f"
}

# ---- the machine -------------------------------------------------------------------------------------------
if ! command -v nvcc > /dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
# The torch-labelled tests run PyTorch through $VB_PYTHON (default Debian's /usr/bin/python3); here, the
# python3 on the PATH is the one that holds it.
if [[ -z "${VB_PYTHON:-}" ]] && command -v python3 > /dev/null; then export VB_PYTHON=$(command -v python3); fi
sanitizer=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -n $sanitizer || ! -x $c ]] || sanitizer=$c
done
ncu=$(command -v ncu || true)
for c in /usr/local/cuda/bin/ncu /usr/local/cuda/nsight-compute*/ncu /opt/nvidia/nsight-compute/*/ncu; do
  [[ -n $ncu || ! -x $c ]] || ncu=$c
done
deps_problem=""
if [[ $deps != none && ! -d $deps/lib/cmake ]]; then
  deps_problem="$deps is not a dependency folder: run scripts/gpu-deps.sh on the dev machine and carry .gpu-deps (or give --deps none on a machine with our Debian packages)"
elif [[ $deps != none ]]; then
  export PKG_CONFIG_PATH=$deps/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  command -v pkg-config > /dev/null || export PATH=$deps/bin:$PATH   # Debian's pkgconf, carried
fi
# cuDNN, for bench_kernels_gpu's conv baselines: the lent machine's image may hold it only inside
# PyTorch's wheel (pip's nvidia-cudnn-cu13: include/cudnn*.h, lib/libcudnn*.so.9), not beside the toolkit.
# Then the benchmark is compiled against those headers and loads that library (and, through
# LD_LIBRARY_PATH, the sub-libraries libcudnn.so.9 opens at run time).
cudnn_include_flag=""
cudnn_line="${VB_CUDNN_LIB:-libcudnn.so.9 on the loader path, headers beside the toolkit}"
if [[ -z "${VB_CUDNN_LIB:-}" ]]; then
  nvcc_include=$(dirname "$(command -v nvcc 2> /dev/null || echo /usr/local/cuda/bin/nvcc)")/../include
  if [[ ! -f $nvcc_include/cudnn.h && ! -f /usr/local/include/cudnn.h && ! -f /usr/include/cudnn.h && ! -f /usr/include/x86_64-linux-gnu/cudnn.h ]]; then
    wheel_cudnn=$(timeout 60 python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2> /dev/null || true)
    if [[ -n $wheel_cudnn && -f $wheel_cudnn/include/cudnn.h && -f $wheel_cudnn/lib/libcudnn.so.9 ]]; then
      cudnn_include_flag="-isystem $wheel_cudnn/include"
      export VB_CUDNN_LIB=$wheel_cudnn/lib/libcudnn.so.9
      export LD_LIBRARY_PATH=$wheel_cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      cudnn_line="$VB_CUDNN_LIB, compiled against $wheel_cudnn/include (PyTorch's wheel)"
    fi
  fi
fi
# NCCL, for the nccl communicator (device cuda): beside the toolkit (CUDA 13 ships it), else inside PyTorch's
# wheel (pip's nvidia-nccl-cu13: include/nccl.h, lib/libnccl.so.2). libnccl is about 200 MB, too large to
# carry, so the lent machine's own copy is used; the build finds it through NCCL_ROOT.
nccl_root=""
nccl_line="beside the toolkit"
nvcc_dir=$(dirname "$(command -v nvcc 2> /dev/null || echo /usr/local/cuda/bin/nvcc)")
if [[ ! -f $nvcc_dir/../include/nccl.h && ! -f /usr/include/nccl.h && ! -f /usr/local/include/nccl.h ]]; then
  wheel_nccl=$(timeout 60 python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2> /dev/null || true)
  if [[ -n $wheel_nccl && -f $wheel_nccl/include/nccl.h && -f $wheel_nccl/lib/libnccl.so.2 ]]; then
    nccl_root=$wheel_nccl
    export LD_LIBRARY_PATH=$wheel_nccl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nccl_line="$wheel_nccl (PyTorch's wheel)"
  else
    nccl_line="not found: the build has no nccl communicator"
  fi
fi
[[ -n $ffmpeg ]] || { [[ $deps == none ]] && ffmpeg=on || ffmpeg=off; }
[[ $ffmpeg =~ ^(on|off)$ ]] || { echo "gpu-check: --ffmpeg takes on or off, not '$ffmpeg'" >&2; exit 2; }

gpu_query=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2> /dev/null | head -1)
have_gpu=0
[[ -n $gpu_query ]] && have_gpu=1
IFS=, read -r gpu_name driver gpu_memory compute_cap <<< "${gpu_query:-none,-,-,-}"
gpu_name=$(echo "$gpu_name" | xargs); driver=$(echo "$driver" | xargs)
gpu_memory=$(echo "$gpu_memory" | xargs); compute_cap=$(echo "$compute_cap" | xargs)
if [[ -z $cuda_arch ]]; then
  if [[ $compute_cap =~ ^[0-9]+\.[0-9]+$ ]]; then cuda_arch=${compute_cap/./}; else cuda_arch=90; fi
fi
# The short name for the committed report: "NVIDIA H100 80GB HBM3" → h100.
gpu_slug=$(echo "$gpu_name" | grep -oE '\b[A-Z]{1,2}[0-9]{2,4}[a-z]?\b' | head -1 | tr '[:upper:]' '[:lower:]')
[[ -n $gpu_slug ]] || gpu_slug=$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
today=$(date -u +%Y-%m-%d)
if [[ -z $commit ]]; then commit=$(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo "unknown (pass --commit)"); fi

first_line() { "$@" 2>&1 | head -1; }
cxx=${CXX:-c++}
nvcc_version=$(nvcc --version 2> /dev/null | sed -n 's/.*release \([0-9.]*\), \(V[0-9.]*\).*/\1 (\2)/p')
sanitizer_version=$([[ -n $sanitizer ]] && "$sanitizer" --version 2> /dev/null | sed -n 's/.*Version \(.*\)/\1/p' | head -1)
torch_line=$(timeout 120 python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "sees", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2> /dev/null || echo "not importable")
os_name=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2> /dev/null | tr -d '"')
cpu_name=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
{
  echo "# gpu-check environment, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: $command_line"
  echo "commit: $commit"
  echo "os: $os_name, kernel $(uname -r), $(uname -m)"
  echo "cpu: $cpu_name, $(nproc) cores, ${mem_gib} GiB"
  echo "c++: $(first_line "$cxx" --version)"
  echo "cmake: $(first_line cmake --version)"
  echo "ninja: $(first_line ninja --version)"
  echo "pkg-config: $(command -v pkg-config) $(first_line pkg-config --version)"
  echo "python3: $(command -v python3) $(first_line python3 --version)"
  echo "torch: $torch_line"
  echo "compute-sanitizer: ${sanitizer:-not found} $sanitizer_version"
  echo "deps: $deps"
  [[ $deps == none || ! -f $deps/MANIFEST ]] || sed 's/^/  /' "$deps/MANIFEST"
  echo
  echo "## nvcc --version"
  nvcc --version 2>&1
  echo
  echo "## nvidia-smi"
  nvidia-smi 2>&1
  echo
  echo "## nvidia-smi -q"
  nvidia-smi -q 2>&1
} >> "$env_log"

# ---- results, filled in by the stages, and the report -----------------------------------------------------
declare -A note=()          # stage → a line for the summary table
overall_fail=0             # 1: a test, sanitizer or benchmark failure; 2: the build failed
incomplete=0               # 1: the time budget cut something short
build_state="not run"
tests_state="not run"
bench_state="not run"
sanitizer_state="not run"
ncu_state="not run"
: > "$work/tests.tsv"      # name \t status \t seconds
: > "$work/sanitizer.tsv"  # tool \t program \t status \t findings \t seconds
: > "$work/bench.md"

write_report() {
  local verdict="PASS"
  ((incomplete == 0)) || verdict="PASS so far, INCOMPLETE (the time budget cut a stage short)"
  ((overall_fail == 0)) || verdict="FAIL"
  {
    echo "# GPU check: ${gpu_name} (${today})"
    echo
    echo "Commit \`${commit}\`, built with CUDA for sm_${cuda_arch}, FFmpeg ${ffmpeg}. Command: \`${command_line}\`."
    if ((have_gpu)); then
      echo "Commit this file as \`bench/results/gpu-check-${today}-${gpu_slug}.md\` (docs/GPU.md)."
    else
      echo "Made without a GPU: a trial of the script, not a report to commit."
    fi
    echo
    echo "## Summary: ${verdict}"
    echo
    echo "| stage | result |"
    echo "|---|---|"
    echo "| GPU | ${gpu_name}, driver ${driver}, ${gpu_memory}, compute capability ${compute_cap} |"
    echo "| build | ${build_state} |"
    echo "| tests | ${tests_state} |"
    echo "| benchmarks | ${bench_state} |"
    echo "| compute-sanitizer | ${sanitizer_state} |"
    echo "| Nsight Compute (ladders) | ${ncu_state} |"
    echo "| time | $((SECONDS - started)) s$( ((budget == 0)) || echo " of a ${budget} s budget") |"
    for k in "${!note[@]}"; do echo "| note: $k | ${note[$k]} |"; done
    echo
    echo "## Machine"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| GPU | ${gpu_name} (${gpu_memory}), driver ${driver} |"
    echo "| CUDA | nvcc ${nvcc_version:-not found}; compute-sanitizer ${sanitizer_version:-not found} |"
    echo "| CPU | ${cpu_name}, $(nproc) cores, ${mem_gib} GiB |"
    echo "| OS | ${os_name}, kernel $(uname -r) |"
    echo "| compilers | $(first_line "$cxx" --version); $(first_line cmake --version); ninja $(first_line ninja --version) |"
    echo "| cuDNN for the conv baselines | ${cudnn_line} |"
    echo "| NCCL for the nccl communicator | ${nccl_line} |"
    echo "| PyTorch | ${torch_line} |"
    echo
    if [[ -s $work/tests.tsv ]]; then
      echo "## Tests"
      echo
      echo "| label | passed | failed | skipped |"
      echo "|---|---:|---:|---:|"
      awk -F'\t' '{ split($1, p, "/"); l = p[1]; labels[l] = 1
                    if ($2 == "passed") ok[l]++; else if ($2 == "skipped") sk[l]++; else bad[l]++ }
                  END { for (l in labels) printf "| %s | %d | %d | %d |\n", l, ok[l], bad[l], sk[l] }' "$work/tests.tsv" | sort
      echo
      if awk -F'\t' '$2 != "passed" { found = 1 } END { exit !found }' "$work/tests.tsv"; then
        echo "Not passed (the output of failures is in tests.log):"
        echo
        awk -F'\t' '$2 != "passed" { printf "- `%s`: %s (%s s)\n", $1, $2, $3 }' "$work/tests.tsv"
        echo
      fi
      echo "Slowest:"
      echo
      sort -t$'\t' -k3 -gr "$work/tests.tsv" | head -8 | awk -F'\t' '{ printf "- `%s` %s s\n", $1, $3 }'
      echo
    fi
    if [[ -s $work/bench.md ]]; then
      echo "## Benchmarks"
      echo
      cat "$work/bench.md"
      echo
    fi
    if [[ -s $work/ncu.md ]]; then
      echo "## Nsight Compute beside the emulator"
      echo
      echo "Each kernel-ladder rung at the shape of docs/KERNELS.md's emulator tables, run once under \`ncu\` (\`videobert kernels run … --device cuda --no-time\`; bench/ncu_table.py). Global load requests count plain loads and cp.async copies; bank conflicts are the shared wavefronts past the ideal. Compare with the emulator's columns of the same names. Raw CSV in bench.log."
      echo
      cat "$work/ncu.md"
      echo
    fi
    if [[ -s $work/sanitizer.tsv ]]; then
      echo "## compute-sanitizer"
      echo
      echo "Each GPU test program under each tool (\`--error-exitcode 99\`); racecheck leaves out the test cases matching \`${racecheck_exclude:-nothing}\`. Details in sanitizer.log."
      echo
      echo "| tool | program | result | findings | seconds |"
      echo "|---|---|---|---|---:|"
      awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$work/sanitizer.tsv"
      echo
    fi
    echo "## Files"
    echo
    for f in env.log build.log tests.log bench.log sanitizer.log; do
      if [[ -f $out/$f ]]; then echo "- $f ($(stat -c %s "$out/$f") bytes)"; fi
    done
  } > "$report.tmp"
  mv "$report.tmp" "$report"
}

if [[ -n $deps_problem ]]; then
  note[deps]=$deps_problem
  build_state="not run"
  overall_fail=2
  write_report
  say "$deps_problem; report: $report"
  exit 2
fi
if ((have_gpu == 0)); then
  if ((allow_no_gpu == 0)); then
    note[gpu]="nvidia-smi found no GPU: nothing was built or run (--allow-no-gpu tries the script anyway)"
    gpu_name="no GPU"
    overall_fail=2
    write_report
    say "no GPU found (nvidia-smi); report: $report"
    exit 2
  fi
  gpu_name="no GPU"
  note[gpu]="no GPU on this machine (--allow-no-gpu): the gpu tests skip; no sanitizer, no GPU benchmarks"
fi
say "GPU: $gpu_name; output: $out"
write_report

# ---- build ------------------------------------------------------------------------------------------------
if ((skip_build)); then
  if [[ -f $build_dir/CTestTestfile.cmake ]]; then
    build_state="skipped (--skip-build: the build in $(basename "$build_dir") as it was)"
    # The report describes the build that is there.
    cached() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt" 2> /dev/null | head -1; }
    cuda_arch=$(cached CMAKE_CUDA_ARCHITECTURES); cuda_arch=${cuda_arch:-none}
    ffmpeg=$(cached VIDEOBERT_FFMPEG | tr '[:upper:]' '[:lower:]'); ffmpeg=${ffmpeg:-on}
  else
    build_state="FAILED: --skip-build, but $build_dir holds no configured build"
    overall_fail=2
  fi
else
  cuda_setting=ON
  if ! command -v nvcc > /dev/null; then
    cuda_setting=AUTO
    note[cuda]="no nvcc found: configured with VIDEOBERT_CUDA=AUTO, so the build has no CUDA backend"
  fi
  generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  cmake_args=(-S "$root" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
              "-DVIDEOBERT_CUDA=$cuda_setting" "-DVIDEOBERT_FFMPEG=$([[ $ffmpeg == on ]] && echo ON || echo OFF)"
              "-DCMAKE_CUDA_ARCHITECTURES=$cuda_arch" "-DVIDEOBERT_WERROR=$([[ $werror == 1 ]] && echo ON || echo OFF)")
  [[ $deps == none ]] || cmake_args+=("-DCMAKE_PREFIX_PATH=$deps")
  [[ -z $cudnn_include_flag ]] || cmake_args+=("-DCMAKE_CXX_FLAGS=$cudnn_include_flag")
  [[ -z $nccl_root ]] || cmake_args+=("-DNCCL_ROOT=$nccl_root")
  build_args=(--build "$build_dir" -j "$jobs")
  if [[ -n $targets ]]; then
    read -ra target_list <<< "$targets"
    build_args+=(--target "${target_list[@]}")
  fi
  say "configure and build ($jobs jobs)"
  t0=$SECONDS
  {
    echo "\$ cmake ${cmake_args[*]}"
    timeout $(($(left 60) > 10 ? $(left 60) : 10)) cmake "${cmake_args[@]}" &&
      echo "\$ cmake ${build_args[*]}" &&
      timeout $(($(left 60) > 10 ? $(left 60) : 10)) cmake "${build_args[@]}"
  } > "$build_log" 2>&1
  rc=$?
  warnings=$(grep -ciE 'warning( #|:)' "$build_log")   # g++'s "warning:", nvcc's "Warning #N-D:"
  if ((rc == 0)); then
    build_state="ok in $((SECONDS - t0)) s, ${warnings} compiler warnings"
  elif ((rc == 124)); then
    build_state="FAILED: stopped by the time budget after $((SECONDS - t0)) s (build.log)"
    overall_fail=2
  else
    build_state="FAILED (exit $rc) after $((SECONDS - t0)) s: $(grep -m1 -E 'error|Error' "$build_log" | cut -c1-200) (build.log)"
    overall_fail=2
  fi
  cap_log "$build_log"
fi
say "build: $build_state"
write_report
if ((overall_fail == 2)); then
  say "report: $report"
  exit 2
fi

# ---- tests ------------------------------------------------------------------------------------------------
# ctest's line per test, "  3/50 Test  #3: cpu/conv ......   Passed    0.81 sec", into name \t status \t seconds.
parse_ctest() {
  sed -nE 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: ([^ ]+) \.+ *\**(.*[^ ]) +([0-9.]+) sec$/\1\t\2\t\3/p' "$1" |
    awk -F'\t' 'BEGIN { OFS = "\t" }
                { s = $2 ~ /^Passed/ ? "passed" : $2 ~ /Skipped/ ? "skipped" : $2 ~ /^Not Run/ ? "not run" : $2
                  if (s == "Failed") s = "failed"; else if (s != "passed" && s != "skipped" && s != "not run") s = "failed (" s ")"
                  print $1, s, $3 }'
}
if want tests; then
  # Threads per test: ctest runs `jobs` tests at once; a few OpenMP threads each keep the cores busy without
  # oversubscribing them (the tests' results do not depend on the thread count).
  omp_threads=${OMP_NUM_THREADS:-2}
  ctest_args=(--test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 300)
  [[ -z $tests_regex ]] || ctest_args+=(-R "$tests_regex")
  say "tests (ctest -j $jobs, OMP_NUM_THREADS=$omp_threads)"
  t0=$SECONDS
  OMP_NUM_THREADS=$omp_threads timeout $(($(left 40) > 10 ? $(left 40) : 10)) ctest "${ctest_args[@]}" > "$tests_log" 2>&1
  rc=$?
  parse_ctest "$tests_log" > "$work/tests.tsv"
  n=$(wc -l < "$work/tests.tsv")
  passed=$(grep -c $'\tpassed\t' "$work/tests.tsv")
  skipped=$(grep -c $'\tskipped\t' "$work/tests.tsv")
  failed=$((n - passed - skipped))
  tests_state="${passed} passed, ${failed} failed, ${skipped} skipped of ${n}, in $((SECONDS - t0)) s"
  ((failed == 0)) || overall_fail=1
  if ((rc == 124)); then
    tests_state+="; STOPPED by the time budget"
    overall_fail=1
    incomplete=1
  elif ((rc != 0 && failed == 0)); then
    tests_state+="; ctest exited $rc (tests.log)"
    overall_fail=1
  fi
  if ((have_gpu)); then
    gpu_skipped=$(awk -F'\t' '$1 ~ /^gpu\// && $2 == "skipped" { printf "%s%s", sep, $1; sep = ", " }' "$work/tests.tsv")
    if [[ -n $gpu_skipped ]]; then
      tests_state+="; GPU tests SKIPPED on a GPU machine: ${gpu_skipped}"
      overall_fail=1
    fi
    gpu_ran=$(awk -F'\t' '$1 ~ /^gpu\// && $2 != "skipped"' "$work/tests.tsv" | wc -l)
    tests_state+="; ${gpu_ran} gpu-labelled tests ran"
  fi
  cap_log "$tests_log"
  say "tests: $tests_state"
  write_report
fi

# ---- benchmarks -------------------------------------------------------------------------------------------
# Every built bench_*gpu* program and every bench/torch_*gpu*.py script, one after the other (nothing else on
# the GPU meanwhile), each given `--json FILE` (the GPU benchmarks' convention: a markdown table on stdout,
# one JSON line per measurement in FILE). bench/compare_gpu.py, where present, joins bench_X's lines with
# bench/torch_X.py's into one table, ours beside PyTorch; the programs' own output follows as it came.
run_bench() {  # run_bench LABEL COMMAND…: stdout to $work/LABEL.out, JSON lines to $work/LABEL.jsonl
  local label=$1 t0=$SECONDS rc limit
  shift
  limit=$(left 30)
  if ((limit < 20)); then
    echo "- \`$label\`: not run, the time budget was spent" >> "$work/bench.md"
    return 2
  fi
  ((limit < 300)) || limit=300
  say "benchmark $label (at most $limit s)"
  echo "===== $label: $* --json $label.jsonl" >> "$bench_log"
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" --json "$work/$label.jsonl" > "$work/$label.out" 2> "$work/stderr"
  rc=$?
  {
    cat "$work/$label.out" "$work/stderr"
    if [[ -s $work/$label.jsonl ]]; then echo "----- $label.jsonl"; cat "$work/$label.jsonl"; fi
    echo "===== $label: exit $rc after $((SECONDS - t0)) s"
    echo
  } >> "$bench_log"
  if ((rc == 0)); then
    echo "- \`$label\`: ok, $((SECONDS - t0)) s" >> "$work/bench.md"
  else
    echo "- \`$label\`: FAILED (exit $rc$( ((rc == 124)) && echo ", time limit $limit s"), $((SECONDS - t0)) s; bench.log)" >> "$work/bench.md"
    return 1
  fi
}
if want bench; then
  : > "$bench_log"
  if ((have_gpu == 0)); then
    bench_state="not run: no GPU"
  else
    ran=0; bad=0; cut=0
    shopt -s nullglob
    programs=("$build_dir"/bench_*gpu*)
    scripts=("$root"/bench/torch_*gpu*.py)
    shopt -u nullglob
    [[ -x $build_dir/bench_kernels_gpu ]] || note[bench]="bench_kernels_gpu is not built (no bench/kernels_gpu/?): no kernel timings"
    labels=()
    for p in "${programs[@]}"; do
      [[ -x $p && ! -d $p ]] || continue
      labels+=("$(basename "$p")")
      ran=$((ran + 1))
      run_bench "$(basename "$p")" "$p"
      case $? in 0) ;; 2) cut=$((cut + 1)) ;; *) bad=$((bad + 1)) ;; esac
    done
    for s in "${scripts[@]}"; do
      labels+=("$(basename "$s" .py)")
      ran=$((ran + 1))
      run_bench "$(basename "$s" .py)" python3 "$s"
      case $? in 0) ;; 2) cut=$((cut + 1)) ;; *) bad=$((bad + 1)) ;; esac
    done
    echo >> "$work/bench.md"
    for label in "${labels[@]}"; do
      [[ $label == bench_* ]] || continue
      theirs=torch_${label#bench_}
      if [[ -f $root/bench/compare_gpu.py && -s $work/$label.jsonl && -s $work/$theirs.jsonl ]]; then
        { echo "### ${label} beside PyTorch (bench/compare_gpu.py)"; echo; } >> "$work/bench.md"
        if python3 "$root/bench/compare_gpu.py" "$work/$label.jsonl" "$work/$theirs.jsonl" \
          --machine "${gpu_name}, driver ${driver}, $(nproc) CPU cores; PyTorch ${torch_line}" > "$work/compare.md" 2>> "$bench_log"; then
          { cat "$work/compare.md"; echo; } >> "$work/bench.md"
        else
          { echo "bench/compare_gpu.py failed (bench.log)."; echo; } >> "$work/bench.md"
          note[compare]="bench/compare_gpu.py failed on ${label}'s and ${theirs}'s JSON lines (bench.log)"
          overall_fail=1
        fi
      fi
    done
    for label in "${labels[@]}"; do
      [[ -s $work/$label.out ]] || continue
      { echo "### ${label}"; echo; } >> "$work/bench.md"
      if grep -q '^|' "$work/$label.out"; then
        { cat "$work/$label.out"; echo; } >> "$work/bench.md"
      else
        { echo '```'; head -200 "$work/$label.out"; echo '```'; echo; } >> "$work/bench.md"
      fi
    done
    bench_state="$((ran - bad - cut)) of ${ran} programs ran"
    ((ran > 0)) || bench_state="none: no bench_*gpu* program is built and no bench/torch_*gpu*.py exists"
    ((bad == 0)) || { bench_state+="; ${bad} FAILED"; overall_fail=1; }
    ((cut == 0)) || { bench_state+="; ${cut} not run for lack of time"; incomplete=1; }
  fi
  [[ -s $bench_log ]] || rm -f "$bench_log"
  cap_log "$bench_log"
  say "benchmarks: $bench_state"
  write_report
fi

# ---- compute-sanitizer ------------------------------------------------------------------------------------
# memcheck and racecheck over every test_gpu_* program, several at once (one GPU serves them all; each tool
# slows its program down 10 to 1000 times), each under a time limit.
sanitize_one() {  # sanitize_one TOOL PROGRAM LIMIT: one line of sanitizer.tsv, the log in $work/san.TOOL.NAME
  local tool=$1 prog=$2 limit=$3 name log t0=$SECONDS rc status findings extra=()
  name=$(basename "$prog")
  log=$work/san.$tool.$name
  [[ $tool != racecheck || -z $racecheck_exclude ]] || extra=("--test-case-exclude=$racecheck_exclude")
  OMP_NUM_THREADS=2 timeout -k 10 "$limit" "$sanitizer" --tool "$tool" --error-exitcode 99 --print-limit 50 "$prog" "${extra[@]}" > "$log" 2>&1
  rc=$?
  if [[ $tool == racecheck ]]; then
    findings=$(grep -m1 -o 'RACECHECK SUMMARY: .*' "$log" | sed 's/RACECHECK SUMMARY: //')
  else
    findings=$(grep -m1 -o 'ERROR SUMMARY: .*' "$log" | sed 's/ERROR SUMMARY: //')
  fi
  case $rc in
    0) status="clean" ;;
    99) status="ERRORS" ;;
    77) status="SKIPPED (no GPU seen)" ;;
    124 | 137) status="incomplete: time limit ${limit} s" ;;
    *) status="FAILED: the test failed under the tool (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$name" "$status" "${findings:--}" "$((SECONDS - t0))" > "$log.tsv"
  { echo "===== compute-sanitizer --tool $tool $name ${extra[*]}: $status, exit $rc, $((SECONDS - t0)) s"; cat "$log"; echo; } > "$log.txt"
}
if want sanitizer; then
  : > "$sanitizer_log"
  shopt -s nullglob
  gpu_tests=("$build_dir"/test_gpu_*)
  shopt -u nullglob
  if ((have_gpu == 0)); then
    sanitizer_state="not run: no GPU"
  elif [[ -z $sanitizer ]]; then
    sanitizer_state="not run: compute-sanitizer not found"
    overall_fail=1
  elif ((${#gpu_tests[@]} == 0)); then
    sanitizer_state="not run: no test_gpu_* program in $build_dir"
  elif (($(left 30) < 30)); then
    sanitizer_state="not run: the time budget was spent"
    incomplete=1
  else
    limit=$(left 30)
    ((limit < sanitizer_timeout)) || limit=$sanitizer_timeout
    parallel=$(( jobs < 6 ? jobs : 6 ))
    say "compute-sanitizer: ${#gpu_tests[@]} programs × memcheck, racecheck; $parallel at a time, at most $limit s each"
    t0=$SECONDS
    running=0
    for tool in memcheck racecheck; do
      for prog in "${gpu_tests[@]}"; do
        [[ -x $prog ]] || continue
        sanitize_one "$tool" "$prog" "$limit" &
        running=$((running + 1))
        if ((running >= parallel)); then wait -n; running=$((running - 1)); fi
      done
    done
    wait
    for tool in memcheck racecheck; do
      for prog in "${gpu_tests[@]}"; do
        name=$(basename "$prog")
        [[ -f $work/san.$tool.$name.tsv ]] || continue
        cat "$work/san.$tool.$name.tsv" >> "$work/sanitizer.tsv"
        cat "$work/san.$tool.$name.txt" >> "$sanitizer_log"
      done
    done
    clean=$(awk -F'\t' '$3 == "clean"' "$work/sanitizer.tsv" | wc -l)
    errors=$(awk -F'\t' '$3 == "ERRORS" || $3 ~ /^FAILED/ || $3 ~ /^SKIPPED/' "$work/sanitizer.tsv" | wc -l)
    incomplete_runs=$(awk -F'\t' '$3 ~ /^incomplete/' "$work/sanitizer.tsv" | wc -l)
    sanitizer_state="${clean} clean, ${errors} with errors or failures, ${incomplete_runs} cut by the time limit; $((SECONDS - t0)) s"
    ((errors == 0)) || overall_fail=1
    ((incomplete_runs == 0)) || incomplete=1
  fi
  [[ -s $sanitizer_log ]] || rm -f "$sanitizer_log"
  cap_log "$sanitizer_log"
  say "compute-sanitizer: $sanitizer_state"
  write_report
fi

# ---- Nsight Compute beside the emulator ---------------------------------------------------------------------
# Every rung of every kernel ladder (`videobert kernels list`) at the shape docs/KERNELS.md's emulator tables
# use, run once (checked, untimed) under ncu with the counters the emulator's insight also counts; only the
# ladders' kernels are profiled. The CSVs go into bench.log, the table (bench/ncu_table.py) into the report.
ncu_cases=(
  "gemm 1 128x128x128" "gemm 2 128x128x128" "gemm 3 128x128x128" "gemm 4 128x128x128" "gemm 5 128x128x128"
  "gemm 6 128x128x128" "gemm 7 128x128x128" "gemm 8 128x128x128"
  "layer_norm 1 256x768" "layer_norm 2 256x768" "layer_norm 3 256x768"
  "attention 1 1x2x64x64" "attention 2 1x2x64x64" "attention 3 1x2x64x64"
  "conv 1 1x8x8x32x32x3x1" "conv 2 1x8x8x32x32x3x1" "conv 3 1x8x8x32x32x3x1"
)
ncu_metrics=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import ncu_table; print(",".join(ncu_table.METRICS))' "$root/bench" 2> /dev/null)
ncu_kernels='regex:^(gemm_|ln_|attn_|attention_forward|conv_direct|implicit_gemm|conv_mma)'
if want ncu; then
  if ((have_gpu == 0)); then
    ncu_state="not run: no GPU"
  elif [[ -z $ncu ]]; then
    ncu_state="not run: no ncu (Nsight Compute) on this machine"
  elif [[ ! -x $build_dir/videobert || -z $ncu_metrics ]]; then
    ncu_state="not run: no videobert built, or bench/ncu_table.py unreadable"
  else
    t0=$SECONDS; ran=0; bad=0; cut=0
    : > "$work/ncu.md"
    for c in "${ncu_cases[@]}"; do
      read -r op rung shape <<< "$c"
      limit=$(left 20)
      if ((limit < 15)); then cut=$((cut + 1)); continue; fi
      ((limit < 60)) || limit=60
      csv=$work/ncu.$op.$rung.csv
      timeout "$limit" "$ncu" --csv --print-units base --kernel-name-base function --kernel-name "$ncu_kernels" \
        --metrics "$ncu_metrics" "$build_dir/videobert" kernels run "$op" --rung "$rung" --shape "$shape" \
        --device cuda --no-time > "$csv" 2>> "$bench_log"
      rc=$?
      ran=$((ran + 1))
      { echo "===== ncu: $op rung $rung $shape: exit $rc"; cat "$csv"; echo; } >> "$bench_log"
      if ((rc != 0)); then bad=$((bad + 1)); continue; fi
      python3 "$root/bench/ncu_table.py" --label "$op $rung" "$csv" > "$work/ncu.one" 2>> "$bench_log" || bad=$((bad + 1))
      if [[ ! -s $work/ncu.md ]]; then cat "$work/ncu.one" >> "$work/ncu.md"; else tail -n +3 "$work/ncu.one" >> "$work/ncu.md"; fi
    done
    ncu_state="${ran} of ${#ncu_cases[@]} rungs profiled, $((SECONDS - t0)) s"
    ((bad == 0)) || { ncu_state+="; ${bad} FAILED (bench.log)"; overall_fail=1; }
    ((cut == 0)) || { ncu_state+="; ${cut} not run for lack of time"; incomplete=1; }
  fi
  cap_log "$bench_log"
  say "Nsight Compute: $ncu_state"
  write_report
fi

write_report
if ((overall_fail == 0 && incomplete)); then
  say "report: $report (PASS so far, INCOMPLETE)"
  exit 3
fi
say "report: $report ($( ((overall_fail == 0)) && echo PASS || echo FAIL))"
exit "$overall_fail"
