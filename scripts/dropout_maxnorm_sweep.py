"""Validation sweep of the max-norm radius c and the learning rate for the Dropout MNIST nets.

Trains the dropout + max-norm net of ``params.yaml`` (``dropout_mnist.models.dropout``, recipe
``dropout_mnist.train``) through the project's own code (``ClassifierTask`` + ``train.fit``) for
every (c, lr) in the grid and prints, per config, the error on a validation split of the 5k pool
(never the test set) and the fraction of hidden units whose incoming weight norm is at the bound.

The 5k pool has no room for a validation split beside N = 5,000, so the sweep trains on
N = 5000 - val_size pool images and validates on the val_size images after them
(``common.val_indices``, the split Fig. 10's early-stopping check uses). ``--check`` adds rows
for the nets without max-norm (plain, dropout alone) at each lr, to see that they still train.

    python scripts/dropout_maxnorm_sweep.py --c 1 2 3.5 --lr 0.05 0.2 0.5 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from mlpapers.config import load_section
from mlpapers.experiment import Paths
from mlpapers.papers.dropout.common import at_bound, build_mlp, mnist_arrays, subset, val_indices
from mlpapers.papers.dropout.experiments import MnistConfig
from mlpapers.papers.dropout.task import ClassifierTask, accuracy
from mlpapers.train import NonFiniteLossError, fit
from mlpapers.utils import seed_everything


def run(mcfg, tcfg, n: int, val_size: int, seed: int) -> dict:
    (x, y), _ = mnist_arrays(Paths())
    seed_everything(seed)
    idx, vi = subset(len(x), n, seed), val_indices(len(x), n, val_size, seed)
    model = build_mlp(mcfg, x.shape[1], 10)
    task = ClassifierTask(model, x[idx], y[idx], tcfg.batch_size, mcfg.max_norm, {}, l1=mcfg.l1, l2=mcfg.l2)
    t0 = time.process_time()
    try:
        fit(task, tcfg, seed=seed, desc=f"sweep c={mcfg.max_norm} lr={tcfg.lr}")
        val_err = 1 - accuracy(model, x[vi], y[vi], torch.device("cpu"))
    except NonFiniteLossError:
        val_err = math.nan
    frac = at_bound(model, mcfg.max_norm) if mcfg.max_norm > 0 else math.nan
    return {"val_err": val_err, "at_bound": frac, "cpu_s": time.process_time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c", type=float, nargs="+", default=[1.0, 2.0, 3.5])
    ap.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="also train plain and dropout-alone nets at each lr")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_section(MnistConfig, "dropout_mnist")
    val_size = cfg.data.val_size
    n = 5000 - val_size
    base = cfg.models["dropout"]
    grid = [(f"dropout+maxnorm c={c}", dataclasses.replace(base, max_norm=c), lr) for c in args.c for lr in args.lr]
    if args.check:
        grid += [(f"{name}", m, lr) for lr in args.lr
                 for name, m in (("plain", cfg.models["plain"]), ("dropout alone", dataclasses.replace(base, max_norm=0.0)))]
    print(f"N = {n} training, {val_size} validation pool images, seed {args.seed}, "
          f"{cfg.train.steps} steps, batch {cfg.train.batch_size}")
    print("| net | lr | val error | hidden units at bound | CPU s |\n|---|---|---|---|---|")
    for name, mcfg, lr in grid:
        r = run(mcfg, dataclasses.replace(cfg.train, lr=lr), n, val_size, args.seed)
        frac = "-" if math.isnan(r["at_bound"]) else f"{r['at_bound']:.3f}"
        print(f"| {name} | {lr} | {r['val_err']:.4f} | {frac} | {r['cpu_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
