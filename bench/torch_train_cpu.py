#!/usr/bin/env python3
"""The PyTorch side of the training benchmark: for every case bench/train_cpu.cpp printed (its JSON lines,
read from --cases), the same model and the same training step in plain PyTorch, timed the same way (median
seconds per step after the same warm-up), one JSON line per case under the same name.

The model (train/tasks.cpp and models/videobert.cpp, re-written module for module):
  BERT        tests/golden/make_model_fixtures.py's plain-PyTorch copy of Hugging Face's BertModel and
              pre-training heads (MLM decoder tied to the word embeddings), eager attention (torch 1.13 has
              no scaled_dot_product_attention; --attention sdpa where it exists)
  frames      torchvision's ResNet (resnet18/50 as torchvision builds them, resnet-tiny with
              make_model_fixtures.TinyResNet: torchvision's blocks at width 8), NCHW, classifier removed
  single stream  one frame-encoder pass; the joint forward of [CLS] masked text [SEP] + projected frames
              (masked ones replaced by a learned vector) + [SEP]; MLM cross-entropy, masked-frame
              contrastive cross-entropy, the first stage (text alone through the shared BERT, masked mean,
              mean frame, projections, symmetric InfoNCE with a learned temperature), two negative joint
              forwards (another clip, another caption) and binary cross-entropy on the matching logits
  late fusion [CLS] ⊕ mean frame → MLP → logit, on matched and shifted pairs, BCE
  dual encoder  masked-mean text and mean frame, projected, symmetric InfoNCE
The step: zero_grad(set_to_none), losses, backward, .item() of every loss term (as the trainer logs),
clip_grad_norm_, torch.optim.AdamW (weight decay on ≥ 2-d parameters only, as ours). The data are
pre-generated tensors of the case's shapes. The parameter count is printed beside ours; a mismatch is an
error.

CPU (Debian's python3-torch):  /usr/bin/python3 bench/torch_train_cpu.py --cases OURS.jsonl --threads N
GPU:  python3 bench/torch_train_cpu.py --cases OURS.jsonl --device cuda --bf16   (autocast bfloat16; on the CPU too)"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.models.resnet as tvr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from make_model_fixtures import (HFBertModel, HFBertPreTrainingHeads, HFBertSelfAttention,  # noqa: E402
                                 TinyResNet, bert_config)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4  # the synthetic vocabulary's specials (and the bench's filler one)
BERT_PRESETS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "base": {},
}

ATTENTION = "eager"


def sdpa_self_attention(self, x, keep):
    """HFBertSelfAttention.forward with torch's fused attention; keep is the bool (B, 1, 1, T) key mask."""
    q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout.p if self.training else 0.0)
    ctx = ctx.permute(0, 2, 1, 3).contiguous()
    return ctx.view(ctx.shape[0], ctx.shape[1], -1)


def attention_mask_arg(mask, dtype):
    """What the encoder's layers take: HF's additive mask (1 − m)·finfo.min, or the bool mask for sdpa."""
    if ATTENTION == "sdpa":
        return mask[:, None, None, :].bool()
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def bert_forward(bert, ids, mask):
    """HFBertModel.forward with token types 0, the mask prepared for the attention in use."""
    h = bert.embeddings(ids, torch.zeros_like(ids))
    h = bert.encoder(h, attention_mask_arg(mask, h.dtype))
    return h, bert.pooler(h)


class WithFrameDifferences(nn.Module):
    """The frame encoder's frame_differences (models/resnet.h): each frame x_t enters the ResNet as
    x_t ⊕ (x_t − x_{t−1}) on the channel axis, the first frame's difference zero; a 6-channel stem."""

    def __init__(self, resnet, frames):
        super().__init__()
        self.resnet, self.frames = resnet, frames
        old = resnet.conv1
        resnet.conv1 = nn.Conv2d(6, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)

    def forward(self, x):  # (B·T, 3, S, S)
        n, c, h, w = x.shape
        clips = x.view(n // self.frames, self.frames, c, h, w)
        diff = torch.cat([torch.zeros_like(clips[:, :1]), clips[:, 1:] - clips[:, :-1]], 1)
        return self.resnet(torch.cat([clips, diff], 2).view(n, 2 * c, h, w))


def frame_encoder(vision, frames=1, differences=False):
    """torchvision's ResNet without its classifier: images (N, 3, S, S) → pooled features (N, C), N = B·T;
    with differences, each clip's frames also carry their differences (WithFrameDifferences)."""
    if vision == "resnet-tiny":
        m, dim = TinyResNet(tvr.BasicBlock, [1, 1, 1, 1], 8, 1), 64
    else:
        m = getattr(torchvision.models, vision)()
        dim = m.fc.in_features
    m.fc = nn.Identity()
    return (WithFrameDifferences(m, frames) if differences else m), dim


def l2_normalize(x, eps=1e-12):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def masked_mean(h, mask):
    m = mask.to(h.dtype)
    return (h * m[..., None]).sum(1) / m.sum(1)[:, None]


class ContrastiveHead(nn.Module):
    def __init__(self, text_dim, video_dim, embed_dim):
        super().__init__()
        self.text_projection = nn.Linear(text_dim, embed_dim)
        self.video_projection = nn.Linear(video_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def similarity(self, t, v):
        return t @ v.t() * torch.exp(self.logit_scale.clamp(max=math.log(100.0)))

    def loss(self, t, v):
        logits = self.similarity(t, v)
        targets = torch.arange(t.shape[0], device=t.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def mismatched_partners(b, device):
    """Each row paired with another: a random non-zero cyclic shift of the batch."""
    shift = int(torch.randint(1, b, (1,)))
    return ((torch.arange(b) + shift) % b).to(device)


def matching_loss(positive, negative):
    logits = torch.cat([positive.reshape(-1), negative.reshape(-1)])
    labels = torch.cat([torch.ones(positive.numel(), device=logits.device),
                        torch.zeros(negative.numel(), device=logits.device)]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, labels)


def mask_tokens(ids, p, vocab):
    """BERT's masking as train/objectives.cpp does it: 15 % of the ordinary tokens; 80 % [MASK], 10 % random."""
    special = (ids == PAD) | (ids == UNK) | (ids == CLS) | (ids == SEP) | (ids == MASK)
    chosen = (torch.rand(ids.shape, device=ids.device) < p) & ~special
    action = torch.rand(ids.shape, device=ids.device)
    random_ids = torch.randint(5, vocab, ids.shape, device=ids.device)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    out = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK), ids)
    out = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, out)
    return out, labels, int(chosen.sum())


def choose_frames(b, t, p, device):
    m = torch.rand(b, t, device=device) < p
    none = ~m.any(1)
    pick = torch.randint(0, t, (b,), device=device)
    m[none, pick[none]] = True
    return m


class SingleStream(nn.Module):
    def __init__(self, c, vision, embed_dim, video_input):
        super().__init__()
        self.bert = HFBertModel(c)
        self.video, dim = frame_encoder(vision, *video_input)
        hidden = c["hidden_size"]
        self.visual_projection = nn.Linear(dim, hidden)
        self.mask_frame = nn.Parameter(torch.randn(hidden) * c["initializer_range"])
        self.cls = HFBertPreTrainingHeads(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied
        self.frame_head = nn.Linear(hidden, dim)
        self.contrast = ContrastiveHead(hidden, dim, embed_dim)

    def frame_features(self, frames, b, t):  # (B·T, 3, S, S) → (B, T, C)
        f = self.video(frames)
        return f.view(b, t, -1)

    def forward(self, ids, text_mask, features, frame_mask):
        emb = self.bert.embeddings
        b, tt, tv = ids.shape[0], ids.shape[1], features.shape[1]
        text = emb.word_embeddings(ids)
        visual = self.visual_projection(features)
        if frame_mask is not None:
            visual = torch.where(frame_mask[..., None], self.mask_frame.to(visual.dtype).expand_as(visual), visual)
        sep = emb.word_embeddings(torch.full((b, 1), SEP, dtype=torch.int64, device=ids.device))
        embeds = torch.cat([text, visual.to(text.dtype), sep], 1)
        types = torch.cat([torch.zeros(b, tt, dtype=torch.int64, device=ids.device),
                           torch.ones(b, tv + 1, dtype=torch.int64, device=ids.device)], 1)
        total = tt + tv + 1
        h = emb.dropout(emb.LayerNorm(embeds + emb.token_type_embeddings(types)
                                      + emb.position_embeddings(emb.position_ids[:, :total])))
        mask = torch.cat([text_mask, torch.ones(b, tv + 1, dtype=text_mask.dtype, device=ids.device)], 1)
        hidden = self.bert.encoder(h, attention_mask_arg(mask, h.dtype))
        return hidden[:, :tt], hidden[:, tt:tt + tv], self.bert.pooler(hidden)

    def match_logit(self, pooled):
        logits = self.cls.seq_relationship(pooled)
        return logits[:, 1] - logits[:, 0]

    def losses(self, batch, k):
        w = k["objectives"]
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b, t = ids.shape[0], k["frames"]
        features = self.frame_features(batch["frames"], b, t)
        out = {}
        masked_ids, labels, count = (mask_tokens(ids, k["mlm_probability"], k["vocab_size"]) if w["mlm"] > 0
                                     else (ids, None, 0))
        frame_mask = choose_frames(b, t, k["mfm_probability"], ids.device) if w["mfm"] > 0 else None
        text_hidden, video_hidden, pooled = self.forward(masked_ids, mask, features, frame_mask)
        if w["mlm"] > 0 and count > 0:
            logits = self.cls.predictions(text_hidden)
            out["mlm"] = (F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)), w["mlm"])
            with torch.no_grad():
                chosen = labels != -100
                out["mlm_acc"] = ((logits.argmax(-1) == labels)[chosen].float().mean(), 0)
        if w["mfm"] > 0:
            flat = frame_mask.reshape(-1).nonzero().squeeze(1)
            pred = self.frame_head(video_hidden).reshape(b * t, -1)[flat]
            everything = features.reshape(b * t, -1).detach()
            out["mfm"] = (F.cross_entropy((pred @ everything.t().to(pred.dtype)).float(), flat), w["mfm"])
        if w["contrastive"] > 0:
            h, _ = bert_forward(self.bert, ids, mask)
            tv = l2_normalize(self.contrast.text_projection(masked_mean(h, mask)))
            vv = l2_normalize(self.contrast.video_projection(features.mean(1)))
            out["contrastive"] = (self.contrast.loss(tv.float(), vv.float()), w["contrastive"])
            with torch.no_grad():
                self.contrast.similarity(tv, vv)  # ours keeps it for hard negatives
        if w["matching"] > 0:
            other_clip = mismatched_partners(b, ids.device)
            other_caption = mismatched_partners(b, ids.device)
            _, _, neg_v = self.forward(masked_ids, mask, features[other_clip], frame_mask)
            _, _, neg_t = self.forward(masked_ids[other_caption], mask[other_caption], features, frame_mask)
            negative = torch.cat([self.match_logit(neg_v), self.match_logit(neg_t)])
            out["matching"] = (matching_loss(self.match_logit(pooled).float(), negative.float()), w["matching"])
        return out


class LateFusion(nn.Module):
    def __init__(self, c, vision, fusion_hidden, video_input):
        super().__init__()
        self.text = HFBertModel(c)
        self.video, dim = frame_encoder(vision, *video_input)
        self.fusion = nn.Sequential(nn.Linear(c["hidden_size"] + dim, fusion_hidden), nn.ReLU(),
                                    nn.Linear(fusion_hidden, 1))

    def score(self, t, v):
        return self.fusion(torch.cat([t, v.to(t.dtype)], 1)).squeeze(1)

    def losses(self, batch, k):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b = ids.shape[0]
        h, _ = bert_forward(self.text, ids, mask)
        t = h[:, 0]
        v = self.video(batch["frames"]).view(b, k["frames"], -1).mean(1)
        positive = self.score(t, v)
        negative = self.score(t, v[mismatched_partners(b, ids.device)])
        return {"matching": (matching_loss(positive.float(), negative.float()), k["objectives"]["matching"])}


class DualEncoder(nn.Module):
    def __init__(self, c, vision, embed_dim, video_input):
        super().__init__()
        self.text = HFBertModel(c)
        self.video, dim = frame_encoder(vision, *video_input)
        self.contrast = ContrastiveHead(c["hidden_size"], dim, embed_dim)

    def losses(self, batch, k):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b = ids.shape[0]
        h, _ = bert_forward(self.text, ids, mask)
        t = l2_normalize(self.contrast.text_projection(masked_mean(h, mask)))
        v = l2_normalize(self.contrast.video_projection(self.video(batch["frames"]).view(b, k["frames"], -1).mean(1)))
        return {"contrastive": (self.contrast.loss(t.float(), v.float()), k["objectives"]["contrastive"])}


def build(k):
    c = bert_config(vocab_size=k["vocab_size"], max_position_embeddings=k["max_position_embeddings"],
                    **BERT_PRESETS[k["text"]])
    video_input = (k["frames"], k.get("frame_differences", False))  # frames per clip, differences
    if k["model"] == "late_fusion":
        return LateFusion(c, k["vision"], k["fusion_hidden"], video_input)
    if k["model"] == "dual_encoder":
        return DualEncoder(c, k["vision"], k["embed_dim"], video_input)
    return SingleStream(c, k["vision"], k["embed_dim"], video_input)


def synthetic_batch(k, device):
    b, t, s, l = k["batch_size"], k["frames"], k["image_size"], k["max_text_len"]
    ids = torch.full((b, l), PAD, dtype=torch.int64)
    mask = torch.zeros(b, l, dtype=torch.int64)
    words = torch.randint(5, k["vocab_size"], (b, l))
    for i, n in enumerate(k["caption_lengths"]):
        ids[i, :n] = words[i, :n]
        ids[i, 0], ids[i, n - 1] = CLS, SEP
        mask[i, :n] = 1
    frames = torch.randn(b * t, 3, s, s)  # the B·T frames, NCHW
    return {"frames": frames.to(device), "input_ids": ids.to(device), "attention_mask": mask.to(device)}


def run_case(name, ours, device, bf16, profile):
    k = ours["case"]
    torch.manual_seed(0)
    model = build(k).to(device).train()
    params = list(model.parameters())  # shared (tied) parameters once
    count = sum(p.numel() for p in params)
    print(f"{name}: {count} parameters (ours {ours['params']})", file=sys.stderr)
    if count != ours["params"]:
        sys.exit(f"torch_train_cpu: {name}: PyTorch's model has {count} parameters, ours {ours['params']}; "
                 "the two models differ")
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": k["weight_decay"]},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=k["lr"], betas=(k["beta1"], k["beta2"]), eps=k["eps"])
    batch = synthetic_batch(k, device)
    cuda = device.type == "cuda"

    phases = ["losses (forward)", "backward", "loss items", "clip_grad_norm", "AdamW"]
    phase_times = {p: [] for p in phases}

    def step():
        t = [time.perf_counter()]

        def mark(phase):
            if profile:
                if cuda:
                    torch.cuda.synchronize()
                now = time.perf_counter()
                phase_times[phase].append(now - t[0])
                t[0] = now

        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = model.losses(batch, k)
        loss = sum(value * weight for value, weight in terms.values() if weight)
        mark(phases[0])
        loss.backward()
        mark(phases[1])
        sum(value.item() for value, _ in terms.values()) + loss.item()  # the trainer logs every term
        mark(phases[2])
        torch.nn.utils.clip_grad_norm_(params, k["clip_grad_norm"])
        mark(phases[3])
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        mark(phases[4])

    for _ in range(k["warmup"]):
        step()
    for p in phases:
        phase_times[p].clear()
    times = []
    for _ in range(k["reps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(f"{name}: {seconds * 1e3:.1f} ms/step (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f} over "
          f"{len(times)}), {k['batch_size'] / seconds:.2f} samples/s", file=sys.stderr)
    if profile:
        for p in phases:
            print(f"  {p:<18} {statistics.median(phase_times[p]) * 1e3:9.1f} ms", file=sys.stderr)
    print(json.dumps({"name": name, "seconds": seconds, "flops": 0, "bytes": 0, "samples": k["batch_size"],
                      "params": count}), flush=True)


def main():
    global ATTENTION
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True, help="bench_train_cpu's JSON lines: the cases and their shapes")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: PyTorch's own choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (CPU or GPU)")
    ap.add_argument("--profile", action="store_true", help="the median time of each phase of the step (stderr)")
    ap.add_argument("--attention", choices=["auto", "eager", "sdpa"], default="auto",
                    help="auto: torch's scaled_dot_product_attention where it exists (as transformers does), else eager")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    if args.attention == "sdpa" and not has_sdpa:
        sys.exit(f"torch_train_cpu: --attention sdpa: torch {torch.__version__} has no scaled_dot_product_attention")
    ATTENTION = "sdpa" if args.attention == "sdpa" or (args.attention == "auto" and has_sdpa) else "eager"
    if ATTENTION == "sdpa":
        HFBertSelfAttention.forward = sdpa_self_attention
    device = torch.device(args.device)
    print(f"torch_train_cpu: torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, {ATTENTION} attention", file=sys.stderr)
    with open(args.cases) as f:
        cases = [json.loads(line) for line in f if line.startswith("{")]
    for ours in cases:
        run_case(ours["name"], ours, device, args.bf16, args.profile)


if __name__ == "__main__":
    main()
