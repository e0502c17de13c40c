#!/usr/bin/env python3
"""The PyTorch side of the model benchmark: the same cases as bench/models_cpu.cpp (one training step's
forward + backward, train mode, dropout as configured), timed the same way (median of repeated steps after a
warm-up step), one JSON line per case. BERT is tests/golden/make_model_fixtures.py's plain-PyTorch copy of
Hugging Face's BertModel; ResNets are torchvision's, NCHW (what a PyTorch user gets). Run with Debian's
python3-torch:  /usr/bin/python3 bench/torch_models_cpu.py --threads N [--quick]
On a GPU: python3 bench/torch_models_cpu.py --threads N --device cuda [--bf16] — the shapes of
bench_models_cpu --device cuda (BERT-base B=32 T=128, ResNet-50 N=32 224², 10 steps), PyTorch eager, each step
ended by torch.cuda.synchronize(), --bf16 under torch.autocast("cuda", torch.bfloat16). On the CPU --bf16 runs the
CPU shapes under torch.autocast("cpu", torch.bfloat16), beside bench_models_cpu --bf16."""
import argparse
import os
import sys

import torch
import torchvision

from host_timing import median_seconds, report

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from make_model_fixtures import HFBertModel, bert_config  # noqa: E402

PRESETS = {
    "tiny": dict(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                 max_position_embeddings=128),
    "base": {},
}
RESNET_GMACS = {"resnet18": 1.814, "resnet50": 4.089}


DEVICE = "cpu"
BF16 = False


def median_step_seconds(step, reps):
    def fn():
        if BF16:
            with torch.autocast("cpu" if DEVICE == "cpu" else "cuda", dtype=torch.bfloat16):
                step()
        else:
            step()
        if DEVICE != "cpu":
            torch.cuda.synchronize()

    return median_seconds(fn, reps)


def bert_forward_flops(c, b, t):  # as bench/models_cpu.cpp
    h, i, tokens = c["hidden_size"], c["intermediate_size"], b * t
    return c["num_hidden_layers"] * tokens * (2 * (4 * h * h + 2 * h * i) + 4 * t * h) + 2.0 * b * h * h


def bench_bert(preset, b, t, reps):
    c = bert_config(**PRESETS[preset])
    model = HFBertModel(c).train().to(DEVICE)
    ids = torch.randint(0, c["vocab_size"], (b, t)).to(DEVICE)
    types = torch.zeros(b, t, dtype=torch.int64, device=DEVICE)
    mask = torch.ones(b, t, dtype=torch.int64, device=DEVICE)

    def step():
        model.zero_grad(set_to_none=True)
        h, pooled = model(ids, types, mask)
        (h.mean() + pooled.mean()).backward()

    report(f"bert-{preset} B={b} T={t} fwd+bwd", median_step_seconds(step, reps), 3 * bert_forward_flops(c, b, t))


def bench_resnet(arch, n, size, reps):
    model = getattr(torchvision.models, arch)().train().to(DEVICE)
    x = torch.randn(n, 3, size, size).to(DEVICE)

    def step():
        model.zero_grad(set_to_none=True)
        model(x).mean().backward()

    flops = 3 * 2 * RESNET_GMACS[arch] * 1e9 * n * size * size / (224.0 * 224.0)
    report(f"{arch} N={n} {size}px fwd+bwd", median_step_seconds(step, reps), flops)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    global DEVICE, BF16
    DEVICE, BF16 = args.device, args.bf16
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    print(f"torch_models_cpu: torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    if DEVICE == "cuda":
        bench_bert("base", 32, 128, 10)
        bench_resnet("resnet50", 32, 224, 10)
        return
    if args.quick:
        bench_bert("tiny", 2, 8, 1)
        bench_resnet("resnet18", 2, 64, 1)
        return
    bench_bert("tiny", 8, 64, 5)
    bench_bert("base", 2, 32, 5)
    bench_resnet("resnet18", 2, 112, 5)
    bench_resnet("resnet50", 2, 112, 5)


if __name__ == "__main__":
    main()
