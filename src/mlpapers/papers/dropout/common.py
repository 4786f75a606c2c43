"""Pieces shared by the Dropout experiments: the MLP config, MNIST arrays, one training job.

Every MNIST net of the paper's experiments (Fig. 9, 10, 11, 8, Tables 9, 10) is trained by
``train_net``: a seeded random training set of N images from the pool, ``fit()``, one
checkpoint holding the resolved model and training configs. Experiments that reuse another
stage's nets (e.g. Fig. 11 evaluates Fig. 10's N = 5,000 dropout nets) load them with
``load_net``, which rebuilds the model from the config stored in the checkpoint and checks
that the training recipe is the one the consumer expects.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mlpapers.config import ConfigError, from_dict, to_dict
from mlpapers.experiment import Paths
from mlpapers.papers.dropout.model import MLP
from mlpapers.papers.dropout.task import ClassifierTask, to_inputs
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import seed_everything

log = logging.getLogger(__name__)

POOL = {"subset5k": 5000, "full": 60000}  # training images available per train_set


@dataclass(frozen=True)
class MLPConfig:
    hidden: int  # units per hidden layer
    depth: int  # hidden layers
    p_input: float  # drop probability at the input (paper's retain 0.8 -> 0.2)
    p_hidden: float  # drop probability after each hidden layer
    max_norm: float  # c in ||w||_2 <= c (Section 5.1); 0 disables
    noise: Literal["bernoulli", "gaussian"]  # Section 10: Gaussian noise N(1, p/(1-p)) instead of Bernoulli
    l1: float  # coefficient of sum |w| over weight matrices (Table 9 baseline); 0 disables
    l2: float  # coefficient of sum w^2 over weight matrices (Table 9 baseline); 0 disables

    def validate(self) -> None:
        for key in ("p_input", "p_hidden"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.hidden < 1 or self.depth < 1 or self.max_norm < 0:
            raise ValueError("hidden and depth must be >= 1 and max_norm >= 0")
        for key in ("max_norm", "l1", "l2"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"{key} must be finite and >= 0, got {getattr(self, key)}")


def build_mlp(cfg: MLPConfig, n_in: int, n_out: int) -> MLP:
    return MLP(n_in, cfg.hidden, cfg.depth, n_out, cfg.p_input, cfg.p_hidden, cfg.noise)


def check_seeds(seeds, minimum: int = 1) -> None:
    if len(seeds) < minimum or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be >= {minimum} unique non-negative integers, got {list(seeds)}")


def mnist_arrays(paths: Paths):
    """((x_train, y_train), (x_test, y_test)) from data/prepared/mnist.npz, inputs in [0, 1]."""
    d = np.load(paths.prepared / "mnist.npz")
    return (to_inputs(d["x_train"]), torch.from_numpy(d["y_train"])), (to_inputs(d["x_test"]), torch.from_numpy(d["y_test"]))


def _perm(n_total: int, seed: int) -> np.ndarray:
    return np.random.default_rng(10_000 + seed).permutation(n_total)


def subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """Indices of a training set of size n, drawn at random (seeded) without replacement."""
    return torch.from_numpy(_perm(n_total, seed)[:n])


def val_indices(n_total: int, n: int, size: int, seed: int) -> torch.Tensor:
    """A validation set of ``size`` pool images disjoint from ``subset(n_total, n, seed)``."""
    if n + size > n_total:
        raise ValueError(f"no room for {size} validation images beside N = {n} in a pool of {n_total}")
    return torch.from_numpy(_perm(n_total, seed)[n : n + size])


def train_net(mcfg: MLPConfig, tcfg: TrainConfig, paths: Paths, where: tuple[str, str], val_size: int,
              job: tuple[int, int]) -> list[dict]:
    """One (N, seed) job -> checkpoint ``models/<experiment>/<variant>/n<N>_seed<seed>.pt``, history rows.

    With ``val_size > 0`` the periodic evaluation (``tcfg.eval_every``) records accuracy on
    ``val_size`` held-out pool images and on the test set (for early stopping chosen on val).
    """
    n, seed = job
    experiment, variant = where
    (x, y), (xt, yt) = mnist_arrays(paths)
    seed_everything(seed)
    idx = subset(len(x), n, seed)
    evals = {}
    if val_size > 0:
        vi = val_indices(len(x), n, val_size, seed)
        evals = {"val": (x[vi], y[vi]), "test": (xt, yt)}
    model = build_mlp(mcfg, x.shape[1], 10)
    task = ClassifierTask(model, x[idx], y[idx], tcfg.batch_size, mcfg.max_norm, evals, l1=mcfg.l1, l2=mcfg.l2)
    history = fit(task, tcfg, seed=seed, desc=f"{experiment}/{variant}/n{n}/seed{seed}")
    save_checkpoint(paths.checkpoint(experiment, variant, f"n{n}_seed{seed}"), model,
                    model_config=mcfg, train_config=tcfg, seed=seed, n=n)
    return [{"n": n, "seed": seed, **r} for r in history]


@torch.no_grad()
def at_bound(model: MLP, c: float, rel: float = 0.999) -> float:
    """Fraction of hidden units whose incoming weight norm is at the max-norm bound, ||w||_2 >= rel * c.

    Section 5.1's constraint binds only if some units reach c; 0 means max-norm never acted.
    """
    norms = torch.cat([linear.weight.norm(dim=1) for linear in model.hidden])  # (depth * hidden,)
    return float((norms >= rel * c).float().mean())


def recipe(tcfg: TrainConfig | dict) -> dict:
    """The parts of a training config that change the trained weights (not eval_every/device)."""
    d = to_dict(tcfg) if dataclasses.is_dataclass(tcfg) else dict(tcfg)
    return {k: v for k, v in d.items() if k not in ("eval_every", "device")}


def load_net(paths: Paths, ref: str, n: int, seed: int, expect: TrainConfig | None = None) -> tuple[MLP, MLPConfig]:
    """Load ``models/<ref>/n<N>_seed<seed>.pt`` (ref = "experiment/variant"), rebuilt from its stored config.

    ``expect``: the training recipe the caller's comparison assumes; a shared net trained
    with another recipe is an error (the comparison would not be on the same footing).
    """
    experiment, variant = ref.split("/", 1)
    payload = load_checkpoint(paths.checkpoint(experiment, variant, f"n{n}_seed{seed}"))
    mcfg = from_dict(MLPConfig, payload["meta"]["model_config"], f"{ref} checkpoint")
    if expect is not None and recipe(payload["meta"]["train_config"]) != recipe(expect):
        raise ConfigError(f"{ref}: its nets were trained with {recipe(payload['meta']['train_config'])}, "
                          f"but this comparison needs {recipe(expect)}; make the train sections equal")
    model = build_mlp(mcfg, 784, 10)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, mcfg


def resolution(err: float, n_test: int) -> float:
    """Smallest test-error difference the test set resolves: 1.96 * sqrt(2 e (1 - e) / n).

    The 95% half-width of the difference of two independent error rates e on n test images;
    used as the margin of "no gain" / "as good as" / "flat" claims (a measured noise level).
    """
    return 1.96 * math.sqrt(2 * err * (1 - err) / n_test)
