"""Data, loss and evaluation for the Seq2Seq experiments.

* Tokeniser -- Moses (``tokenizer.py``), lower-cased; BLEU with sacreBLEU on Moses-detokenised
  hypotheses against the raw references, case-insensitive.
* ``Vocab`` -- from the training split only; tokens seen fewer than ``min_freq`` times
  map to <unk>.
* ``TranslationTask`` -- teacher-forced cross-entropy on length-bucketed minibatches.
* ``ReversalTask`` -- the synthetic task: copy a random symbol sequence in reverse order.
* ``translate`` / ``corpus_bleu`` / ``reversal_accuracy`` -- greedy decoding and scores.
"""
from __future__ import annotations

import collections
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlpapers.papers.seq2seq.decoding import beam_search, greedy_decode
from mlpapers.papers.seq2seq.model import BOS, EOS, PAD, UNK, Seq2Seq

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]  # ids PAD, UNK, BOS, EOS


def read_lines(path: str | Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class Vocab:
    """token <-> id; ids 0-3 are the specials."""

    def __init__(self, itos: list[str]):
        if itos[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: list[list[str]], min_freq: int) -> "Vocab":
        counts = collections.Counter(t for s in sentences for t in s)
        # most frequent first, ties broken alphabetically: deterministic
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(SPECIALS + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids) -> list[str]:
        """ids up to (not including) the first <eos>; <pad>/<bos> dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out


def pad_batch(seqs: list[list[int]], bos: bool = False, eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """List of id lists -> (B, T) tensor right-padded with <pad>, and lengths (B,)."""
    seqs = [([BOS] if bos else []) + list(s) + ([EOS] if eos else []) for s in seqs]
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lens.max())), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lens


def make_batch(src: list[list[int]], tgt: list[list[int]]):
    """(src, src_len, tgt_in = <bos> y, tgt_out = y <eos>)."""
    x, x_len = pad_batch(src)
    y, _ = pad_batch(tgt, bos=True, eos=True)  # (B, T + 1)
    return x, x_len, y[:, :-1], y[:, 1:]


def seq2seq_loss(model: Seq2Seq, batch, reduction: str = "mean") -> torch.Tensor:
    """Token-level cross-entropy of teacher-forced predictions over real target tokens.

    Padding is excluded twice over: the softmax layer W_s (the costliest matmul) runs only
    on non-<pad> positions, and ``ignore_index`` guards the cross-entropy.
    """
    src, src_len, tgt_in, tgt_out = batch
    h_tilde, _ = model.states(src, src_len, tgt_in)  # (B, T, H)
    keep = tgt_out != PAD  # (B, T)
    dec = model.decoder
    logits = dec.W_s(dec.drop(h_tilde[keep]))  # (N, V), N real target tokens
    return F.cross_entropy(logits, tgt_out[keep], ignore_index=PAD, reduction=reduction)


class TranslationTask:
    """Teacher forcing on bucketed batches: sentences of similar source length share a batch."""

    def __init__(self, model: Seq2Seq, src: list[list[int]], tgt: list[list[int]], batch_size: int,
                 val: tuple[list[list[int]], list[list[int]]] | None = None):
        self.model, self.src, self.tgt, self.batch_size, self.val = model, src, tgt, batch_size, val
        self.device = torch.device("cpu")  # set by fit()
        self._batches: list[np.ndarray] = []
        self._lens = np.array([len(s) for s in src])

    def _epoch(self, generator: torch.Generator) -> list[np.ndarray]:
        """Shuffle, sort chunks of 50 batches by source length, cut into batches, shuffle batches."""
        perm = torch.randperm(len(self.src), generator=generator).numpy()
        chunk = 50 * self.batch_size
        batches = []
        for i in range(0, len(perm), chunk):
            part = perm[i : i + chunk]
            part = part[np.argsort(self._lens[part], kind="stable")]
            batches += [part[j : j + self.batch_size] for j in range(0, len(part), self.batch_size)]
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[k] for k in order]

    def train_batch(self, step: int, generator: torch.Generator):
        if not self._batches:
            self._batches = self._epoch(generator)
        idx = self._batches.pop()
        return make_batch([self.src[i] for i in idx], [self.tgt[i] for i in idx])

    def loss(self, batch) -> torch.Tensor:
        return seq2seq_loss(self.model, batch)

    def evaluate(self) -> dict[str, float]:
        """Teacher-forced validation loss (per target token)."""
        if self.val is None:
            return {}
        src, tgt = self.val
        total, count = 0.0, 0
        for i in range(0, len(src), 256):
            batch = [t.to(self.device) for t in make_batch(src[i : i + 256], tgt[i : i + 256])]
            n = int((batch[3] != PAD).sum())
            total += seq2seq_loss(self.model, batch).item() * n
            count += n
        return {"val_loss": total / count}


@torch.no_grad()
def translate(model: Seq2Seq, src: list[list[int]], max_len: int, device: torch.device, beam: int = 1,
              alpha: float = 1.0, batch: int = 200, attention: bool = False):
    """Translations (id lists without <eos>); beam = 1 is greedy search.

    With ``attention`` also returns, per sentence, the weights (L+1, S) the model puts on
    the source while producing its own output (incl. <eos>), from one teacher-forced pass
    over the hypotheses; else a list of None.
    """
    model.eval()
    order = np.argsort([len(s) for s in src], kind="stable")  # similar lengths together
    hyps: list[list[int]] = [[] for _ in src]
    atts: list[np.ndarray | None] = [None for _ in src]
    for i in range(0, len(src), batch):
        idx = order[i : i + batch]
        x, x_len = pad_batch([src[j] for j in idx])
        x, x_len = x.to(device), x_len.to(device)
        if beam == 1:
            ys, _ = greedy_decode(model, x, x_len, max_len)
        else:
            ys = beam_search(model, x, x_len, max_len, beam, alpha)
        rows = [r[: r.index(EOS)] if EOS in r else r for r in ys.tolist()]
        for k, j in enumerate(idx):
            hyps[j] = rows[k]
        if attention and model.decoder.attn is not None:
            y, _ = pad_batch(rows, bos=True, eos=True)  # <bos> y <eos>
            _, a = model.states(x, x_len, y[:, :-1].to(device))  # (b, L+1, S)
            for k, j in enumerate(idx):
                atts[j] = a[k, : len(rows[k]) + 1, : len(src[j])].cpu().numpy()
    return hyps, atts


def corpus_bleu(hyps: list[str], refs: list[str]):
    """sacreBLEU corpus BLEU (13a tokenisation, case-insensitive); returns (score, signature)."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(lowercase=True)
    score = bleu.corpus_score(hyps, [refs])
    return score.score, str(bleu.get_signature())


# ------------------------------------------------------------------- synthetic reversal


def reversal_pairs(n: int, lengths: torch.Tensor, n_symbols: int, generator: torch.Generator):
    """n random sequences over symbols 4..4+n_symbols-1 with the given lengths, and their reversals."""
    width = int(lengths.max())
    sym = torch.randint(len(SPECIALS), len(SPECIALS) + n_symbols, (n, width), generator=generator)
    src = [sym[i, : int(lengths[i])].tolist() for i in range(n)]
    return src, [s[::-1] for s in src]


class ReversalTask:
    """Fresh random sequences every step: lengths uniform in [min_len, max_len]."""

    def __init__(self, model: Seq2Seq, n_symbols: int, min_len: int, max_len: int, batch_size: int):
        self.model, self.n_symbols, self.min_len, self.max_len = model, n_symbols, min_len, max_len
        self.batch_size = batch_size
        self.device = torch.device("cpu")

    def train_batch(self, step: int, generator: torch.Generator):
        lengths = torch.randint(self.min_len, self.max_len + 1, (self.batch_size,), generator=generator)
        return make_batch(*reversal_pairs(self.batch_size, lengths, self.n_symbols, generator))

    def loss(self, batch) -> torch.Tensor:
        return seq2seq_loss(self.model, batch)


def reversal_accuracy(hyps: list[list[int]], tgts: list[list[int]]) -> tuple[float, float]:
    """(sequence exact match, token accuracy): a token counts if hyp[i] == tgt[i] for i < len(tgt)."""
    exact = np.mean([h == t for h, t in zip(hyps, tgts)])
    tok = np.mean([sum(a == b for a, b in zip(h, t)) / len(t) for h, t in zip(hyps, tgts)])
    return float(exact), float(tok)
