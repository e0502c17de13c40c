#!/usr/bin/env python3
"""Joins two benchmark outputs (JSON lines with name/seconds/flops/bytes, and optionally samples) into a
markdown table of throughput, ours / baseline: samples/s when a row has "samples" (training steps), else
GFLOP/s when it has flops, else GB/s. Usage: compare.py OURS.jsonl BASELINE.jsonl --title T --machine M

With --ceiling CEILING.jsonl --threads N (bench_cpu_ceiling --json's lines), each row also gets the fraction
of the machine's limit ours reaches: the roofline time max(flops / FMA peak, bytes / triad bandwidth) at N
threads over our time, and which of the two bounds it (compute or memory). Rows named "… bf16 …" are held to
the bfloat16 peak instead when the ceiling file has one: AMX's ("ceiling amx-bf16 N threads": their products run
on the tiles) or else AVX512-BF16's ("ceiling dpbf16 N threads": on VDPBF16PS dot products). --bf16 holds every
row to it (a table of bfloat16-autocast runs).

With --also FILE=NAME (repeatable), each row also gets a second baseline's time and ours / it, after the first
baseline's columns (the CPU scripts: PyTorch 2.x from PyPI first, Debian's PyTorch 1.13 as --also).

A row of ours named "CASE [path]" (the same case through another of our implementations, such as
"conv2d … [conv.cpp]") is compared with the baselines' row CASE."""
import argparse
import json
import re


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["name"]] = r
    return rows


def case_of(name):
    """The baseline's name for one of our rows: without a trailing " [path]"."""
    return re.sub(r" \[[^\]]*\]$", "", name)


def rate(r):
    if r.get("samples", 0) > 0:
        return r["samples"] / r["seconds"], "samples/s"
    if r["flops"] > 0:
        return r["flops"] / r["seconds"] / 1e9, "GFLOP/s"
    return r["bytes"] / r["seconds"] / 1e9, "GB/s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("baseline")
    ap.add_argument("--title", default="Benchmark")
    ap.add_argument("--machine", default="")
    ap.add_argument("--baseline-name", default="PyTorch")
    ap.add_argument("--ceiling", help="bench_cpu_ceiling --json output: the machine's FMA peak and bandwidth")
    ap.add_argument("--threads", type=int, default=0, help="the thread count whose ceilings apply")
    ap.add_argument("--bf16", action="store_true", help="every row ran its products in bfloat16: the bf16 peak applies")
    ap.add_argument("--also", action="append", default=[], metavar="FILE=NAME",
                    help="another baseline's JSON lines, shown as NAME ms and ours/NAME")
    args = ap.parse_args()
    ours, base = load(args.ours), load(args.baseline)
    others = []
    for spec in args.also:
        path, sep, label = spec.partition("=")
        if not sep or not label:
            raise SystemExit(f"compare.py: --also expects FILE=NAME, got {spec!r}")
        others.append((label, load(path)))
    peak = bandwidth = bf16_peak = None
    bf16_unit = ""
    if args.ceiling:
        ceiling = load(args.ceiling)
        fma, triad = ceiling.get(f"ceiling fma {args.threads} threads"), ceiling.get(f"ceiling triad {args.threads} threads")
        if not fma or not triad:
            raise SystemExit(f"compare.py: {args.ceiling} has no ceilings for --threads {args.threads}")
        peak, bandwidth = fma["flops"] / fma["seconds"], triad["bytes"] / triad["seconds"]
        for key, unit in (("amx-bf16", "AMX"), ("dpbf16", "AVX512-BF16")):
            row = ceiling.get(f"ceiling {key} {args.threads} threads")
            if row:
                bf16_peak, bf16_unit = row["flops"] / row["seconds"], unit
                break
    print(f"## {args.title}\n")
    if args.machine:
        print(f"{args.machine}\n")
    if peak:
        print(f"The machine's limits at {args.threads} threads (bench_cpu_ceiling): FMA peak {peak / 1e9:.1f} GFLOP/s, "
              f"triad bandwidth {bandwidth / 1e9:.1f} GB/s. \"of limit\": the roofline time max(flops / peak, "
              f"bytes / bandwidth) over ours. The bandwidth is memory's: an op whose data stays in cache can pass 100%."
              + (f" {'Every row is' if args.bf16 else 'Rows named bf16 are'} held to the {bf16_unit} bfloat16 peak, "
                 f"{bf16_peak / 1e9:.1f} GFLOP/s." if bf16_peak else "")
              + "\n")
    roof_head, roof_rule = (" ours of limit (bound) |", "---:|") if peak else ("", "")
    also_head = "".join(f" {label} ms | ours/{label} |" for label, _ in others)
    print(f"| case | ours ms | {args.baseline_name} ms | ours | {args.baseline_name} | ratio ours/{args.baseline_name} |"
          f"{also_head}{roof_head}")
    print(f"|---|---:|---:|---:|---:|---:|{'---:|---:|' * len(others)}{roof_rule}")
    for name, r in ours.items():
        if case_of(name) not in base:
            continue
        b = base[case_of(name)]
        ro, unit = rate(r)
        rb, _ = rate(b)
        digits = ".3g" if unit == "samples/s" else ".1f"
        roof = ""
        if peak:
            row_peak = bf16_peak if bf16_peak and (args.bf16 or " bf16 " in f" {name} ") else peak
            compute, memory = r.get("flops", 0) / row_peak, r.get("bytes", 0) / bandwidth
            bound = "compute" if compute >= memory else "memory"
            roof = f" {100 * max(compute, memory) / r['seconds']:.0f}% ({bound}) |" if compute + memory > 0 else " — |"
        also = ""
        for _, rows in others:  # a case the other baseline lacks (or failed) gets dashes
            o = rows.get(case_of(name))
            also += f" {o['seconds'] * 1e3:.2f} | {o['seconds'] / r['seconds']:.2f}x |" if o else " — | — |"
        print(f"| {name} | {r['seconds'] * 1e3:.2f} | {b['seconds'] * 1e3:.2f} | {ro:{digits}} {unit} | {rb:{digits}} {unit} "
              f"| {b['seconds'] / r['seconds']:.2f}x |{also}{roof}")


if __name__ == "__main__":
    main()
