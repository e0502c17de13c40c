#!/usr/bin/env python3
"""Test of bench/ncu_table.py (ctest cpu/bench_ncu_table): a made-up ncu CSV in the layout of its "details"
page — a preamble, two launches of one kernel, one of another, thousands separators, a metric it ignores —
and the table it must give: launches summed, cp.async requests (op_ldgsts) added to the loads, sectors per
request the ratio; a file without kernel rows exits 1."""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
          '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def row(launch, kernel, metric, value):
    return (f'"{launch}","1","videobert","host","{kernel}","1","7","(128, 1, 1)","(2, 2, 1)","0","9.0",'
            f'"Command line profiler metrics","{metric}","","{value}"')


def main():
    k1 = "void vb::cuda::(anonymous namespace)::gemm_mma_pipelined<true>(const __nv_bfloat16 *, int)"
    k2 = "vb::cuda::(anonymous namespace)::attn_scores(const float *, int)"
    k3 = "void vb::cuda::attention_detail::(anonymous namespace)::attention_forward_mma_kernel<__nv_bfloat16, 64>(int)"
    lines = ["==PROF== Connected to process 1", "==PROF== Profiling \"gemm\": 0%....100% - 9 passes", HEADER]
    for launch in (0, 1):  # two launches of k1: summed
        lines += [row(launch, k1, "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", "10"),
                  row(launch, k1, "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum", "40"),
                  row(launch, k1, "l1tex__t_requests_pipe_lsu_mem_global_op_ldgsts.sum", "118"),
                  row(launch, k1, "l1tex__t_sectors_pipe_lsu_mem_global_op_ldgsts.sum", "1,888"),
                  row(launch, k1, "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum", "1,536"),
                  row(launch, k1, "l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum", "0"),
                  row(launch, k1, "smsp__sass_branch_targets_threads_divergent.sum", "2"),
                  row(launch, k1, "sm__cycles_elapsed.avg", "12,345")]
    lines += [row(2, k2, "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum", "32,768"),
              row(2, k2, "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum", "540,672"),
              row(3, k3, "smsp__sass_branch_targets_threads_divergent.sum", "0")]
    with tempfile.TemporaryDirectory() as tmp:
        good, empty = os.path.join(tmp, "good.csv"), os.path.join(tmp, "empty.csv")
        with open(good, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(empty, "w") as f:
            f.write("==PROF== No kernels were profiled.\n")
        script = os.path.join(here, "ncu_table.py")
        out = subprocess.run([sys.executable, script, "--label", "gemm rung 7", good], check=True, capture_output=True,
                             text=True).stdout
        want = ["| gemm rung 7 | `gemm_mma_pipelined<true>` | 256 | 15.06 | 3,072 | 0 | 4 |",  # 20+236; (80+3776)/256
                "| gemm rung 7 | `attn_scores` | 32,768 | 16.50 | 0 | 0 | 0 |",
                "| gemm rung 7 | `attention_forward_mma_kernel<__nv_bfloat16, 64>` | 0 | — | 0 | 0 | 0 |"]
        failures = [f"missing row {w!r}" for w in want if w not in out.splitlines()]
        bad = subprocess.run([sys.executable, script, empty], capture_output=True, text=True)
        if bad.returncode != 1 or "no kernel rows" not in bad.stdout:
            failures.append(f"a CSV without kernels: rc {bad.returncode}, output {bad.stdout!r}")
        if failures:
            print(out)
            print("\n".join(failures))
            return 1
        print(f"bench_ncu_table: {len(want)} rows checked")
        return 0


if __name__ == "__main__":
    sys.exit(main())
