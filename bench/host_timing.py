"""What the PyTorch sides of the CPU benchmarks (bench/torch_cpu_ops.py, bench/torch_models_cpu.py) share,
as bench/host_timing.h does for ours: the median wall time of repeated calls after a warm-up call, and the
one JSON line per case that bench/compare.py joins ({name, seconds, flops, bytes})."""
import json
import statistics
import time


def median_seconds(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name, seconds, flops, bytes_=0):
    print(json.dumps({"name": name, "seconds": seconds, "flops": flops, "bytes": bytes_}), flush=True)
