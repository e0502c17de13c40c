#!/usr/bin/env python3
"""Joins two benchmark outputs (JSON lines with name/seconds/flops/bytes, and optionally samples) into a
markdown table of throughput, ours / baseline: samples/s when a row has "samples" (training steps), else
GFLOP/s when it has flops, else GB/s. Usage: compare.py OURS.jsonl BASELINE.jsonl --title T --machine M"""
import argparse
import json


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["name"]] = r
    return rows


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
    args = ap.parse_args()
    ours, base = load(args.ours), load(args.baseline)
    print(f"## {args.title}\n")
    if args.machine:
        print(f"{args.machine}\n")
    print(f"| case | ours ms | {args.baseline_name} ms | ours | {args.baseline_name} | ratio ours/{args.baseline_name} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in ours.items():
        if name not in base:
            continue
        b = base[name]
        ro, unit = rate(r)
        rb, _ = rate(b)
        digits = ".3g" if unit == "samples/s" else ".1f"
        print(f"| {name} | {r['seconds'] * 1e3:.2f} | {b['seconds'] * 1e3:.2f} | {ro:{digits}} {unit} | {rb:{digits}} {unit} "
              f"| {b['seconds'] / r['seconds']:.2f}x |")


if __name__ == "__main__":
    main()
