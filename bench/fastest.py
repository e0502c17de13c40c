#!/usr/bin/env python3
"""Keeps, for each case name, the fastest of several JSON result lines (the benchmark scripts run every case
ROUNDS times and keep each side's fastest median: the one least disturbed by the machine's other work).
Reads FILE's lines that start with "{", prints one line per name in the order the names first appear:
    python3 bench/fastest.py FILE > fastest.jsonl"""
import json
import sys


def main():
    best = {}
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                if r["name"] not in best or r["seconds"] < best[r["name"]]["seconds"]:
                    best[r["name"]] = r
    for r in best.values():
        print(json.dumps(r))


if __name__ == "__main__":
    main()
