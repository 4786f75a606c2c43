"""FoX figures, drawn only from the plot data in plots/fox/ (bands: min-max over seeds)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.plotting import plt, save_figure


def band(ax, x, g: pd.DataFrame, col: str, label: str) -> None:
    """Mean over seeds as a line, min..max over seeds as a shaded band."""
    agg = g.groupby(x)[col].agg(["mean", "min", "max"])
    (line,) = ax.plot(agg.index, agg["mean"], label=label)
    ax.fill_between(agg.index, agg["min"], agg["max"], color=line.get_color(), alpha=0.2, lw=0)


def plot_all(cfg, paths: Paths) -> None:
    d, L = paths.plots / "fox", cfg.model.context
    pos = pd.read_csv(d / "position_loss.csv")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for v, g in pos.groupby("variant", sort=False):
        # mean over log-spaced position bins per seed: single positions are noisy
        edges = np.unique(np.geomspace(1, g["position"].max() + 1, 40).astype(int))
        g = g.assign(bin=pd.cut(g["position"], edges, right=False)).groupby(["seed", "bin"], observed=True)
        b = g[["position", "loss"]].mean().reset_index()
        b["position"] = b.groupby("bin", observed=True)["position"].transform("mean")
        band(ax, "position", b, "loss", f"{v} (to {int(pos[pos.variant == v]['length'].iloc[0])})")
    ax.axvline(L, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="position in window (log)", ylabel="validation loss (nats/token)",
           title=f"Per-position loss, trained at L={L} (dotted); band: seeds")
    ax.legend(fontsize=7)
    save_figure(fig, paths.plots / "fox_position_loss.png")

    ppl = pd.read_csv(d / "ppl_vs_length.csv")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, col, title in ((axes[0], "ppl_beyond_L", "positions > L"), (axes[1], "ppl_window", "whole windows")):
        for v, g in ppl.groupby("variant", sort=False):
            g = g.dropna(subset=[col])
            if len(g):
                band(ax, "length", g, col, v)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel="evaluation length (tokens)", title=f"Perplexity vs length: {title}")
    axes[0].set_ylabel("validation perplexity (log)")
    axes[1].legend(fontsize=7)
    save_figure(fig, paths.plots / "fox_ppl_vs_length.png")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for v in cfg.variants:
        band(ax, "step", pd.read_csv(d / f"history_{v}.csv"), "val_loss", v)
    ax.set(xlabel="step", ylabel="validation loss @L", title="Training curves (mean, band: seeds)")
    ax.legend(fontsize=7)
    save_figure(fig, paths.plots / "fox_training.png")

    mem = pd.read_csv(d / "cache_memory.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for v, g in mem.groupby("variant", sort=False):
        ax.plot(g["tokens"], g["cache_bytes"] / 1024, marker="o", label=v)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set(xlabel="decoded tokens", ylabel="decoding cache (KiB)", title="Decoding memory vs length")
    ax.legend(fontsize=7)
    save_figure(fig, paths.plots / "fox_cache_memory.png")

    text = pd.read_csv(d / "gates_text.csv", keep_default_na=False)
    if len(text):
        grid = text.pivot_table(index=["layer", "head"], columns="position", values="gate")  # (heads, tokens)
        chars = text.drop_duplicates("position").sort_values("position")["char"].tolist()
        fig, ax = plt.subplots(figsize=(min(24, 1 + 0.13 * len(chars)), 0.6 + 0.22 * len(grid)))
        im = ax.imshow(grid.values, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(chars)), chars, fontsize=6, family="monospace")
        ax.set_yticks(range(len(grid)), [f"L{a}H{b}" for a, b in grid.index], fontsize=6)
        ax.grid(False)
        ax.set_title("FoX forget gates f_t over validation text (seed 0; rows: layer/head; ␣ = space)")
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
        save_figure(fig, paths.plots / "fox_gates_text.png")
