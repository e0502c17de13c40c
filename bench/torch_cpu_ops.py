#!/usr/bin/env python3
"""The PyTorch side of the CPU op benchmark: the same cases as bench/cpu_ops.cpp, timed the same way
(median of repeated runs after a warm-up), one JSON line per case. scripts/bench-cpu.sh runs it with PyTorch 2.x
from the benchmark venv and with Debian's python3-torch:
    PYTHON bench/torch_cpu_ops.py --threads N [--quick]
Convolutions run in PyTorch's default NCHW layout (what a PyTorch user gets), with the same shapes."""
import argparse
import sys

import torch
import torch.nn.functional as F

from host_timing import median_seconds, report


def weight_grads(cases, dtype, name, reps):
    """The weight gradient alone (aten's convolution_backward with only grad_weight asked for) on tensors of
    `dtype`, as bench/cpu_ops.cpp's "conv2d weight grad" and "conv2d weight grad bf16" rows."""
    elem = float(torch.tensor([], dtype=dtype).element_size())
    for (nb, h, wd, c, o, k, stride) in cases:
        pad = k // 2
        oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
        x, gy = torch.randn(nb, c, h, wd).to(dtype), torch.randn(nb, o, oh, ow).to(dtype)
        w = torch.randn(o, c, k, k).to(dtype)
        s = median_seconds(lambda: torch.ops.aten.convolution_backward(
            gy, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, [False, True, False]), reps)
        report(f"{name} n{nb} {h}x{wd}x{c}->{o} k{k} s{stride}", s, 2.0 * nb * oh * ow * o * k * k * c,
               elem * (nb * h * wd * c + o * k * k * c + nb * oh * ow * o))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    reps = 1 if args.quick else 7
    print(f"torch_cpu_ops: torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)

    with torch.no_grad():
        mm = [(64, 64, 64)] if args.quick else [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
                                                 (2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768)]
        for m, k, n in mm:
            a, b = torch.randn(m, k), torch.randn(k, n)
            s = median_seconds(lambda: torch.matmul(a, b), reps)
            report(f"matmul {m}x{k}x{n}", s, 2.0 * m * k * n, 4.0 * (m * k + k * n + m * n))
        t = 64 if args.quick else 2048
        x, w, b = torch.randn(t, 768), torch.randn(3072, 768), torch.randn(3072)
        s = median_seconds(lambda: F.linear(x, w, b), reps)
        report(f"linear {t}x768->3072", s, 2.0 * t * 768 * 3072, 4.0 * (t * 768 + 3072 * 768 + t * 3072))
        rows = 64 if args.quick else 4096
        x, w, b = torch.randn(rows, 768), torch.randn(768), torch.randn(768)
        s = median_seconds(lambda: F.layer_norm(x, (768,), w, b, 1e-12), reps)
        report(f"layer_norm {rows}x768", s, 8.0 * rows * 768, 8.0 * rows * 768)
        rows = 64 if args.quick else 4096 * 4
        x = torch.randn(rows, 512)
        s = median_seconds(lambda: torch.softmax(x, -1), reps)
        report(f"softmax {rows}x512", s, 5.0 * rows * 512, 8.0 * rows * 512)
        n = 4096 if args.quick else 4 * 1024 * 1024
        x = torch.randn(n)
        s = median_seconds(lambda: F.gelu(x), reps)
        report(f"gelu {n}", s, 20.0 * n, 8.0 * n)
        convs = [(1, 8, 8, 4, 4, 3, 1)] if args.quick else [
            (8, 56, 56, 64, 64, 3, 1), (8, 56, 56, 256, 64, 1, 1), (8, 28, 28, 128, 128, 3, 1),
            (8, 14, 14, 256, 256, 3, 1), (8, 112, 112, 64, 64, 3, 2)]
        for (nb, h, wd, c, o, k, stride) in convs:
            x, w = torch.randn(nb, c, h, wd), torch.randn(o, c, k, k)
            pad = k // 2
            oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
            s = median_seconds(lambda: F.conv2d(x, w, None, stride, pad), reps)
            report(f"conv2d n{nb} {h}x{wd}x{c}->{o} k{k} s{stride}", s, 2.0 * nb * oh * ow * o * k * k * c,
                   4.0 * (nb * h * wd * c + o * k * k * c + nb * oh * ow * o))
        wgrads = [(1, 8, 8, 4, 4, 3, 1)] if args.quick else [
            (8, 56, 56, 64, 64, 3, 1), (8, 14, 14, 256, 256, 3, 1), (8, 112, 112, 64, 64, 3, 2),
            (64, 64, 64, 6, 8, 7, 2), (64, 16, 16, 8, 8, 3, 1)]
        weight_grads(wgrads, torch.float32, "conv2d weight grad", reps)

    batch, din, hid = (8, 16, 32) if args.quick else (512, 1024, 4096)
    x, y = torch.randn(batch, din), torch.randn(batch, din)
    params = [(torch.randn(hid, din) * 0.02).requires_grad_(), torch.zeros(hid, requires_grad=True),
              (torch.randn(din, hid) * 0.02).requires_grad_(), torch.zeros(din, requires_grad=True)]

    def step():
        for p in params:
            p.grad = None
        out = F.linear(torch.relu(F.linear(x, params[0], params[1])), params[2], params[3])
        ((out - y) ** 2).mean().backward()

    s = median_seconds(step, reps)
    report(f"mlp fwd+bwd {batch}x{din}->{hid}->{din}", s, 6.0 * 2 * batch * din * hid, 0)

    # bfloat16: bfloat16 tensors, and torch.autocast("cpu", torch.bfloat16) for the autocast rows (oneDNN, on
    # AMX where the CPU has it).
    with torch.no_grad():
        mm16 = [(64, 64, 64)] if args.quick else [(2048, 2048, 2048), (2048, 768, 3072), (2048, 3072, 768)]
        for m, k, n in mm16:
            a, b = torch.randn(m, k).bfloat16(), torch.randn(k, n).bfloat16()
            s = median_seconds(lambda: torch.matmul(a, b), reps)
            report(f"matmul bf16 {m}x{k}x{n}", s, 2.0 * m * k * n, 2.0 * (m * k + k * n + m * n))
        t = 64 if args.quick else 2048
        x, w, b = torch.randn(t, 768), torch.randn(3072, 768), torch.randn(3072)

        def autocast_linear():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                F.linear(x, w, b)

        s = median_seconds(autocast_linear, reps)
        report(f"linear bf16 autocast {t}x768->3072", s, 2.0 * t * 768 * 3072, 4.0 * (t * 768 + 3072 * 768 + t * 3072))
        for (nb, h, wd, c, o, k, stride) in [(1, 8, 8, 4, 4, 3, 1)] if args.quick else [
                (8, 56, 56, 64, 64, 3, 1), (8, 14, 14, 256, 256, 3, 1)]:
            x, w = torch.randn(nb, c, h, wd), torch.randn(o, c, k, k)

            def autocast_conv():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    F.conv2d(x, w, None, stride, k // 2)

            s = median_seconds(autocast_conv, reps)
            report(f"conv2d bf16 autocast n{nb} {h}x{wd}x{c}->{o} k{k} s{stride}", s, 2.0 * nb * h * wd * o * k * k * c,
                   4.0 * (nb * h * wd * c + o * k * k * c + nb * h * wd * o))
        wgrads = [(1, 8, 8, 4, 4, 3, 1)] if args.quick else [
            (8, 56, 56, 64, 64, 3, 1), (64, 64, 64, 6, 8, 7, 2), (64, 16, 16, 8, 8, 3, 1)]
        weight_grads(wgrads, torch.bfloat16, "conv2d weight grad bf16", reps)


if __name__ == "__main__":
    main()
