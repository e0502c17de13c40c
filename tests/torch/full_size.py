#!/usr/bin/python3
"""PyTorch's side of the full-size checks in tests/torch/*.cpp. Writes into OUT (a folder the test owns):

    full_size.py bert OUT       a bert-base-sized BertModel (Hugging Face semantics and names, from
                                tests/golden/make_model_fixtures.py) with random weights: OUT/config.json,
                                OUT/model.safetensors, OUT/io.safetensors (input_ids, token_type_ids,
                                attention_mask (B, T) with padding; last_hidden_state, pooler_output)
    full_size.py resnet50 OUT   torchvision's resnet50 with random weights and BatchNorm statistics, eval mode,
                                one 224×224 image: OUT/resnet50.safetensors (torchvision's state_dict),
                                OUT/io.safetensors (x (1, 224, 224, 3) channels-last; logits (1, 1000))
    full_size.py hf FOLDER IO OUT
                                (run by .venv-hf/bin/python, which has `transformers`) loads FOLDER with
                                transformers.BertModel.from_pretrained and writes its last_hidden_state and
                                pooler_output for IO's inputs to OUT
    full_size.py hf_new VOCAB OUT
                                (.venv-hf) a small transformers BertModel with random weights over VOCAB's
                                tokens, written by save_pretrained(OUT, safe_serialization=True), and VOCAB
                                copied to OUT/vocab.txt: a Hugging Face BERT folder as users bring them
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))

import torch  # noqa: E402

from make_fixtures import save_safetensors  # noqa: E402


def load_safetensors(path):
    """Enough of a reader for the files make_fixtures.save_safetensors writes (F32 and I64)."""
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:end]), dtype=kinds[e["dtype"]]).reshape(e["shape"])
    return out


def bert(out):
    from make_model_fixtures import HFBertModel, bert_config, bert_inputs, randomize_
    torch.manual_seed(11)
    c = bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HFBertModel(c).eval()
    randomize_(model, std=0.03)
    ids, types, mask = bert_inputs(torch.Generator().manual_seed(12), 2, [12, 7], c["vocab_size"], c["pad_token_id"])
    with torch.no_grad():
        h, pooled = model(ids, types, mask)
    save_safetensors(os.path.join(out, "model.safetensors"), list(model.state_dict().items()))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f)
    save_safetensors(os.path.join(out, "io.safetensors"),
                     [("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask),
                      ("last_hidden_state", h), ("pooler_output", pooled)])


def resnet50(out):
    import torchvision
    torch.manual_seed(13)
    model = torchvision.models.resnet50().eval()  # torchvision's own Kaiming init: random convolutions
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif ("bn" in name or "downsample.1" in name) and name.endswith("weight"):
                t.normal_(1.0, 0.1)
            elif name.endswith("bias"):
                t.normal_(0.0, 0.1)
    x = torch.randn(1, 224, 224, 3, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        logits = model(x.permute(0, 3, 1, 2))
    save_safetensors(os.path.join(out, "resnet50.safetensors"), list(model.state_dict().items()))
    save_safetensors(os.path.join(out, "io.safetensors"), [("x", x), ("logits", logits)])


def hf(folder, io_path, out):
    from transformers import BertModel
    model, info = BertModel.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"transformers loaded {folder} with problems: {problems}")
    model.eval()
    io = load_safetensors(io_path)
    with torch.no_grad():
        r = model(input_ids=io["input_ids"], token_type_ids=io["token_type_ids"], attention_mask=io["attention_mask"])
    save_safetensors(out, [("last_hidden_state", r.last_hidden_state), ("pooler_output", r.pooler_output)])


def hf_new(vocab, out):
    import shutil
    from transformers import BertConfig, BertModel
    with open(vocab, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f if line.rstrip("\n")]
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    shutil.copy(vocab, os.path.join(out, "vocab.txt"))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("VB_TORCH_THREADS", "2")))
    {"bert": bert, "resnet50": resnet50, "hf": hf, "hf_new": hf_new}[sys.argv[1]](*sys.argv[2:])
