#!/usr/bin/python3
"""Writes the PyTorch golden fixtures of the models that tests/cpu/models_bert.cpp and models_resnet.cpp read.

Regenerate (Debian's python3-torch and python3-torchvision; `transformers` is not needed):

    /usr/bin/python3 tests/golden/make_model_fixtures.py

BERT: Hugging Face's BertForPreTraining re-implemented in plain PyTorch, module for module, so that its
state_dict names are Hugging Face's (class HFBert* below; tests/torch/full_size.py and
bench/torch_models_cpu.py reuse it):
  models_bert.safetensors     the checkpoint, as save_pretrained writes it: `bert.` and `cls.` names, the
                              embeddings.position_ids buffer, no tied decoder weight
  models_bert_config.json     its config.json
  models_bert_io.safetensors  input_ids, token_type_ids, attention_mask (B, T) int64, with padding;
                              last_hidden_state, pooler_output, prediction_logits, seq_relationship_logits;
                              w.<output> the fixed random weights of the loss
                              L = Σ_outputs sum(output * w.<output>), and grad.<name> = dL/d<name> for every
                              parameter under its checkpoint name (the word embeddings' gradient includes
                              the tied decoder's share).

ResNet: torchvision's own BasicBlock / Bottleneck and ResNet._make_layer / forward, with the stem and stage
widths scaled down (TinyResNet below: torchvision fixes them at 64, 128, 256, 512):
  models_resnet_<v>.safetensors     the state_dict exactly as torchvision gives it (OIHW convolutions,
                                    num_batches_tracked int64), random weights and BatchNorm statistics
  models_resnet_<v>_io.safetensors  x (N, H, W, 3) channels-last; for each mode m in eval, train:
                                    m.features (N, C) (after the average pool), m.logits (N, classes),
                                    m.w.features, m.w.logits (loss weights as above), m.grad.x (N, H, W, 3),
                                    m.grad.<name> for every parameter (convolution gradients OIHW, as
                                    torchvision's names and layout: the test permutes them);
                                    train.state.<name> every BatchNorm buffer after the one training forward
<v>: basic (BasicBlock [1, 1, 1, 1], width 8, 10 classes) and bottleneck (Bottleneck [1, 1, 1, 1], width 4,
10 classes). Eval and train start from the same weights and buffers.

Weights are random, not the init defaults: N(0, 0.2) weights, non-zero biases, LayerNorm/BatchNorm scales
around 1, running means around 0 and running variances in [0.5, 1.5]. Deterministic (fixed seeds, one thread).
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tvr

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import save_safetensors  # noqa: E402  (the one safetensors writer of the fixtures)


# ---------------------------------------------------------------- BERT as Hugging Face builds it

class HFBertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c["pad_token_id"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])
        self.register_buffer("position_ids", torch.arange(c["max_position_embeddings"]).expand((1, -1)))

    def forward(self, input_ids, token_type_ids):
        t = input_ids.shape[1]
        h = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(self.position_ids[:, :t]))
        return self.dropout(self.LayerNorm(h))


class HFBertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        self.query = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.key = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.value = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.dropout = nn.Dropout(c["attention_probs_dropout_prob"])

    def split(self, x):  # (B, T, H·D) -> (B, H, T, D)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, extended_mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + extended_mask
        p = self.dropout(F.softmax(scores, dim=-1))
        ctx = (p @ v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], -1)


class HFBertSubLayerOutput(nn.Module):  # BertSelfOutput and BertOutput: LayerNorm(dropout(dense(h)) + residual)
    def __init__(self, n_in, c):
        super().__init__()
        self.dense = nn.Linear(n_in, c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class HFBertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = HFBertSelfAttention(c)
        self.output = HFBertSubLayerOutput(c["hidden_size"], c)

    def forward(self, x, m):
        return self.output(self.self(x, m), x)


class HFBertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))  # "gelu": the erf form


class HFBertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = HFBertAttention(c)
        self.intermediate = HFBertIntermediate(c)
        self.output = HFBertSubLayerOutput(c["intermediate_size"], c)

    def forward(self, x, m):
        a = self.attention(x, m)
        return self.output(self.intermediate(a), a)


class HFBertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([HFBertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, m):
        for layer in self.layer:
            x = layer(x, m)
        return x


class HFBertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class HFBertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = HFBertEmbeddings(c)
        self.encoder = HFBertEncoder(c)
        self.pooler = HFBertPooler(c)

    def forward(self, input_ids, token_type_ids, attention_mask):
        # get_extended_attention_mask: (1 − mask) · finfo.min, broadcast over heads and queries.
        dtype = self.embeddings.word_embeddings.weight.dtype
        extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        h = self.encoder(self.embeddings(input_ids, token_type_ids), extended)
        return h, self.pooler(h)


class HFBertPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h):
        return self.LayerNorm(F.gelu(self.dense(h)))


class HFBertLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = HFBertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.decoder.bias = self.bias

    def forward(self, h):
        return self.decoder(self.transform(h))


class HFBertPreTrainingHeads(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = HFBertLMPredictionHead(c)
        self.seq_relationship = nn.Linear(c["hidden_size"], 2)

    def forward(self, h, pooled):
        return self.predictions(h), self.seq_relationship(pooled)


class HFBertForPreTraining(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = HFBertModel(c)
        self.cls = HFBertPreTrainingHeads(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied

    def forward(self, input_ids, token_type_ids, attention_mask):
        h, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        mlm, nsp = self.cls(h, pooled)
        return h, pooled, mlm, nsp


def bert_config(**overrides):
    c = {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
         "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
         "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
         "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 0,
         "initializer_range": 0.02, "position_embedding_type": "absolute"}
    c.update(overrides)
    return c


def randomize_(module, std=0.2):
    """Random weights that are not any init's defaults: N(0, std) matrices, biases N(0, 0.1), norm scales
    1 + N(0, 0.1), running means N(0, 0.2), running variances U(0.5, 1.5)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "LayerNorm" in name or ".bn" in name or name.startswith("bn") or "downsample.1" in name
            if leaf == "bias":
                p.normal_(0.0, 0.1)
            elif is_norm and p.dim() == 1:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, std)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)


def bert_state_dict(model):
    """What save_pretrained keeps: every entry but the decoder weight and bias tied to other entries."""
    return [(n, t) for n, t in model.state_dict().items() if not n.startswith("cls.predictions.decoder.")]


def bert_inputs(gen, batch, lengths, vocab, pad):
    t = max(lengths)
    ids = torch.randint(1, vocab, (batch, t), generator=gen)
    types = torch.zeros(batch, t, dtype=torch.int64)
    mask = torch.zeros(batch, t, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, n:] = pad
        mask[b, :n] = 1
        types[b, n // 2:n] = 1  # a second segment in each row
    ids[:, 0] = 2  # a [CLS]-like id
    return ids, types, mask


def write_bert():
    torch.manual_seed(1)
    c = bert_config(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=24, max_position_embeddings=16, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    model = HFBertForPreTraining(c).eval()
    randomize_(model)
    ids, types, mask = bert_inputs(torch.Generator().manual_seed(2), 3, [7, 4, 6], c["vocab_size"], c["pad_token_id"])
    outputs = dict(zip(["last_hidden_state", "pooler_output", "prediction_logits", "seq_relationship_logits"],
                       model(ids, types, mask)))
    gen = torch.Generator().manual_seed(3)
    weights = {k: torch.randn(v.shape, generator=gen) for k, v in outputs.items()}
    sum((v * weights[k]).sum() for k, v in outputs.items()).backward()

    save_safetensors(os.path.join(HERE, "models_bert.safetensors"), bert_state_dict(model))
    with open(os.path.join(HERE, "models_bert_config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    records = [("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask)]
    records += [(k, v.detach()) for k, v in outputs.items()]
    records += [(f"w.{k}", v) for k, v in weights.items()]
    records += [(f"grad.{n}", p.grad) for n, p in model.named_parameters()]
    path = os.path.join(HERE, "models_bert_io.safetensors")
    save_safetensors(path, records, {"generator": "tests/golden/make_model_fixtures.py", "torch": torch.__version__})
    print(f"{path}: {len(records)} tensors, {os.path.getsize(path)} bytes")


# ---------------------------------------------------------------- torchvision ResNet, narrower

class TinyResNet(tvr.ResNet):
    """torchvision's ResNet with stem and stage widths width, 2·width, 4·width, 8·width (torchvision fixes
    64): the same blocks, _make_layer and forward, so the same names and semantics."""

    def __init__(self, block, layers, width, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)


def resnet_features(m, x):
    """torchvision's ResNet._forward_impl up to the flattened average pool."""
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def resnet_case(model, x_nhwc, gen, mode):
    model.train(mode == "train")
    x = x_nhwc.clone().requires_grad_(True)
    model.zero_grad()
    features = resnet_features(model, x.permute(0, 3, 1, 2))
    logits = model.fc(features)
    w_features = torch.randn(features.shape, generator=gen)
    w_logits = torch.randn(logits.shape, generator=gen)
    ((features * w_features).sum() + (logits * w_logits).sum()).backward()
    records = [(f"{mode}.features", features.detach()), (f"{mode}.logits", logits.detach()),
               (f"{mode}.w.features", w_features), (f"{mode}.w.logits", w_logits), (f"{mode}.grad.x", x.grad)]
    records += [(f"{mode}.grad.{n}", p.grad.clone()) for n, p in model.named_parameters()]
    return records


def write_resnet(variant, block, width, image):
    torch.manual_seed(4)
    model = TinyResNet(block, [1, 1, 1, 1], width, 10)
    randomize_(model, std=0.3)
    state = [(n, t.clone()) for n, t in model.state_dict().items()]
    save_safetensors(os.path.join(HERE, f"models_resnet_{variant}.safetensors"), state)

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, image, image, 3, generator=gen)
    records = [("x", x)] + resnet_case(model, x, gen, "eval")
    records += resnet_case(model, x, gen, "train")  # updates the running statistics
    records += [(f"train.state.{n}", b.clone()) for n, b in model.named_buffers()]
    path = os.path.join(HERE, f"models_resnet_{variant}_io.safetensors")
    save_safetensors(path, records, {"generator": "tests/golden/make_model_fixtures.py", "torch": torch.__version__})
    print(f"{path}: {len(records)} tensors, {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(1)
    write_bert()
    write_resnet("basic", tvr.BasicBlock, 8, 40)
    write_resnet("bottleneck", tvr.Bottleneck, 4, 40)


if __name__ == "__main__":
    main()
