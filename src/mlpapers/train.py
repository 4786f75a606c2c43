"""THE training loop, shared by every paper: ``fit(task, cfg) -> history``.

Nothing here is paper-specific. A *task* (``papers/<paper>/task.py``) owns the model,
the data and the loss; the loop only steps the optimiser. A task provides:

* ``model``: an ``nn.Module``;
* ``train_batch(step, generator)``: the batch for this step (tensors or nested tuples/dicts
  of tensors; the loop moves them to the device);
* ``loss(batch)``: a scalar loss tensor (teacher forcing, masking etc. live here);
* ``evaluate()``: optional, a ``dict[str, float]`` logged every ``eval_every`` steps;
* ``after_step()``: optional, e.g. a max-norm projection of weights after each update.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from tqdm.auto import tqdm

from mlpapers.config import to_dict
from mlpapers.utils import atomic_write_bytes, resolve_device, versions

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int  # optimiser updates
    batch_size: int  # examples (or sequences) per update; the task reads it
    lr: float  # peak learning rate
    optimizer: Literal["adamw", "sgd"]
    momentum: float  # sgd momentum (the Dropout paper uses 0.95); adamw's beta1
    beta2: float  # adamw's second-moment decay (unused by sgd)
    weight_decay: float  # decoupled (adamw) or L2 (sgd)
    schedule: Literal["constant", "cosine", "linear"]  # decay after warmup, to min_lr_ratio * lr
    warmup_steps: int  # linear warmup from 0
    min_lr_ratio: float
    grad_clip: float  # max global grad norm; 0 disables clipping
    eval_every: int  # steps between task.evaluate() calls; 0 = only at the end
    precision: Literal["fp32", "bf16"]  # bf16 = torch.autocast on the forward pass
    device: str  # "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", ...

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps], got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0 or self.eval_every < 0:
            raise ValueError("grad_clip and eval_every must be >= 0")


class Task(Protocol):
    model: torch.nn.Module

    def train_batch(self, step: int, generator: torch.Generator) -> Any: ...

    def loss(self, batch: Any) -> torch.Tensor: ...


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; raised instead of training on garbage."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then constant / cosine / linear decay to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # weight decay on matrices only, as in nanoGPT: biases, gains and gates stay undecayed
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, cfg.beta2))


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(task: Task, cfg: TrainConfig, *, seed: int, desc: str = "train") -> list[dict[str, float]]:
    """Train ``task.model`` for ``cfg.steps`` updates; returns one stats row per evaluation.

    Rows hold ``step``, ``lr``, ``train_loss`` (mean since the last row), ``seconds``,
    ``examples_per_s`` and whatever ``task.evaluate()`` returns. Raises
    ``NonFiniteLossError`` as soon as a loss is NaN or infinite.
    """
    device = resolve_device(cfg.device)
    model = task.model.to(device)
    task.device = device  # tasks build eval batches on the training device
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(seed)  # seeded data order, independent of init
    history: list[dict[str, float]] = []
    evaluate = getattr(task, "evaluate", None)
    after_step = getattr(task, "after_step", None)
    running, count, t0, t_last, seen = 0.0, 0, time.perf_counter(), time.perf_counter(), 0
    bar = tqdm(range(cfg.steps), desc=desc, disable=not sys.stderr.isatty(), leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        model.train()
        batch = to_device(task.train_batch(step, gen), device)
        with autocast(cfg.precision, device):
            loss = task.loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{desc}: loss became {loss.item()} at step {step} (lr={lr_at(step, cfg):.3g}); "
                "lower train.lr, raise train.warmup_steps or set train.grad_clip > 0"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if after_step is not None:
            after_step()
        running += loss.item()
        count += 1
        seen += cfg.batch_size
        last = step == cfg.steps - 1
        if last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0):
            now = time.perf_counter()
            row = {
                "step": step + 1,
                "lr": lr_at(step, cfg),
                "train_loss": running / count,
                "seconds": now - t0,
                "examples_per_s": seen / max(now - t_last, 1e-9),
            }
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    row.update(evaluate())
            history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}")
            log.debug("%s %s", desc, row)
            running, count, seen, t_last = 0.0, 0, 0, time.perf_counter()
    model.eval()
    return history


def save_checkpoint(path: str | Path, model: torch.nn.Module, **meta: Any) -> None:
    """Weights plus the resolved config and library versions, written atomically.

    ``meta`` values are dataclasses or plain data; they are stored as plain data so the
    file loads with ``torch.load(..., weights_only=True)``.
    """
    import io

    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {k: to_dict(v) for k, v in meta.items()},
        "versions": versions(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Load safely (``weights_only=True``); fill ``model`` if given. Returns the payload."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if model is not None:
        model.load_state_dict(payload["model"])
    return payload
