"""Evaluation-only experiments on trained nets (no training of their own).

* Fig. 11 (Section 7.5), model averaging: test error of Monte-Carlo averaging over k thinned
  nets against the weight-scaling rule, on Fig. 10's N = n_train dropout nets.
* Fig. 8 (Section 7.1), sparsity: hidden activations of the trained classifiers with and
  without dropout (the paper shows an autoencoder's; we use the MNIST classifiers' hidden
  layers): histogram of each unit's mean activation, histogram of all activations, and the
  fraction of units active (ReLU output > 0) per test example.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.dropout import report_extra
from mlpapers.papers.dropout.averaging import error, mc_curve, weight_scaled_probs
from mlpapers.papers.dropout.common import check_seeds, load_net, mnist_arrays, resolution
from mlpapers.runner import parallel_map
from mlpapers.utils import seed_everything, write_csv, write_json


def _no_train(cfg, variant: str, paths: Paths) -> None:
    raise ValueError("this experiment evaluates other stages' nets; it trains nothing")


# ------------------------------------------------------------------ Fig. 11


@dataclass(frozen=True)
class AveragingConfig:
    seeds: tuple[int, ...]  # which trained nets (one per seed)
    net: str  # "experiment/variant" of the dropout nets (Fig. 10's dropout + max-norm)
    n_train: int  # their N
    ks: tuple[int, ...]  # numbers of sampled thinned nets averaged
    claim_k: int  # the paper's "around k = 50"
    draws: int  # independent MC runs per net (each draws max(ks) masks)
    test_images: int  # first test images used (MC costs max(ks) forward passes each)

    def validate(self) -> None:
        check_seeds(self.seeds)
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            raise ValueError(f"ks must be ascending unique integers >= 1, got {list(self.ks)}")
        if self.claim_k not in self.ks or self.ks[-1] <= self.claim_k:
            raise ValueError("claim_k must be one of ks, below the largest k")
        if self.draws < 2 or not 1 <= self.test_images <= 10000 or self.n_train < 1 or self.net.count("/") != 1:
            raise ValueError("draws must be >= 2, test_images in [1, 10000], n_train >= 1, net 'experiment/variant'")


def averaging_job(cfg: AveragingConfig, paths: Paths, job: tuple[int, int]) -> dict:
    """One (seed, draw): weight-scaling error and the MC error after each k in ks."""
    seed, draw = job
    _, (xt, yt) = mnist_arrays(paths)
    xt, yt = xt[: cfg.test_images], yt[: cfg.test_images]
    model, _ = load_net(paths, cfg.net, cfg.n_train, seed)
    seed_everything(1_000 * seed + draw)  # the masks of this draw
    curve = mc_curve(model, xt, cfg.ks)
    return {"seed": seed, "draw": draw, "ws": error(weight_scaled_probs(model, xt), yt),
            **{f"k{k}": error(p, yt) for k, p in zip(cfg.ks, curve)}}


def evaluate_averaging(cfg: AveragingConfig, paths: Paths) -> None:
    jobs = [(s, d) for s in cfg.seeds for d in range(cfg.draws)]
    rows = parallel_map(functools.partial(averaging_job, cfg, paths), jobs, paths.compute)
    by_seed = lambda key: [float(np.mean([r[key] for r in rows if r["seed"] == s])) for s in cfg.seeds]  # noqa: E731
    ws = by_seed("ws")
    kmax = cfg.ks[-1]
    out = {"weight_scaling": stats.summarize(ws),
           "mc": {f"k{k}": stats.summarize(by_seed(f"k{k}")) for k in cfg.ks},
           "mc_minus_ws": {f"k{k}": stats.paired(by_seed(f"k{k}"), ws) for k in cfg.ks},
           "margin": resolution(float(np.mean(ws)), cfg.test_images), "claim_k": cfg.claim_k, "k_max": kmax}
    write_json(paths.metrics / "dropout_averaging.json", out)
    write_csv(paths.plots / "dropout_averaging" / "per_draw.csv", rows)
    curve = [{"k": k, "mc_error": out["mc"][f"k{k}"]["mean"], "mc_draw_std": float(np.mean(
        [np.std([r[f"k{k}"] for r in rows if r["seed"] == s], ddof=1) for s in cfg.seeds])),
        "ws_error": out["weight_scaling"]["mean"]} for k in cfg.ks]
    write_csv(paths.plots / "dropout_averaging" / "error_vs_k.csv", curve)


# ------------------------------------------------------------------ Fig. 8


@dataclass(frozen=True)
class SparsityConfig:
    seeds: tuple[int, ...]
    n_train: int
    nets: Mapping[str, str]  # label -> "experiment/variant"
    with_dropout: str  # the label compared ...
    without_dropout: str  # ... against this one (same recipe, no dropout)
    bins: int  # histogram bins
    test_images: int

    def validate(self) -> None:
        check_seeds(self.seeds)
        if self.with_dropout not in self.nets or self.without_dropout not in self.nets:
            raise ValueError("with_dropout and without_dropout must be labels in nets")
        if self.bins < 2 or not 1 <= self.test_images <= 10000 or self.n_train < 1:
            raise ValueError("bins must be >= 2, test_images in [1, 10000], n_train >= 1")


@torch.no_grad()
def activation_stats(model, x: torch.Tensor) -> list[dict]:
    """Per hidden layer: each unit's mean activation (U,), all activations (B*U,), fraction active per example (B,)."""
    model.eval()
    out = []
    for h in model.features(x):  # (B, U) each, after ReLU, test-time net
        out.append({"unit_mean": h.mean(0), "all": h.flatten(), "active": (h > 0).float().mean(1)})
    return out


def evaluate_sparsity(cfg: SparsityConfig, paths: Paths) -> None:
    _, (xt, _) = mnist_arrays(paths)
    xt = xt[: cfg.test_images]
    per_seed, hist_mean, hist_all = [], [], []
    for label, ref in cfg.nets.items():
        for seed in cfg.seeds:
            model, _ = load_net(paths, ref, cfg.n_train, seed)
            for layer, s in enumerate(activation_stats(model, xt), start=1):
                per_seed.append({"net": label, "seed": seed, "layer": layer,
                                 "mean_activation": s["all"].mean().item(),
                                 "frac_active": s["active"].mean().item(),
                                 "dead_units": (s["unit_mean"] == 0).float().mean().item()})
                if seed == cfg.seeds[0]:  # the histograms of Fig. 8, for the first seed's nets
                    for name, v, sink in (("unit_mean", s["unit_mean"], hist_mean), ("all", s["all"], hist_all)):
                        top = float(np.quantile(v.numpy(), 0.999)) or 1.0
                        counts, edges = np.histogram(v.numpy(), bins=cfg.bins, range=(0.0, top))
                        sink += [{"net": label, "layer": layer, "bin_lo": float(a), "bin_hi": float(b),
                                  "fraction": float(c) / v.numel()} for a, b, c in zip(edges[:-1], edges[1:], counts)]
    layers = sorted({r["layer"] for r in per_seed})
    col = lambda net, layer, key: [r[key] for r in per_seed if r["net"] == net and r["layer"] == layer]  # noqa: E731
    out: dict = {"nets": {net: {f"layer{l}": {k: stats.summarize(col(net, l, k))
                                               for k in ("mean_activation", "frac_active", "dead_units")}
                                for l in layers} for net in cfg.nets},
                 "with_minus_without": {f"layer{l}": {k: stats.paired(col(cfg.with_dropout, l, k),
                                                                      col(cfg.without_dropout, l, k))
                                                      for k in ("mean_activation", "frac_active")} for l in layers}}
    write_json(paths.metrics / "dropout_sparsity.json", out)
    write_csv(paths.plots / "dropout_sparsity" / "per_seed.csv", per_seed)
    write_csv(paths.plots / "dropout_sparsity" / "hist_unit_mean.csv", hist_mean)
    write_csv(paths.plots / "dropout_sparsity" / "hist_activation.csv", hist_all)


AVERAGING = Experiment(
    name="dropout_averaging", config=AveragingConfig, variants=lambda cfg: [], train=_no_train,
    evaluate=evaluate_averaging, plot=report_extra.plot_averaging, report=report_extra.averaging_markdown,
)
SPARSITY = Experiment(
    name="dropout_sparsity", config=SparsityConfig, variants=lambda cfg: [], train=_no_train,
    evaluate=evaluate_sparsity, plot=report_extra.plot_sparsity, report=report_extra.sparsity_markdown,
)
