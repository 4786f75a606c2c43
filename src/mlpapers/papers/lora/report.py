"""LoRA README section (claims table with verdicts) and its figure, from results/lora.json.

Every verdict word comes from ``mlpapers.stats.verdict`` on a summary stored by the
evaluate stage; each threshold is a measured noise level, 0 for a direction, or the
paper's stated size (1% of the trainable parameters), and the table says which.
"""
from __future__ import annotations

from mlpapers import stats
from mlpapers.experiment import Paths
from mlpapers.stats import Claim, exact
from mlpapers.stats import fmt_verdict as word
from mlpapers.utils import read_json

PARAM_FRACTION_PCT = 1.0  # the claim under test: "< 1% of the trainable parameters"
# "No additional inference latency" (Section 4.1): a one-sided claim (not slower), which a timing can only
# bound. The merged model's forward pass costs less than 5% of the base model's more than an identical copy
# of the base does in the same rounds.
LATENCY_MARGIN = 0.05
LABELS = {"pretrained": "pretrained on Tiny Shakespeare, zero-shot", "scratch": "trained from scratch",
          "full": "full fine-tuning"}


def load(paths: Paths) -> dict:
    """results/lora.json (every number the evaluate stage measured; metrics/ keeps only the
    headline) with the speed stage's CPU timings (results/lora_speed.json) joined in."""
    m = read_json(paths.results / "lora.json")
    sp = read_json(paths.results / "lora_speed.json")
    m["throughput"] = sp["throughput"]
    for v, cpu in sp["train_cpu_s"].items():
        m["variants"][v]["train_cpu_s"] = cpu
    return m


def label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    _, targets, r = name.split("_")
    return f"LoRA r={r[1:]} on " + ("W_q, W_v" if targets == "qv" else "all attention + MLP matrices")


def order(names) -> list[str]:
    """pretrained, scratch, full, then LoRA on W_q,W_v by rank, then LoRA on all matrices by rank."""
    def key(v: str):
        if v in LABELS:
            return (list(LABELS).index(v), 0)
        _, targets, r = v.split("_")
        return (len(LABELS) + (targets == "all"), int(r[1:]))
    return sorted(names, key=key)


def markdown(paths: Paths) -> str:
    m = load(paths)
    s, V, C, tp = m["setup"], m["variants"], m["claims"], m["throughput"]
    bm = s["base_model"]
    noise = C["full_seed_std_pct"]
    lines = [
        "### LoRA: low-rank adaptation of a pretrained character LM (Hu et al., ICLR 2022)",
        "",
        f"The FoX stage's Transformer (n_layer={bm['n_layer']}, d={bm['d_model']}, {s['base_params']:,} parameters, "
        f"pretrained on Tiny Shakespeare) adapted to the English side of Multi30k, character level: "
        f"{s['steps']} steps of batch {s['batch_size']} × {s['context']} characters ({s['train_chars']:,} characters, "
        f"{100 * s['train_chars'] / s['chars']['train']:.0f}% of the training stream) for every model, each at the "
        f"learning rate best on validation; LoRA α={s['alpha']:g} for every rank. {s['seeds']} seeds: seed s "
        "fine-tunes pretrained seed s and draws its own A and batch order. Perplexity per character on the whole "
        f"validation ({s['chars']['val']:,} chars) and test_2016_flickr ({s['chars']['test_2016_flickr']:,}) "
        f"streams; characters outside Shakespeare's vocabulary are mapped explicitly "
        f"({sum(s['chars_mapped'].values()):,} of {sum(s['chars'].values()):,}; see notes). Training CPU-seconds = "
        "steps × CPU-seconds per update measured in interleaved rounds (a throughput metric of this machine). "
        "Deviations from the paper: a 0.8M-parameter model instead of GPT-2/3 or RoBERTa, a domain shift "
        "instead of a downstream task, perplexity instead of task scores; details in "
        "`src/mlpapers/papers/lora/README.md`.",
        "",
        "| Model | Trainable params (% of full) | Val ppl | Test ppl | Training CPU-s |",
        "|---|---|---|---|---|",
    ]
    for v in order(V):
        r = V[v]
        cpu = r.get("train_cpu_s")
        cpu_s = f"{cpu['mean']:.0f} [{cpu['ci_lo']:.0f}, {cpu['ci_hi']:.0f}]" if cpu else "0 (no training)"
        lines.append(f"| {label(v)} | {r['trainable_params']:,} ({r['trainable_pct']:.2f}%) | "
                     f"{stats.fmt(r['val_ppl'])} | {stats.fmt(r['test_ppl'])} | {cpu_s} |")
    lines += [
        "",
        "Claims. *Close to full fine-tuning*: the per-seed paired validation-perplexity excess of LoRA over full "
        f"fine-tuning, in %, is below the seed-to-seed spread of full fine-tuning itself (its std, measured: "
        f"{noise:.2f}% of its perplexity): a gap smaller than what rerunning full fine-tuning with another seed "
        "gives. *< 1% of the parameters*: the paper's size, an exact count. *Merged = adapter*: max |logit "
        "difference| over the float32 rounding bound of the two paths (measured with float64 copies), per seed, "
        "below 1 (an error in the merge, e.g. a missing α/r, is orders of magnitude above it). "
        "*No extra inference cost*: per round, the merged model's forward CPU time over the base model's minus "
        "that of an identical copy of the base (the copy absorbs machine effects; forward passes alternate one at "
        f"a time in rotating order), below +{LATENCY_MARGIN:g} (the paper claims none; a timing can only bound "
        f"it); the unmerged adapter is timed for contrast. The identical copies' own ratio: "
        f"{stats.fmt(tp['control_ratio'], 3)}.",
        "",
        "| Claim | Estimate (mean ± std [95% CI]) | Holds if | Verdict |",
        "|---|---|---|---|",
    ]
    if C.get("scratch_minus_full_pct"):
        lines.append(f"| pretraining helps: scratch − full fine-tuning, val ppl % | {stats.fmt(C['scratch_minus_full_pct'])} "
                     f"| > 0 (direction) | {word(C['scratch_minus_full_pct'], Claim('above', 0.0))} |")
    lora = order(v for v in C if v.startswith("lora_"))
    for v in lora:
        c = C[v]
        close = Claim("below", noise)
        lines.append(f"| {label(v)}: close to full fine-tuning (val ppl excess %) | {stats.fmt(c['gap_vs_full_pct'])} "
                     f"| < {noise:.2f} (full FT seed std) | {word(c['gap_vs_full_pct'], close)} |")
        lines.append(f"| {label(v)}: < 1% of the trainable parameters | {c['trainable_pct']:.2f}% (exact) | "
                     f"< {PARAM_FRACTION_PCT:g}% (paper) | {word(exact(c['trainable_pct']), Claim('below', PARAM_FRACTION_PCT))} |")
    for v in lora:
        c = C[v]
        lines.append(f"| {label(v)}: merged = adapter (max logit diff {c['merge_max_abs_diff']:.1e}; "
                     f"merged − adapter val ppl {c['merged_minus_adapter_val_ppl']['mean']:+.1e}) | "
                     f"diff / fp32 rounding bound {stats.fmt(c['merge_diff_of_bound'], 3)} | < 1 (rounding bound) | "
                     f"{word(c['merge_diff_of_bound'], Claim('below', 1.0))} |")
        arch = "same class, modules and " + f"{c['merged_params']:,} parameters as the base" \
            if c["merged_same_architecture"] else "NOT the base architecture"
        mo, ao, mc = tp["merged_over_base"][v], tp["adapter_over_base"][v], tp["merged_minus_copy"][v]
        lines.append(f"| {label(v)}: merged has no extra inference cost ({arch}) | merged/base − copy/base "
                     f"{stats.fmt(mc, 3)} (merged/base {stats.fmt(mo, 3)}; unmerged adapter/base "
                     f"{stats.fmt(ao, 3)}) | < +{LATENCY_MARGIN:g} (not slower) | "
                     f"{word(mc, Claim('below', LATENCY_MARGIN))} |")
    lines += ["", "![LoRA: validation perplexity vs trainable parameters](plots/lora.png) "
              "![LoRA: validation perplexity vs training CPU-seconds](plots/lora_speed.png)"]
    return "\n".join(lines)


def _points(m: dict, paths: Paths) -> dict[str, list]:
    """family -> [(trainable params, training CPU-s or 0, val ppl mean, std, variant)], from per_seed.csv."""
    import csv

    with open(paths.plots / "lora" / "per_seed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fams: dict[str, list] = {}
    for v, r in m["variants"].items():
        fam = next(row["variant"] for row in rows if row["model"] == v)
        ppl = [float(row["val_ppl"]) for row in rows if row["model"] == v]
        mean = sum(ppl) / len(ppl)
        sd = (sum((p - mean) ** 2 for p in ppl) / max(1, len(ppl) - 1)) ** 0.5
        cpu = r.get("train_cpu_s", {}).get("mean", 0.0)
        fams.setdefault(fam, []).append((max(r["trainable_params"], 1), cpu, mean, sd, v))
    return fams


def _figure(fams: dict[str, list], x: int, xlabel: str, title: str, path) -> None:
    from mlpapers.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, pts in fams.items():
        if fam.startswith("pretrained"):
            ax.axhline(pts[0][2], ls=":", color="grey", label=fam)
            continue
        pts = sorted(pts, key=lambda p: p[x])
        xs, mean, sd, names = [p[x] for p in pts], [p[2] for p in pts], [p[3] for p in pts], [p[4] for p in pts]
        ax.errorbar(xs, mean, yerr=sd, marker="o", capsize=3, ls="-" if x == 0 else "none", label=fam)
        if fam.startswith("lora"):
            for xi, y, name in zip(xs, mean, names):
                ax.annotate(name.split("_")[-1], (xi, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if x == 0:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation perplexity (Multi30k en, per char)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    save_figure(fig, path)


def plot_all(cfg, paths: Paths) -> None:
    """plots/lora.png (evaluate stage): val ppl vs trainable parameters. Model outputs only, so
    the figure is byte-stable; the CPU-time view is the speed stage's plots/lora_speed.png."""
    fams = _points(read_json(paths.results / "lora.json"), paths)
    _figure(fams, 0, "trainable parameters", "LoRA vs full fine-tuning vs scratch (mean ± std over seeds)",
            paths.plots / "lora.png")


def plot_speed(paths: Paths) -> None:
    """plots/lora_speed.png (speed stage): val ppl vs training CPU-seconds measured on this machine."""
    _figure(_points(load(paths), paths), 1, "training CPU-seconds (steps × measured CPU-s per update)",
            "LoRA: quality vs training cost on this CPU (mean ± std over seeds)", paths.plots / "lora_speed.png")
