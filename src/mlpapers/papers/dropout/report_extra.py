"""Plots and README sections of Fig. 9, Fig. 11, Fig. 8 and Tables 9-10, from metrics/ and plots/ data only."""
from __future__ import annotations

import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.papers.dropout.report import CLAIMS_HEADER, claim_row, pp
from mlpapers.plotting import plt, save_figure
from mlpapers.stats import Claim, fmt_verdict
from mlpapers.utils import read_json

LABELS = {"none": "no regularization", "l2": "L2", "l1": "L1", "maxnorm": "max-norm",
          "dropout": "dropout (Bernoulli)", "dropout_maxnorm": "dropout + max-norm",
          "gaussian": "Gaussian dropout + max-norm"}


# ------------------------------------------------------------------ Fig. 9


def retention_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_retention.json")
    keeps = list(m["fixed_n"])
    c = m["claims"]
    n = m["fixed_n"][keeps[0]]["test_error"]["n"]
    lines = [
        "### Dropout: the retention probability p (paper Section 7.3, Fig. 9)",
        "",
        f"p = probability of *retaining* a hidden unit (paper's convention); no input dropout, max-norm, "
        f"5,000 training images, {n} seeds; (a) fixed width n, (b) width n = pn / p. Deviations: two hidden layers "
        "(paper: three), smaller widths (see params `dropout_retention`), 5k images instead of 60k, short fixed "
        "training. Errors in %, mean ± std [95% CI].",
        "",
        "| p | (a) fixed n: train error | (a) test error | (b) fixed pn: width | (b) train error | (b) test error |",
        "|---|---|---|---|---|---|",
    ]
    widths = read_json(paths.results / "dropout_retention.json").get("widths", {})
    for k in keeps:
        a, b = m["fixed_n"][k], m["fixed_pn"][k]
        lines.append(f"| {k[4:]} | {pp(a['train_error'])} | {pp(a['test_error'])} | {widths.get(k, '')} "
                     f"| {pp(b['train_error'])} | {pp(b['test_error'])} |")
    f = c["flat_range"]
    lines += ["", *CLAIMS_HEADER,
              claim_row(f"(a) test error flat for p in {f['keeps']} (per-seed max − min)", f["est"],
                        Claim("below", f["margin"]), "test-set resolution"),
              claim_row(f"(a) test error rises at small p: p={c['small_p_rise']['keep']} − mean of flat region",
                        c["small_p_rise"]["est"], Claim("above"), "direction"),
              claim_row(f"(a) ... by underfitting: training error rises too (p={c['small_p_train_rise']['keep']})",
                        c["small_p_train_rise"]["est"], Claim("above"), "direction"),
              claim_row(f"(b) with pn fixed small p does better: (a) − (b) at p={c['pn_better_small_p']['keep']}",
                        c["pn_better_small_p"]["est"], Claim("above"), "direction"),
              "", "![test error vs p](plots/dropout_retention.png)"]
    return "\n".join(lines)


def plot_retention(cfg, paths: Paths) -> None:
    d = pd.read_csv(paths.plots / "dropout_retention" / "per_seed.csv")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, variant, title in ((axes[0], "fixed_n", f"(a) n = {cfg.width} fixed"),
                               (axes[1], "fixed_pn", f"(b) pn = {cfg.pn} fixed")):
        g = d[d["variant"] == variant].groupby("keep")[["train_error", "test_error"]].agg(["mean", "std"])
        for key, style in (("test_error", "-o"), ("train_error", "--s")):
            ax.errorbar(g.index, 100 * g[(key, "mean")], yerr=100 * g[(key, "std")], fmt=style, capsize=3,
                        label=key.replace("_", " "))
        ax.set(xlabel="probability of retaining a unit, p", title=title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("classification error (%)")
    fig.suptitle(f"MNIST 5k, {len(cfg.seeds)} seeds, mean ± std (cf. paper Fig. 9)", fontsize=9)
    save_figure(fig, paths.plots / "dropout_retention.png")


# ------------------------------------------------------------ Tables 9, 10


def regularizers_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_regularizers.json")
    rows = m["rows"]
    best = next(r for r in rows if r not in m["best_minus"])
    n = rows[best]["test_error"]["n"]
    lines = [
        "### Dropout: regularizers compared (paper Section 7.5 / Table 9) and Gaussian dropout (Section 10, Table 10)",
        "",
        f"The same ReLU net as Fig. 10, the same 5,000 training images per seed and the same SGD recipe; only "
        f"the regularizer differs; {n} seeds. Deviations: smaller net than the paper's 784-1024-1024-2048-10, 5k training "
        "images (paper: 60k), short fixed training, L1/L2 coefficients not tuned (params `dropout_regularizers`), "
        "no KL-sparsity row. The no-regularization and dropout + max-norm rows are Fig. 10's N = 5,000 nets. "
        "Errors in %, mean ± std [95% CI].",
        "",
        "| Regularizer | Train error (%) | Test error (%) | Hidden units at the max-norm bound (%) |",
        "|---|---|---|---|",
    ]
    bound = m.get("max_norm_at_bound", {})
    for r, s in sorted(rows.items(), key=lambda kv: list(LABELS).index(kv[0]) if kv[0] in LABELS else len(LABELS)):
        b = pp(bound[r]) if r in bound else "–"
        lines.append(f"| {LABELS.get(r, r)} | {pp(s['train_error'])} | {pp(s['test_error'])} | {b} |")
    lines += ["", *CLAIMS_HEADER]
    for r, est in m["best_minus"].items():
        lines.append(claim_row(f"{LABELS.get(best, best)} beats {LABELS.get(r, r)} (difference)", est,
                               Claim("below"), "direction"))
    g = m["gaussian_minus_bernoulli"]
    lines += [claim_row("Table 10: Gaussian dropout (σ² = (1−p)/p) as good as or better than Bernoulli: "
                        "Gaussian − Bernoulli", g["diff"], Claim("below", g["margin"]), "test-set resolution"),
              claim_row("... and strictly better", g["diff"], Claim("below"), "direction"),
              "", "![regularizers](plots/dropout_regularizers.png)"]
    return "\n".join(lines)


def plot_regularizers(cfg, paths: Paths) -> None:
    d = pd.read_csv(paths.plots / "dropout_regularizers" / "per_seed.csv")
    g = d.groupby("row", sort=False)["test_error"].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.barh([LABELS.get(r, r) for r in g.index], 100 * g["mean"], xerr=100 * g["std"], capsize=3)
    ax.set(xlabel="test error (%)", title=f"MNIST 5k, {len(cfg.seeds)} seeds, mean ± std (cf. Tables 9, 10)")
    save_figure(fig, paths.plots / "dropout_regularizers.png")


# ------------------------------------------------------------------ Fig. 11


def averaging_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_averaging.json")
    ks = sorted(m["mc"], key=lambda k: int(k[1:]))  # JSON keys come back sorted as strings
    gap = m["mc_minus_ws"]
    k0, kc, kmax = ks[0], f"k{m['claim_k']}", f"k{m['k_max']}"
    n = m["weight_scaling"]["n"]
    lines = [
        "### Dropout: Monte-Carlo model averaging vs weight scaling (paper Section 7.5, Fig. 11)",
        "",
        f"Fig. 10's N = 5,000 dropout + max-norm nets ({n} seeds), evaluated on the first test images "
        "(`dropout_averaging.test_images`); MC = mean class probability over k sampled thinned nets, several "
        "independent draws per net (averaged per net). Errors in %, mean ± std [95% CI] over nets.",
        "",
        "| k | MC test error (%) | MC − weight scaling (pp) |",
        "|---|---|---|",
    ]
    for k in ks:
        lines.append(f"| {k[1:]} | {pp(m['mc'][k])} | {pp(gap[k])} |")
    lines += [f"| weight scaling | {pp(m['weight_scaling'])} | |", "", *CLAIMS_HEADER,
              claim_row(f"one thinned net (k = {k0[1:]}) is worse than weight scaling", gap[k0], Claim("above"),
                        "direction"),
              claim_row(f"MC reaches weight scaling's error at k = {kc[1:]}", gap[kc],
                        Claim("within", 0.0, m["margin"]), "test-set resolution"),
              claim_row(f"MC is no better beyond: k = {kmax[1:]}", gap[kmax], Claim("above", -m["margin"]),
                        "test-set resolution"),
              "", "![MC averaging](plots/dropout_averaging.png)"]
    return "\n".join(lines)


def plot_averaging(cfg, paths: Paths) -> None:
    c = pd.read_csv(paths.plots / "dropout_averaging" / "error_vs_k.csv")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.errorbar(c["k"], 100 * c["mc_error"], yerr=100 * c["mc_draw_std"], marker="o", capsize=3,
                label="Monte-Carlo model averaging (± std over draws)")
    ax.axhline(100 * c["ws_error"].iloc[0], color="tab:red", ls="--", label="weight scaling")
    ax.set_xscale("log")
    ax.set(xlabel="number of sampled nets k (log)", ylabel="test error (%)",
           title=f"MNIST dropout nets, mean over {len(cfg.seeds)} nets (cf. paper Fig. 11)")
    ax.legend(fontsize=8)
    save_figure(fig, paths.plots / "dropout_averaging.png")


# ------------------------------------------------------------------ Fig. 8


def sparsity_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_sparsity.json")
    nets = m["nets"]
    layers = list(next(iter(nets.values())))
    n = next(iter(nets.values()))[layers[0]]["frac_active"]["n"]
    lines = [
        "### Dropout: sparsity of the hidden representation (paper Section 7.1, Fig. 8)",
        "",
        f"Hidden ReLU activations of the trained MNIST classifiers (5,000 training images, {n} seeds) on test "
        "images. Deviation: the paper shows a 256-unit autoencoder; we read the classifiers' hidden layers. "
        "Mean activation and fraction of units active (> 0) per example, mean ± std [95% CI].",
        "",
        "| Net | Layer | Mean activation | Units active per example (%) | Dead units (%) |",
        "|---|---|---|---|---|",
    ]
    from mlpapers.stats import fmt
    for net, per_layer in nets.items():
        for layer, s in per_layer.items():
            lines.append(f"| {LABELS.get(net, net)} | {layer[5:]} | {fmt(s['mean_activation'], 3)} "
                         f"| {pp(s['frac_active'], 1)} | {pp(s['dead_units'], 1)} |")
    lines += ["", "| Claim | Estimate (mean ± std [95% CI]) | Holds if | Verdict |", "|---|---|---|---|"]
    for layer, d in m["with_minus_without"].items():
        lines.append(claim_row(f"dropout lowers the fraction of active units, layer {layer[5:]} (with − without)",
                               d["frac_active"], Claim("below"), "direction"))
        lines.append(f"| dropout lowers the mean activation, layer {layer[5:]} | {fmt(d['mean_activation'], 3)} "
                     f"| < 0 (direction) | {fmt_verdict(d['mean_activation'], Claim('below'))} |")
    lines += ["", "![sparsity histograms](plots/dropout_sparsity.png)"]
    return "\n".join(lines)


def plot_sparsity(cfg, paths: Paths) -> None:
    hm = pd.read_csv(paths.plots / "dropout_sparsity" / "hist_unit_mean.csv")
    ha = pd.read_csv(paths.plots / "dropout_sparsity" / "hist_activation.csv")
    layer = hm["layer"].max()
    labels = [cfg.without_dropout, cfg.with_dropout]
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.5))
    for col, net in enumerate(labels):
        for row, (h, what) in enumerate(((hm, "mean activation of a unit"), (ha, "activation"))):
            d = h[(h["net"] == net) & (h["layer"] == layer)]
            ax = axes[row, col]
            ax.bar(d["bin_lo"], 100 * d["fraction"], width=d["bin_hi"] - d["bin_lo"], align="edge")
            ax.set(xlabel=what, ylabel="% of units" if row == 0 else "% of activations",
                   title=f"{LABELS.get(net, net)}, layer {layer}", yscale="log" if row == 1 else "linear")
    fig.suptitle(f"Hidden activations on MNIST test images, seed {cfg.seeds[0]} (cf. paper Fig. 8)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, paths.plots / "dropout_sparsity.png")
