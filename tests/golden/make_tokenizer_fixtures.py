#!/usr/bin/env python3
"""Expected outputs of Hugging Face's slow (pure Python) BertTokenizer on tricky strings, for tests/cpu/tokenizer.cpp.

Writes tests/golden/tokenizer_cases.json: the small vocabulary used (the C++ test writes it to a vocab.txt of its
own) and, for an uncased and a cased tokenizer over it, each string's tokens, ids and decodings, plus pair
encodings with longest-first truncation and padding.

Needs `transformers` (any version with the slow tokenizer: BertTokenizerLegacy in 5.x, BertTokenizer in 4.x);
no network and no model download. Run: python3 tests/golden/make_tokenizer_fixtures.py
"""
import json
import os
import string
import sys
import tempfile

try:
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as SlowBertTokenizer
except ImportError:
    from transformers import BertTokenizer as SlowBertTokenizer  # transformers 4.x: the slow one
import transformers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = (list(string.ascii_lowercase) + list(string.ascii_uppercase) + list(string.digits) +
         list(".,!?'\"()-$:;[]") + ["¿", "—", "。", "、", "«", "»", "…", "é", "É", "ö", "ï", "ç",
                                    "ο", "δ", "σ", "ς", "φ", "Ο", "Δ", "Σ", "中", "国", "人", "日", "本", "ᄒ"])
CONTINUATIONS = ["##" + c for c in list(string.ascii_lowercase) + list(string.ascii_uppercase) + list(string.digits) +
                 ["é", "ö", "ï", "ç", "ο", "δ", "σ", "ς", "φ", "Ο", "Δ", "Σ", "ᅡ", "ᆫ", "\u0301"]]
WORDS = ["hello", "world", "the", "un", "##aff", "##able", "play", "##ing", "##ed", "run", "##ning", "cafe",
         "café", "naive", "resume", "Hello", "World", "how", "are", "you", "am", "fine", "don", "it", "οδος",
         "οδος", "σοφος", "한", "istanbul", "coop", "00", "Qu", "##é"]

TEXTS = [
    "Hello, World!",
    "Héllo wörld café naïve résumé",
    "unaffable playing played running",
    "a\x00b\ufffdc\u200bd\x07e\tf\ng\rh",
    "x\u00a0y\u3000z\u2028w\u2029v",
    "中国人 and 日本。",
    "¿Qué? —dijo— «hola»…",
    "[CLS] hello [SEP] world [MASK]",
    "hello[SEP]world",
    "[cls] [Sep] lower",
    "[CL\x00S] [MASK][MASK] [PAD][UNK]",
    "ΟΔΟΣ ΟΔΟΣ. ΟΔΟΣ's Σ σοφός",
    "İstanbul",
    "a" * 100,
    "a" * 101,
    "é" * 101,
    "xyz© fine",
    "cafe\u0301 e\u0301",
    "\ufb01ne",
    "한",
    "don't it's",
    "co\u00adop \ue000x \u0378y",
    "smile 😀 ½",
    "$5.00",
    "  leading and trailing  ",
    "",
    "Σ",
]

# (first, second, max_length, pad): truncate longest-first to max_length (0: no limit); pad: also pad to it.
PAIRS = [
    ("Hello world, how are you?", "I am fine.", 0, False),
    ("Hello world, how are you?", "I am fine.", 10, False),
    ("hello", "the world is fine and you are fine", 9, False),
    ("a b c d e f", "g h i j k l", 9, False),
    ("a b c d e f", "g h i j k l", 10, True),
    ("a b c d e f g", "h i j k l", 8, False),
    ("a b c", "d", 5, False),
    ("hello", "world", 12, True),
    ("", "hello", 6, True),
]


def main():
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_cases.json")
    vocab = []
    for t in SPECIALS + CHARS + CONTINUATIONS + WORDS:
        if t not in vocab:
            vocab.append(t)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vocab.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in vocab))
        result = {"generator": f"transformers {transformers.__version__}, {SlowBertTokenizer.__name__} (slow)",
                  "vocab": vocab, "modes": []}
        for lower in (True, False):
            tok = SlowBertTokenizer(path, do_lower_case=lower)
            cases = []
            for text in TEXTS:
                ids = tok.encode(text, add_special_tokens=True)
                cases.append({
                    "text": text,
                    "tokens": tok.tokenize(text),
                    "ids": ids,
                    "decoded": tok.decode(ids),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                })
            pairs = []
            for a, b, max_length, pad in PAIRS:
                kwargs = {"return_token_type_ids": True, "return_attention_mask": True}
                if max_length:
                    kwargs.update(truncation="longest_first", max_length=max_length)
                if pad:
                    kwargs.update(padding="max_length")
                enc = tok(a, b, **kwargs)
                pairs.append({"first": a, "second": b, "max_length": max_length, "pad_to": max_length if pad else 0,
                              "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                              "attention_mask": enc["attention_mask"]})
            result["modes"].append({"lower_case": lower, "cases": cases, "pairs": pairs})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
