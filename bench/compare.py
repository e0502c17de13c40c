#!/usr/bin/env python3
"""Joins two benchmark outputs (JSON lines with name/seconds/flops/bytes) into a markdown table of
throughput, ours / baseline. Usage: compare.py OURS.jsonl BASELINE.jsonl --title T --machine M"""
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
        print(f"| {name} | {r['seconds'] * 1e3:.2f} | {b['seconds'] * 1e3:.2f} | {ro:.1f} {unit} | {rb:.1f} {unit} "
              f"| {b['seconds'] / r['seconds']:.2f}x |")


if __name__ == "__main__":
    main()
