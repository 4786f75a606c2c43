"""Fig. 9 (Section 7.3): the effect of the retention probability p (paper's p = keep).

(a) ``fixed_n``: the same net for every p, n = ``width`` units per hidden layer;
(b) ``fixed_pn``: n = round(pn / p), so the expected number of retained units p * n is constant.
No input dropout (as in the paper's Fig. 9 runs); max-norm as in the other dropout nets.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.dropout import report_extra
from mlpapers.papers.dropout.common import MLPConfig, check_seeds, load_net, mnist_arrays, resolution, subset, train_net
from mlpapers.papers.dropout.task import accuracy
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig
from mlpapers.utils import resolve_device, write_csv, write_json

NAME = "dropout_retention"
VARIANTS = ("fixed_n", "fixed_pn")


@dataclass(frozen=True)
class RetentionConfig:
    seeds: tuple[int, ...]
    n_train: int  # training images per seed (drawn as in Fig. 10)
    keep: tuple[float, ...]  # the paper's p: probability of retaining a hidden unit
    width: int  # (a) hidden units per layer for every p
    pn: int  # (b) expected retained units p * n per layer
    depth: int  # hidden layers
    max_norm: float
    flat: tuple[float, float]  # the paper's flat region of p (0.4 <= p <= 0.8)
    train: TrainConfig

    def validate(self) -> None:
        check_seeds(self.seeds)
        if not self.keep or len(set(self.keep)) != len(self.keep) or any(not 0 < k <= 1 for k in self.keep):
            raise ValueError(f"keep must be unique values in (0, 1], got {list(self.keep)}")
        if self.n_train < 1 or self.width < 1 or self.pn < 1 or self.depth < 1 or not self.max_norm >= 0:
            raise ValueError("n_train, width, pn, depth must be >= 1 and max_norm >= 0")
        lo, hi = self.flat if len(self.flat) == 2 else (1, 0)
        inside = [k for k in self.keep if lo <= k <= hi]
        if len(inside) < 2 or not any(k < lo for k in self.keep):
            raise ValueError("flat must be [lo, hi] holding >= 2 keep values, with some keep value below lo")


def model_config(cfg: RetentionConfig, variant: str, keep: float) -> MLPConfig:
    width = cfg.width if variant == "fixed_n" else max(1, round(cfg.pn / keep))
    return MLPConfig(hidden=width, depth=cfg.depth, p_input=0.0, p_hidden=round(1.0 - keep, 6),
                     max_norm=cfg.max_norm, noise="bernoulli", l1=0.0, l2=0.0)


def train_job(cfg: RetentionConfig, variant: str, paths: Paths, job: tuple[float, int]) -> list[dict]:
    keep, seed = job
    mcfg = model_config(cfg, variant, keep)
    history = train_net(mcfg, cfg.train, paths, (NAME, f"{variant}/keep{keep}"), 0, (cfg.n_train, seed))
    return [{"keep": keep, "hidden": mcfg.hidden, **r} for r in history]


def train(cfg: RetentionConfig, variant: str, paths: Paths) -> None:
    jobs = [(k, s) for k in cfg.keep for s in cfg.seeds]
    per_job = parallel_map(functools.partial(train_job, cfg, variant, paths), jobs, paths.compute)
    write_history(paths.plots / NAME / f"history_{variant}.csv", sum(per_job, []), paths.root)


def evaluate(cfg: RetentionConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    (x, y), (xt, yt) = mnist_arrays(paths)
    per_seed = []
    for variant in VARIANTS:
        for keep in cfg.keep:
            for seed in cfg.seeds:
                model, mcfg = load_net(paths, f"{NAME}/{variant}/keep{keep}", cfg.n_train, seed, expect=cfg.train)
                model.to(device)
                idx = subset(len(x), cfg.n_train, seed)
                per_seed.append({"variant": variant, "keep": keep, "hidden": mcfg.hidden, "seed": seed,
                                 "train_error": 1 - accuracy(model, x[idx], y[idx], device),
                                 "test_error": 1 - accuracy(model, xt, yt, device)})
    err = lambda v, k, key="test_error": np.array([r[key] for r in per_seed if r["variant"] == v and r["keep"] == k])  # noqa: E731
    out: dict = {v: {f"keep{k}": {key: stats.summarize(err(v, k, key)) for key in ("test_error", "train_error")}
                     for k in cfg.keep} for v in VARIANTS}
    lo, hi = cfg.flat
    flat = [k for k in cfg.keep if lo <= k <= hi]
    kmin = min(cfg.keep)
    flat_errs = np.stack([err("fixed_n", k) for k in flat])  # (len(flat), seeds)
    mid = flat[len(flat) // 2]
    out["claims"] = {
        # flat for lo <= p <= hi: per-seed range of test error over those p, below the test-set resolution
        "flat_range": {"est": stats.summarize(flat_errs.max(0) - flat_errs.min(0)),
                       "margin": resolution(float(err("fixed_n", mid).mean()), len(xt)), "keeps": flat},
        # rises at small p: error at the smallest p minus the mean over the flat region, > 0
        "small_p_rise": {"est": stats.paired(err("fixed_n", kmin), flat_errs.mean(0)), "keep": kmin},
        # underfitting: training error also rises at small p
        "small_p_train_rise": {"est": stats.paired(err("fixed_n", kmin, "train_error"),
                                                   np.stack([err("fixed_n", k, "train_error") for k in flat]).mean(0)),
                               "keep": kmin},
        # with p*n fixed, small p does better than with n fixed: fixed_n - fixed_pn > 0 at the smallest p
        "pn_better_small_p": {"est": stats.paired(err("fixed_n", kmin), err("fixed_pn", kmin)), "keep": kmin},
    }
    out["widths"] = {f"keep{k}": model_config(cfg, "fixed_pn", k).hidden for k in cfg.keep}
    write_json(paths.metrics / f"{NAME}.json", out)
    write_csv(paths.plots / NAME / "per_seed.csv", per_seed)


EXPERIMENT = Experiment(
    name=NAME, config=RetentionConfig, variants=lambda cfg: list(VARIANTS), train=train, evaluate=evaluate,
    plot=report_extra.plot_retention, report=report_extra.retention_markdown,
)
