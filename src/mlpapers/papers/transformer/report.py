"""Transformer plot and README section, built only from the evaluate and speed stages' JSON; verdicts from mlpapers.stats."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.plotting import plt, save_figure
from mlpapers.stats import Claim, fmt, fmt_verdict
from mlpapers.utils import read_json

NAME = "transformer"
ABLATION_CLAIMS = {  # ablation -> (paper's statement, metric, claim on base - ablation)
    "learned_positions": ("Table 3 (E): learned positions ≈ sinusoids (25.7 vs 25.8 BLEU); margin = base seed std",
                          "val_bleu_greedy", None),
    "one_head": ("Table 3 (A): one head is worse than several (-0.9 BLEU)", "val_bleu_greedy", Claim("above", 0.0)),
    "no_smoothing": ("§5.4: label smoothing improves BLEU", "val_bleu_greedy", Claim("above", 0.0)),
    "constant_lr": ("§5.3: the warmup schedule (Eq. 3) beats a constant rate at its peak", "val_bleu_greedy",
                    Claim("above", 0.0)),
}


def results_path(paths: Paths) -> Path:
    return paths.results / f"{NAME}.json"


def plot(cfg, paths: Paths) -> None:
    df = pd.read_csv(paths.plots / NAME / "bleu_vs_step.csv")
    g = df.groupby("step")["bleu"].agg(["mean", "std"]).reset_index()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(g["step"], g["mean"], marker="o", label="Transformer (greedy)")
    ax.fill_between(g["step"], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), alpha=0.2)
    ax.set(xlabel="training steps", ylabel="BLEU test2016 (greedy)", title="Transformer: BLEU vs steps")
    ax.legend()
    save_figure(fig, paths.plots / f"{NAME}.png")


def _luong(paths: Paths) -> dict:
    return read_json(paths.results / "seq2seq_multi30k.json")


def markdown(paths: Paths) -> str:
    m = read_json(results_path(paths))
    lu = _luong(paths)[m["luong_variant"]]
    b, tp = m["base"], read_json(paths.results / f"{NAME}_speed.json")["throughput"]  # the speed stage
    eq = tp["equal_time"]
    n = b["bleu_test_2016_flickr"]["n"]
    steps = max(int(k) for k in m["curve"])
    k = m["decode"]["beam"]
    lines = [
        "### Transformer (Vaswani et al. 2017): Multi30k German → English beside Luong's model",
        "",
        f"Small post-norm encoder-decoder Transformer (sizes in `params.yaml`, section `transformer`), trained on the "
        f"Seq2Seq paper's data, tokens, batches and decoder, {n} seeds (mean ± std [95% interval]); Luong's numbers "
        f"are read from the Seq2Seq evaluate stage (not retrained). Equal steps: {steps:,} steps of the same batch "
        f"size. Equal time: the Transformer's greedy BLEU interpolated on its snapshot curve at Luong's steps × "
        f"(Transformer steps per Luong step of CPU time, measured in the speed stage: {eq['matched_steps']:.0f} "
        f"steps{', clipped to the trained steps' if eq['clipped'] else ''}); CPU-time numbers depend on the machine. "
        f"Transformer vs Luong differences are unpaired (Welch t). Ablations: {m['ablation_steps']}-step "
        f"runs, greedy BLEU on the validation split, paired over seeds with the base run's snapshot at the same step. "
        f"Deviations: tiny model, ≈ {steps * m['batch_size'] / m['n_train']:.1f} epochs, word vocabularies (no BPE, no source-target sharing), test2016 only "
        "(see `src/mlpapers/papers/transformer/README.md`).",
        "",
        f"| Model | BLEU test2016 (beam {k}) | greedy | val loss (nats/token) |",
        "|---|---|---|---|",
        f"| Luong global attention ({m['luong_variant']}) | {fmt(lu['bleu_test_2016_flickr'])} | "
        f"{fmt(lu['bleu_greedy_test_2016_flickr'])} | {fmt(lu['val_loss'], 3)} |",
        f"| Transformer | {fmt(b['bleu_test_2016_flickr'])} | {fmt(b['bleu_greedy_test_2016_flickr'])} | "
        f"{fmt(b['val_loss'], 3)} |",
        "",
        "| Throughput (1 thread, this machine) | Luong | Transformer |",
        "|---|---|---|",
        f"| CPU s / step | {fmt(tp['cpu_s_per_step']['luong'], 3)} | {fmt(tp['cpu_s_per_step']['transformer'], 3)} |",
        f"| tokens / CPU s (source + target) | {fmt(tp['tokens_per_cpu_s']['luong'], 0)} | "
        f"{fmt(tp['tokens_per_cpu_s']['transformer'], 0)} |",
        "",
        "| Claim (paper) | measured | verdict |",
        "|---|---|---|",
        f"| §6.1: the Transformer translates better than recurrent attention models, at equal steps (beam BLEU, "
        f"Transformer − Luong) | {fmt(m['vs_luong_equal_steps']['beam'])} | "
        f"{fmt_verdict(m['vs_luong_equal_steps']['beam'], Claim('above', 0.0))} |",
        f"| … at equal training time (greedy BLEU, Transformer − Luong) | {fmt(eq['minus_luong_greedy'])} | "
        f"{fmt_verdict(eq['minus_luong_greedy'], Claim('above', 0.0))} |",
        f"| §4 / Table 2: it trains faster (steps per CPU second, Transformer / Luong; rounds) | "
        f"{fmt(tp['transformer_over_luong_speed'], 2)} | "
        f"{fmt_verdict(tp['transformer_over_luong_speed'], Claim('above', 1.0))} |",
    ]
    noise = m["ablations"]["base"]["summary"]["val_bleu_greedy"]["std"]
    for a, (text, key, claim) in ABLATION_CLAIMS.items():
        if a not in m["ablations"]:
            continue
        est = m["ablations"][a]["base_minus_ablation"][key]
        c = claim or Claim("within", 0.0, noise if noise > 0 else 1e-9)
        lines.append(f"| {text} (val BLEU, base − {a}) | {fmt(est)} | {fmt_verdict(est, c)} |")
    if "no_smoothing" in m["ablations"]:
        est = m["ablations"]["no_smoothing"]["base_minus_ablation"]["val_loss"]
        lines.append(f"| §5.4: label smoothing hurts perplexity (val NLL, base − no_smoothing) | {fmt(est, 3)} | "
                     f"{fmt_verdict(est, Claim('above', 0.0))} |")
    return "\n".join(lines)
