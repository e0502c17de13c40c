#!/usr/bin/python3
"""Writes the PyTorch golden fixtures that tests/cpu/golden_ops.cpp and tests/cpu/safetensors.cpp read.

Regenerate (needs Debian's python3-torch and python3-numpy; nothing else):

    /usr/bin/python3 tests/golden/make_fixtures.py

and commit the files it writes:
  tests/golden/reference_tiny.safetensors  a few tensors of every dtype; the C++ writer must produce
                                           the same bytes (tests/cpu/safetensors.cpp)
  tests/golden/ops.safetensors             one case per op (float32), forward and gradients
  tests/golden/ops_f64.safetensors         the same cases in float64, where PyTorch's float64 result
                                           is a tighter reference than float32

Naming inside ops*.safetensors, for a case <case>:
  <case>.in.<name>    an input (float inputs are differentiable unless listed in <case>.nograd)
  <case>.out          the forward output; <case>.out.<name> for extra outputs (e.g. batch_norm's
                      updated running statistics)
  <case>.weight       fixed random weights w; the gradients are those of sum(out * w)
  <case>.grad.<name>  d sum(out * w) / d <name>, for every differentiable input
Scalar arguments (dims, eps, strides, ...) are not stored: golden_ops.cpp repeats them, case by case,
next to the same case name. Convolution and pooling tensors are channels-last, as videobert stores them:
x (N, H, W, C), conv weights (O, KH, KW, C/groups); the script permutes PyTorch's NCHW / OIHW tensors.

The safetensors layout is written by hand (the `safetensors` package is not in Debian), exactly as the
reference writer lays it out: compact JSON with "__metadata__" first (keys sorted), then the tensors in the
given order with fields dtype, shape, data_offsets; the header padded with spaces to a multiple of 8.
Deterministic: every case draws from torch.manual_seed(0) in a fixed order.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

DTYPES = {
    torch.bool: "BOOL",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) pairs, written in that order."""
    meta = {"format": "pt"}
    meta.update(metadata or {})
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs = []
    offset = 0
    names = set()
    for name, t in tensors:
        assert name not in names, f"duplicate tensor name {name}"
        names.add(name)
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def write_reference_tiny():
    """Mirrored in tests/cpu/safetensors.cpp ("byte-exact agreement with the Python writer")."""
    tensors = [
        ("a", torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1),
        ("b", torch.tensor([[1.25, -1e-300]], dtype=torch.float64)),
        ("c", torch.tensor([1.0, -2.5, 3.0], dtype=torch.bfloat16)),
        ("d", torch.tensor([[0.5], [-0.25]], dtype=torch.float16)),
        ("e", torch.tensor([1, -2, 3], dtype=torch.int32)),
        ("f", torch.tensor(7, dtype=torch.int64)),
        ("g", torch.tensor([True, False, True])),
        ("h", torch.zeros(0, 4, dtype=torch.float32)),
    ]
    save_safetensors(os.path.join(HERE, "reference_tiny.safetensors"), tensors, {"note": 'naïve "q"\t'})


def main():
    write_reference_tiny()


if __name__ == "__main__":
    main()
