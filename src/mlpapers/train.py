"""THE training loop, shared by every paper: ``fit(task, cfg) -> history``.

Nothing here is paper-specific. A *task* (``papers/<paper>/task.py``) owns the model,
the data and the loss; the loop only steps the optimiser. A task provides:

* ``model``: an ``nn.Module``;
* ``train_batch(step, generator)``: the batch for this step (tensors or nested tuples/dicts
  of tensors; the loop moves them to the device);
* ``loss(batch)``: a scalar loss tensor (teacher forcing, masking etc. live here);
* ``evaluate()``: optional, a ``dict[str, float]`` logged every ``eval_every`` steps;
* ``after_step()``: optional, e.g. a max-norm projection of weights after each update.

Under ``torchrun`` (``compute.processes > 1``) the same loop trains data-parallel: each rank
keeps its shard of every seeded batch and DDP averages the gradients (``mlpapers.distributed``).
With one process none of that code runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from tqdm.auto import tqdm

from mlpapers import distributed
from mlpapers.config import ParamError, check_range, to_dict
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
        """Every field range-checked and finite; the error names the field, the value and the range."""
        check_range(self, "steps", 1, MAX_STEPS)
        check_range(self, "batch_size", 1, MAX_BATCH)
        check_range(self, "lr", 0, 10, lo_open=True)
        check_range(self, "momentum", 0, 1, hi_open=True)  # sgd momentum / adamw beta1
        check_range(self, "beta2", 0, 1, hi_open=True)
        check_range(self, "weight_decay", 0, 1)
        check_range(self, "warmup_steps", 0, self.steps)
        check_range(self, "min_lr_ratio", 0, 1)
        check_range(self, "grad_clip", 0, 1e6)
        check_range(self, "eval_every", 0, MAX_STEPS)
        if not DEVICE_RE.fullmatch(self.device):
            raise ParamError("device", f"got {self.device!r}; allowed: auto, cpu, cuda, cuda:N")


MAX_STEPS, MAX_BATCH = 10_000_000, 1_000_000
DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d{1,2})?")


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
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1:  # under torchrun: join the process group, one GPU per rank (mlpapers.distributed)
        device = distributed.setup(device)
    model = task.model.to(device)
    task.device = device  # tasks build eval batches on the training device
    if compile_enabled():  # compute.compile: torch.compile in place (state_dict keys unchanged)
        model.compile()
    loss_of = task.loss
    if world > 1:  # gradients averaged over ranks by DDP hooks on the task's loss
        ddp = torch.nn.parallel.DistributedDataParallel(
            _TaskLoss(task), device_ids=[device.index] if device.type == "cuda" else None)
        loss_of = ddp
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(seed)  # seeded data order, independent of init
    history: list[dict[str, float]] = []
    evaluate = getattr(task, "evaluate", None)
    after_step = getattr(task, "after_step", None)
    running, count, t0, t_last, seen = 0.0, 0, time.perf_counter(), time.perf_counter(), 0
    tty = sys.stderr.isatty() and rank == 0
    bar = tqdm(range(cfg.steps), desc=desc, disable=not tty, leave=False)
    progress = Progress(desc, cfg.steps, enabled=not tty and rank == 0)
    log_estimate(model, opt, cfg, desc)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        model.train()
        batch = task.train_batch(step, gen)  # the whole batch B, the same draw on every rank
        if world > 1:
            batch = distributed.shard(batch, rank, world)  # this rank's B / world examples
        batch = to_device(batch, device)
        if step == 0 and _is_empty(batch):
            raise EmptyDataError(f"{desc}: the first training batch is empty: the training set has no examples; "
                                 "check the data sizes in params (e.g. n_train, sizes)")
        with autocast(cfg.precision, device):
            loss = loss_of(batch)
        seen_loss = distributed.mean(loss) if world > 1 else loss  # the whole batch's loss, on every rank
        if not torch.isfinite(seen_loss):
            raise NonFiniteLossError(
                f"{desc}: loss became {seen_loss.item()} at step {step} (lr={lr_at(step, cfg):.3g}); "
                "lower train.lr, raise train.warmup_steps or set train.grad_clip > 0"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if after_step is not None:
            after_step()
        running += seen_loss.item()
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
        progress.update(step + 1, seen_loss.item())
    model.eval()
    return history


class _TaskLoss(torch.nn.Module):
    """``task.loss`` as a module around ``task.model``, so DDP can wrap any task unchanged."""

    def __init__(self, task: Task):
        super().__init__()
        self.model = task.model  # the parameters DDP synchronises
        self.task = task

    def forward(self, batch: Any) -> torch.Tensor:
        return self.task.loss(batch)


def compile_enabled() -> bool:
    """``compute.compile`` (set by the CLI through ``runner.apply_threads``); off by default."""
    from mlpapers.runner import current_compute

    return current_compute().compile


class EmptyDataError(ValueError):
    """The task handed the loop an empty batch (an empty training set)."""


def _is_empty(batch: Any) -> bool:
    if isinstance(batch, torch.Tensor):
        return batch.dim() > 0 and batch.shape[0] == 0
    if isinstance(batch, (tuple, list)):
        return any(_is_empty(b) for b in batch)
    if isinstance(batch, dict):
        return any(_is_empty(b) for b in batch.values())
    return False


class Progress:
    """Periodic progress log lines when stderr is not a terminal (CI, nohup), where tqdm is off.

    A line every ``MLPAPERS_PROGRESS_SECONDS`` (default 30) seconds of wall time, plus one
    time estimate after the first ~2 seconds: a long run is never silent. Wall-clock values
    go to the log only, never into tracked outputs.
    """

    def __init__(self, desc: str, steps: int, enabled: bool):
        self.desc, self.steps, self.enabled = desc, steps, enabled
        try:
            self.every = float(os.environ.get("MLPAPERS_PROGRESS_SECONDS") or 30)
        except ValueError:
            self.every = 30.0
        self.t0 = self.t_last = time.perf_counter()
        self.estimated = False

    def update(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        elapsed = now - self.t0
        if not self.estimated and (elapsed >= 2.0 or done == min(self.steps, 20)) and done < self.steps:
            self.estimated = True
            eta = elapsed / done * (self.steps - done)
            (log.info if eta > 30 or self.enabled else log.debug)("%s: %d steps; after %d step(s) in %.1f s the estimate is %s more", self.desc, self.steps,
                     done, elapsed, _fmt_seconds(eta))
        if self.enabled and (now - self.t_last >= self.every or done == self.steps):
            self.t_last = now
            eta = elapsed / done * (self.steps - done)
            log.info("%s: step %d/%d (%.0f%%) loss %.4f, %s elapsed, ~%s left", self.desc, done, self.steps,
                     100 * done / self.steps, loss, _fmt_seconds(elapsed), _fmt_seconds(eta))


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def log_estimate(model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, desc: str) -> None:
    """Before the first step: parameter count and a cheap memory estimate (weights, grads, optimiser state).

    Refuses to start when the estimate alone exceeds the machine's memory (it would fail later
    or swap for hours); activations come on top and are not estimated.
    """
    n = sum(p.numel() for p in model.parameters())
    per_param = 4 * (2 + (2 if isinstance(opt, torch.optim.AdamW) else 1))  # fp32 weight + grad + state
    need = n * per_param
    log.info("%s: %s parameters, ~%s for weights, gradients and optimiser state; %d steps of batch %d",
             desc, f"{n:,d}", _fmt_bytes(need), cfg.steps, cfg.batch_size)
    avail = _available_memory()
    if avail is not None and need > avail:
        raise MemoryError(f"{desc}: the model needs ~{_fmt_bytes(need)} for weights, gradients and optimiser state "
                          f"but only {_fmt_bytes(avail)} of memory is available; lower the model sizes in params")


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024:
            return f"{b:.0f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def save_checkpoint(path: str | Path, model: torch.nn.Module, **meta: Any) -> None:
    """Weights plus the resolved config and library versions, written atomically.

    ``meta`` values are dataclasses or plain data; they are stored as plain data so the
    file loads with ``torch.load(..., weights_only=True)``.
    """
    import io

    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "model": weights,
        "meta": {k: to_dict(v) for k, v in meta.items()},
        "versions": versions(),
        "weights_sha256": weights_digest(weights),  # a flipped bit in the file is caught on load
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Load safely (``weights_only=True``); fill ``model`` if given. Returns the payload."""
    from mlpapers.utils import DataFileError

    path = Path(path)
    fix = "re-run its train stage (`dvc repro`), or restore it with `dvc checkout`"
    if not path.is_file():
        raise DataFileError(f"{path}: checkpoint not found; {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # empty, truncated, not a checkpoint, or pickled code weights_only refuses
        raise DataFileError(f"{path}: cannot load this checkpoint ({type(e).__name__}: {_first_line(e)}); "
                            f"it is empty, truncated or not a checkpoint: {fix}") from e
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise DataFileError(f"{path}: not an mlpapers checkpoint (no 'model' weights); {fix}")
    stored = payload.get("weights_sha256")
    if stored is not None and stored != weights_digest(payload["model"]):
        raise DataFileError(f"{path}: the weights do not match the checksum stored with them (the file was "
                            f"modified or corrupted); {fix}")
    if model is not None:
        try:
            model.load_state_dict(payload["model"])
        except (RuntimeError, KeyError) as e:
            raise DataFileError(f"{path}: checkpoint does not match the model the params describe "
                                f"({_first_line(e)}); {fix}") from e
    return payload


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict (in key order)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(weights):
        v = weights[k]
        if not isinstance(v, torch.Tensor):
            h.update(f"{k}={v!r};".encode())
            continue
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
