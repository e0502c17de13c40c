#!/usr/bin/env python3
"""Nsight Compute's counts of a ladder rung, as a markdown table beside the emulator's (docs/KERNELS.md).

scripts/gpu-check.sh runs, where `ncu` exists,
    ncu --csv --print-units base --metrics METRICS videobert kernels run OP --rung N --shape S --device cuda --no-time
and hands the CSV here:
    python3 bench/ncu_table.py --label "gemm rung 3 128x128x128" FILE.csv [FILE.csv ...]
ncu's CSV (its "details" page) has one row per kernel launch and metric: "ID", "Kernel Name", …, "Metric Name",
"Metric Unit", "Metric Value" (values may carry thousands separators). Launches of the same kernel are summed.
The columns, as the emulator's insight names them (kernels/emu/insight.h):
  global load requests  l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum (+ _op_ldgsts: cp.async copies)
  sectors / request     l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum (+ _op_ldgsts) over the requests
  shared wavefronts     l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
  bank conflicts        l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum (extra wavefronts: wavefronts − ideal)
  divergent branches    smsp__sass_branch_targets_threads_divergent.sum
Prints the table; exits 1 when a file has no kernel rows (ncu failed or profiled nothing)."""
import argparse
import csv
import sys

METRICS = [
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ldgsts.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ldgsts.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum",
    "smsp__sass_branch_targets_threads_divergent.sum",
]


def number(text):
    text = text.replace(",", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def read(path):
    """{kernel name: {metric: summed value}} in first-launch order."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        return {}
    kernels = {}
    for row in csv.DictReader(lines[start:]):
        name, metric, value = row.get("Kernel Name", ""), row.get("Metric Name", ""), number(row.get("Metric Value", ""))
        if not name or metric not in METRICS or value is None:
            continue
        kernels.setdefault(name, {}).setdefault(metric, 0.0)
        kernels[name][metric] += value
    return kernels


def short(name):
    """The kernel's name without return type, namespaces and arguments: gemm_mma_pipelined<true>."""
    base = name.replace("(anonymous namespace)", "").split("(")[0].strip()
    base = base[len("void "):] if base.startswith("void ") else base  # kernels return void
    head = base.split("<")[0]  # namespaces end before any template arguments
    return base[head.rfind("::") + 2:] if "::" in head else base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    ok = True
    print("| rung | kernel | global load requests | sectors / request | shared wavefronts | bank conflicts | divergent branches |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in args.files:
        kernels = read(path)
        if not kernels:
            print(f"| {args.label} | (no kernel rows in {path}) | | | | | |")
            ok = False
        for name, m in kernels.items():
            requests = m.get(METRICS[0], 0) + m.get(METRICS[2], 0)
            sectors = m.get(METRICS[1], 0) + m.get(METRICS[3], 0)
            per = f"{sectors / requests:.2f}" if requests else "—"
            print(f"| {args.label} | `{short(name)}` | {requests:,.0f} | {per} | {m.get(METRICS[4], 0):,.0f} | "
                  f"{m.get(METRICS[5], 0):,.0f} | {m.get(METRICS[6], 0):,.0f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
