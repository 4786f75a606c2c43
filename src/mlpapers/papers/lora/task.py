"""The new domain for LoRA: the English side of Multi30k as one character stream.

The pretrained model is the FoX stage's character Transformer on Tiny Shakespeare, whose
vocabulary is the 65 characters of that text (``data/prepared/fox/vocab.json``). Multi30k's
English captions use a few characters Shakespeare never does (digits other than 3, double
quotes, brackets, ``#``, ``%``, ...: about 0.04% of the characters). The model has no row for
them, so they are mapped *explicitly*, before any model sees the text, by ``OOV_MAP``:

* a double quote or backtick -> ``'`` (the quote character Shakespeare has);
* a digit -> ``3`` (the only digit in Tiny Shakespeare);
* an opening or closing bracket -> ``,`` (a parenthetical is a comma-delimited aside);
* anything else outside the vocabulary -> ``&`` (a rare Shakespeare symbol, used as "other").

The mapping is applied alike to the train, validation and test splits, so every perplexity
is over the mapped text; how many characters were mapped is recorded in the metrics. The
alternative, new embedding rows, would change the base model's shape (and its tied output
layer), so full fine-tuning and LoRA would no longer adapt the same network.

Sentences are joined with ``\\n`` (in the vocabulary), one stream per split; training reuses
the FoX ``LMTask`` (random contiguous windows, next-character cross-entropy).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

OTHER = "&"
OOV_MAP = {'"': "'", "`": "'", "(": ",", ")": ",", **{d: "3" for d in "0123456789"}}


def char_map(vocab: list[str]) -> dict[str, str]:
    """The replacement for a character outside ``vocab`` (identity inside it)."""
    for target in {*OOV_MAP.values(), OTHER}:
        if target not in vocab:
            raise ValueError(f"the pretrained vocabulary has no {target!r}; OOV_MAP needs another target")
    return {c: (c if c in vocab else OOV_MAP.get(c, OTHER)) for c in vocab + list(OOV_MAP)}


def encode(text: str, vocab: list[str]) -> tuple[np.ndarray, int]:
    """Characters -> pretrained ids after the explicit OOV mapping; returns (ids, chars mapped)."""
    stoi = {c: i for i, c in enumerate(vocab)}
    cmap = char_map(vocab)
    mapped = 0
    ids = np.empty(len(text), dtype=np.int64)
    for i, c in enumerate(text):
        if c not in stoi:
            mapped += 1
            c = cmap.get(c, OTHER)
        ids[i] = stoi[c]
    return ids, mapped


def read_split(folder: Path, split: str) -> str:
    """One Multi30k English split as text: sentences stripped and joined by newlines."""
    with gzip.open(folder / f"{split}.en.gz", "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return "\n".join(line for line in lines if line) + "\n"


def load_domain(folder: Path, vocab: list[str], splits: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, int]]:
    """{split: (ids (N,), characters mapped)} for the given Multi30k English splits."""
    out = {}
    for split in splits:
        ids, mapped = encode(read_split(folder, split), vocab)
        out[split] = (torch.from_numpy(ids), mapped)
    return out
