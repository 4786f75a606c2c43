"""Loss, learning-rate schedule and the Seq2Seq decoding harness, for the Transformer.

Everything data-related is the Seq2Seq paper's (``mlpapers.papers.seq2seq``): the prepared
Multi30k file, vocabularies, length-bucketed batches (``TranslationTask``), greedy and beam
search (``decoding.py``) and sacreBLEU. This module only adapts the Transformer to them:

* ``label_smoothed_loss`` -- §5.4: cross-entropy against (1 - ε_ls) one-hot + ε_ls uniform.
* ``noam_lr`` -- §5.3, Eq. (3): lrate = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5).
  The shared loop (``train.fit``) owns the optimiser and has no such schedule; the task runs
  it with a constant base lr and rescales each Adam update in ``after_step`` by
  schedule(step) / base lr. Adam's update (and AdamW's decoupled decay) is linear in the
  learning rate, so this *is* Adam with the scheduled rate.
* ``Harness`` -- what ``seq2seq.decoding.greedy_decode`` / ``beam_search`` call:
  ``encoder(src, src_len) -> (memory, state)`` and ``decoder.step(y, state, h̃, memory, mask)``.
  For the Transformer ``memory`` is every layer's cross-attention keys/values (batch-first)
  and ``state`` the self-attention key/value cache, batch on dim 1 as the beam search expects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from mlpapers.papers.seq2seq.model import PAD
from mlpapers.papers.seq2seq.task import TranslationTask, make_batch
from mlpapers.papers.transformer.model import Transformer


@dataclass(frozen=True)
class Schedule:
    kind: Literal["noam", "constant"]  # Eq. (3), or a constant rate (ablation)
    warmup: int  # warmup_steps of Eq. (3) (paper: 4000)
    factor: float  # multiplies Eq. (3) (1 = the paper's formula); constant: the rate itself = factor · peak of Eq. (3)

    def validate(self) -> None:
        if self.kind not in ("noam", "constant"):
            raise ValueError(f"schedule kind must be noam or constant, got {self.kind!r}")
        if not 1 <= self.warmup <= 1_000_000:
            raise ValueError(f"warmup must be in [1, 1e6], got {self.warmup}")
        if not 0 < self.factor <= 100:
            raise ValueError(f"factor must be in (0, 100], got {self.factor}")


def noam_lr(step: int, d_model: int, s: Schedule) -> float:
    """Eq. (3) at 1-based ``step``: d_model^-0.5 · min(step^-0.5, step · warmup^-1.5) (times ``factor``).
    ``constant``: the peak of Eq. (3) (reached at step = warmup), at every step."""
    if s.kind == "constant":
        step = s.warmup
    return s.factor * d_model ** -0.5 * min(step ** -0.5, step * s.warmup ** -1.5)


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """§5.4: mean over real target tokens of -Σ_k q(k) log p(k), q = (1 - ε) one-hot + ε / V.
    logits (N, V), target (N,) with no <pad>."""
    return F.cross_entropy(logits, target, label_smoothing=eps)


def transformer_loss(model: Transformer, batch, eps: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """Teacher-forced loss over real (non-<pad>) target tokens; the pre-softmax linear runs on those only."""
    src, _, tgt_in, tgt_out = batch
    memory, src_mask = model.encode(src)
    h = model.decode(tgt_in, memory, src_mask)  # (B, T, d)
    keep = tgt_out != PAD  # (B, T)
    logits = model.logits(h[keep])  # (N, V)
    if reduction == "sum":
        return F.cross_entropy(logits, tgt_out[keep], reduction="sum", label_smoothing=eps)
    return label_smoothed_loss(logits, tgt_out[keep], eps)


class TransformerTask(TranslationTask):
    """The Seq2Seq batches (same bucketing, same seeded order); loss with label smoothing;
    the Eq. (3) schedule applied through ``after_step``; snapshots of the weights at given steps."""

    def __init__(self, model: Transformer, src, tgt, batch_size: int, val, eps: float, schedule: Schedule,
                 base_lr: float, snapshot_steps: tuple[int, ...] = ()):
        super().__init__(model, src, tgt, batch_size, val)
        self.eps, self.schedule, self.base_lr = eps, schedule, base_lr
        self.snapshot_steps = set(snapshot_steps)
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.step = 0
        self._before: list[torch.Tensor] = []

    def lr(self, step: int) -> float:
        return noam_lr(max(step, 1), self.model.c.d_model, self.schedule)

    def train_batch(self, step: int, generator: torch.Generator):
        self.step = step + 1  # Eq. (3) counts steps from 1
        self._before = [p.detach().clone() for p in self.model.parameters()]
        return super().train_batch(step, generator)

    def loss(self, batch) -> torch.Tensor:
        return transformer_loss(self.model, batch, self.eps)

    @torch.no_grad()
    def after_step(self) -> None:
        """Adam took a step at the loop's constant base lr; scale it to the scheduled lr (Eq. 3)."""
        r = self.lr(self.step) / self.base_lr
        for p, p0 in zip(self.model.parameters(), self._before):
            p.copy_(p0 + (p - p0) * r)
        if self.step in self.snapshot_steps:
            self.snapshots[self.step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def evaluate(self) -> dict[str, float]:
        """Validation cross-entropy per target token, without smoothing (comparable across ε), and the lr."""
        out = {"lr": self.lr(self.step)}
        if self.val is None:
            return out
        src, tgt = self.val
        total, count = 0.0, 0
        for i in range(0, len(src), 256):
            batch = [t.to(self.device) for t in make_batch(src[i : i + 256], tgt[i : i + 256])]
            total += transformer_loss(self.model, batch, 0.0, reduction="sum").item()
            count += int((batch[3] != PAD).sum())
        return {**out, "val_loss": total / count}


class _Decoder:
    def __init__(self, model: Transformer):
        self.model = model

    def step(self, y_prev, state, h_tilde, memory, mask):
        """seq2seq.decoding's step signature -> (logits (B, V), new cache, None, no attention weights)."""
        logits, cache = self.model.decode_step(y_prev, state, memory, mask)
        return logits, cache, None, None


class Harness:
    """The Transformer behind the interface of ``seq2seq.decoding`` (and ``seq2seq.task.translate``)."""

    def __init__(self, model: Transformer):
        self.model, self.decoder = model, _Decoder(model)

    def eval(self) -> "Harness":
        self.model.eval()
        return self

    def encoder(self, src: torch.Tensor, src_len: torch.Tensor):
        memory, _ = self.model.encode(src)
        return self.model.cross_cache(memory), self.model.empty_cache(src.size(0), src.device)
