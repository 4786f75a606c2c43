"""Transformer experiment as pipeline stages (params section ``transformer``).

Vaswani et al. (2017), arXiv:1706.03762, at small scale on the Seq2Seq paper's Multi30k de->en
data (same prepared file, vocabularies, batches, decoding and sacreBLEU), beside Luong's model:

* ``base`` -- the Transformer trained for Seq2Seq's step count and batch (equal steps), 3+ seeds,
  with snapshots on the way (BLEU against steps, and the equal-training-time comparison);
* Table 3-style ablations, each one change from ``base``, trained for ``ablation_steps`` and
  compared (paired over seeds) with the base run's snapshot at that step;
* training throughput of both models, measured in the evaluate stage on the same machine.
Scale and deviations from the paper are listed in README.md.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import Literal, Mapping

from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.seq2seq.experiments import load_prepared
from mlpapers.papers.transformer.model import Transformer, TransformerConfig
from mlpapers.papers.transformer.task import Schedule, TransformerTask
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, save_checkpoint
from mlpapers.utils import seed_everything

log = logging.getLogger(__name__)
NAME = "transformer"


@dataclass(frozen=True)
class Ablation:
    """One Table 3-style variant: every field given; exactly one differs from the base run."""

    positions: Literal["sinusoidal", "learned"]
    n_heads: int
    label_smoothing: float
    schedule: Literal["noam", "constant"]


@dataclass(frozen=True)
class Data:
    max_decode_len: int  # decoding stops here without <eos>
    beam: int  # beam of the reported test BLEU (Seq2Seq's decoder); greedy is reported beside it
    alpha: float  # length normalisation of the final beam pick
    test_limit: int  # first N sentences of each evaluation set; 0 = all (tiny runs only)

    def validate(self) -> None:
        if not 1 <= self.max_decode_len <= 1000 or not 1 <= self.beam <= 64 or not 0 <= self.alpha <= 2:
            raise ValueError("max_decode_len in [1, 1000], beam in [1, 64], alpha in [0, 2]")
        if self.test_limit < 0:
            raise ValueError(f"test_limit must be >= 0, got {self.test_limit}")


@dataclass(frozen=True)
class TransformerExpConfig:
    seeds: tuple[int, ...]
    model: TransformerConfig
    label_smoothing: float  # ε_ls (§5.4; paper 0.1)
    schedule: Schedule  # Eq. (3)
    snapshot_steps: tuple[int, ...]  # base-run checkpoints on the way (BLEU vs steps, equal time)
    ablation_steps: int  # training steps of each ablation (and the base snapshot they are compared with)
    ablations: Mapping[str, Ablation]
    throughput_steps: int  # steps per model per timing round in the evaluate stage
    throughput_rounds: int  # interleaved rounds (Luong, Transformer, Luong, ...)
    data: Data
    train: TrainConfig  # steps/batch_size must equal seq2seq_multi30k.train's (checked when evaluating)

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be non-empty, unique and >= 0, got {list(self.seeds)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 1 <= self.ablation_steps <= self.train.steps:
            raise ValueError(f"ablation_steps must be in [1, train.steps], got {self.ablation_steps}")
        if any(not 1 <= s < self.train.steps for s in self.snapshot_steps) or \
                list(self.snapshot_steps) != sorted(set(self.snapshot_steps)):
            raise ValueError("snapshot_steps must be increasing, unique and in [1, train.steps)")
        if not 1 <= self.throughput_steps <= 1000 or not 1 <= self.throughput_rounds <= 100:
            raise ValueError("throughput_steps in [1, 1000] and throughput_rounds in [1, 100]")
        if self.train.schedule != "constant" or self.train.warmup_steps != 0:
            raise ValueError("train.schedule must be constant with warmup_steps 0: Eq. (3) is applied by the task")
        base = self.base_ablation()
        for name, a in self.ablations.items():
            if name == "base":
                raise ValueError("'base' is the reference run, not an ablation name")
            diff = [k for k in ("positions", "n_heads", "label_smoothing", "schedule") if getattr(a, k) != getattr(base, k)]
            if len(diff) != 1:
                raise ValueError(f"ablation {name} must change exactly one thing from the base run; changes {diff}")
            replace(self.model, positions=a.positions, n_heads=a.n_heads).validate()

    def base_ablation(self) -> Ablation:
        return Ablation(self.model.positions, self.model.n_heads, self.label_smoothing, self.schedule.kind)

    def variant(self, name: str) -> tuple[TransformerConfig, float, Schedule, int]:
        """(model config, ε_ls, schedule, steps) of 'base' or an ablation."""
        if name == "base":
            return self.model, self.label_smoothing, self.schedule, self.train.steps
        a = self.ablations[name]
        return (replace(self.model, positions=a.positions, n_heads=a.n_heads), a.label_smoothing,
                replace(self.schedule, kind=a.schedule), self.ablation_steps)


def build(mcfg: TransformerConfig, paths: Paths):
    vde, ven, splits = load_prepared(paths)
    return Transformer(mcfg, len(vde), len(ven)), vde, ven, splits


# ------------------------------------------------------------------------------ train


def train_job(cfg: TransformerExpConfig, paths: Paths, job: tuple[str, int]) -> list[dict]:
    """One (variant, seed): train, checkpoint at the end and at the snapshot steps."""
    variant, seed = job
    mcfg, eps, sched, steps = cfg.variant(variant)
    seed_everything(seed)
    model, _, _, splits = build(mcfg, paths)
    tr, va = splits["train"], splits["val"]
    cut = cfg.data.test_limit or None
    snaps = tuple(sorted({*cfg.snapshot_steps, cfg.ablation_steps} - {steps})) if variant == "base" else ()
    task = TransformerTask(model, tr["src"], tr["tgt"], cfg.train.batch_size, (va["src"][:cut], va["tgt"][:cut]),
                           eps, sched, cfg.train.lr, snaps)
    tcfg = replace(cfg.train, steps=steps, eval_every=min(cfg.train.eval_every, steps))
    history = fit(task, tcfg, seed=seed, desc=f"{NAME}/{variant}/seed{seed}")
    meta = dict(model_config=mcfg, train_config=tcfg, schedule=sched, label_smoothing=eps, seed=seed)
    save_checkpoint(paths.checkpoint(NAME, variant, f"seed{seed}"), model, **meta)
    for s, weights in task.snapshots.items():
        snap = Transformer(mcfg, model.src_embed.num_embeddings, model.tgt_embed.num_embeddings)
        snap.load_state_dict(weights)
        save_checkpoint(paths.checkpoint(NAME, variant, f"seed{seed}_step{s}"), snap, **meta, step=s)
    return [{"variant": variant, "seed": seed, **r} for r in history]


def jobs_of(cfg: TransformerExpConfig) -> list[tuple[str, int]]:
    return [("base", s) for s in cfg.seeds] + [(a, s) for a in cfg.ablations for s in cfg.seeds]


def train(cfg: TransformerExpConfig, variant: str, paths: Paths) -> None:
    """Every (variant, seed) in one pool: the long base runs first, the short ablations fill in."""
    rows = parallel_map(functools.partial(train_job, cfg, paths), jobs_of(cfg), paths.compute)
    write_history(paths.plots / NAME / "history.csv", sum(rows, []), paths.root)


def _report():
    from mlpapers.papers.transformer import report

    return report


def _evaluate(cfg: TransformerExpConfig, paths: Paths) -> None:  # its own module: not a dep of the train stage
    from mlpapers.papers.transformer.evaluate import evaluate

    evaluate(cfg, paths)


def _speed(cfg: TransformerExpConfig, paths: Paths) -> None:
    from mlpapers.papers.transformer.evaluate import speed

    speed(cfg, paths)


TRANSFORMER = Experiment(
    name=NAME, config=TransformerExpConfig, variants=lambda cfg: ["all"], train=train, evaluate=_evaluate,
    plot=lambda cfg, paths: _report().plot(cfg, paths), report=lambda paths: _report().markdown(paths),
    speed=_speed,
)
