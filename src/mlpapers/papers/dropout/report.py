"""Dropout plots and README sections, built only from metrics/ and plots/ data."""
from __future__ import annotations

import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.plotting import plt, save_figure
from mlpapers.stats import Claim, fmt, fmt_verdict
from mlpapers.utils import read_json

# The seed README's claims for its toy demo (what we compare against, not our results).
SEED_TOY = {"plain": {"train_acc": 1.00, "test_acc": 0.89}, "dropout": {"train_acc": 0.93, "test_acc": 0.91}}


def pp(est: dict, digits: int = 2) -> str:
    """A summary of an error/accuracy fraction in percent (points), with its interval."""
    return fmt(est, digits, 100)


def claim_row(claim_text: str, est: dict, claim: Claim, basis: str) -> str:
    """| claim | estimate [95% CI] | what decides it | verdict |  (all in percentage points)."""
    if claim.kind == "within":
        rule = f"\\|·\\| < {100 * claim.margin:.2f} pp ({basis})"
    else:
        rule = f"{'>' if claim.kind == 'above' else '<'} {100 * claim.threshold:.2f} pp ({basis})"
    return f"| {claim_text} | {pp(est)} | {rule} | {fmt_verdict(est, claim)} |"


CLAIMS_HEADER = ["| Claim | Estimate, pp (mean ± std [95% CI]) | Holds if | Verdict |", "|---|---|---|---|"]


def toy_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_toy.json")
    n_seeds = m["plain"]["test_acc"]["n"]
    lines = [
        "### Dropout: the seed README's toy demo",
        "",
        f"Two moons (noise σ=0.3), 100 training / 1,000 test points, ReLU MLP 2-256-256-2, "
        f"mean ± std [95% t interval] over {n_seeds} seeds (each seed draws its own data). "
        "Seed README numbers are single runs.",
        "",
        "| Model | Train acc. (%) | Test acc. (%) | Train − test gap (pp) | Seed README claim |",
        "|---|---|---|---|---|",
    ]
    for v, label in (("plain", "MLP, no dropout"), ("dropout", "MLP, dropout p=0.5")):
        seed = SEED_TOY[v]
        lines.append(f"| {label} | {pp(m[v]['train_acc'], 1)} | {pp(m[v]['test_acc'], 1)} | {pp(m[v]['gap'], 1)} "
                     f"| Train={seed['train_acc']:.0%}, Test={seed['test_acc']:.0%} |")
    d = m["dropout_minus_plain"]
    lines += ["", *CLAIMS_HEADER,
              claim_row("dropout improves test accuracy (dropout − none)", d["test_acc"], Claim("above"), "direction"),
              claim_row("dropout lowers training accuracy (less overfitting)", d["train_acc"], Claim("below"),
                        "direction"),
              "", "![toy accuracy curves](plots/dropout_toy.png)"]
    return "\n".join(lines)


def mnist_markdown(paths: Paths) -> str:
    m = read_json(paths.results / "dropout_mnist.json")
    sizes = sorted(m["plain"], key=lambda k: int(k[1:]))  # "n100", "n300", ... by N
    n_seeds = m["plain"][sizes[0]]["test_error"]["n"]
    net = "-".join(["784"] + [str(m["setup"]["hidden"])] * m["setup"]["depth"] + ["10"])
    lines = [
        "### Dropout: effect of training-set size on MNIST (paper Section 7.4, Fig. 10)",
        "",
        f"ReLU MLP {net}, SGD for {m['setup']['steps']} steps at every N, {n_seeds} seeds (each seed: its own random training set, init and order); "
        "training sets of N images drawn from the 5,000-image MNIST subset, tested on the official 10,000 test "
        "images. Deviations: narrower and shallower net than the paper's 784-1024-1024-2048-10, N ≤ 5,000 "
        "(paper: up to 50,000), the same fixed number of SGD steps for every N instead of training to convergence "
        "(see `src/mlpapers/papers/dropout/README.md`). Errors in %, mean ± std [95% t interval].",
        "",
        "| Training images N | Test error, no dropout (%) | Test error, dropout + max-norm (%) "
        "| Dropout − none (pp) | Dropout helps (< 0)? |",
        "|---|---|---|---|---|",
    ]
    for k in sizes:
        d = m["dropout_minus_plain"][k]["test_error"]
        lines.append(f"| {k[1:]} | {pp(m['plain'][k]['test_error'])} | {pp(m['dropout'][k]['test_error'])} "
                     f"| {pp(d)} | {fmt_verdict(d, Claim('below'))} |")
    lines += ["", "The paper's claims (Section 7.4):", "", *CLAIMS_HEADER]
    for k, c in m["no_gain"].items():
        lines.append(claim_row(f"no gain from dropout at N = {k[1:]} (dropout − none)", c["diff"],
                               Claim("within", 0.0, c["margin"]), "test-set resolution"))
    if "rise_fall" in m:
        rf, first, last = m["rise_fall"], sizes[0][1:], sizes[-1][1:]
        lines += [claim_row(f"the gain rises: gain(N={rf['peak_n']}) − gain(N={first})", rf["rise"], Claim("above"),
                            "direction"),
                  claim_row(f"then falls: gain(N={rf['peak_n']}) − gain(N={last})", rf["fall"], Claim("above"),
                            "direction")]
    for k, c in m["early_stop"].items():
        lines.append(claim_row(f"no gain at N = {k[1:]}, both nets early-stopped on validation", c["diff"],
                               Claim("within", 0.0, c["margin"]), "test-set resolution"))
    lines += [
        "",
        "Gain = test error without dropout − with dropout; N* (peak) is the interior N with the largest mean gain, "
        "picked from these same runs (so the rise/fall test is optimistic). \"Test-set resolution\" = "
        "1.96·√(2e(1−e)/10,000) at the no-dropout error e: the smallest difference the test set resolves. "
        "Early stopping: test error at the evaluation step (every `train.eval_every` steps) with the best accuracy "
        "on held-out pool images (`data.val_size`, disjoint from the training set) -- the candidate explanation "
        "of why our small-N result differs from the paper's (our fixed step count trains the no-dropout net "
        "far past its best point at small N).",
        "", "![MNIST test error vs N](plots/dropout_mnist.png)"]
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
        yerr = [100 * (d["test_error"] - d["ci_lo"]), 100 * (d["ci_hi"] - d["test_error"])]
        ax.errorbar(d["n"], 100 * d["test_error"], yerr=yerr, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set(xlabel="training images N (log)", ylabel="test error (%)",
           title=f"MNIST, 784-{cfg.models['plain'].hidden}x{cfg.models['plain'].depth}-10 ReLU MLP, "
                 f"{len(cfg.seeds)} seeds, 95% CI (cf. paper Fig. 10)")
    ax.legend()
    save_figure(fig, paths.plots / "dropout_mnist.png")
