#!/usr/bin/python3
"""Writes tests/golden/optim.safetensors, PyTorch's optimizer steps, gradient clipping and learning-rate
schedules that tests/cpu/optim.cpp checks train/optim.h against.

Regenerate (needs Debian's python3-torch; nothing else):

    /usr/bin/python3 tests/golden/make_optim_fixtures.py

and commit the file it writes.

Optimizer cases (torch.optim.AdamW / torch.optim.SGD, foreach=False, 4 steps, a different lr per step).
Every case has two parameters, as a layer has: "dense.weight" (3, 4), which gets weight decay, and
"dense.bias" (5,), which does not (PyTorch: a second param group with weight_decay 0; videobert:
ParamRef::decay = false). Names inside the file, for a case <case>:
  <case>.lr                 (4,) float64, the learning rate of step t at index t − 1
  <case>.init.<param>       the parameter before the first step
  <case>.grad<t>.<param>    the gradient given to step t (t = 1..4)
  <case>.step<t>.<param>    the parameter after step t
  <case>.step<t>.<param>.exp_avg, .exp_avg_sq   (AdamW)   PyTorch's state after step t, under the
  <case>.step<t>.<param>.momentum_buffer        (SGD)     names Optimizer::state_tensors() gives it
Hyperparameters are not stored: tests/cpu/optim.cpp repeats them next to the same case name.
  adamw_f32, adamw_f64   betas (0.9, 0.999), eps 1e-8, weight_decay 0.1 (float32 and float64 parameters)
  sgd_momentum           momentum 0.9, weight_decay 0.01
  sgd_nesterov           momentum 0.9, weight_decay 0.01, nesterov
  sgd_dampening          momentum 0.9, dampening 0.1
  sgd_plain              momentum 0, weight_decay 0.01 (no state)
The bias's last element gets gradients of order 1e-9, where AdamW's eps (1e-8) dominates the denominator,
and one gradient element is exactly zero.

Clipping cases (torch.nn.utils.clip_grad_norm_, L2 norm), the same two parameters plus "extra.weight" (2,),
which has no gradient and must be ignored:
  <case>.grad.<param>       the gradients before clipping
  <case>.norm               () float64, the norm clip_grad_norm_ returned
  <case>.clipped.<param>    the gradients after clipping
  clip_active   max_norm 1.0, below the norm: gradients scaled by max_norm / (norm + 1e-6)
  clip_inactive max_norm 100.0, above the norm: gradients unchanged

Schedule cases: the learning rate PyTorch's own schedulers give, chained with SequentialLR: LinearLR from
base/W to base over W − 1 scheduler steps (so that scheduler epoch e has base·(e + 1)/W, train/optim.h's
Schedule::lr(e + 1)), then, from epoch W − 1 (where it starts at base, as the warm-up ends),
CosineAnnealingLR (eta_min = min_ratio·base) or LinearLR (1 → min_ratio) over total − W steps.
  <case>.lr                 (total,) float64, index e holds the lr of Schedule::lr(e + 1)
  sched_cosine  base 0.001, warmup 4, total 20, cosine, min_ratio 0.1
  sched_linear  base 0.001, warmup 4, total 20, linear, min_ratio 0.1
  sched_cosine_nowarmup base 0.001, warmup 1, total 12, cosine, min_ratio 0 (warmup 1: the first step
                has the full lr)

Deterministic: everything draws from torch.manual_seed(0) in a fixed order.
"""
import math
import os
import warnings

import torch

from make_fixtures import save_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 4
LRS = [0.01, 0.02, 0.005, 0.015]
PARAMS = [("dense.weight", (3, 4)), ("dense.bias", (5,))]


def initial_params(dtype):
    return {name: torch.randn(shape, dtype=torch.float64).to(dtype) for name, shape in PARAMS}


def gradients(dtype):
    """STEPS dicts of gradients, different scales per step; the bias's last element tiny (eps regime)."""
    out = []
    for t in range(STEPS):
        g = {name: torch.randn(shape, dtype=torch.float64) * (0.5 + t) for name, shape in PARAMS}
        g["dense.bias"][-1] = 1e-9 * (t + 1) * (-1) ** t
        if t == 1:
            g["dense.weight"][0, 0] = 0.0
        out.append({k: v.to(dtype) for k, v in g.items()})
    return out


def optimizer_case(case, make_optimizer, slots, dtype):
    init = initial_params(dtype)
    grads = gradients(dtype)
    params = {name: init[name].clone().requires_grad_(True) for name, _ in PARAMS}
    opt = make_optimizer(params)
    records = [(f"{case}.lr", torch.tensor(LRS, dtype=torch.float64))]
    records += [(f"{case}.init.{name}", init[name]) for name, _ in PARAMS]
    for t in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = LRS[t]
        for name, _ in PARAMS:
            params[name].grad = grads[t][name].clone()
            records.append((f"{case}.grad{t + 1}.{name}", grads[t][name]))
        opt.step()
        for name, _ in PARAMS:
            p = params[name]
            records.append((f"{case}.step{t + 1}.{name}", p.detach().clone()))
            for slot in slots:
                records.append((f"{case}.step{t + 1}.{name}.{slot}", opt.state[p][slot].clone()))
    return records


def adamw_case(case, dtype):
    def make(params):
        return torch.optim.AdamW(
            [{"params": [params["dense.weight"]], "weight_decay": 0.1},
             {"params": [params["dense.bias"]], "weight_decay": 0.0}],
            lr=LRS[0], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    return optimizer_case(case, make, ["exp_avg", "exp_avg_sq"], dtype)


def sgd_case(case, momentum, weight_decay, nesterov=False, dampening=0.0):
    def make(params):
        return torch.optim.SGD(
            [{"params": [params["dense.weight"]], "weight_decay": weight_decay},
             {"params": [params["dense.bias"]], "weight_decay": 0.0}],
            lr=LRS[0], momentum=momentum, dampening=dampening, nesterov=nesterov, foreach=False)
    return optimizer_case(case, make, ["momentum_buffer"] if momentum else [], torch.float32)


def clip_case(case, max_norm):
    grads = {name: torch.randn(shape, dtype=torch.float64).float() for name, shape in PARAMS}
    params = [torch.zeros(shape, requires_grad=True) for _, shape in PARAMS]
    for p, (name, _) in zip(params, PARAMS):
        p.grad = grads[name].clone()
    no_grad = torch.zeros(2, requires_grad=True)
    norm = torch.nn.utils.clip_grad_norm_(params + [no_grad], max_norm)
    # Clipping applies exactly when the norm exceeds max_norm; keep the cases away from the boundary, where
    # PyTorch's clamp(max_norm / (norm + 1e-6), max=1) still scales gradients by (up to) 1e-6.
    assert abs(norm.item() - max_norm) > 0.1, (case, norm.item())
    records = [(f"{case}.grad.{name}", grads[name]) for name, _ in PARAMS]
    records.append((f"{case}.norm", torch.tensor(norm.item(), dtype=torch.float64)))
    records += [(f"{case}.clipped.{name}", p.grad.clone()) for p, (name, _) in zip(params, PARAMS)]
    return records


def schedule_case(case, base, warmup, total, cosine, min_ratio):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    S = torch.optim.lr_scheduler
    decay = (S.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_ratio * base) if cosine else
             S.LinearLR(opt, start_factor=1.0, end_factor=min_ratio, total_iters=total - warmup))
    if warmup > 1:
        warm = S.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
        with warnings.catch_warnings():  # SequentialLR itself calls the deprecated step(epoch)
            warnings.simplefilter("ignore", UserWarning)
            sched = S.SequentialLR(opt, [warm, decay], milestones=[warmup - 1])
    else:
        sched = decay
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
    # The closed form that train/optim.h's Schedule documents, as a check on the chaining above.
    for e, lr in enumerate(lrs):
        step = e + 1
        if step <= warmup:
            want = base * step / warmup
        else:
            progress = (step - warmup) / (total - warmup)
            factor = 0.5 * (1 + math.cos(math.pi * progress)) if cosine else 1 - progress
            want = base * (min_ratio + (1 - min_ratio) * factor)
        assert abs(lr - want) <= 1e-12 * base, (case, step, lr, want)
    return [(f"{case}.lr", torch.tensor(lrs, dtype=torch.float64))]


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    records = []
    records += adamw_case("adamw_f32", torch.float32)
    records += adamw_case("adamw_f64", torch.float64)
    records += sgd_case("sgd_momentum", momentum=0.9, weight_decay=0.01)
    records += sgd_case("sgd_nesterov", momentum=0.9, weight_decay=0.01, nesterov=True)
    records += sgd_case("sgd_dampening", momentum=0.9, weight_decay=0.0, dampening=0.1)
    records += sgd_case("sgd_plain", momentum=0.0, weight_decay=0.01)
    records += clip_case("clip_active", 1.0)
    records += clip_case("clip_inactive", 100.0)
    records += schedule_case("sched_cosine", 1e-3, 4, 20, True, 0.1)
    records += schedule_case("sched_linear", 1e-3, 4, 20, False, 0.1)
    records += schedule_case("sched_cosine_nowarmup", 1e-3, 1, 12, True, 0.0)
    path = os.path.join(HERE, "optim.safetensors")
    save_safetensors(path, records, {"generator": "tests/golden/make_optim_fixtures.py", "torch": torch.__version__})
    print(f"{path}: {len(records)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
