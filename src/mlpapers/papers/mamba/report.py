"""Mamba README section (claims table) from results/mamba.json, and its two figures.

Every verdict word comes from ``mlpapers.stats.verdict`` on a summary stored in the results:
per-seed paired perplexity differences against the FoX models (same seeds, same batches),
per-seed summaries, or exact measurements (state bytes). Thresholds are 0 (a claimed direction),
or the float32 unit roundoff for the decoding check.
"""
from __future__ import annotations

from mlpapers import stats
from mlpapers.experiment import Paths
from mlpapers.stats import Claim, exact
from mlpapers.stats import fmt_verdict as word
from mlpapers.utils import read_json

LABELS = {"mamba": "Mamba (S6)", "mamba2": "Mamba-2 (SSD)", "transformer": "Transformer (learned abs. pos.)",
          "transformer_rope": "Transformer (RoPE)", "fox": "FoX"}
FP32_UNIT_ROUNDOFF = 2.0**-24


def cell(est: dict | None, digits: int = 3) -> str:
    return stats.fmt(est, digits) if est else "—"


def markdown(paths: Paths) -> str:
    m = read_json(paths.results / "mamba.json")
    s, L = m["setup"], m["setup"]["context"]
    tps = read_json(paths.results / "mamba_speed.json")["throughput"]["train_tokens_per_cpu_s"]  # the speed stage
    kmax = max((int(k[:-1]) for e in m["extrapolation"].values() for k in e), default=None)
    lines = [
        "### Mamba: selective state spaces in the FoX benchmark (Gu & Dao 2023; Mamba-2: Dao & Gu 2024)",
        "",
        f"Same corpus, trunk and recipe as the FoX section (read from its params): width {s['d_model']}, "
        f"{s['n_blocks']} Mamba blocks for its {s['n_layer']} layers, L={L}, {s['steps']} steps of batch "
        f"{s['batch_size']}, lr {s['lr']:g}, {s['seeds']} seeds (paired by seed with the FoX models, which are not "
        f"retrained: same seeds, same batches); validation perplexity per character on the whole validation split "
        f"({s['val_tokens']:,} tokens). Cells: mean ± std over seeds [95% t interval]. Deviations: S6 state size "
        f"N={s['d_state']} (paper: 16) and Mamba-2 N={s['ssd_d_state']} (paper: 64-128), expansion E={s['expand']}; one "
        "Mamba block per Transformer layer (paper: two, for equal parameters), so the Mamba models have about half "
        "the Transformer's parameters; pure-PyTorch scans in fp32 on CPU; exact ZOH for B (the official kernel uses "
        "Delta B); Mamba-2 with the Mamba-1 block layout. Details: `src/mlpapers/papers/mamba/README.md`.",
        "",
        f"| Model | Params | Val ppl @L | ppl beyond L @{kmax}L | change beyond L vs @L (%) | Train tokens / CPU-s |",
        "|---|---|---|---|---|---|",
    ]
    for v, r in m["variants"].items():
        e = m["extrapolation"].get(v, {}).get(f"{kmax}x", {})
        lines.append(f"| {LABELS.get(v, v)} | {r['params']:,} | {cell(r['val_ppl'])} | {cell(e.get('ppl_beyond_L'))} | "
                     f"{cell(e.get('change_beyond_L_vs_L_pct'), 1)} | {tps[v]['mean']:,.0f} |")
    for b, r in m["fox"].items():
        if b in LABELS:
            speed = f"{tps[b]['mean']:,.0f}" if b in tps else "—"
            lines.append(f"| {LABELS[b]} (FoX stage) | — | {cell(r['val_ppl'])} | — | "
                         f"{cell(r.get(f'change_beyond_L_vs_L_pct_{kmax}x'), 1)} | {speed} |")
    lines += ["", claims_table(m), "",
              "![ppl vs length](plots/mamba_ppl_vs_length.png) ![decoding state](plots/mamba_cache_memory.png)"]
    return "\n".join(lines)


def claims_table(m: dict) -> str:
    C, D = m["comparisons"], m["decode"]
    rows = []  # (claim, quantity, estimate, Claim, source)
    for v in m["variants"]:
        for b, src in (("transformer_rope", "Mamba §4.2: matches or beats Transformer++ (RoPE) at equal size"),
                       ("transformer", "the seed's baseline Transformer"),
                       ("fox", "FoX §4: FoX beats Mamba-2")):
            key = f"{v}_minus_{b}"
            if key in C:
                better = b != "fox"
                rows.append((f"{LABELS[v]} {'has lower' if better else 'has higher'} val ppl @L than {LABELS[b]}",
                             f"ppl({v}) − ppl({b}), paired per seed", C[key],
                             Claim("below" if better else "above", 0.0), src))
    for v, ext in m["extrapolation"].items():
        for key, e in ext.items():
            k = key[:-1]  # "16x" -> "16"
            rows.append((f"{LABELS[v]} extrapolates to {k}L: ppl beyond L at {k}L below ppl @L",
                         "% change, per seed", e["change_beyond_L_vs_L_pct"], Claim("below", 0.0),
                         "Mamba §4.1 / §4.3: extrapolation of a recurrent model with no positions"))
    for v, d in D.items():
        rows.append((f"{LABELS[v]}: decoding state does not grow with length",
                     f"bytes added from 1 to {d['tokens']} tokens", exact(d["state_growth_bytes"]), Claim("below", 1.0),
                     "Mamba §3: O(1)-state recurrent inference"))
        rows.append((f"{LABELS[v]}: recurrent decoding equals the parallel scan",
                     "max rel. logit difference, fp64", d["rel_diff_fp64"], Claim("below", FP32_UNIT_ROUNDOFF),
                     "§3.3: the scan is exact (threshold: fp32 unit roundoff)"))
    if "kv_growth_bytes" in m["fox"]:
        rows.append(("Transformer (RoPE, FoX stage): the KV cache grows with length", "bytes added, FoX stage",
                     exact(m["fox"]["kv_growth_bytes"]), Claim("above", 0.0), "contrast for the row above"))
    out = ["Claims (verdicts from `mlpapers.stats`; thresholds: 0 for a direction, fp32 unit roundoff for "
           "exactness; 'exact' rows are deterministic byte counts):", "",
           "| Claim | Quantity | Estimate | Verdict | Source |", "|---|---|---|---|---|"]
    for claim, q, est, c, src in rows:
        digits = 0 if est.get("method") == "exact" else (3 if abs(est["mean"]) > 1e-3 or est["mean"] == 0 else 2)
        shown = stats.fmt(est, digits) if est.get("method") != "exact" else f"{est['mean']:,.0f}"
        if 0 < abs(est["mean"]) < 1e-3:
            shown = f"{est['mean']:.2e} (max {est['ci_hi']:.2e})"
        out.append(f"| {claim} | {q} | {shown} | {word(est, c)} | {src} |")
    return "\n".join(out)


def plot_all(cfg, paths: Paths) -> None:
    import pandas as pd

    from mlpapers.papers.fox.plots import band
    from mlpapers.plotting import plt, save_figure

    ppl = pd.concat([pd.read_csv(paths.plots / "mamba" / "ppl_vs_length.csv"),
                     pd.read_csv(paths.plots / "fox" / "ppl_vs_length.csv")])
    ppl = ppl[ppl.variant.isin(list(cfg.variants) + ["transformer_rope", "fox"])]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, col, title in ((axes[0], "ppl_beyond_L", "positions > L"), (axes[1], "ppl_window", "whole windows")):
        for v, g in ppl.groupby("variant", sort=False):
            g = g.dropna(subset=[col])
            if len(g):
                band(ax, "length", g, col, LABELS.get(v, v))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel="evaluation length (tokens)", title=f"Perplexity vs length: {title}")
    axes[0].set_ylabel("validation perplexity (log)")
    axes[1].legend(fontsize=7)
    save_figure(fig, paths.plots / "mamba_ppl_vs_length.png")

    mem = pd.concat([pd.read_csv(paths.plots / "mamba" / "cache_memory.csv"),
                     pd.read_csv(paths.plots / "fox" / "cache_memory.csv")])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for v, g in mem.groupby("variant", sort=False):
        ax.plot(g["tokens"], g["cache_bytes"] / 1024, marker="o", label=LABELS.get(v, v))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set(xlabel="decoded tokens", ylabel="decoding cache / state (KiB)", title="Decoding memory vs length")
    ax.legend(fontsize=7)
    save_figure(fig, paths.plots / "mamba_cache_memory.png")
