"""Dropout experiments as pipeline stages (params sections ``dropout_toy``, ``dropout_mnist``).

* Toy -- the seed README's demo: 2-D two-class data (two moons), 100 training and 1,000
  test points, a 256-unit ReLU MLP with and without dropout p = 0.5, several seeds.
* MNIST -- the paper's data-set-size experiment (Section 7.4, Fig. 10): training sets of
  N images drawn at random from the training images, tested on the official 10,000 test
  images, ReLU MLP 784-1024-1024-10 without dropout vs with dropout (retain 0.8 at the
  input, 0.5 in hidden layers) and max-norm. Deviations from the paper (its net is
  784-1024-1024-2048-10, N up to 50k, trained to convergence) are listed in README.md.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import torch

import pandas as pd

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.dropout import analysis, regularizers, report, retention
from mlpapers.papers.dropout.common import (POOL, MLPConfig, build_mlp, check_seeds, load_net, mnist_arrays,
                                            resolution, subset, train_net)
from mlpapers.papers.dropout.task import ClassifierTask, accuracy, read_idx, read_mnist_csv, two_moons
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import resolve_device, seed_everything, write_csv, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyData:
    n_train: int
    n_test: int
    noise: float  # std of the Gaussian noise added to the moons


@dataclass(frozen=True)
class ToyConfig:
    seeds: tuple[int, ...]  # each seed draws its own data, init and batch order
    data: ToyData
    models: Mapping[str, MLPConfig]  # variant name -> model
    train: TrainConfig

    def validate(self) -> None:
        check_seeds(self.seeds)
        if self.data.n_train < 2 or self.data.n_test < 2 or not self.data.noise >= 0:
            raise ValueError("data.n_train and data.n_test must be >= 2 and data.noise >= 0")


@dataclass(frozen=True)
class MnistData:
    train_set: Literal["subset5k", "full"]  # mnist_5k.csv.gz (offline mirror) or the 60k IDX files
    sizes: tuple[int, ...]  # N: training-set sizes drawn at random from train_set
    val_size: int  # held-out pool images for the early-stopping check (disjoint from each training set)
    early_stop_sizes: tuple[int, ...]  # N at which val/test accuracy is tracked during training

    def validate(self) -> None:
        limit = POOL[self.train_set]
        if not self.sizes or len(set(self.sizes)) != len(self.sizes) or any(not 0 < n <= limit for n in self.sizes):
            raise ValueError(f"sizes must be unique and in [1, {limit}] for train_set {self.train_set}, "
                             f"got {list(self.sizes)}")
        if not set(self.early_stop_sizes) <= set(self.sizes):
            raise ValueError("early_stop_sizes must be a subset of sizes")
        if self.early_stop_sizes and not (self.val_size > 0 and max(self.early_stop_sizes) + self.val_size <= limit):
            raise ValueError(f"val_size must be > 0 and fit beside every early_stop_size in the pool of {limit}")


@dataclass(frozen=True)
class MnistConfig:
    seeds: tuple[int, ...]
    data: MnistData
    models: Mapping[str, MLPConfig]  # "plain" (no dropout) and "dropout" (dropout + max-norm)
    train: TrainConfig

    def validate(self) -> None:
        check_seeds(self.seeds)
        if set(self.models) != {"plain", "dropout"}:
            raise ValueError(f"models must be exactly plain and dropout, got {list(self.models)}")


# ---------------------------------------------------------------------------- toy


def toy_data(cfg: ToyConfig, seed: int):
    """Train and test sets for one seed (test points drawn after the training points)."""
    rng = np.random.default_rng(seed)
    x, y = two_moons(cfg.data.n_train, cfg.data.noise, rng)
    xt, yt = two_moons(cfg.data.n_test, cfg.data.noise, rng)
    return (torch.from_numpy(x), torch.from_numpy(y)), (torch.from_numpy(xt), torch.from_numpy(yt))


def train_toy_seed(cfg: ToyConfig, variant: str, paths: Paths, seed: int) -> list[dict]:
    """One seed: its own data, init and batch order; checkpoint written, history returned."""
    mcfg = cfg.models[variant]
    seed_everything(seed)
    train, test = toy_data(cfg, seed)
    model = build_mlp(mcfg, 2, 2)
    task = ClassifierTask(model, *train, cfg.train.batch_size, mcfg.max_norm, {"train": train, "test": test})
    history = fit(task, cfg.train, seed=seed, desc=f"dropout_toy/{variant}/seed{seed}")
    save_checkpoint(paths.checkpoint("dropout_toy", variant, f"seed{seed}"), model,
                    model_config=mcfg, train_config=cfg.train, seed=seed)
    return [{"seed": seed, **r} for r in history]


def train_toy(cfg: ToyConfig, variant: str, paths: Paths) -> None:
    per_seed = parallel_map(functools.partial(train_toy_seed, cfg, variant, paths), cfg.seeds, paths.compute)
    write_history(paths.plots / "dropout_toy" / f"history_{variant}.csv", sum(per_seed, []), paths.root)


def evaluate_toy(cfg: ToyConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    out, per_seed = {}, []
    for variant, mcfg in cfg.models.items():
        for seed in cfg.seeds:
            (x, y), (xt, yt) = toy_data(cfg, seed)
            model = build_mlp(mcfg, 2, 2)
            load_checkpoint(paths.checkpoint("dropout_toy", variant, f"seed{seed}"), model)
            model.to(device)
            tr, te = accuracy(model, x, y, device), accuracy(model, xt, yt, device)
            per_seed.append({"variant": variant, "seed": seed, "train_acc": tr, "test_acc": te, "gap": tr - te})
        rows = [r for r in per_seed if r["variant"] == variant]
        out[variant] = {k: stats.summarize([r[k] for r in rows]) for k in ("train_acc", "test_acc", "gap")}
    # paired over seeds (same data for both variants): dropout minus plain
    if {"plain", "dropout"} <= set(out):
        col = lambda v, k: [r[k] for r in per_seed if r["variant"] == v]  # noqa: E731
        out["dropout_minus_plain"] = {k: stats.paired(col("dropout", k), col("plain", k))
                                      for k in ("train_acc", "test_acc")}
    write_json(paths.metrics / "dropout_toy.json", out)
    write_csv(paths.plots / "dropout_toy" / "per_seed.csv", per_seed)


# --------------------------------------------------------------------------- MNIST


def prepare_mnist(cfg: MnistConfig, paths: Paths) -> None:
    """Raw files -> data/prepared/mnist.npz (uint8 images, int64 labels)."""
    raw = paths.raw / "mnist"
    if cfg.data.train_set == "subset5k":
        x, y = read_mnist_csv(raw / "mnist_5k.csv.gz")
    else:
        full = paths.raw / "mnist_full"
        x, y = read_idx(full / "train-images-idx3-ubyte.gz").reshape(-1, 784), read_idx(full / "train-labels-idx1-ubyte.gz")
    xt = read_idx(raw / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    yt = read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    out = paths.prepared / "mnist.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x_train=x, y_train=y.astype(np.int64), x_test=xt, y_test=yt.astype(np.int64))
    log.info("mnist: %d training, %d test images -> %s", len(x), len(xt), out)


def train_mnist_job(cfg: MnistConfig, variant: str, paths: Paths, job: tuple[int, int]) -> list[dict]:
    """One (N, seed) job; at ``early_stop_sizes`` val and test accuracy are tracked during training."""
    val = cfg.data.val_size if job[0] in cfg.data.early_stop_sizes else 0
    return train_net(cfg.models[variant], cfg.train, paths, ("dropout_mnist", variant), val, job)


def train_mnist(cfg: MnistConfig, variant: str, paths: Paths) -> None:
    jobs = [(n, seed) for n in cfg.data.sizes for seed in cfg.seeds]
    per_job = parallel_map(functools.partial(train_mnist_job, cfg, variant, paths), jobs, paths.compute)
    write_history(paths.plots / "dropout_mnist" / f"history_{variant}.csv", sum(per_job, []), paths.root)


def early_stopped_error(history: pd.DataFrame, n: int, seed: int) -> float:
    """Test error at the evaluation step with the best validation accuracy (first such step)."""
    h = history[(history["n"] == n) & (history["seed"] == seed)].reset_index(drop=True)
    return 1 - float(h.loc[h["val_acc"].idxmax(), "test_acc"])


def evaluate_mnist(cfg: MnistConfig, paths: Paths) -> None:
    """Fig. 10: test error vs N; the paper's claims (no gain at N <= 500, gain rises then falls)."""
    device = resolve_device(cfg.train.device)
    (x, y), (xt, yt) = mnist_arrays(paths)
    rows = []
    for variant in cfg.models:
        hist = pd.read_csv(paths.plots / "dropout_mnist" / f"history_{variant}.csv")
        for n in cfg.data.sizes:
            for seed in cfg.seeds:
                model, _ = load_net(paths, f"dropout_mnist/{variant}", n, seed)
                model.to(device)
                idx = subset(len(x), n, seed)
                row = {"variant": variant, "n": n, "seed": seed, "train_error": 1 - accuracy(model, x[idx], y[idx], device),
                       "test_error": 1 - accuracy(model, xt, yt, device)}
                if n in cfg.data.early_stop_sizes:
                    row["early_stopped_test_error"] = early_stopped_error(hist, n, seed)
                rows.append(row)
    err = lambda v, n, k="test_error": [r[k] for r in rows if r["variant"] == v and r["n"] == n]  # noqa: E731
    out: dict = {v: {f"n{n}": {k: stats.summarize(err(v, n, k)) for k in ("test_error", "train_error")}
                     for n in cfg.data.sizes} for v in cfg.models}
    out["dropout_minus_plain"] = {f"n{n}": {"test_error": stats.paired(err("dropout", n), err("plain", n))}
                                  for n in cfg.data.sizes}
    # "no gain at N <= 500": |dropout - plain| within what the test set resolves at that error
    out["no_gain"] = {f"n{n}": {"diff": out["dropout_minus_plain"][f"n{n}"]["test_error"],
                                "margin": resolution(out["plain"][f"n{n}"]["test_error"]["mean"], len(xt))}
                      for n in cfg.data.sizes if n <= 500}
    # "the gain rises then falls": gain g(N) = plain - dropout; N* = the interior N with the largest mean gain
    gain = {n: np.subtract(err("plain", n), err("dropout", n)) for n in cfg.data.sizes}
    sizes = sorted(cfg.data.sizes)
    if len(sizes) >= 3:
        peak = max(sizes[1:-1], key=lambda n: gain[n].mean())
        out["rise_fall"] = {"peak_n": peak, "rise": stats.paired(gain[peak], gain[sizes[0]]),
                            "fall": stats.paired(gain[peak], gain[sizes[-1]])}
    # the candidate explanation: each net stopped early at its best validation step
    out["early_stop"] = {}
    for n in cfg.data.early_stop_sizes:
        es = {v: err(v, n, "early_stopped_test_error") for v in cfg.models}
        out["early_stop"][f"n{n}"] = {
            "plain": stats.summarize(es["plain"]), "dropout": stats.summarize(es["dropout"]),
            "diff": stats.paired(es["dropout"], es["plain"]),
            "margin": resolution(float(np.mean(es["plain"])), len(xt))}
    out["setup"] = {"hidden": cfg.models["plain"].hidden, "depth": cfg.models["plain"].depth,
                    "steps": cfg.train.steps, "n_test": len(xt)}
    write_json(paths.metrics / "dropout_mnist.json", out)
    write_csv(paths.plots / "dropout_mnist" / "per_seed.csv", rows)
    curve = [{"variant": v, "n": n, "test_error": out[v][f"n{n}"]["test_error"]["mean"],
              "ci_lo": out[v][f"n{n}"]["test_error"]["ci_lo"], "ci_hi": out[v][f"n{n}"]["test_error"]["ci_hi"]}
             for v in cfg.models for n in cfg.data.sizes]
    write_csv(paths.plots / "dropout_mnist" / "test_error_vs_n.csv", curve)


TOY = Experiment(
    name="dropout_toy", config=ToyConfig, variants=lambda cfg: list(cfg.models),
    train=train_toy, evaluate=evaluate_toy, plot=report.plot_toy, report=report.toy_markdown,
)
MNIST = Experiment(
    name="dropout_mnist", config=MnistConfig, variants=lambda cfg: list(cfg.models),
    train=train_mnist, evaluate=evaluate_mnist, plot=report.plot_mnist, report=report.mnist_markdown,
    prepare=prepare_mnist,
)
RETENTION = retention.EXPERIMENT
REGULARIZERS = regularizers.EXPERIMENT
AVERAGING = analysis.AVERAGING
SPARSITY = analysis.SPARSITY
