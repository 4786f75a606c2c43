"""Data, language-modelling loss and evaluations for the FoX experiments.

* Tiny Shakespeare, character level: first 90% of ``input.txt`` for training, the last 10%
  for validation, each one contiguous stream (as nanoGPT's ``shakespeare_char``).
* WikiText-2, the seed's word-level protocol: lower-cased, whitespace-split words, one
  ``<eos>`` per line (as PyTorch's word_language_model example), a vocabulary of the most
  frequent training words plus ``<unk>`` and ``<eos>``.
* ``LMTask`` -- random contiguous training windows of ``context`` tokens (nanoGPT's
  ``get_batch``), next-token cross-entropy, validation loss for ``fit()``'s curves.
* ``position_loss`` -- mean loss at every position of non-overlapping windows (extrapolation).
* ``decode_check``, ``train_throughput`` -- experiments 3-4 of the issue (the gate analysis is in
  ``analysis.py``).
"""
from __future__ import annotations

import collections
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlpapers.papers.fox.model import LM, cache_bytes
from mlpapers.train import autocast, make_optimizer

UNK, EOS = "<unk>", "<eos>"


# ------------------------------------------------------------------------- data


def char_corpus(text: str, val_fraction: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Characters -> ids (vocabulary: sorted set of the whole text, as nanoGPT); split by position."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
    n_train = int(len(ids) * (1 - val_fraction))  # first 90% train, last 10% validation
    return ids[:n_train], ids[n_train:], chars


def wikitext_words(path: str | Path) -> list[str]:
    """The seed's protocol: each line lower-cased, split on whitespace, followed by <eos>."""
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words += line.lower().split() + [EOS]
    return words


def wikitext_vocab(train_words: list[str], size: int) -> list[str]:
    """<unk>, <eos>, then the (size - 2) most frequent training words (ties: first seen)."""
    counts = collections.Counter(w for w in train_words if w not in (UNK, EOS))
    return [UNK, EOS] + [w for w, _ in counts.most_common(size - 2)]


def wikitext_corpus(folder: str | Path, vocab_size: int, split: str = "valid"
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train ids, ``split`` ids, vocabulary) from wiki.{train,valid,test}.tokens in ``folder``."""
    folder = Path(folder)
    train_file = folder / "wiki.train.tokens"
    if not train_file.is_file():
        raise FileNotFoundError(
            f"{train_file}: WikiText-2's training split is missing (the offline mirror holds only "
            "wiki.valid.tokens and wiki.test.tokens). Download wikitext-2-v1.zip from the URL in "
            "`mlpapers datasets`, put wiki.train.tokens there, or set fox.data.corpus: tinyshakespeare")
    train = wikitext_words(train_file)
    vocab = wikitext_vocab(train, vocab_size)
    stoi = {w: i for i, w in enumerate(vocab)}
    to_ids = lambda ws: np.array([stoi.get(w, 0) for w in ws], dtype=np.int64)  # noqa: E731  0 = <unk>
    return to_ids(train), to_ids(wikitext_words(folder / f"wiki.{split}.tokens")), vocab


def windows(ids: torch.Tensor, length: int, max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (input, target) windows of ``length`` from one stream: (N, length) each."""
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    n = (len(ids) - 1) // length
    if n < 1:
        raise ValueError(f"a stream of {len(ids)} tokens holds no window of {length}; lower the length")
    return ids[: n * length].view(n, length), ids[1 : n * length + 1].view(n, length)


# ------------------------------------------------------------------------- task


class LMTask:
    """Next-token prediction on random windows of one token stream (fit()'s task)."""

    def __init__(self, model: LM, train_ids: torch.Tensor, val_ids: torch.Tensor, batch_size: int,
                 context: int, eval_windows: int):
        self.model, self.train_ids, self.batch_size, self.context = model, train_ids, batch_size, context
        self.val = windows(val_ids, context)
        self.val = (self.val[0][:eval_windows], self.val[1][:eval_windows])
        self.device = torch.device("cpu")  # set by fit()

    def train_batch(self, step: int, generator: torch.Generator):
        start = torch.randint(len(self.train_ids) - self.context - 1, (self.batch_size,), generator=generator)
        offs = start[:, None] + torch.arange(self.context + 1)  # (B, T+1)
        chunk = self.train_ids[offs]
        return chunk[:, :-1], chunk[:, 1:]  # inputs, next-token targets

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    def evaluate(self) -> dict[str, float]:
        return {"val_loss": float(position_loss(self.model, *self.val, self.device).mean())}


@torch.no_grad()
def loss_matrix(model: LM, x: torch.Tensor, y: torch.Tensor, device: torch.device, tokens: int = 8192) -> torch.Tensor:
    """Next-token loss of every position of every window: x, y (N, T) -> (N, T), float32."""
    batch = max(1, tokens // x.shape[1])  # windows per forward pass
    out = []
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch].to(device)).float()  # (b, T, V)
        out.append(F.cross_entropy(logits.transpose(1, 2), y[i : i + batch].to(device), reduction="none").cpu())
    return torch.cat(out)


def position_loss(model: LM, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean next-token loss at each position over windows x, y (N, T) -> (T,), in float32."""
    return loss_matrix(model, x, y, device).double().mean(0).float()


# ------------------------------------------------------------------ experiments 3-5


@torch.no_grad()
def decode_check(model: LM, ids: torch.Tensor, memory_at: tuple[int, ...]) -> dict:
    """Decode ``ids`` (T,) token by token with the cache; compare with the parallel forward.

    Done twice: with the model as it is (float32) and with a float64 copy. In float32 the two
    paths differ by rounding that grows with length (|c_t| grows linearly, and both paths
    subtract large cumulative sums); in float64 that rounding is ~10^-9 times smaller, so the
    float64 difference measures the algorithm. Returns both max |logits_parallel -
    logits_incremental|, the largest |logit| (the scale for a relative tolerance) and the
    float32 cache bytes at ``memory_at``.
    """
    out: dict = {}
    for name, m in (("fp32", model), ("fp64", copy.deepcopy(model).double())):
        m.eval()
        full = m(ids[None])[0]  # (T, V)
        cache, steps, memory = m.init_cache(), [], {}
        for t in range(len(ids)):
            steps.append(m.step(ids[t : t + 1], cache, t)[0])
            if t + 1 in memory_at:
                memory[t + 1] = cache_bytes(cache)
        out[f"max_abs_diff_{name}"] = (full - torch.stack(steps)).abs().max().item()
        if name == "fp32":
            out["max_abs_logit"], out["cache_bytes"] = full.abs().max().item(), memory
    out["rel_diff_fp64"] = out["max_abs_diff_fp64"] / out["max_abs_logit"]
    return out


def train_throughput(models: dict[str, LM], ids: torch.Tensor, batch_size: int, context: int,
                     precision: str, steps: int, rounds: int, seed: int) -> dict[str, list[float]]:
    """Training tokens per CPU-second, per model and round: ``rounds`` interleaved timings of
    ``steps`` AdamW updates (forward, backward, step) on the same batch. CPU time of this
    process (``time.process_time``), not wall time, because the machine is shared: other
    processes stretch wall time but barely change the CPU time of a single-threaded update.
    Rounds interleave the variants, so slow phases hit all of them; ratios are taken per round."""
    from mlpapers.train import TrainConfig

    cfg = TrainConfig(steps=1, batch_size=batch_size, lr=1e-4, optimizer="adamw", momentum=0.9, beta2=0.99,
                      weight_decay=0.1, schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=1.0,
                      eval_every=0, precision=precision, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(len(ids) - context - 1, (batch_size,), generator=gen)
    chunk = ids[start[:, None] + torch.arange(context + 1)]
    x, y = chunk[:, :-1], chunk[:, 1:]
    opts = {v: make_optimizer(m, cfg) for v, m in models.items()}
    times: dict[str, list[float]] = {v: [] for v in models}

    def update(v: str) -> None:
        with autocast(precision, torch.device("cpu")):
            loss = F.cross_entropy(models[v](x).float().flatten(0, 1), y.flatten())
        opts[v].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models[v].parameters(), 1.0)
        opts[v].step()

    for v in models:  # warm-up
        models[v].train()
        update(v)
    for _ in range(rounds):
        for v in models:
            t0 = time.process_time()
            for _ in range(steps):
                update(v)
            times[v].append(time.process_time() - t0)
    return {v: [steps * batch_size * context / max(t, 1e-9) for t in ts] for v, ts in times.items()}
