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

from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.dropout import report
from mlpapers.papers.dropout.model import MLP
from mlpapers.papers.dropout.task import (ClassifierTask, accuracy, read_idx, read_mnist_csv,
                                          to_inputs, two_moons)
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import mean_std, resolve_device, seed_everything, write_csv, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MLPConfig:
    hidden: int  # units per hidden layer
    depth: int  # hidden layers
    p_input: float  # drop probability at the input (paper's retain 0.8 -> 0.2)
    p_hidden: float  # drop probability after each hidden layer
    max_norm: float  # c in ||w||_2 <= c (Section 5.1); 0 disables

    def validate(self) -> None:
        for key in ("p_input", "p_hidden"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.hidden < 1 or self.depth < 1 or self.max_norm < 0:
            raise ValueError("hidden and depth must be >= 1 and max_norm >= 0")


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


@dataclass(frozen=True)
class MnistData:
    train_set: Literal["subset5k", "full"]  # mnist_5k.csv.gz (offline mirror) or the 60k IDX files
    sizes: tuple[int, ...]  # N: training-set sizes drawn at random from train_set

    def validate(self) -> None:
        limit = 5000 if self.train_set == "subset5k" else 60000
        if not self.sizes or any(not 0 < n <= limit for n in self.sizes):
            raise ValueError(f"sizes must be in [1, {limit}] for train_set {self.train_set}, got {list(self.sizes)}")


@dataclass(frozen=True)
class MnistConfig:
    seeds: tuple[int, ...]
    data: MnistData
    models: Mapping[str, MLPConfig]
    train: TrainConfig


def build_mlp(cfg: MLPConfig, n_in: int, n_out: int) -> MLP:
    return MLP(n_in, cfg.hidden, cfg.depth, n_out, cfg.p_input, cfg.p_hidden)


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
        accs = {"train_acc": [], "test_acc": [], "gap": []}
        for seed in cfg.seeds:
            (x, y), (xt, yt) = toy_data(cfg, seed)
            model = build_mlp(mcfg, 2, 2)
            load_checkpoint(paths.models / "dropout_toy" / variant / f"seed{seed}.pt", model)
            model.to(device)
            tr, te = accuracy(model, x, y, device), accuracy(model, xt, yt, device)
            for k, v in (("train_acc", tr), ("test_acc", te), ("gap", tr - te)):
                accs[k].append(v)
            per_seed.append({"variant": variant, "seed": seed, "train_acc": tr, "test_acc": te})
        out[variant] = {k: mean_std(v) for k, v in accs.items()}
    # paired over seeds (same data for both variants): dropout minus plain
    if {"plain", "dropout"} <= set(out):
        out["dropout_minus_plain"] = {
            k: mean_std(np.subtract([r[k] for r in per_seed if r["variant"] == "dropout"],
                                    [r[k] for r in per_seed if r["variant"] == "plain"]))
            for k in ("train_acc", "test_acc")
        }
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


def mnist_arrays(paths: Paths):
    d = np.load(paths.prepared / "mnist.npz")
    return (to_inputs(d["x_train"]), torch.from_numpy(d["y_train"])), (to_inputs(d["x_test"]), torch.from_numpy(d["y_test"]))


def subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """Indices of a training set of size n, drawn at random (seeded) without replacement."""
    return torch.from_numpy(np.random.default_rng(10_000 + seed).permutation(n_total)[:n])


def train_mnist_job(cfg: MnistConfig, variant: str, paths: Paths, job: tuple[int, int]) -> list[dict]:
    """One (N, seed) job: a seeded random training set of N images, one net trained on it."""
    n, seed = job
    mcfg = cfg.models[variant]
    (x, y), _ = mnist_arrays(paths)
    seed_everything(seed)
    idx = subset(len(x), n, seed)
    model = build_mlp(mcfg, 784, 10)
    task = ClassifierTask(model, x[idx], y[idx], cfg.train.batch_size, mcfg.max_norm, {})
    history = fit(task, cfg.train, seed=seed, desc=f"dropout_mnist/{variant}/n{n}/seed{seed}")
    save_checkpoint(paths.checkpoint("dropout_mnist", variant, f"n{n}_seed{seed}"), model,
                    model_config=mcfg, train_config=cfg.train, seed=seed, n=n)
    return [{"n": n, "seed": seed, **r} for r in history]


def train_mnist(cfg: MnistConfig, variant: str, paths: Paths) -> None:
    jobs = [(n, seed) for n in cfg.data.sizes for seed in cfg.seeds]
    per_job = parallel_map(functools.partial(train_mnist_job, cfg, variant, paths), jobs, paths.compute)
    write_history(paths.plots / "dropout_mnist" / f"history_{variant}.csv", sum(per_job, []), paths.root)


def evaluate_mnist(cfg: MnistConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    (x, y), (xt, yt) = mnist_arrays(paths)
    out, curve = {}, []
    errors: dict[tuple[str, int], list[float]] = {}
    for variant, mcfg in cfg.models.items():
        out[variant] = {}
        for n in cfg.data.sizes:
            test_err, train_err = [], []
            for seed in cfg.seeds:
                model = build_mlp(mcfg, 784, 10)
                load_checkpoint(paths.models / "dropout_mnist" / variant / f"n{n}_seed{seed}.pt", model)
                model.to(device)
                idx = subset(len(x), n, seed)
                train_err.append(1 - accuracy(model, x[idx], y[idx], device))
                test_err.append(1 - accuracy(model, xt, yt, device))
            errors[(variant, n)] = test_err
            out[variant][f"n{n}"] = {"test_error": mean_std(test_err), "train_error": mean_std(train_err)}
            s = mean_std(test_err)
            curve.append({"variant": variant, "n": n, "test_error": s["mean"], "test_error_std": s["std"]})
    if {"plain", "dropout"} <= set(out):
        out["dropout_minus_plain"] = {
            f"n{n}": {"test_error": mean_std(np.subtract(errors[("dropout", n)], errors[("plain", n)]))}
            for n in cfg.data.sizes
        }
    write_json(paths.metrics / "dropout_mnist.json", out)
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
