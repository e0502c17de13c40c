#!/usr/bin/env python3
"""Test of bench/compare.py (ctest cpu/bench_compare): the table's ratios, second-baseline columns and
roofline fractions against the formulas, on made-up rows whose answers are known:
  ratio ours/base = base seconds / our seconds;
  of limit = max(flops / FMA peak, bytes / triad bandwidth) / our seconds, bound = the larger term;
  a "bf16" row is held to the AMX bfloat16 peak (when the ceiling file has one; else to the AVX512-BF16 one),
  others to the FMA peak, and every row with --bf16;
  a row the second baseline lacks gets dashes; a bad --also is refused with a message naming it;
  a row of ours named "CASE [path]" is compared with the baselines' CASE.
And bench/fastest.py, which the scripts run over their ROUNDS: per name the fastest line, in first-seen order."""
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))


def write(path, rows):
    with open(path, "w") as f:
        f.write("not json: a line the reader skips\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ours = [{"name": "mm", "seconds": 0.5, "flops": 100e9, "bytes": 1e9},   # 200 GFLOP/s
                {"name": "mm [other path]", "seconds": 1.0, "flops": 100e9, "bytes": 1e9},   # 100 GFLOP/s
                {"name": "copy", "seconds": 0.25, "flops": 0, "bytes": 5e9},    # 20 GB/s
                {"name": "step", "seconds": 2.0, "flops": 0, "bytes": 0, "samples": 8},
                {"name": "matmul bf16 1x1x1", "seconds": 0.5, "flops": 1000e9, "bytes": 1e9}]  # 2000 GFLOP/s
        base = [{"name": "matmul bf16 1x1x1", "seconds": 1.0, "flops": 1000e9, "bytes": 1e9},
                {"name": "mm", "seconds": 0.4, "flops": 100e9, "bytes": 1e9},
                {"name": "copy", "seconds": 1.0, "flops": 0, "bytes": 5e9},
                {"name": "step", "seconds": 3.0, "flops": 0, "bytes": 0, "samples": 8}]
        second = [{"name": "mm", "seconds": 2.0, "flops": 100e9, "bytes": 1e9}]
        # 2 threads: 400 GFLOP/s peak, 25 GB/s triad, 4000 GFLOP/s AMX bfloat16 peak.
        ceiling = [{"name": "ceiling fma 2 threads", "seconds": 1.0, "flops": 400e9, "bytes": 0},
                   {"name": "ceiling amx-bf16 2 threads", "seconds": 1.0, "flops": 4000e9, "bytes": 0},
                   {"name": "ceiling triad 2 threads", "seconds": 1.0, "flops": 0, "bytes": 25e9}]
        paths = {}
        for key, rows in (("ours", ours), ("base", base), ("second", second), ("ceiling", ceiling)):
            paths[key] = os.path.join(tmp, key + ".jsonl")
            write(paths[key], rows)
        cmd = [sys.executable, os.path.join(here, "compare.py"), paths["ours"], paths["base"], "--baseline-name", "PT2",
               "--also", paths["second"] + "=PT1", "--ceiling", paths["ceiling"], "--threads", "2"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = {}
        for line in out.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| case"):
                header = cells
            elif line.startswith("| ") and not line.startswith("|---"):
                rows[cells[0]] = dict(zip(header, cells))
        expect = {
            # name: (ours/PT2, PT1 ms, ours/PT1, of limit)
            "mm": ("0.80x", "2000.00", "4.00x", "50% (compute)"),        # max(100/400, 1/25) / 0.5 = 0.5
            "mm [other path]": ("0.40x", "2000.00", "2.00x", "25% (compute)"),  # against mm's baselines
            "copy": ("4.00x", "—", "—", "80% (memory)"),               # (5 / 25) / 0.25 = 0.8
            "step": ("1.50x", "—", "—", "—"),
            "matmul bf16 1x1x1": ("2.00x", "—", "—", "50% (compute)"),  # (1000 / 4000) / 0.5 = 0.5
        }
        failures = []
        for name, (ratio, pt1_ms, pt1_ratio, limit) in expect.items():
            got = rows.get(name)
            want = {"ratio ours/PT2": ratio, "PT1 ms": pt1_ms, "ours/PT1": pt1_ratio, "ours of limit (bound)": limit}
            for column, value in want.items():
                if got is None or got.get(column) != value:
                    failures.append(f"{name}: column {column!r} is {got and got.get(column)!r}, expected {value!r}")
        if rows.get("step", {}).get("ours") != "4 samples/s":
            failures.append(f"step: ours is {rows.get('step', {}).get('ours')!r}, expected '4 samples/s'")
        bf16 = subprocess.run(cmd + ["--bf16"], check=True, capture_output=True, text=True).stdout
        mm = [line for line in bf16.splitlines() if line.startswith("| mm |")]
        # max(100/4000, 1/25) / 0.5 = 0.08: held to the AMX peak, the memory term bounds it
        if len(mm) != 1 or not mm[0].rstrip().endswith("| 8% (memory) |"):
            failures.append(f"--bf16: the mm row is {mm!r}, expected it to end with '| 8% (memory) |'")
        # Without AMX, the AVX512-BF16 peak (800 GFLOP/s) holds the bf16 rows: (1000 / 800) / 0.5 = 2.5.
        dot_ceiling = [row for row in ceiling if "amx" not in row["name"]]
        dot_ceiling.append({"name": "ceiling dpbf16 2 threads", "seconds": 1.0, "flops": 800e9, "bytes": 0})
        write(paths["ceiling"], dot_ceiling)
        dot = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        dot_rows = [line for line in dot.splitlines() if line.startswith("| matmul bf16 1x1x1 |")]
        if len(dot_rows) != 1 or not dot_rows[0].rstrip().endswith("| 250% (compute) |") or "AVX512-BF16 bfloat16 peak, 800.0" not in dot:
            failures.append(f"dpbf16 ceiling: the bf16 row is {dot_rows!r}, expected it to end with '| 250% (compute) |'")
        bad = subprocess.run(cmd[:4] + ["--also", paths["second"]], capture_output=True, text=True)
        if bad.returncode == 0 or "--also expects FILE=NAME" not in bad.stderr:
            failures.append(f"a bad --also was not refused clearly: rc {bad.returncode}, stderr {bad.stderr!r}")
        rounds = os.path.join(tmp, "rounds.jsonl")
        write(rounds, [{"name": "a", "seconds": 3.0}, {"name": "b", "seconds": 1.0}, {"name": "a", "seconds": 2.0},
                       {"name": "b", "seconds": 1.5}, {"name": "a", "seconds": 2.5}])
        kept = subprocess.run([sys.executable, os.path.join(here, "fastest.py"), rounds], check=True,
                              capture_output=True, text=True).stdout.splitlines()
        if [json.loads(line) for line in kept] != [{"name": "a", "seconds": 2.0}, {"name": "b", "seconds": 1.0}]:
            failures.append(f"fastest.py kept {kept!r}, expected a at 2.0 s then b at 1.0 s")
        if failures:
            print(out)
            print("\n".join(failures))
            return 1
        print(f"bench_compare: {len(expect)} rows checked")
        return 0


if __name__ == "__main__":
    sys.exit(main())
