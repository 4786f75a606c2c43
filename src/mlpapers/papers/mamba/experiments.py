"""Mamba experiments as pipeline stages (params section ``mamba``), inside the FoX benchmark.

The corpus, the trunk (width, depth, heads, training length L), the training recipe (steps,
batch, lr, schedule) and the evaluation settings are READ from the ``fox`` params section, so
Mamba trains and is evaluated exactly as the FoX variants were; the FoX models are not
retrained: their per-seed numbers are read from the FoX evaluate stage's plot data
(``plots/fox/ppl_vs_length.csv``, ``plots/fox/cache_memory.csv``), a DVC dependency.

* train    -- every (variant, seed) with the shared ``fit()`` and FoX's ``LMTask``.
* evaluate -- perplexity at L on the whole validation split, extrapolation to kL, recurrent
              decoding vs the parallel forward (fp32 and fp64) with the state size vs length
              (FoX's ``decode_check``). Summaries and per-seed paired comparisons
              (``mlpapers.stats``) -> results/mamba.json (headline: metrics/mamba.json).
* speed    -- training throughput interleaved with a FoX Transformer (RoPE) of the same trunk
              (FoX's ``train_throughput``) -> results/mamba_speed.json (CPU timings).
"""
from __future__ import annotations

import csv
import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from mlpapers import stats
from mlpapers.config import load_section
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.fox.experiments import FoxConfig, load_data
from mlpapers.papers.fox.experiments import build as build_fox
from mlpapers.papers.fox.model import count_params
from mlpapers.papers.fox.task import LMTask, decode_check, loss_matrix, train_throughput, windows
from mlpapers.papers.mamba.model import VARIANTS, MambaLM, MambaLMConfig
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import fit, load_checkpoint, save_checkpoint
from mlpapers.utils import resolve_device, seed_everything, write_csv, write_json

log = logging.getLogger(__name__)
FOX_BASELINES = ("transformer", "transformer_rope", "fox")  # FoX variants compared against


@dataclass(frozen=True)
class MambaModel:
    d_state: int  # N of S6 (paper: 16; CPU budget: see README)
    ssd_d_state: int  # N of Mamba-2's SSD layer
    expand: int  # E: inner width E * d_model (paper: 2)
    d_conv: int  # conv1d kernel (paper: 4)
    blocks_per_layer: int  # Mamba blocks per FoX trunk layer (paper: 2 for equal parameters)
    chunk: int  # SSD chunk length (parallel form)

    def validate(self) -> None:
        for k in ("d_state", "ssd_d_state", "expand", "d_conv", "blocks_per_layer", "chunk"):
            v = getattr(self, k)
            if not 1 <= v <= 4096:
                raise ValueError(f"model.{k} must be in [1, 4096], got {v}")


@dataclass(frozen=True)
class MambaEval:
    extrapolation: tuple[int, ...]  # evaluation lengths as multiples of L (must hold 1)

    def validate(self) -> None:
        if not self.extrapolation or 1 not in self.extrapolation or min(self.extrapolation) < 1:
            raise ValueError(f"eval.extrapolation must hold 1 and multiples >= 1, got {list(self.extrapolation)}")
        if len(set(self.extrapolation)) != len(self.extrapolation) or max(self.extrapolation) > 1024:
            raise ValueError(f"eval.extrapolation: no repeats, each <= 1024, got {list(self.extrapolation)}")


@dataclass(frozen=True)
class MambaConfig:
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    model: MambaModel
    eval: MambaEval

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be non-empty, unique and >= 0, got {list(self.seeds)}")
        if not self.variants or len(set(self.variants)) != len(self.variants) or not set(self.variants) <= set(VARIANTS):
            raise ValueError(f"variants must be non-empty, unique, from {VARIANTS}; got {list(self.variants)}")


def fox_config(paths: Paths) -> FoxConfig:
    """The FoX section of the same params file: trunk, training recipe, evaluation settings."""
    return load_section(FoxConfig, "fox", paths.root / "params.yaml")


def build(cfg: MambaConfig, fox: FoxConfig, variant: str, vocab: int) -> MambaLM:
    m, f = cfg.model, fox.model
    return MambaLM(MambaLMConfig(variant, vocab, f.n_layer * m.blocks_per_layer, f.d_model,
                                 m.d_state if variant == "mamba" else m.ssd_d_state, m.expand, m.d_conv,
                                 f.n_head, m.chunk))


def checkpoint(paths: Paths, variant: str, seed: int):
    return paths.checkpoint("mamba", variant, f"seed{seed}")


# -------------------------------------------------------------------------- train


def _train_job(cfg: MambaConfig, paths: Paths, job: tuple[str, int]) -> list[dict]:
    variant, seed = job
    fox = fox_config(paths)
    train_ids, val_ids, vocab = load_data(paths)
    seed_everything(seed)
    model = build(cfg, fox, variant, vocab)
    task = LMTask(model, train_ids, val_ids, fox.train.batch_size, fox.model.context, fox.eval.eval_windows)
    history = fit(task, fox.train, seed=seed, desc=f"mamba/{variant}/seed{seed}")
    for r in history:  # sequences/s -> tokens/s
        r["tokens_per_s"] = r.pop("examples_per_s") * fox.model.context
    save_checkpoint(checkpoint(paths, variant, seed), model, model_config=model.cfg, train_config=fox.train, seed=seed)
    return [{"seed": seed, **r} for r in history]


def train(cfg: MambaConfig, variant: str, paths: Paths) -> None:
    """Every (variant, seed) pair (``variant == "all"``) or one variant's seeds, side by side."""
    variants = list(cfg.variants) if variant == "all" else [variant]
    jobs = [(v, s) for v in variants for s in cfg.seeds]
    per_job = parallel_map(functools.partial(_train_job, cfg, paths), jobs, paths.compute)
    for v in variants:
        rows = [r for (jv, _), rs in zip(jobs, per_job) if jv == v for r in rs]
        write_history(paths.plots / "mamba" / f"history_{v}.csv", rows, paths.root)


# ----------------------------------------------------------------------- evaluate


def evaluate_one(cfg: MambaConfig, paths: Paths, job: tuple[str, int]) -> dict:
    variant, seed = job
    fox = fox_config(paths)
    device = resolve_device(fox.train.device)
    seed_everything(seed)
    _, val_ids, vocab = load_data(paths)
    L = fox.model.context
    model = build(cfg, fox, variant, vocab)
    load_checkpoint(checkpoint(paths, variant, seed), model)
    model.to(device).eval()
    x, y = windows(val_ids, L)  # the whole validation stream in windows of L (as FoX)
    lm = loss_matrix(model, x, y, device).double()  # (N, L)
    r: dict = {"variant": variant, "seed": seed, "val_loss": lm.mean().item(), "extrapolation": {}}
    for k in sorted(cfg.eval.extrapolation):
        if k > 1:
            xk, yk = windows(val_ids, k * L, fox.eval.extrapolation_tokens or None)
            pk = loss_matrix(model, xk, yk, device).double()  # (N_k, kL)
            r["extrapolation"][k] = {"beyond_L": pk[:, L:].mean().item(), "window": pk.mean().item(), "windows": len(xk)}
    n = fox.eval.decode_length
    marks = tuple(sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n}))
    r["decode"] = decode_check(model.cpu(), val_ids[:n], marks)
    return r


def read_fox(paths: Paths) -> tuple[dict, dict]:
    """Per-seed FoX numbers from its evaluate stage: {(variant, seed, length): row}, {(variant, tokens): bytes}."""
    with open(paths.plots / "fox" / "ppl_vs_length.csv", encoding="utf-8") as f:
        ppl = {(r["variant"], int(r["seed"]), int(r["length"])): r for r in csv.DictReader(f)}
    with open(paths.plots / "fox" / "cache_memory.csv", encoding="utf-8") as f:
        cache = {(r["variant"], int(r["tokens"])): int(r["cache_bytes"]) for r in csv.DictReader(f)}
    return ppl, cache


def evaluate(cfg: MambaConfig, paths: Paths) -> None:
    fox = fox_config(paths)
    seed_everything(cfg.seeds[0])
    _, val_ids, vocab = load_data(paths)
    jobs = [(v, s) for v in cfg.variants for s in cfg.seeds]
    res = {(r["variant"], r["seed"]): r for r in parallel_map(functools.partial(evaluate_one, cfg, paths), jobs,
                                                               paths.compute)}
    out = summarize_results(cfg, fox, res, vocab, *read_fox(paths))
    L = fox.model.context
    out["setup"] = {"context": L, "seeds": len(cfg.seeds), "steps": fox.train.steps, "batch_size": fox.train.batch_size,
                    "lr": fox.train.lr, "d_model": fox.model.d_model, "n_layer": fox.model.n_layer,
                    "n_blocks": fox.model.n_layer * cfg.model.blocks_per_layer, "d_state": cfg.model.d_state,
                    "ssd_d_state": cfg.model.ssd_d_state, "expand": cfg.model.expand, "n_head": fox.model.n_head,
                    "fox_seeds": list(fox.seeds), "val_tokens": len(val_ids), "decode_length": fox.eval.decode_length}
    write_json(paths.metrics / "mamba.json", out)
    rows = [{"variant": v, "seed": s, "length": L, "ppl_window": math.exp(res[v, s]["val_loss"]), "ppl_beyond_L": float("nan")}
            for v, s in jobs]
    rows += [{"variant": v, "seed": s, "length": k * L, "ppl_window": math.exp(e["window"]),
              "ppl_beyond_L": math.exp(e["beyond_L"])} for v, s in jobs for k, e in sorted(res[v, s]["extrapolation"].items())]
    write_csv(paths.plots / "mamba" / "ppl_vs_length.csv", rows)
    write_csv(paths.plots / "mamba" / "cache_memory.csv",
              [{"variant": v, "tokens": t, "cache_bytes": b} for v in cfg.variants
               for t, b in res[v, cfg.seeds[0]]["decode"]["cache_bytes"].items()])


def speed(cfg: MambaConfig, paths: Paths) -> None:
    """Training throughput of each Mamba variant and of the FoX RoPE Transformer on the same trunk,
    interleaved in rounds (FoX's ``train_throughput`` and speed params), into
    ``results/mamba_speed.json``: CPU timings, the one output that differs between runs."""
    fox = fox_config(paths)
    seed_everything(cfg.seeds[0])
    train_ids, _, vocab = load_data(paths)
    models = {v: build(cfg, fox, v, vocab) for v in cfg.variants} | {"transformer_rope": build_fox(fox, "transformer_rope", vocab)}
    tps = train_throughput(models, train_ids, fox.train.batch_size, fox.model.context, fox.train.precision,
                           fox.eval.speed_steps, fox.eval.speed_rounds, cfg.seeds[0])
    out = {"train_tokens_per_cpu_s": {v: stats.summarize(t) for v, t in tps.items()},
           "over_transformer_rope": {v: stats.ratio(tps[v], tps["transformer_rope"]) for v in cfg.variants},
           "rounds": fox.eval.speed_rounds, "steps_per_round": fox.eval.speed_steps}
    write_json(paths.results / "mamba_speed.json", {"throughput": out})


def summarize_results(cfg: MambaConfig, fox: FoxConfig, res: dict, vocab: int, fox_ppl: dict, fox_cache: dict) -> dict:
    seeds, L = cfg.seeds, fox.model.context
    ppl = {v: [math.exp(res[v, s]["val_loss"]) for s in seeds] for v in cfg.variants}
    out: dict = {"variants": {}, "comparisons": {}, "extrapolation": {}, "decode": {}, "fox": {}}
    for v in cfg.variants:
        out["variants"][v] = {"params": count_params(build(cfg, fox, v, vocab))["total"],
                              "val_ppl": stats.summarize(ppl[v])}
        for k in sorted(res[v, seeds[0]]["extrapolation"]):
            beyond = [math.exp(res[v, s]["extrapolation"][k]["beyond_L"]) for s in seeds]
            out["extrapolation"].setdefault(v, {})[f"{k}x"] = {
                "ppl_beyond_L": stats.summarize(beyond),
                "change_beyond_L_vs_L_pct": stats.summarize(100 * (np.array(beyond) - ppl[v]) / ppl[v]),
                "windows": res[v, seeds[0]]["extrapolation"][k]["windows"]}
        d = [res[v, s]["decode"] for s in seeds]
        cb = d[0]["cache_bytes"]
        out["decode"][v] = {"tokens": fox.eval.decode_length,
                            "max_abs_diff_fp32": stats.summarize([x["max_abs_diff_fp32"] for x in d]),
                            "rel_diff_fp64": stats.summarize([x["rel_diff_fp64"] for x in d]),
                            "cache_bytes": {str(t): b for t, b in cb.items()},
                            "state_growth_bytes": cb[max(cb)] - cb[min(cb)]}
    # FoX per seed (seeds shared by both sections are paired: same batches, fit() seeds the data order)
    paired_seeds = [s for s in seeds if all((b, s, L) in fox_ppl for b in FOX_BASELINES)]
    for b in FOX_BASELINES:
        fp = [float(fox_ppl[b, s, L]["ppl_window"]) for s in paired_seeds]
        if not fp:
            continue
        out["fox"][b] = {"val_ppl": stats.summarize(fp)}
        for v in cfg.variants:  # ppl(mamba) - ppl(baseline), per seed
            mine = [math.exp(res[v, s]["val_loss"]) for s in paired_seeds]
            out["comparisons"][f"{v}_minus_{b}"] = stats.paired(mine, fp)
        for k in sorted(cfg.eval.extrapolation):
            rows = [fox_ppl.get((b, s, k * L)) for s in paired_seeds]
            if k > 1 and all(r and r["ppl_beyond_L"] not in ("", "nan") for r in rows):
                beyond = np.array([float(r["ppl_beyond_L"]) for r in rows])
                out["fox"][b][f"change_beyond_L_vs_L_pct_{k}x"] = stats.summarize(100 * (beyond - fp) / np.array(fp))
    toks = sorted(t for (v, t) in fox_cache if v == "transformer_rope")
    if toks:  # the KV cache of the FoX RoPE Transformer (deterministic sizes)
        out["fox"]["kv_cache_bytes"] = {str(t): fox_cache["transformer_rope", t] for t in toks}
        out["fox"]["kv_growth_bytes"] = fox_cache["transformer_rope", toks[-1]] - fox_cache["transformer_rope", toks[0]]
    return out


def plot(cfg: MambaConfig, paths: Paths) -> None:
    from mlpapers.papers.mamba.report import plot_all

    plot_all(cfg, paths)


def markdown(paths: Paths) -> str:
    from mlpapers.papers.mamba import report

    return report.markdown(paths)


MAMBA = Experiment(name="mamba", config=MambaConfig, variants=lambda cfg: [*cfg.variants, "all"],
                   train=train, evaluate=evaluate, plot=plot, report=markdown, speed=speed)
