#!/usr/bin/env python3
"""PyTorch's side of the GPU kernel benchmarks: the cases of bench/kernels_gpu/ (same names, shapes,
dtypes and FLOP/byte counts; the comment at the top of each op family's file there documents them) run
with PyTorch's functional ops on the GPU, timed the same way (bench/gpu_timing.h):

  rotation   inputs (and the graphs autograd keeps for a backward) rotate over enough sets to hold at
             least twice the L2 cache, so a run finds its inputs evicted from L2;
  warm-up    every set once, and at least --warmup runs, before timing (cuDNN's autotuning happens here:
             torch.backends.cudnn.benchmark is on);
  batches    a sample is `inner` back-to-back runs between two torch.cuda.Events, divided by `inner`,
             with `inner` chosen so that a sample lasts about --batch-ms;
  median     of --samples samples, in seconds per run (a slow case stops after --max-seconds of samples,
             with at least 5 taken).

By default a batch is captured once as a CUDA graph and replayed, so PyTorch's per-call Python and
dispatcher overhead (several microseconds, as long as some of these kernels) is not counted: the numbers
are PyTorch's kernels, the strongest baseline. --eager times plain calls instead. A case whose capture
fails falls back to eager; the JSON line's "timing" field says which was used. AdamW always runs eager
(torch.optim.AdamW(fused=True); a step takes milliseconds).

Float32 runs without TF32 (torch.backends.cuda.matmul.allow_tf32 = False, cudnn.allow_tf32 = False) and
float16 GEMMs without reduced-precision reductions, as our kernels accumulate in float32. Convolutions use
channels_last tensors (cuDNN's NHWC kernels); their data and weight gradients call
aten.convolution_backward directly. Backward passes of the other ops are torch.autograd.grad on a
retained graph.

Usage (on the GPU machine; progress and errors on stderr):
    python3 bench/torch_kernels_gpu.py                       every case, one JSON line per case on stdout
    python3 bench/torch_kernels_gpu.py --json torch.jsonl    the JSON lines to a file (rewritten after each
                                                             case), a markdown table on stdout
    python3 bench/torch_kernels_gpu.py --filter attention --samples 25 --warmup 3 --batch-ms 2 --eager
    python3 bench/torch_kernels_gpu.py --smoke               tiny shapes, each case run once, no timing
                                                             (on the CPU when there is no GPU: checks the script)
    python3 bench/torch_kernels_gpu.py --list [--smoke]      each case's name, FLOPs and bytes (as
                                                             bench_kernels_gpu --list prints them)
Join with ours: python3 bench/compare_gpu.py ours.jsonl torch.jsonl
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile

import torch
import torch.nn.functional as F

# ---- the cases (the order and names of bench/kernels_gpu/: all_cases() in main.cpp) ----

SHORT = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


def elem(dtype):
    return torch.tensor([], dtype=dtype).element_size()


class Case:
    """make(device) -> a set (a dict of tensors); run(set) runs the op once."""

    def __init__(self, name, dtype, compute_bound, flops, bytes_, make, run, graphable=True):
        self.name, self.dtype, self.compute_bound = name, dtype, compute_bound
        self.flops, self.bytes, self.make, self.run, self.graphable = flops, bytes_, make, run, graphable


def randn(shape, dtype, device, scale=1.0, requires_grad=False):
    x = torch.randn(shape, device=device, dtype=torch.float32)
    if scale != 1.0:
        x = x * scale
    return x.to(dtype).requires_grad_(requires_grad)


def gemm_cases(smoke, dtypes):
    shapes = [(33, 17, 65, False), (40, 24, 72, True)] if smoke else [
        (4096, 4096, 4096, False), (4096, 768, 2304, True), (4096, 768, 768, True), (4096, 768, 3072, True),
        (4096, 3072, 768, True)]
    for dtype in dtypes:
        for m, k, n, linear in shapes:
            name = (f"linear {m}x{k}->{n} {SHORT[dtype]}" if linear else f"gemm {m}x{k}x{n} {SHORT[dtype]}")

            def make(device, m=m, k=k, n=n, linear=linear, dtype=dtype):
                a = randn((m, k), dtype, device)
                b = randn((n, k), dtype, device, 1 / math.sqrt(k)).t() if linear else randn((k, n), dtype, device,
                                                                                           1 / math.sqrt(k))
                return {"a": a, "b": b}

            yield Case(name, dtype, True, 2.0 * m * n * k, elem(dtype) * (m * k + k * n + m * n), make,
                       lambda s: torch.matmul(s["a"], s["b"]))


def conv_cases(smoke, dtypes):
    layers = [(32, 224, 224, 3, 64, 7, 2), (32, 56, 56, 64, 64, 3, 1), (32, 56, 56, 256, 64, 1, 1),
              (32, 56, 56, 128, 128, 3, 2), (32, 14, 14, 256, 256, 3, 1), (32, 14, 14, 256, 1024, 1, 1),
              (32, 7, 7, 512, 512, 3, 1)]
    if smoke:
        layers = [(2, 11 if k == 7 else 9, 11 if k == 7 else 9, c if c == 3 else c // 16, o // 16, k, s)
                  for (_, _, _, c, o, k, s) in layers]
    for dtype in dtypes:
        for (n, h, w, c, o, k, stride) in layers:
            pad = k // 2
            oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
            shape = f"n{n} {h}x{w}x{c}->{o} k{k} s{stride} {SHORT[dtype]}"
            flops = 2.0 * n * oh * ow * o * k * k * c
            xb, wb, yb = (elem(dtype) * v for v in (n * h * w * c, o * k * k * c, n * oh * ow * o))
            cl = torch.channels_last
            conv_args = ([stride, stride], [pad, pad], [1, 1], False, [0, 0], 1)

            def make(device, n=n, h=h, w=w, c=c, o=o, k=k, oh=oh, ow=ow, dtype=dtype):
                return {"x": randn((n, c, h, w), dtype, device).contiguous(memory_format=cl),
                        "w": randn((o, c, k, k), dtype, device, 1 / math.sqrt(k * k * c)).contiguous(memory_format=cl),
                        "gy": randn((n, o, oh, ow), dtype, device, 1 / math.sqrt(n * oh * ow)).contiguous(
                            memory_format=cl)}

            yield Case("conv2d fwd " + shape, dtype, True, flops, xb + wb + yb, make,
                       lambda s, stride=stride, pad=pad: F.conv2d(s["x"], s["w"], None, stride, pad))
            yield Case("conv2d dgrad " + shape, dtype, True, flops, yb + wb + xb, make,
                       lambda s, a=conv_args: torch.ops.aten.convolution_backward(
                           s["gy"], s["x"], s["w"], None, *a, [True, False, False])[0])
            yield Case("conv2d wgrad " + shape, dtype, True, flops, yb + xb + wb, make,
                       lambda s, a=conv_args: torch.ops.aten.convolution_backward(
                           s["gy"], s["x"], s["w"], None, *a, [False, True, False])[1])


def attention_cases(smoke, dtypes):
    shapes = [(2, 2, 37, 64)] if smoke else [(32, 12, 128, 64), (32, 12, 512, 64), (8, 12, 512, 64)]
    for dtype in dtypes:
        for b, h, t, d in shapes:
            shape = f"B{b} H{h} T{t} D{d} {SHORT[dtype]}"
            qkvo, lse = elem(dtype) * b * h * t * d, 4.0 * b * h * t
            fwd = 4.0 * b * h * t * t * d

            def make_fwd(device, b=b, h=h, t=t, d=d, dtype=dtype):
                return {n: randn((b, h, t, d), dtype, device) for n in "qkv"}

            def make_bwd(device, b=b, h=h, t=t, d=d, dtype=dtype):
                s = {n: randn((b, h, t, d), dtype, device, requires_grad=True) for n in "qkv"}
                s["out"] = F.scaled_dot_product_attention(s["q"], s["k"], s["v"])
                s["gout"] = randn((b, h, t, d), dtype, device)
                return s

            yield Case("attention fwd " + shape, dtype, True, fwd, 4 * qkvo + lse, make_fwd,
                       lambda s: F.scaled_dot_product_attention(s["q"], s["k"], s["v"]))
            yield Case("attention bwd " + shape, dtype, True, 2.5 * fwd, 8 * qkvo + lse, make_bwd,
                       lambda s: torch.autograd.grad(s["out"], (s["q"], s["k"], s["v"]), s["gout"], retain_graph=True))


def row_cases(smoke, dtypes):
    for dtype in dtypes:
        e = elem(dtype)
        n, c = (7 if smoke else 8192), 768
        shape = f"{n}x{c} {SHORT[dtype]}"

        def make_ln(device, n=n, c=c, dtype=dtype, grad=False):
            s = {"x": randn((n, c), dtype, device, requires_grad=grad),
                 "w": randn((c,), dtype, device, requires_grad=grad),
                 "b": randn((c,), dtype, device, requires_grad=grad)}
            if grad:
                s["y"] = F.layer_norm(s["x"], (c,), s["w"], s["b"], 1e-12)
                s["gy"] = randn((n, c), dtype, device)
            return s

        yield Case("layer_norm fwd " + shape, dtype, False, 8.0 * n * c, 2.0 * n * c * e + 2.0 * c * e + 8.0 * n,
                   make_ln, lambda s, c=c: F.layer_norm(s["x"], (c,), s["w"], s["b"], 1e-12))
        yield Case("layer_norm bwd " + shape, dtype, False, 14.0 * n * c, 3.0 * n * c * e + 8.0 * n + 3.0 * c * e,
                   lambda device, f=make_ln: f(device, grad=True),
                   lambda s: torch.autograd.grad(s["y"], (s["x"], s["w"], s["b"]), s["gy"], retain_graph=True))

        n, c = (9 if smoke else 16384), 1024
        shape = f"{n}x{c} {SHORT[dtype]}"

        def make_sm(device, n=n, c=c, dtype=dtype, grad=False):
            s = {"x": randn((n, c), dtype, device, 3.0, requires_grad=grad)}
            if grad:
                s["y"] = torch.softmax(s["x"], -1)
                s["gy"] = randn((n, c), dtype, device)
            return s

        yield Case("softmax fwd " + shape, dtype, False, 5.0 * n * c, 2.0 * n * c * e, make_sm,
                   lambda s: torch.softmax(s["x"], -1))
        yield Case("softmax bwd " + shape, dtype, False, 4.0 * n * c, 3.0 * n * c * e,
                   lambda device, f=make_sm: f(device, grad=True),
                   lambda s: torch.autograd.grad(s["y"], s["x"], s["gy"], retain_graph=True))

        n, c = (3 if smoke else 4096), 30522
        shape = f"{n}x{c} {SHORT[dtype]}"

        def make_ce(device, n=n, c=c, dtype=dtype, grad=False):
            s = {"logits": randn((n, c), dtype, device, 2.0, requires_grad=grad),
                 "target": torch.randint(0, c, (n,), device=device)}
            if grad:
                s["loss"] = F.cross_entropy(s["logits"], s["target"], reduction="none")
                s["gloss"] = randn((n,), dtype, device)
            return s

        yield Case("cross_entropy fwd " + shape, dtype, False, 5.0 * n * c, n * c * e + 8.0 * n + n * e + 4.0 * n,
                   make_ce, lambda s: F.cross_entropy(s["logits"], s["target"], reduction="none"))
        yield Case("cross_entropy bwd " + shape, dtype, False, 5.0 * n * c, 2.0 * n * c * e + 8.0 * n + 4.0 * n + n * e,
                   lambda device, f=make_ce: f(device, grad=True),
                   lambda s: torch.autograd.grad(s["loss"], s["logits"], s["gloss"], retain_graph=True))


def bert_base_parameter_shapes():
    h, f = 768, 3072
    s = [(30522, h), (512, h), (2, h), (h,), (h,)]
    for _ in range(12):
        for _ in range(4):
            s += [(h, h), (h,)]
        s += [(h,), (h,), (f, h), (f,), (h, f), (h,), (h,), (h,)]
    return s + [(h, h), (h,)]


def adamw_cases(smoke):
    # Float32 only: PyTorch keeps m and v in the parameters' dtype, so its bf16 step moves other bytes.
    shapes = ([(i % 7 + 1, 13) if i % 3 == 0 else ((i * 37) % 101 + 1,) for i in range(30)] if smoke
              else bert_base_parameter_shapes())
    numel = sum(math.prod(s) for s in shapes)
    name = (f"adamw {len(shapes)} tensors f32" if smoke else "adamw bert-base f32")

    def make(device):
        params = [torch.randn(s, device=device) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = {"fused": True} if device.type == "cuda" else {}
        opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **fused)
        opt.step()  # creates m and v
        return {"params": params, "opt": opt}

    yield Case(name, torch.float32, False, 14.0 * numel, numel * (3.0 * 4 + 16.0), make, lambda s: s["opt"].step(),
               graphable=False)


def all_cases(smoke, float32_only=False):
    dtypes = [torch.float32, torch.bfloat16]
    gemm_dtypes = [torch.float32, torch.bfloat16, torch.float16]
    if float32_only:  # the script's own smoke test on a machine without a GPU
        dtypes = gemm_dtypes = [torch.float32]
    yield from gemm_cases(smoke, gemm_dtypes)
    yield from conv_cases(smoke, dtypes)
    yield from attention_cases(smoke, dtypes)
    yield from row_cases(smoke, dtypes)
    yield from adamw_cases(smoke)


# ---- timing (bench/gpu_timing.h's method) ----

def set_bytes(s):
    total = 0
    for v in s.values():
        for t in (v if isinstance(v, list) else [v]):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def rotation_sets(nbytes, l2_bytes, max_sets=64):
    if nbytes == 0:
        return 1
    return max(1, min(max_sets, -(-2 * l2_bytes // nbytes)))


def median_seconds(run, sets, args, graph_stream=None):
    """Median seconds per run of run(i), i rotating over range(sets). With a graph_stream, a batch is captured
    on it as a CUDA graph and replayed; the sets must have been made on that stream, since autograd runs a
    backward op on its forward's stream, and capture allows no other stream."""
    nxt = [0]

    def run_next():
        run(nxt[0])
        nxt[0] = (nxt[0] + 1) % sets

    for _ in range(max(args.warmup, sets)):
        run_next()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def eager_batch(inner):
        start.record()
        for _ in range(inner):
            run_next()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)

    probe = max(1, min(sets, args.max_inner))
    per_run = max(eager_batch(probe) / probe, 1e-6)
    inner = min(max(1, math.ceil(args.batch_ms / per_run)), args.max_inner)
    batch = eager_batch
    if graph_stream is not None:
        inner = -(-inner // sets) * sets  # whole rotations: every replay walks every set
        g = torch.cuda.CUDAGraph()
        graph_stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(graph_stream):  # warm-up on the capture's (side) stream, as capture requires
            for i in range(sets):
                run(i)
        torch.cuda.current_stream().wait_stream(graph_stream)
        with torch.cuda.graph(g, stream=graph_stream):
            for i in range(inner):
                run(i % sets)
        g.replay()
        torch.cuda.synchronize()

        def batch(inner):
            start.record()
            g.replay()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop)

    times, total = [], 0.0
    for i in range(max(1, args.samples)):
        elapsed = batch(inner)
        times.append(elapsed / inner)
        total += elapsed
        if i + 1 >= 5 and total > 1e3 * args.max_seconds:
            break
    return statistics.median(times) * 1e-3


def time_case(case, device, l2, args):
    """(seconds per run, "cuda-graph" or "eager") for one case on its rotating sets."""
    timing = "eager" if args.eager or not case.graphable else "cuda-graph"
    stream = torch.cuda.Stream() if timing == "cuda-graph" else None
    with torch.cuda.stream(stream):  # the forward of a backward case runs on the capture's stream
        sets = [case.make(device)]
        count = rotation_sets(set_bytes(sets[0]), l2)
        sets += [case.make(device) for _ in range(count - 1)]
    torch.cuda.synchronize()
    try:
        return median_seconds(lambda i: case.run(sets[i]), count, args, stream), timing
    except RuntimeError as e:  # a capture PyTorch refuses: time it eagerly
        if stream is None:
            raise
        print(f"torch_kernels_gpu: {case.name}: CUDA graph capture failed ({e}); timing eagerly", file=sys.stderr)
        torch.cuda.synchronize()
        return median_seconds(lambda i: case.run(sets[i]), count, args), "eager"


def write_atomic(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
        tmp = f.name
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the JSON lines to this file")
    ap.add_argument("--filter", default="", help="only cases whose name contains this text")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-ms", type=float, default=2.0)
    ap.add_argument("--max-inner", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=1.0, help="stop sampling a case after this much timed work")
    ap.add_argument("--eager", action="store_true", help="time plain calls instead of CUDA-graph replays")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, each case run once, no timing")
    ap.add_argument("--list", action="store_true",
                    help="print each case's name, FLOPs and bytes (the GPU's list) and exit")
    args = ap.parse_args()
    if args.list:
        for case in all_cases(args.smoke):
            if args.filter in case.name:
                print("%s\t%.17g\t%.17g" % (case.name, case.flops, case.bytes))
        return 0

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        print("torch_kernels_gpu: no GPU visible to PyTorch; nothing to time (--smoke runs the cases on the CPU)",
              file=sys.stderr)
        return 77
    torch.manual_seed(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    try:  # newer PyTorch only
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    except (AttributeError, AssertionError):
        pass

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 50 << 20)
        device_name = props.name
        print(f"torch_kernels_gpu: torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
              f"{torch.backends.cudnn.version()}), {device_name}, L2 {l2 >> 20} MiB", file=sys.stderr)
    else:
        l2, device_name = 0, "cpu"
        print(f"torch_kernels_gpu: torch {torch.__version__} on the CPU (smoke test of the script only)",
              file=sys.stderr)

    lines, failures = [], 0
    table = bool(args.json) and not args.smoke  # with --json: JSON lines to the file, a table on stdout
    if table:
        print(f"## PyTorch {torch.__version__} kernels on {device_name}\n")
        print("| case | PyTorch ms | PyTorch | timing |\n|---|---:|---:|---|", flush=True)
    for case in all_cases(args.smoke, float32_only=device.type == "cpu"):
        if args.filter not in case.name:
            continue
        if case.name.startswith("attention") and not hasattr(F, "scaled_dot_product_attention"):
            print(f"torch_kernels_gpu: {case.name}: skipped (PyTorch {torch.__version__} has no "
                  "scaled_dot_product_attention)", file=sys.stderr)
            continue
        try:
            if args.smoke:
                case.run(case.make(device))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                print(f"torch_kernels_gpu: {case.name}: ran", file=sys.stderr)
                continue
            seconds, timing = time_case(case, device, l2, args)
            line = {"name": case.name, "impl": "PyTorch", "device": device_name, "dtype": SHORT[case.dtype],
                    "bound": "compute" if case.compute_bound else "memory", "seconds": seconds, "flops": case.flops,
                    "bytes": case.bytes, "timing": timing, "torch": torch.__version__}
            lines.append(line)
            if table:
                shown = (f"{case.flops / seconds / 1e12:.1f} TFLOP/s" if case.compute_bound
                         else f"{case.bytes / seconds / 1e9:.0f} GB/s")
                print(f"| {case.name} | {seconds * 1e3:.3f} | {shown} | {timing} |", flush=True)
                write_atomic(args.json, "".join(json.dumps(x) + "\n" for x in lines))  # kept whole if cut short
            else:
                print(json.dumps(line), flush=True)
            torch.cuda.empty_cache()
        except Exception as e:  # one failing case does not lose the others
            failures += 1
            print(f"torch_kernels_gpu: {case.name}: ERROR {type(e).__name__}: {e}", file=sys.stderr)
    if failures:
        print(f"torch_kernels_gpu: {failures} cases failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
