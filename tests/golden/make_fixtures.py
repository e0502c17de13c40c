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
  <case>.in.<name>    an input; a float input is differentiable exactly when <case>.grad.<name> exists
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


# ---------------------------------------------------------------- op cases
#
# Each case: inputs (float inputs drawn in float64, cast per file), a function of the input dict returning
# the output (or (output, {extra name: tensor})), and the float inputs that get no gradient.

CASES = []


def case(name, nograd=()):
    def register(build):
        CASES.append((name, build, set(nograd)))
        return build
    return register


def U(*shape, lo=-1.0, hi=1.0):
    return torch.rand(shape, dtype=torch.float64) * (hi - lo) + lo


def N(*shape):
    return torch.randn(shape, dtype=torch.float64)


def nchw(x):  # (N, H, W, C) -> (N, C, H, W)
    return x.permute(0, 3, 1, 2)


def nhwc(x):  # (N, C, H, W) -> (N, H, W, C)
    return x.permute(0, 2, 3, 1)


def I(values):
    return torch.tensor(values, dtype=torch.int64)


# -- elementwise, broadcasting like PyTorch
@case("add")
def _():
    return {"a": U(3, 1, 4), "b": U(2, 4)}, lambda t: t["a"] + t["b"]
@case("sub")
def _():
    return {"a": U(2, 3), "b": U(3)}, lambda t: t["a"] - t["b"]
@case("mul")
def _():
    return {"a": U(4, 1), "b": U(1, 5)}, lambda t: t["a"] * t["b"]
@case("div")
def _():
    b = U(3, 1, lo=0.5, hi=1.5) * torch.tensor([[1.0], [-1.0], [1.0]], dtype=torch.float64)
    return {"a": U(2, 3, 4), "b": b}, lambda t: t["a"] / t["b"]
@case("add_scalar")
def _():
    return {"x": U(2, 3)}, lambda t: t["x"] + 1.5
@case("mul_scalar")
def _():
    return {"x": U(2, 3)}, lambda t: t["x"] * -2.0
@case("rsub_scalar")
def _():
    return {"x": U(2, 3)}, lambda t: 2.5 - t["x"]
@case("neg")
def _():
    return {"x": U(2, 3)}, lambda t: -t["x"]
@case("exp")
def _():
    return {"x": U(3, 4, lo=-3, hi=3)}, lambda t: torch.exp(t["x"])
@case("log")
def _():
    return {"x": U(3, 4, lo=0.1, hi=4)}, lambda t: torch.log(t["x"])
@case("sqrt")
def _():
    return {"x": U(3, 4, lo=0.1, hi=4)}, lambda t: torch.sqrt(t["x"])
@case("rsqrt")
def _():
    return {"x": U(3, 4, lo=0.1, hi=4)}, lambda t: torch.rsqrt(t["x"])
@case("abs")
def _():
    return {"x": U(3, 4)}, lambda t: torch.abs(t["x"])
@case("tanh")
def _():
    return {"x": U(3, 4, lo=-3, hi=3)}, lambda t: torch.tanh(t["x"])
@case("sigmoid")
def _():
    return {"x": U(3, 4, lo=-6, hi=6)}, lambda t: torch.sigmoid(t["x"])
@case("relu")
def _():
    return {"x": U(3, 4)}, lambda t: torch.relu(t["x"])
@case("gelu_erf")
def _():
    return {"x": U(4, 5, lo=-4, hi=4)}, lambda t: F.gelu(t["x"])
@case("gelu_tanh")
def _():
    return {"x": U(4, 5, lo=-4, hi=4)}, lambda t: F.gelu(t["x"], approximate="tanh")
@case("pow_2")
def _():
    return {"x": U(3, 4)}, lambda t: torch.pow(t["x"], 2.0)
@case("pow_3")
def _():
    return {"x": U(3, 4)}, lambda t: torch.pow(t["x"], 3.0)
@case("pow_half")
def _():
    return {"x": U(3, 4, lo=0.1, hi=3)}, lambda t: torch.pow(t["x"], 0.5)
@case("pow_neg1_5")
def _():
    return {"x": U(3, 4, lo=0.2, hi=3)}, lambda t: torch.pow(t["x"], -1.5)


# -- reductions
@case("sum_all")
def _():
    return {"x": U(3, 4)}, lambda t: t["x"].sum()
@case("sum_dims")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].sum(dim=(0, 2))
@case("sum_last_keepdim")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].sum(dim=-1, keepdim=True)
@case("mean_all")
def _():
    return {"x": U(3, 4)}, lambda t: t["x"].mean()
@case("mean_dim_keepdim")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].mean(dim=1, keepdim=True)
@case("amax_dim")
def _():
    return {"x": U(3, 5)}, lambda t: t["x"].amax(dim=1)
@case("amax_dims_keepdim")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].amax(dim=(0, 2), keepdim=True)
@case("amax_ties")  # PyTorch splits the gradient evenly between tied maxima
def _():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, -1.0], [0.5, -0.5, 4.0, 4.0]], dtype=torch.float64)
    return {"x": x}, lambda t: t["x"].amax(dim=1)
@case("argmax_dim")
def _():
    return {"x": U(3, 5)}, lambda t: t["x"].argmax(dim=1)
@case("argmax_last_keepdim")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].argmax(dim=-1, keepdim=True)
@case("argmax_ties")  # the first maximum wins
def _():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, -1.0], [0.5, -0.5, 4.0, 4.0]], dtype=torch.float64)
    return {"x": x}, lambda t: t["x"].argmax(dim=1)
@case("var_unbiased_dim")
def _():
    return {"x": U(3, 5)}, lambda t: t["x"].var(dim=1, unbiased=True)
@case("var_biased_dims_keepdim")
def _():
    return {"x": U(2, 3, 4)}, lambda t: t["x"].var(dim=(0, 2), unbiased=False, keepdim=True)
@case("var_all_unbiased")
def _():
    return {"x": U(3, 4)}, lambda t: t["x"].var(unbiased=True)


# -- linear algebra
@case("matmul_2d")
def _():
    return {"a": U(3, 4), "b": U(4, 5)}, lambda t: t["a"] @ t["b"]
@case("matmul_batched")
def _():
    return {"a": U(2, 3, 4), "b": U(2, 4, 5)}, lambda t: t["a"] @ t["b"]
@case("matmul_broadcast")
def _():
    return {"a": U(2, 1, 3, 4), "b": U(3, 4, 5)}, lambda t: t["a"] @ t["b"]
@case("matmul_mv")
def _():
    return {"a": U(3, 4), "b": U(4)}, lambda t: t["a"] @ t["b"]
@case("matmul_vm")
def _():
    return {"a": U(4), "b": U(4, 5)}, lambda t: t["a"] @ t["b"]
@case("matmul_dot")
def _():
    return {"a": U(4), "b": U(4)}, lambda t: t["a"] @ t["b"]
@case("matmul_batched_mv")
def _():
    return {"a": U(2, 3, 4), "b": U(4)}, lambda t: t["a"] @ t["b"]
@case("matmul_vm_batched")
def _():
    return {"a": U(4), "b": U(2, 4, 5)}, lambda t: t["a"] @ t["b"]
@case("linear")
def _():
    return {"x": U(2, 3, 4), "w": U(5, 4), "b": U(5)}, lambda t: F.linear(t["x"], t["w"], t["b"])
@case("linear_nobias")
def _():
    return {"x": U(3, 4), "w": U(2, 4)}, lambda t: F.linear(t["x"], t["w"])


# -- neural-network functions
@case("softmax_last")
def _():
    return {"x": U(2, 3, 5, lo=-3, hi=3)}, lambda t: torch.softmax(t["x"], dim=-1)
@case("softmax_dim1_large")  # large logits: must not overflow
def _():
    return {"x": U(2, 4, 3, lo=-60, hi=60)}, lambda t: torch.softmax(t["x"], dim=1)
@case("log_softmax_last")
def _():
    return {"x": U(2, 3, 5, lo=-3, hi=3)}, lambda t: torch.log_softmax(t["x"], dim=-1)
@case("log_softmax_dim0_large")
def _():
    return {"x": U(4, 3, lo=-60, hi=60)}, lambda t: torch.log_softmax(t["x"], dim=0)
@case("layer_norm_affine")
def _():
    return ({"x": U(2, 3, 8, lo=-2, hi=3), "w": U(8, lo=0.5, hi=1.5), "b": U(8)},
            lambda t: F.layer_norm(t["x"], (8,), t["w"], t["b"], 1e-5))
@case("layer_norm_two_dims")
def _():
    return ({"x": U(2, 3, 4), "w": U(3, 4, lo=0.5, hi=1.5), "b": U(3, 4)},
            lambda t: F.layer_norm(t["x"], (3, 4), t["w"], t["b"], 1e-5))
@case("layer_norm_plain_bert_eps")
def _():
    return {"x": U(3, 6)}, lambda t: F.layer_norm(t["x"], (6,), None, None, 1e-12)
@case("embedding")
def _():
    return {"weight": U(10, 4), "ids": I([[1, 3, 3, 9], [0, 3, 1, 1]])}, lambda t: F.embedding(t["ids"], t["weight"])
@case("embedding_padding_idx")
def _():
    return ({"weight": U(6, 3), "ids": I([[2, 0, 2], [5, 2, 0]])},
            lambda t: F.embedding(t["ids"], t["weight"], padding_idx=2))
@case("embedding_int32")
def _():
    ids = torch.tensor([4, 4, 0, 2], dtype=torch.int32)
    return {"weight": U(5, 3), "ids": ids}, lambda t: F.embedding(t["ids"], t["weight"])
@case("cross_entropy_mean")
def _():
    return ({"logits": U(6, 5, lo=-3, hi=3), "target": I([0, 4, -100, 2, 2, 1])},
            lambda t: F.cross_entropy(t["logits"], t["target"]))
@case("cross_entropy_smoothing")
def _():
    return ({"logits": U(6, 5, lo=-3, hi=3), "target": I([0, 4, -100, 2, 2, 1])},
            lambda t: F.cross_entropy(t["logits"], t["target"], label_smoothing=0.1))
@case("cross_entropy_ignore1_smoothing")
def _():
    return ({"logits": U(5, 4, lo=-3, hi=3), "target": I([1, 3, 0, 1, 2])},
            lambda t: F.cross_entropy(t["logits"], t["target"], ignore_index=1, label_smoothing=0.2))
@case("cross_entropy_sum")
def _():
    return ({"logits": U(4, 3, lo=-3, hi=3), "target": I([2, 0, 1, 2])},
            lambda t: F.cross_entropy(t["logits"], t["target"], reduction="sum"))
@case("cross_entropy_none")
def _():
    return ({"logits": U(4, 3, lo=-3, hi=3), "target": I([2, -100, 1, 0])},
            lambda t: F.cross_entropy(t["logits"], t["target"], reduction="none"))
@case("cross_entropy_3d")  # videobert takes logits (..., C); PyTorch's class dim is 1, so flatten
def _():
    return ({"logits": U(2, 3, 5, lo=-3, hi=3), "target": I([[0, 4, 3], [-100, 1, 1]])},
            lambda t: F.cross_entropy(t["logits"].reshape(-1, 5), t["target"].reshape(-1)))
@case("bce_logits_mean")
def _():
    return ({"logits": U(4, 3, lo=-4, hi=4), "target": U(4, 3, lo=0, hi=1)},
            lambda t: F.binary_cross_entropy_with_logits(t["logits"], t["target"]))
@case("bce_logits_pos_weight", nograd=("pos_weight",))  # PyTorch does not differentiate pos_weight
def _():
    return ({"logits": U(4, 3, lo=-4, hi=4), "target": U(4, 3, lo=0, hi=1), "pos_weight": U(3, lo=0.5, hi=3)},
            lambda t: F.binary_cross_entropy_with_logits(t["logits"], t["target"], pos_weight=t["pos_weight"]))
@case("bce_logits_sum")
def _():
    return ({"logits": U(5, lo=-30, hi=30), "target": torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)},
            lambda t: F.binary_cross_entropy_with_logits(t["logits"], t["target"], reduction="sum"))
@case("bce_logits_none")
def _():
    return ({"logits": U(2, 3, lo=-4, hi=4), "target": U(2, 3, lo=0, hi=1)},
            lambda t: F.binary_cross_entropy_with_logits(t["logits"], t["target"], reduction="none"))


# -- joining and indexing
@case("cat_dim1")
def _():
    return {"a": U(2, 3), "b": U(2, 1), "c": U(2, 4)}, lambda t: torch.cat([t["a"], t["b"], t["c"]], dim=1)
@case("cat_dim0")
def _():
    return {"a": U(1, 3), "b": U(2, 3)}, lambda t: torch.cat([t["a"], t["b"]], dim=0)
@case("stack_dim0")
def _():
    return {"a": U(2, 3), "b": U(2, 3), "c": U(2, 3)}, lambda t: torch.stack([t["a"], t["b"], t["c"]], dim=0)
@case("stack_last")
def _():
    return {"a": U(2, 3), "b": U(2, 3)}, lambda t: torch.stack([t["a"], t["b"]], dim=-1)
@case("index_select_dim0")
def _():
    return {"x": U(5, 3), "index": I([4, 0, 4, 2])}, lambda t: torch.index_select(t["x"], 0, t["index"])
@case("index_select_dim1")
def _():
    return {"x": U(2, 4, 3), "index": I([3, 3, 0])}, lambda t: torch.index_select(t["x"], 1, t["index"])
@case("gather_dim1")
def _():
    return ({"x": U(3, 4), "index": I([[0, 3, 3, 1, 0], [2, 2, 2, 2, 1], [1, 0, 3, 2, 3]])},
            lambda t: torch.gather(t["x"], 1, t["index"]))
@case("gather_dim0")
def _():
    return {"x": U(4, 3), "index": I([[3, 0, 1], [3, 3, 0]])}, lambda t: torch.gather(t["x"], 0, t["index"])
@case("where_broadcast")
def _():
    cond = torch.tensor([[True], [False], [True]])
    return {"cond": cond, "a": U(3, 4), "b": U(4)}, lambda t: torch.where(t["cond"], t["a"], t["b"])
@case("masked_fill_broadcast")
def _():
    mask = torch.tensor([[True], [False], [True]])
    return {"x": U(2, 3, 4), "mask": mask}, lambda t: t["x"].masked_fill(t["mask"], -5.0)


# -- convolution and pooling, channels-last: x (N, H, W, C), w (O, KH, KW, C/groups)
def conv(t, **kw):
    y = F.conv2d(nchw(t["x"]), t["w"].permute(0, 3, 1, 2), t.get("b"), **kw)
    return nhwc(y)


@case("conv2d_pad1")
def _():
    return {"x": U(2, 6, 5, 3), "w": U(4, 3, 3, 3), "b": U(4)}, lambda t: conv(t, stride=1, padding=1)
@case("conv2d_stride2_nobias")
def _():
    return {"x": U(2, 7, 7, 3), "w": U(5, 3, 3, 3)}, lambda t: conv(t, stride=2, padding=0)
@case("conv2d_dilation2")
def _():
    return {"x": U(1, 8, 7, 2), "w": U(3, 3, 3, 2), "b": U(3)}, lambda t: conv(t, padding=2, dilation=2)
@case("conv2d_groups2")
def _():
    return {"x": U(2, 5, 5, 4), "w": U(6, 3, 3, 2), "b": U(6)}, lambda t: conv(t, padding=1, groups=2)
@case("conv2d_depthwise_asymmetric")  # kernel 3x2, stride (2, 1), padding (1, 0)
def _():
    return ({"x": U(2, 7, 6, 3), "w": U(3, 3, 2, 1), "b": U(3)},
            lambda t: conv(t, stride=(2, 1), padding=(1, 0), groups=3))
@case("conv2d_1x1_stride2")
def _():
    return {"x": U(2, 4, 4, 8), "w": U(4, 1, 1, 8)}, lambda t: conv(t, stride=2)
@case("max_pool2d_k2s2")
def _():
    return {"x": U(2, 6, 6, 3)}, lambda t: nhwc(F.max_pool2d(nchw(t["x"]), 2, 2))
@case("max_pool2d_k3s2p1")
def _():
    return {"x": U(2, 7, 7, 3)}, lambda t: nhwc(F.max_pool2d(nchw(t["x"]), 3, 2, 1))
@case("avg_pool2d_k2s2")
def _():
    return {"x": U(2, 6, 6, 3)}, lambda t: nhwc(F.avg_pool2d(nchw(t["x"]), 2, 2))
@case("avg_pool2d_k3s2p1_include_pad")
def _():
    return {"x": U(2, 7, 7, 3)}, lambda t: nhwc(F.avg_pool2d(nchw(t["x"]), 3, 2, 1, count_include_pad=True))
@case("avg_pool2d_k3s2p1_exclude_pad")
def _():
    return {"x": U(2, 7, 7, 3)}, lambda t: nhwc(F.avg_pool2d(nchw(t["x"]), 3, 2, 1, count_include_pad=False))
@case("adaptive_avg_pool2d_3x4")
def _():
    return {"x": U(2, 7, 6, 3)}, lambda t: nhwc(F.adaptive_avg_pool2d(nchw(t["x"]), (3, 4)))
@case("adaptive_avg_pool2d_1x1")
def _():
    return {"x": U(2, 5, 5, 3)}, lambda t: nhwc(F.adaptive_avg_pool2d(nchw(t["x"]), (1, 1)))
@case("adaptive_avg_pool2d_overlap_2x3")
def _():
    return {"x": U(2, 5, 7, 2)}, lambda t: nhwc(F.adaptive_avg_pool2d(nchw(t["x"]), (2, 3)))


# -- batch norm, channels-last; running statistics are inputs (copied) and extra outputs (updated)
def bn(t, training, momentum, eps):
    rm, rv = t["running_mean"].detach().clone(), t["running_var"].detach().clone()
    x = t["x"]
    y = F.batch_norm(nchw(x) if x.dim() == 4 else x, rm, rv, t["w"], t["b"], training, momentum, eps)
    return (nhwc(y) if x.dim() == 4 else y), {"running_mean": rm, "running_var": rv}


def bn_inputs(*shape):
    c = shape[-1]
    return {"x": U(*shape, lo=-2, hi=3), "w": U(c, lo=0.5, hi=1.5), "b": U(c),
            "running_mean": U(c), "running_var": U(c, lo=0.5, hi=1.5)}


BN_NOGRAD = ("running_mean", "running_var")


@case("batch_norm_train_nhwc", nograd=BN_NOGRAD)
def _():
    return bn_inputs(4, 3, 3, 5), lambda t: bn(t, True, 0.1, 1e-5)
@case("batch_norm_train_2d_momentum", nograd=BN_NOGRAD)
def _():
    return bn_inputs(8, 5), lambda t: bn(t, True, 0.3, 1e-3)
@case("batch_norm_eval_nhwc", nograd=BN_NOGRAD)
def _():
    return bn_inputs(2, 3, 3, 5), lambda t: bn(t, False, 0.1, 1e-5)


# -- attention over (B, H, T, D): PyTorch's math reference, softmax(q kᵀ · scale + mask) v
def sdpa(t, scale=None):
    q, k, v = t["q"], t["k"], t["v"]
    s = (q @ k.transpose(-2, -1)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    mask = t.get("mask")
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    return torch.softmax(s, dim=-1) @ v


def qkv(b, h, tq, tk, d):
    return {"q": U(b, h, tq, d), "k": U(b, h, tk, d), "v": U(b, h, tk, d)}


@case("sdpa_plain")
def _():
    return qkv(2, 3, 4, 5, 8), lambda t: sdpa(t)
@case("sdpa_bool_padding_mask")
def _():
    t = qkv(2, 3, 4, 5, 8)
    t["mask"] = torch.tensor([[True] * 5, [True, True, True, False, False]]).reshape(2, 1, 1, 5)
    return t, lambda t: sdpa(t)
@case("sdpa_additive_mask_scale", nograd=("mask",))
def _():
    t = qkv(2, 2, 3, 4, 4)
    t["mask"] = N(2, 1, 3, 4) * 2
    return t, lambda t: sdpa(t, scale=0.3)
@case("sdpa_additive_padding_mask", nograd=("mask",))  # BERT's (1 - mask) * -10000
def _():
    t = qkv(2, 2, 3, 3, 4)
    t["mask"] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, -10000.0], dtype=torch.float64).reshape(2, 1, 1, 3)
    return t, lambda t: sdpa(t)


def run_case(index, name, build, nograd, dtype):
    torch.manual_seed(1000 + index)
    inputs, fn = build()
    g = torch.Generator().manual_seed(2000 + index)
    leaves = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            v = v.to(dtype)
            if k not in nograd:
                v.requires_grad_(True)
        leaves[k] = v
    result = fn(leaves)
    out, extras = result if isinstance(result, tuple) else (result, {})
    records = [(f"{name}.in.{k}", v.detach()) for k, v in leaves.items()]
    records.append((f"{name}.out", out.detach()))
    records += [(f"{name}.out.{k}", v.detach()) for k, v in extras.items()]
    if out.is_floating_point():
        weight = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype)
        (out * weight).sum().backward()
        records.append((f"{name}.weight", weight))
        for k, v in leaves.items():
            if v.requires_grad:
                records.append((f"{name}.grad.{k}", v.grad))
    return records


def write_ops(dtype, filename):
    records = []
    for i, (name, build, nograd) in enumerate(CASES):
        records += run_case(i, name, build, nograd, dtype)
    path = os.path.join(HERE, filename)
    save_safetensors(path, records, {"generator": "tests/golden/make_fixtures.py", "torch": torch.__version__})
    print(f"{path}: {len(CASES)} cases, {len(records)} tensors, {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(1)  # reductions in a fixed order
    write_reference_tiny()
    write_ops(torch.float32, "ops.safetensors")
    write_ops(torch.float64, "ops_f64.safetensors")


if __name__ == "__main__":
    main()
