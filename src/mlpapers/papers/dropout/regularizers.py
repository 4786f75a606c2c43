"""Table 9 (regularizers compared, Section 7.5 / 6.1.1) and Table 10 (Gaussian dropout, Section 10).

One net, one data set (the N = ``n_train`` pool images of each seed), one training recipe;
only the regularizer changes: L2, L1, max-norm alone, dropout alone, dropout + max-norm,
and Gaussian multiplicative noise with the same p + max-norm. The unregularized net and
dropout + max-norm are Fig. 10's nets at N = n_train (``shared``), reused, not retrained:
``load_net`` refuses them if their training recipe differs from this section's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.dropout import report_extra
from mlpapers.papers.dropout.common import MLPConfig, at_bound, check_seeds, load_net, mnist_arrays, resolution, subset, train_net
from mlpapers.papers.dropout.task import accuracy
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig
from mlpapers.utils import resolve_device, write_csv, write_json

NAME = "dropout_regularizers"


@dataclass(frozen=True)
class RegularizersConfig:
    seeds: tuple[int, ...]
    n_train: int  # N: training images per seed (drawn as in Fig. 10, so the shared nets saw the same data)
    shared: Mapping[str, str]  # row -> "experiment/variant" of nets trained elsewhere with this recipe
    models: Mapping[str, MLPConfig]  # rows trained here
    best: str  # the row the paper claims lowest (dropout + max-norm)
    bernoulli: str  # Table 10: the Bernoulli row ...
    gaussian: str  # ... and the Gaussian row at the same p
    train: TrainConfig

    def validate(self) -> None:
        check_seeds(self.seeds, minimum=1)
        if self.n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {self.n_train}")
        rows = set(self.shared) | set(self.models)
        if set(self.shared) & set(self.models):
            raise ValueError("a row cannot be both shared and trained here")
        for key in ("best", "bernoulli", "gaussian"):
            if getattr(self, key) not in rows:
                raise ValueError(f"{key} must name a row ({sorted(rows)}), got {getattr(self, key)!r}")
        if any(ref.count("/") != 1 for ref in self.shared.values()):
            raise ValueError("shared refs must read 'experiment/variant'")


def rows(cfg: RegularizersConfig) -> dict[str, str]:
    """Row name -> where its nets live ("experiment/variant")."""
    return {**cfg.shared, **{v: f"{NAME}/{v}" for v in cfg.models}}


def train_job(cfg: RegularizersConfig, paths: Paths, job: tuple[str, int]) -> list[dict]:
    variant, seed = job
    history = train_net(cfg.models[variant], cfg.train, paths, (NAME, variant), 0, (cfg.n_train, seed))
    return [{"variant": variant, **r} for r in history]


def train(cfg: RegularizersConfig, variant: str, paths: Paths) -> None:
    """Every trained row x seed in one pool of jobs (variant "all")."""
    jobs = [(v, s) for v in cfg.models for s in cfg.seeds]
    per_job = parallel_map(functools.partial(train_job, cfg, paths), jobs, paths.compute)
    write_history(paths.plots / NAME / "history.csv", sum(per_job, []), paths.root)


def evaluate(cfg: RegularizersConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    (x, y), (xt, yt) = mnist_arrays(paths)
    per_seed = []
    for row, ref in rows(cfg).items():
        for seed in cfg.seeds:
            model, mcfg = load_net(paths, ref, cfg.n_train, seed, expect=cfg.train)
            model.to(device)
            idx = subset(len(x), cfg.n_train, seed)
            per_seed.append({"row": row, "seed": seed, "train_error": 1 - accuracy(model, x[idx], y[idx], device),
                             "test_error": 1 - accuracy(model, xt, yt, device),
                             "at_bound": at_bound(model, mcfg.max_norm) if mcfg.max_norm > 0 else float("nan")})
    err = lambda r, k="test_error": [p[k] for p in per_seed if p["row"] == r]  # noqa: E731
    out: dict = {"rows": {r: {k: stats.summarize(err(r, k)) for k in ("test_error", "train_error")} for r in rows(cfg)}}
    # did max-norm act? fraction of hidden units with ||w||_2 >= 0.999 c, per max-norm row (0 = never binds)
    out["max_norm_at_bound"] = {r: stats.summarize(err(r, "at_bound")) for r in rows(cfg)
                                if not any(v != v for v in err(r, "at_bound"))}
    # Table 9 claim: dropout + max-norm is lowest -> best - other < 0 for every other row
    out["best_minus"] = {r: stats.paired(err(cfg.best), err(r)) for r in rows(cfg) if r != cfg.best}
    # Table 10 claim: Gaussian as good or slightly better -> gaussian - bernoulli < what the test set resolves
    out["gaussian_minus_bernoulli"] = {
        "diff": stats.paired(err(cfg.gaussian), err(cfg.bernoulli)),
        "margin": resolution(out["rows"][cfg.bernoulli]["test_error"]["mean"], len(xt))}
    write_json(paths.metrics / f"{NAME}.json", out)
    write_csv(paths.plots / NAME / "per_seed.csv", per_seed)


EXPERIMENT = Experiment(
    name=NAME, config=RegularizersConfig, variants=lambda cfg: ["all"], train=train, evaluate=evaluate,
    plot=report_extra.plot_regularizers, report=report_extra.regularizers_markdown,
)
