#!/usr/bin/env python3
"""Joins the GPU kernel benchmarks into one markdown table: the JSON lines of bench_kernels_gpu --json
(ours, its in-run cuBLASLt/cuDNN baselines and the measured ceilings) and of bench/torch_kernels_gpu.py
(PyTorch), matched by case name.

Columns: ours (ms, TFLOP/s or GB/s, % of the ceiling: the GEMM ceiling of the case's dtype for compute-bound
cases, the copy bandwidth for memory-bound ones), the library baseline measured in the same run
(cuBLASLt for GEMM, cuDNN for conv) and PyTorch (CUDA-graph replays; "(eager)" where it was timed by
plain calls), each with ours/baseline = baseline time / our time (1.00 = as fast, 0.50 = half as fast).
A case whose two programs count different FLOPs or bytes is reported on stderr.

Usage: compare_gpu.py OURS.jsonl [TORCH.jsonl ...] [--title T] [--machine M]
"""
import argparse
import json
import math
import sys


def load(paths):
    rows = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    rows.setdefault(r["name"], {})[r.get("impl", "videobert")] = r
    return rows


def rate(r):
    if r["bound"] == "compute":
        return r["flops"] / r["seconds"], f"{r['flops'] / r['seconds'] / 1e12:.1f} TFLOP/s"
    return r["bytes"] / r["seconds"], f"{r['bytes'] / r['seconds'] / 1e9:.0f} GB/s"


def ms(r):
    if not r:
        return "—"
    return f"{r['seconds'] * 1e3:.3f}" + (" (eager)" if r.get("timing") == "eager" else "")


def ratio(ours, base):
    return f"{base['seconds'] / ours['seconds']:.2f}" if ours and base else "—"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--title", default="GPU kernels: videobert vs cuBLASLt / cuDNN / PyTorch")
    ap.add_argument("--machine", default="")
    args = ap.parse_args()
    rows = load(args.files)

    ceilings = {}
    for name, impls in rows.items():
        if name.startswith("ceiling"):
            r = next(iter(impls.values()))
            if name.startswith("ceiling copy"):
                ceilings["memory"] = r["bytes"] / r["seconds"]
            elif name.endswith(" f32"):
                ceilings["f32"] = r["flops"] / r["seconds"]
            elif name.endswith(" bf16"):
                ceilings["bf16"] = r["flops"] / r["seconds"]

    print(f"## {args.title}\n")
    if args.machine:
        print(f"{args.machine}\n")
    devices = sorted({r.get("device", "") for impls in rows.values() for r in impls.values()} - {""})
    if devices:
        print(f"Device: {', '.join(devices)}.\n")
    parts = []
    if "memory" in ceilings:
        parts.append(f"copy {ceilings['memory'] / 1e9:.0f} GB/s")
    for t in ("bf16", "f32"):
        if t in ceilings:
            parts.append(f"GEMM 8192³ {t} {ceilings[t] / 1e12:.1f} TFLOP/s")
    if parts:
        print("Ceilings: " + ", ".join(parts) + ".\n")
    print("| case | ours ms | ours | % of ceiling | library | library ms | ours/library | PyTorch ms | ours/PyTorch |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, impls in rows.items():
        if name.startswith("ceiling"):
            continue
        ours = impls.get("videobert")
        torch_row = impls.get("PyTorch")
        for impl, r in impls.items():  # the two programs must count the same work under the same name
            if ours and (r["flops"], r["bytes"]) != (ours["flops"], ours["bytes"]):
                print(f"compare_gpu: {name}: {impl} counts {r['flops']} FLOPs and {r['bytes']} bytes, ours "
                      f"{ours['flops']} and {ours['bytes']}", file=sys.stderr)
        library = next(((k, v) for k, v in impls.items() if k not in ("videobert", "PyTorch")), (None, None))
        achieved, shown = rate(ours) if ours else (math.nan, "—")
        fraction = "—"
        if ours:
            key = "memory" if ours["bound"] == "memory" else ("f32" if ours["dtype"] == "f32" else "bf16")
            if key in ceilings:
                fraction = f"{100 * achieved / ceilings[key]:.0f}%"
        print(f"| {name} | {ms(ours)} | {shown} | {fraction} | {library[0] or '—'} | {ms(library[1])} "
              f"| {ratio(ours, library[1])} | {ms(torch_row)} | {ratio(ours, torch_row)} |")


if __name__ == "__main__":
    main()
