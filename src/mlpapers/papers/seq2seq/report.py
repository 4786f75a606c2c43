"""Seq2Seq plots and README sections, built only from metrics/ and plots/ data."""
from __future__ import annotations

import pandas as pd

from mlpapers.experiment import Paths
from mlpapers.plotting import plt, save_figure
from mlpapers.utils import fmt_mean_std, read_json

# Published claims we compare against (not our results).
LUONG_TABLE1_GAIN = 5.0  # BLEU: global attention (location) vs no attention, WMT'14 En->De (Luong Table 1)
LABELS = {"baseline": "no attention (fixed vector)"}


def label(variant: str) -> str:
    return LABELS.get(variant, f"global attention ({variant.removeprefix('attn_')})")


def verdict(diff: dict) -> str:
    """'holds' if the paired mean difference (attention - baseline) is > 0 by >= 2 standard errors;
    with a single seed, if it is > 0 at all (no noise estimate: marked as such)."""
    m, s, n = diff["mean"], diff["std"], diff["n"]
    if n == 1:
        return "holds (1 seed, no noise estimate)" if m > 0 else "does not hold (1 seed)"
    se = s / n**0.5
    if m > 0 and m >= 2 * se:
        return "holds"
    return "does not hold (reversed)" if m < 0 and -m >= 2 * se else "does not hold (within noise)"


def multi30k_markdown(paths: Paths) -> str:
    m = read_json(paths.metrics / "seq2seq_multi30k.json")
    variants = [v for v in m if isinstance(m[v], dict) and "val_loss" in m[v]]
    n = m["baseline"]["bleu_test_2016_flickr"]["n"]
    buckets = list(m["bucket_sizes"])
    lines = [
        "### Seq2Seq with Luong attention: Multi30k German → English",
        "",
        f"Bidirectional-LSTM encoder, LSTM decoder, greedy decoding, all models trained for the same number of steps; "
        f"{n} seed(s) (mean ± std where n > 1). Small scale for a 2-core CPU budget (see "
        f"`src/mlpapers/papers/seq2seq/README.md`). sacreBLEU `{m['sacrebleu_signature']}`.",
        "",
        "| Model | BLEU test2016 Flickr | BLEU test2017 Flickr | BLEU test2017 MSCOCO | val loss |",
        "|---|---|---|---|---|",
    ]
    for v in variants:
        r = m[v]
        lines.append(f"| {label(v)} | {fmt_mean_std(r['bleu_test_2016_flickr'])} | {fmt_mean_std(r['bleu_test_2017_flickr'])} "
                     f"| {fmt_mean_std(r['bleu_test_2017_mscoco'])} | {fmt_mean_std(r['val_loss'], 3)} |")
    lines += ["", "BLEU by source length (tokens) on the union of the three test sets:", "",
              "| Model | " + " | ".join(f"{b} (n={m['bucket_sizes'][b]})" for b in buckets) + " |",
              "|---|" + "---|" * len(buckets)]
    for v in variants:
        lines.append(f"| {label(v)} | " + " | ".join(fmt_mean_std(m[v]["bleu_by_length"][b]) for b in buckets) + " |")
    lines.append("")
    for v in variants:
        if v == "baseline":
            continue
        d = m[f"{v}_minus_baseline"]
        g = d["bleu_test_2016_flickr"]
        lo, hi = d["bleu_by_length"][buckets[0]], d["bleu_by_length"][buckets[-1]]
        grow = {"mean": hi["mean"] - lo["mean"], "std": 0.0, "n": 1}
        lines += [
            f"- Claim \"attention lifts BLEU\" (Luong Table 1: about +{LUONG_TABLE1_GAIN:.0f} BLEU): {label(v)} − baseline "
            f"= {fmt_mean_std(g)} BLEU on test2016 → **{verdict(g)}**.",
            f"- Claim \"attention's gain does not shrink on long sentences\" (Luong Fig. 6): gain {fmt_mean_std(lo)} BLEU "
            f"for {buckets[0]} tokens, {fmt_mean_std(hi)} for {buckets[-1]} tokens → "
            f"**{'holds' if hi['mean'] >= lo['mean'] else 'does not hold'}** (bucket BLEU is noisy: small buckets).",
        ]
        if "attention_on_first_token" in m[v]:
            f = m[v]["attention_on_first_token"]["mean"]
            lines.append(f"- Diagnostic: {label(v)} puts on average {100 * f:.0f}% of its attention weight on the first "
                         f"source token (uniform over a 13-token sentence would be ~8%)"
                         + (": at this scale it has **not learned sharp alignments** (cf. the heatmaps), so its BLEU gain "
                            "cannot be credited to alignment." if f > 0.5 else "."))
    lines += ["", "![BLEU vs source length](plots/seq2seq_multi30k.png)", "",
              "![attention weights](plots/seq2seq_attention.png)"]
    return "\n".join(lines)


def reverse_markdown(paths: Paths) -> str:
    m = read_json(paths.metrics / "seq2seq_reverse.json")
    lo, hi = m["train_lengths"]["min"], m["train_lengths"]["max"]
    variants = [v for v in m if v != "train_lengths" and not v.endswith("_minus_baseline")]
    lengths = sorted(int(k[1:]) for k in m["baseline"] if k.startswith("L"))
    longest_in = max(L for L in lengths if L <= hi)
    longest = max(lengths)
    n = m["baseline"][f"L{longest:02d}"]["exact"]["n"]
    pct = lambda s: fmt_mean_std(s, 1, 100)  # noqa: E731
    lines = [
        "### Seq2Seq with Luong attention: synthetic reversal vs input length",
        "",
        f"Reverse a random symbol sequence; trained on lengths {lo}–{hi}, tested on lengths {lengths[0]}–{longest}; "
        f"{n} seeds (mean ± std); equal steps for every model.",
        "",
        f"| Model | exact match, length {longest_in} (%) | token acc., length {longest_in} (%) "
        f"| exact match, length {longest} (%) | token acc., length {longest} (%) | token acc., lengths > {hi} (%) |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        r = m[v]
        beyond = pct(r["beyond"]["token"]) if "beyond" in r else "–"
        lines.append(f"| {label(v)} | {pct(r[f'L{longest_in:02d}']['exact'])} | {pct(r[f'L{longest_in:02d}']['token'])} "
                     f"| {pct(r[f'L{longest:02d}']['exact'])} | {pct(r[f'L{longest:02d}']['token'])} | {beyond} |")
    lines.append("")
    base = m["baseline"]
    for v in variants:
        if v == "baseline":
            continue
        d = m[f"{v}_minus_baseline"]
        drop_a = m[v][f"L{lengths[0]:02d}"]["token"]["mean"] - m[v][f"L{longest_in:02d}"]["token"]["mean"]
        drop_b = base[f"L{lengths[0]:02d}"]["token"]["mean"] - base[f"L{longest_in:02d}"]["token"]["mean"]
        holds = drop_a < drop_b and m[v][f"L{longest_in:02d}"]["token"]["mean"] > base[f"L{longest_in:02d}"]["token"]["mean"]
        lines.append(
            f"- Claim \"attention does not degrade with length, unlike the fixed-vector model\" (Luong Fig. 6, Bahdanau "
            f"Fig. 2), within the training range: token accuracy drops by {100 * drop_a:.1f} pp from length {lengths[0]} "
            f"to {longest_in} with {label(v)} vs {100 * drop_b:.1f} pp without → **{'holds' if holds else 'does not hold'}**; "
            f"paired gain over lengths {lo}–{hi}: {fmt_mean_std(d['in_range']['token'], 1, 100)} pp → "
            f"**{verdict(d['in_range']['token'])}**.")
        if "beyond" in d:
            lines.append(f"- Beyond the training lengths (> {hi}; not claimed by the papers): token-accuracy gain "
                         f"{fmt_mean_std(d['beyond']['token'], 1, 100)} pp → **{verdict(d['beyond']['token'])}**.")
    lines += ["", "![accuracy vs length](plots/seq2seq_reverse.png)"]
    return "\n".join(lines)


def plot_multi30k(cfg, paths: Paths) -> None:
    c = pd.read_csv(paths.plots / "seq2seq_multi30k" / "bleu_by_length.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for v, d in c.groupby("variant", sort=False):
        d = d.sort_values("order")
        ax.errorbar(d["order"], d["bleu"], yerr=d["bleu_std"], marker="o", capsize=3, label=label(v))
    d = c[c["variant"] == c["variant"].iloc[0]].sort_values("order")
    ax.set_xticks(d["order"], [f"{b}\n(n={n})" for b, n in zip(d["bucket"], d["n"])])
    ax.set(xlabel="source length (tokens)", ylabel="BLEU",
           title=f"Multi30k de→en, test 2016+2017, {len(cfg.seeds)} seed(s) (cf. Luong Fig. 6)")
    ax.legend(fontsize=8)
    save_figure(fig, paths.plots / "seq2seq_multi30k.png")
    heat = paths.plots / "seq2seq_multi30k" / "attention.json"
    if heat.exists():
        h = read_json(heat)
        k = len(h["sentences"])
        fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.2), squeeze=False)
        for ax, s in zip(axes[0], h["sentences"]):
            ax.imshow(s["weights"], cmap="gray_r", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(s["src"])), [t.lstrip("▁") for t in s["src"]], rotation=90, fontsize=7)
            ax.set_yticks(range(len(s["hyp"])), [t.lstrip("▁") for t in s["hyp"]], fontsize=7)
            ax.grid(False)
        fig.suptitle(f"Attention weights a_t(s), {label(h['variant'])}, test2016 (cf. Luong Fig. 7)")
        save_figure(fig, paths.plots / "seq2seq_attention.png")


def plot_reverse(cfg, paths: Paths) -> None:
    c = pd.read_csv(paths.plots / "seq2seq_reverse" / "accuracy_vs_length.csv")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric, name in ((axes[0], "exact", "sequence exact match (%)"), (axes[1], "token", "token accuracy (%)")):
        for v, d in c.groupby("variant", sort=False):
            ax.errorbar(d["length"], 100 * d[metric], yerr=100 * d[f"{metric}_std"], marker="o", ms=3, capsize=2,
                        label=label(v))
        ax.axvspan(cfg.data.train_min_len - 0.5, cfg.data.train_max_len + 0.5, color="tab:gray", alpha=0.12,
                   label="training lengths")
        ax.set(xlabel="input length", ylabel=name, ylim=(-3, 103))
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Sequence reversal, {len(cfg.seeds)} seeds")
    save_figure(fig, paths.plots / "seq2seq_reverse.png")
