"""Dropout plots and README sections, built only from metrics/ and plots/ data."""
from __future__ import annotations

import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.plotting import plt, save_figure
from mlpapers.utils import fmt_mean_std, read_json

# The seed README's claims for its toy demo (what we compare against, not our results).
SEED_TOY = {"plain": {"train_acc": 1.00, "test_acc": 0.89}, "dropout": {"train_acc": 0.93, "test_acc": 0.91}}


def verdict(diff: dict, better: str) -> str:
    """'holds' if the paired mean difference is >= 2 standard errors in the claimed direction."""
    m, s, n = diff["mean"], diff["std"], diff["n"]
    se = s / n**0.5 if n > 1 else float("inf")
    signed = m if better == "higher" else -m
    if signed > 0 and signed >= 2 * se:
        return "holds"
    if signed < 0 and -signed >= 2 * se:
        return "does not hold (reversed)"
    return "does not hold (within noise)"


def toy_markdown(paths: Paths) -> str:
    m = read_json(paths.metrics / "dropout_toy.json")
    pct = lambda s: fmt_mean_std(s, 1, 100)  # noqa: E731
    n_seeds = m["plain"]["test_acc"]["n"]
    lines = [
        "### Dropout: the seed README's toy demo",
        "",
        f"Two moons (noise σ=0.3), 100 training / 1,000 test points, ReLU MLP 2-256-256-2, "
        f"mean ± std over {n_seeds} seeds (each seed draws its own data). Seed README numbers are single runs.",
        "",
        "| Model | Train acc. (%) | Test acc. (%) | Train − test gap (pp) | Seed README claim |",
        "|---|---|---|---|---|",
    ]
    for v, label in (("plain", "MLP, no dropout"), ("dropout", "MLP, dropout p=0.5")):
        seed = SEED_TOY[v]
        lines.append(f"| {label} | {pct(m[v]['train_acc'])} | {pct(m[v]['test_acc'])} | {pct(m[v]['gap'])} "
                     f"| Train={seed['train_acc']:.0%}, Test={seed['test_acc']:.0%} |")
    d = m["dropout_minus_plain"]
    n = m["plain"]["test_acc"]["n"]
    lines += [
        "",
        f"Paired over {n} seeds (dropout − no dropout): test accuracy {fmt_mean_std(d['test_acc'], 1, 100)} pp "
        f"→ claim \"dropout improves test accuracy\" **{verdict(d['test_acc'], 'higher')}**; "
        f"train accuracy {fmt_mean_std(d['train_acc'], 1, 100)} pp → claim \"dropout lowers training accuracy "
        f"(less overfitting)\" **{verdict(d['train_acc'], 'lower')}**.",
        "",
        "![toy accuracy curves](plots/dropout_toy.png)",
    ]
    return "\n".join(lines)


def mnist_markdown(paths: Paths) -> str:
    m = read_json(paths.metrics / "dropout_mnist.json")
    pct = lambda s: fmt_mean_std(s, 2, 100)  # noqa: E731
    sizes = sorted(m["plain"], key=lambda k: int(k[1:]))  # "n100", "n300", ... by N
    n_seeds = m["plain"][sizes[0]]["test_error"]["n"]
    lines = [
        "### Dropout: effect of training-set size on MNIST (paper Section 7.4, Fig. 10)",
        "",
        f"ReLU MLP 784-1024-1024-10, SGD, mean ± std over {n_seeds} seeds; training sets drawn from the 5,000-image "
        "MNIST subset (the full 60k set is a params choice), tested on the official 10,000 test images. "
        "Deviations from the paper: smaller net (no 2048 layer), N ≤ 5,000, fixed short training budget "
        "(see `src/mlpapers/papers/dropout/README.md`).",
        "",
        "| Training images N | Test error, no dropout (%) | Test error, dropout + max-norm (%) | Dropout − none (pp) | Dropout helps? |",
        "|---|---|---|---|---|",
    ]
    for k in sizes:
        d = m["dropout_minus_plain"][k]["test_error"]
        lines.append(f"| {k[1:]} | {pct(m['plain'][k]['test_error'])} | {pct(m['dropout'][k]['test_error'])} "
                     f"| {fmt_mean_std(d, 2, 100)} | {verdict(d, 'lower')} |")
    lines += ["", "![MNIST test error vs N](plots/dropout_mnist.png)"]
    return "\n".join(lines)


def plot_toy(cfg, paths: Paths) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, color in (("plain", "tab:red"), ("dropout", "tab:blue")):
        h = pd.read_csv(paths.plots / "dropout_toy" / f"history_{variant}.csv")
        g = h.groupby("step")[["train_acc", "test_acc"]].mean()
        ax.plot(g.index, 100 * g["train_acc"], color=color, ls="--", label=f"{variant}: train")
        ax.plot(g.index, 100 * g["test_acc"], color=color, label=f"{variant}: test")
    ax.set(xlabel="step", ylabel="accuracy (%)", title=f"Toy two moons, mean over {len(cfg.seeds)} seeds")
    ax.legend(fontsize=8)
    save_figure(fig, paths.plots / "dropout_toy.png")


def plot_mnist(cfg, paths: Paths) -> None:
    c = pd.read_csv(paths.plots / "dropout_mnist" / "test_error_vs_n.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, label in (("plain", "no dropout"), ("dropout", "dropout + max-norm")):
        d = c[c["variant"] == variant]
        ax.errorbar(d["n"], 100 * d["test_error"], yerr=100 * d["test_error_std"], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set(xlabel="training images N (log)", ylabel="test error (%)",
           title=f"MNIST, 784-1024-1024-10 ReLU MLP, {len(cfg.seeds)} seeds (cf. paper Fig. 10)")
    ax.legend()
    save_figure(fig, paths.plots / "dropout_mnist.png")
