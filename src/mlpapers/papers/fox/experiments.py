"""FoX experiments as pipeline stages (params section ``fox``).

* prepare -- the corpus as token-id streams in data/prepared/fox/ (train, val, vocab).
* train   -- every variant (transformer, transformer_rope, transformer_nope, fox, gla) and
             seed in one stage (``train fox all``; jobs side by side: ``compute.workers``), with
             the shared ``fit()``; checkpoints + training curves.
* evaluate -- every (variant, seed) checkpoint in parallel (``evaluate_one``): perplexity at
             the training length, length extrapolation (over positions > L and over whole
             windows), gate analysis and ablations (``analysis.py``), attention distance,
             incremental decoding in float32 and float64. Seeds are summarised with
             ``mlpapers.stats`` (paired per seed) into results/fox.json (headline: metrics/);
             per-seed and per-head detail goes to plots/fox/*.csv.
* speed   -- training throughput in interleaved rounds, alone, into results/fox_speed.json
             (timings are the one output that differs between runs, so they have their own stage).
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.fox.analysis import (ablation_losses, attention_distance, gate_stats, gate_values,
                                          gates_by_token)
from mlpapers.papers.fox.model import LM, VARIANTS, LMConfig, Variant, count_params
from mlpapers.papers.fox.task import (LMTask, char_corpus, decode_check, loss_matrix, train_throughput,
                                      wikitext_corpus, windows)
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import atomic_write_text, resolve_device, seed_everything, write_csv, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoxData:
    corpus: Literal["tinyshakespeare", "wikitext2"]
    val_fraction: float  # tinyshakespeare: the last fraction of the text is the validation stream
    vocab_size: int  # wikitext2: <unk>, <eos> + the most frequent training words (seed: 10,000)

    def validate(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.vocab_size < 3:
            raise ValueError(f"data.vocab_size must be >= 3, got {self.vocab_size}")


@dataclass(frozen=True)
class FoxModel:
    n_layer: int
    n_head: int
    d_model: int  # width; d_head = d_model / n_head must be even (RoPE)
    context: int  # L: training length (and the learned position table's size)
    rope_base: float  # transformer_rope: theta_i = base^(-2i/d_head) (10,000 as RoFormer; official FoX: 500,000)

    def validate(self) -> None:
        if min(self.n_layer, self.n_head, self.d_model, self.context) < 1:
            raise ValueError("model sizes must be >= 1")
        if not (math.isfinite(self.rope_base) and self.rope_base > 1):
            raise ValueError(f"model.rope_base must be a finite number > 1, got {self.rope_base}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"model.d_model={self.d_model} must split into n_head={self.n_head} heads of even size")


@dataclass(frozen=True)
class FoxEval:
    eval_windows: int  # validation windows of L tokens behind the training curves
    extrapolation: tuple[int, ...]  # evaluation lengths as multiples of L, e.g. [1, 2, 4, 8, 16]
    extrapolation_tokens: int  # the first N validation tokens, cut into windows of each length; 0 = all
    analysis_windows: int  # windows of L behind the attention-distance analysis (T x T weights kept)
    gate_text_tokens: int  # tokens of validation text in the gates-over-text figure
    decode_length: int  # tokens decoded incrementally for the parallel-vs-incremental check
    speed_steps: int  # updates per timing round (throughput)
    speed_rounds: int  # interleaved rounds; the ratio's interval is over rounds

    def validate(self) -> None:
        if not self.extrapolation or min(self.extrapolation) < 1 or 1 not in self.extrapolation:
            raise ValueError(f"eval.extrapolation must hold 1 and multiples >= 1, got {list(self.extrapolation)}")
        if len(set(self.extrapolation)) != len(self.extrapolation):
            raise ValueError(f"eval.extrapolation has repeats: {list(self.extrapolation)}")
        if min(self.eval_windows, self.analysis_windows, self.gate_text_tokens, self.decode_length,
               self.speed_steps) < 1 or self.extrapolation_tokens < 0:
            raise ValueError("eval counts must be >= 1 (extrapolation_tokens >= 0, 0 = whole split)")
        if self.speed_rounds < 2:
            raise ValueError("eval.speed_rounds must be >= 2 (the throughput ratio needs an interval)")


@dataclass(frozen=True)
class FoxConfig:
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    data: FoxData
    model: FoxModel
    train: TrainConfig
    eval: FoxEval

    def validate(self) -> None:
        if not self.seeds or len(set(self.variants)) != len(self.variants) or not self.variants:
            raise ValueError("seeds and variants must be non-empty; variants without repeats")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be unique and >= 0, got {list(self.seeds)}")
        if 0 < self.eval.extrapolation_tokens < max(self.eval.extrapolation) * self.model.context:
            raise ValueError("eval.extrapolation_tokens must hold one window of the longest evaluation length")


# --------------------------------------------------------------------------- data


def prepare(cfg: FoxConfig, paths: Paths) -> None:
    """Raw corpus -> data/prepared/fox/{train,val}.npy (token ids) and vocab.json."""
    if cfg.data.corpus == "tinyshakespeare":
        text = (paths.raw / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
        train, val, vocab = char_corpus(text, cfg.data.val_fraction)
    else:
        train, val, vocab = wikitext_corpus(paths.raw / "wikitext-2", cfg.data.vocab_size)
    out = paths.prepared / "fox"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "train.npy", train.astype(np.int32))
    np.save(out / "val.npy", val.astype(np.int32))
    atomic_write_text(out / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    log.info("fox: %s, %d train / %d val tokens, vocabulary %d", cfg.data.corpus, len(train), len(val), len(vocab))


def load_data(paths: Paths) -> tuple[torch.Tensor, torch.Tensor, int]:
    d = paths.prepared / "fox"
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    to_t = lambda name: torch.from_numpy(np.load(d / name).astype(np.int64))  # noqa: E731
    return to_t("train.npy"), to_t("val.npy"), len(vocab)


def build(cfg: FoxConfig, variant: str, vocab_size: int) -> LM:
    m = cfg.model
    return LM(LMConfig(variant, vocab_size, m.n_layer, m.n_head, m.d_model, m.context, m.rope_base))


def checkpoint(paths: Paths, variant: str, seed: int):
    return paths.checkpoint("fox", variant, f"seed{seed}")


# -------------------------------------------------------------------------- train


def train_seed(cfg: FoxConfig, variant: str, paths: Paths, seed: int) -> list[dict]:
    """One seed of one variant: its own init and batch order; checkpoint written, history returned."""
    train_ids, val_ids, vocab = load_data(paths)
    seed_everything(seed)
    model = build(cfg, variant, vocab)
    task = LMTask(model, train_ids, val_ids, cfg.train.batch_size, cfg.model.context, cfg.eval.eval_windows)
    history = fit(task, cfg.train, seed=seed, desc=f"fox/{variant}/seed{seed}")
    for r in history:  # sequences/s -> tokens/s
        r["tokens_per_s"] = r.pop("examples_per_s") * cfg.model.context
    save_checkpoint(checkpoint(paths, variant, seed), model, model_config=model.cfg, train_config=cfg.train, seed=seed)
    return [{"seed": seed, **r} for r in history]


def _train_job(cfg: FoxConfig, paths: Paths, job: tuple[str, int]) -> list[dict]:
    return train_seed(cfg, job[0], paths, job[1])


def train(cfg: FoxConfig, variant: str, paths: Paths) -> None:
    """Train one variant's seeds, or with ``variant == "all"`` every (variant, seed) pair, side by
    side in ``compute.workers`` processes. "all" is what the pipeline runs: 15 jobs keep 2 workers
    busy to the end, where a stage per variant (3 seeds on 2 workers) leaves one idle half the time."""
    variants = list(cfg.variants) if variant == "all" else [variant]
    jobs = [(v, s) for v in variants for s in cfg.seeds]
    per_job = parallel_map(functools.partial(_train_job, cfg, paths), jobs, paths.compute)
    for v in variants:
        rows = [r for (jv, _), rs in zip(jobs, per_job) if jv == v for r in rs]
        write_history(paths.plots / "fox" / f"history_{v}.csv", rows, paths.root)


# ----------------------------------------------------------------------- evaluate


def evaluate_one(cfg: FoxConfig, paths: Paths, job: tuple[str, int]) -> dict:
    """Every per-checkpoint measurement of one (variant, seed); plain data, returned to the parent."""
    variant, seed = job
    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    _, val_ids, vocab = load_data(paths)
    L, ev = cfg.model.context, cfg.eval
    model = build(cfg, variant, vocab)
    load_checkpoint(checkpoint(paths, variant, seed), model)
    model.to(device).eval()
    x, y = windows(val_ids, L)  # the whole validation stream in windows of L
    lm = loss_matrix(model, x, y, device)  # (N, L)
    r: dict = {"variant": variant, "seed": seed, "val_loss": lm.double().mean().item(),
               "window_loss_std": lm.double().mean(1).std().item(), "windows_at_L": len(x),
               "curve": (L, lm.double().mean(0).tolist()), "extrapolation": {}}
    for k in sorted(ev.extrapolation):
        if k == 1 or variant == "transformer":
            continue  # learned absolute positions do not exist past L
        xk, yk = windows(val_ids, k * L, ev.extrapolation_tokens or None)
        pk = loss_matrix(model, xk, yk, device).double()  # (N_k, kL)
        r["extrapolation"][k] = {"beyond_L": pk[:, L:].mean().item(), "window": pk.mean().item(), "windows": len(xk)}
        r["curve"] = (k * L, pk.mean(0).tolist())
    if variant != "gla":
        r["attention_distance"] = attention_distance(model, x[: ev.analysis_windows].to(device))
    if model.blocks[0].mixer.gated:
        f = gate_values(model, x.to(device)).cpu()  # (n_layer, n_head, N * L)
        r["gates"] = gate_stats(f)
        r["gates_by_token"], r2 = gates_by_token(f, x.flatten(), vocab)
        for row, v in zip(r["gates"], r2):
            row["r2_token"] = v
        r["gate_text"] = f[:, :, : ev.gate_text_tokens].tolist()
        if variant == "fox":
            r["ablation"] = ablation_losses(model, x, y, f, device)
        marks = tuple(sorted({2**i for i in range(int(math.log2(ev.decode_length)) + 1)} | {ev.decode_length}))
        r["decode"] = decode_check(model.cpu(), val_ids[: ev.decode_length], marks)
    return r


def evaluate(cfg: FoxConfig, paths: Paths) -> None:
    seed_everything(cfg.seeds[0])
    _, val_ids, vocab = load_data(paths)
    jobs = [(v, s) for v in cfg.variants for s in cfg.seeds]
    res = {(r["variant"], r["seed"]): r for r in
           parallel_map(functools.partial(evaluate_one, cfg, paths), jobs, paths.compute)}
    out = summarize_results(cfg, res, vocab)
    L = cfg.model.context
    out["setup"] = {"context": L, "seeds": len(cfg.seeds), "corpus": cfg.data.corpus,
                    "vocab_size": vocab, "train_tokens": cfg.train.steps * cfg.train.batch_size * L,
                    "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                    "rope_base": cfg.model.rope_base, "extrapolation_tokens": cfg.eval.extrapolation_tokens,
                    "val_tokens": len(val_ids)}
    write_json(paths.metrics / "fox.json", out)
    write_plot_data(cfg, res, paths, json.loads((paths.prepared / "fox" / "vocab.json").read_text(encoding="utf-8")),
                    val_ids)


def speed(cfg: FoxConfig, paths: Paths) -> None:
    """Training throughput of every variant on this machine (issue 7's "≥ 0.95x" target for FoX
    against the RoPE Transformer): fresh models, interleaved rounds so that load hits every
    variant alike, CPU time of this process. Its own stage and file (``results/fox_speed.json``):
    timings differ between runs, every other output of the pipeline is byte-stable."""
    seed_everything(cfg.seeds[0])
    train_ids, _, vocab = load_data(paths)
    models = {v: build(cfg, v, vocab) for v in cfg.variants}
    tps = train_throughput(models, train_ids, cfg.train.batch_size, cfg.model.context, cfg.train.precision,
                           cfg.eval.speed_steps, cfg.eval.speed_rounds, cfg.seeds[0])
    out = {"train_tokens_per_cpu_s": {v: stats.summarize(t) for v, t in tps.items()},
           "precision": cfg.train.precision, "threads": torch.get_num_threads(),
           "rounds": cfg.eval.speed_rounds, "steps_per_round": cfg.eval.speed_steps}
    if {"fox", "transformer_rope"} <= set(tps):
        out["fox_over_rope"] = stats.ratio(tps["fox"], tps["transformer_rope"])
    write_json(paths.results / "fox_speed.json", {"throughput": out})


def gain(a: list[float], b: list[float]) -> dict:
    """Per-seed relative perplexity gain of a over b, in %: 100 (ppl_b - ppl_a) / ppl_b, paired by seed."""
    a, b = np.asarray(a), np.asarray(b)
    return stats.summarize(100 * (b - a) / b)


def summarize_results(cfg: FoxConfig, res: dict, vocab: int) -> dict:
    """Per-seed results -> summaries (mlpapers.stats) and paired comparisons for metrics/fox.json."""
    seeds, L = cfg.seeds, cfg.model.context
    ppl = {v: [math.exp(res[v, s]["val_loss"]) for s in seeds] for v in cfg.variants}
    out: dict = {"variants": {}, "comparisons": {}, "extrapolation": {}, "gates": {}, "decode": {}}
    for v in cfg.variants:
        counts = count_params(build(cfg, v, vocab))
        ad = [np.mean([h["mean_distance"] for h in res[v, s]["attention_distance"]]) for s in seeds] \
            if "attention_distance" in res[v, seeds[0]] else None
        out["variants"][v] = {
            "params": {**counts, "forget_gate_pct": 100 * counts["forget_gate"] / counts["total"]},
            "val_loss": stats.summarize([res[v, s]["val_loss"] for s in seeds]),
            "val_ppl": stats.summarize(ppl[v]),
            **({"mean_attention_distance": stats.summarize(ad)} if ad else {}),
        }
        for k in sorted(res[v, seeds[0]]["extrapolation"]):
            e = [res[v, s]["extrapolation"][k] for s in seeds]
            beyond = [math.exp(x["beyond_L"]) for x in e]
            out["extrapolation"].setdefault(v, {})[f"{k}x"] = {
                "ppl_beyond_L": stats.summarize(beyond),
                "ppl_window": stats.summarize([math.exp(x["window"]) for x in e]),
                "change_beyond_L_vs_L_pct": stats.summarize(100 * (np.array(beyond) - ppl[v]) / ppl[v]),
                "windows": e[0]["windows"]}
    for other in ("transformer", "transformer_rope", "transformer_nope", "gla"):
        if {"fox", other} <= set(cfg.variants):
            out["comparisons"][f"fox_vs_{other}"] = gain(ppl["fox"], ppl[other])
    if "transformer_rope" in cfg.variants:  # measured seed-to-seed noise of the RoPE baseline, % of its ppl
        r = stats.summarize(ppl["transformer_rope"])
        out["comparisons"]["rope_seed_std_pct"] = 100 * r["std"] / r["mean"] if len(seeds) > 1 else None
    if "transformer" in cfg.variants:
        # nanoGPT's val loss is the mean of 20 random batches of 12 windows: its standard error,
        # estimated from our transformer's per-window losses (std / sqrt(240)), mean over seeds
        se = [res["transformer", s]["window_loss_std"] / math.sqrt(20 * 12) for s in seeds]
        out["nanogpt"] = {"estimate_se": float(np.mean(se)), "reference_config": cfg.train.steps == 2000
                          and cfg.train.batch_size == 12 and L == 64 and cfg.model.n_layer == 4
                          and cfg.model.n_head == 4 and cfg.model.d_model == 128}
    for v in [v for v in cfg.variants if "gates" in res[v, seeds[0]]]:
        g = {key: stats.summarize([np.mean([h[key] for h in res[v, s]["gates"]]) for s in seeds])
             for key in ("mean_gate", "frac_above_0.9", "frac_below_0.1")}
        # the first layer's gate sees only the current token (no mixing before it): R^2 = 1 there by
        # construction, so the share explained by the character is summarised over later layers
        later = lambda s: [h["r2_token"] for h in res[v, s]["gates"] if h["layer"] > 0 or cfg.model.n_layer == 1]  # noqa: E731
        g["r2_token"] = stats.summarize([np.mean(later(s)) for s in seeds])
        g["min_head_r2_token"] = stats.summarize([min(later(s)) for s in seeds])
        if v == "fox":
            ab = {k: [math.exp(res[v, s]["ablation"][k]) for s in seeds] for k in ("trained", "constant", "none")}
            g["ablation_ppl"] = {k: stats.summarize(x) for k, x in ab.items()}
            g["trained_vs_constant"] = gain(ab["trained"], ab["constant"])
            g["trained_vs_none"] = gain(ab["trained"], ab["none"])
        out["gates"][v] = g
        d = [res[v, s]["decode"] for s in seeds]
        out["decode"][v] = {
            "tokens": cfg.eval.decode_length,
            "max_abs_diff_fp32": stats.summarize([x["max_abs_diff_fp32"] for x in d]),
            "max_abs_diff_fp64": stats.summarize([x["max_abs_diff_fp64"] for x in d]),
            "max_abs_logit": stats.summarize([x["max_abs_logit"] for x in d]),
            "rel_diff_fp64": stats.summarize([x["rel_diff_fp64"] for x in d]),
            "cache_bytes": {str(t): b for t, b in d[0]["cache_bytes"].items()}}
    return out


def show(c: str) -> str:
    return {" ": "␣", "\n": "\\n", "\t": "\\t"}.get(c, c)


def write_plot_data(cfg: FoxConfig, res: dict, paths: Paths, vocab: list[str], val_ids: torch.Tensor) -> None:
    d, L = paths.plots / "fox", cfg.model.context
    rs = [res[v, s] for v in cfg.variants for s in cfg.seeds]
    write_csv(d / "position_loss.csv", [{"variant": r["variant"], "seed": r["seed"], "length": r["curve"][0],
                                         "position": i + 1, "loss": x} for r in rs for i, x in enumerate(r["curve"][1])])
    ppl_rows = []
    for r in rs:
        ppl_rows.append({"variant": r["variant"], "seed": r["seed"], "length": L, "ppl_window": math.exp(r["val_loss"]),
                         "ppl_beyond_L": float("nan")})
        ppl_rows += [{"variant": r["variant"], "seed": r["seed"], "length": k * L, "ppl_window": math.exp(e["window"]),
                      "ppl_beyond_L": math.exp(e["beyond_L"])} for k, e in sorted(r["extrapolation"].items())]
    write_csv(d / "ppl_vs_length.csv", ppl_rows)
    write_csv(d / "gates.csv", [{"variant": r["variant"], "seed": r["seed"], **h} for r in rs for h in r.get("gates", [])])
    write_csv(d / "gates_by_char.csv", [{"variant": r["variant"], "seed": r["seed"], "layer": h["layer"], "head": h["head"],
                                         "char": show(vocab[h["token"]]) if len(vocab[h["token"]]) == 1 else vocab[h["token"]],
                                         "count": h["count"], "mean_gate": h["mean_gate"]}
                                        for r in rs for h in r.get("gates_by_token", [])])
    write_csv(d / "attention_distance.csv", [{"variant": r["variant"], "seed": r["seed"], **h}
                                             for r in rs for h in r.get("attention_distance", [])])
    write_csv(d / "ablation.csv", [{"seed": r["seed"], "gate": k, "ppl": math.exp(x)}
                                   for r in rs if "ablation" in r for k, x in r["ablation"].items()])
    text = []
    if "fox" in cfg.variants:
        g = res["fox", cfg.seeds[0]]["gate_text"]  # (n_layer, n_head, tokens)
        text = [{"layer": layer, "head": head, "position": t, "char": show(vocab[int(val_ids[t])]), "gate": g[layer][head][t]}
                for layer in range(len(g)) for head in range(len(g[0])) for t in range(len(g[0][0]))]
    write_csv(d / "gates_text.csv", text)
    write_csv(d / "cache_memory.csv", [{"variant": r["variant"], "tokens": t, "cache_bytes": b} for r in rs
                                       if "decode" in r and r["seed"] == cfg.seeds[0]
                                       for t, b in r["decode"]["cache_bytes"].items()])

def plot(cfg: FoxConfig, paths: Paths) -> None:
    from mlpapers.papers.fox.plots import plot_all  # matplotlib/pandas only where needed (seconds of import)

    plot_all(cfg, paths)


def markdown(paths: Paths) -> str:
    from mlpapers.papers.fox import report

    return report.markdown(paths)


FOX = Experiment(
    name="fox", config=FoxConfig, variants=lambda cfg: [*cfg.variants, "all"],
    train=train, evaluate=evaluate, plot=plot, report=markdown, prepare=prepare, speed=speed,
)
assert set(VARIANTS) >= set(Variant.__args__)  # the Literal and the model agree
