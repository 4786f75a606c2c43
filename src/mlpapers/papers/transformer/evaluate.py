"""Evaluate stage of the Transformer experiment: BLEU (Seq2Seq's decoders and sacreBLEU), the
comparison with Luong's model at equal steps and equal training time, throughput, ablations.

Kept apart from ``experiments.py`` so that changing the evaluation does not retrain.
"""
from __future__ import annotations

import functools
import time
from dataclasses import replace

import numpy as np
import torch

from mlpapers import stats
from mlpapers.config import load_section
from mlpapers.experiment import Paths
from mlpapers.papers.seq2seq.experiments import Multi30kConfig, build_model as build_luong, collect, load_prepared, summaries
from mlpapers.papers.seq2seq.task import TranslationTask, corpus_bleu, read_lines, translate
from mlpapers.papers.seq2seq.tokenizer import detokenize
from mlpapers.papers.transformer.experiments import NAME, Data, TransformerExpConfig, build, jobs_of
from mlpapers.papers.transformer.model import Transformer
from mlpapers.papers.transformer.task import Harness, Schedule, TransformerTask
from mlpapers.runner import parallel_map
from mlpapers.train import fit, load_checkpoint
from mlpapers.utils import read_json, resolve_device, seed_everything, write_csv, write_json

def bleu(model: Transformer, src, refs, ven, d: Data, device, beam: int = 1) -> float:
    ids, _ = translate(Harness(model), src, d.max_decode_len, device, beam=beam, alpha=d.alpha)
    return corpus_bleu([detokenize(ven.decode(h)) for h in ids], refs)[0]


def val_loss(model: Transformer, splits, cut, device) -> float:
    task = TransformerTask(model, [], [], 1, (splits["val"]["src"][:cut], splits["val"]["tgt"][:cut]), 0.0,
                           Schedule("noam", 1, 1.0), 1.0)
    task.device = device
    with torch.no_grad():
        return task.evaluate()["val_loss"]


def evaluate_job(cfg: TransformerExpConfig, paths: Paths, job: tuple[str, int]) -> dict:
    """base: beam + greedy test2016 BLEU, greedy test2016 BLEU at each snapshot, validation numbers at
    ablation_steps; an ablation: greedy validation BLEU and validation loss (no smoothing)."""
    variant, seed = job
    d = cfg.data
    mcfg, _, _, steps = cfg.variant(variant)
    device = resolve_device(cfg.train.device)
    model, _, ven, splits = build(mcfg, paths)
    model.to(device).eval()
    cut = d.test_limit or None
    raw = paths.raw / "multi30k"
    test = splits["test_2016_flickr"]["src"][:cut], read_lines(raw / "test_2016_flickr.en.gz")[:cut]
    val = splits["val"]["src"][:cut], read_lines(raw / "val.en.gz")[:cut]
    res: dict = {}

    def load(key):
        load_checkpoint(paths.checkpoint(NAME, variant, key), model)
        model.to(device).eval()

    if variant != "base":
        load(f"seed{seed}")
        return {"val_bleu_greedy": bleu(model, *val, ven, d, device), "val_loss": val_loss(model, splits, cut, device)}
    curve = {}
    for s in sorted({*cfg.snapshot_steps, cfg.ablation_steps} - {steps}):
        load(f"seed{seed}_step{s}")
        curve[s] = bleu(model, *test, ven, d, device)
        if s == cfg.ablation_steps:
            res["at_ablation_steps"] = {"val_bleu_greedy": bleu(model, *val, ven, d, device),
                                        "val_loss": val_loss(model, splits, cut, device)}
    load(f"seed{seed}")
    curve[steps] = res["bleu_greedy_test_2016_flickr"] = bleu(model, *test, ven, d, device)
    res["bleu_test_2016_flickr"] = bleu(model, *test, ven, d, device, beam=d.beam)
    res["val_loss"] = val_loss(model, splits, cut, device)
    if cfg.ablation_steps == steps:
        res["at_ablation_steps"] = {"val_bleu_greedy": bleu(model, *val, ven, d, device), "val_loss": res["val_loss"]}
    res["curve"] = {str(k): v for k, v in sorted(curve.items())}
    return res


def luong_results(paths: Paths) -> dict:
    """The Seq2Seq evaluate stage's full results (a DVC dep; never retrained here)."""
    full = paths.root / "results" / "seq2seq_multi30k.json"
    return read_json(full if full.exists() else paths.metrics / "seq2seq_multi30k.json")


def throughput(cfg: TransformerExpConfig, s2s: Multi30kConfig, paths: Paths) -> dict:
    """CPU seconds per training step of Luong's attention model and of the Transformer, in this
    process (one thread), in interleaved rounds on identical batches; tokens per CPU-second."""
    vde, ven, splits = load_prepared(paths)
    tr = splits["train"]
    tcfg = replace(cfg.train, steps=cfg.throughput_steps, eval_every=0)
    luong_variant = next(v for v in s2s.models if v != "baseline")
    per = {"luong": [], "transformer": []}
    for r in [-1, *range(cfg.throughput_rounds)]:  # round -1: an untimed warm-up of both models
        for name in per:
            seed_everything(max(r, 0))
            if name == "luong":
                task = TranslationTask(build_luong(s2s.models[luong_variant], len(vde), len(ven)), tr["src"], tr["tgt"],
                                       s2s.train.batch_size)
                lcfg = replace(s2s.train, steps=cfg.throughput_steps, eval_every=0, device=cfg.train.device)
            else:
                task = TransformerTask(Transformer(cfg.model, len(vde), len(ven)), tr["src"], tr["tgt"],
                                       cfg.train.batch_size, None, cfg.label_smoothing, cfg.schedule, cfg.train.lr)
                lcfg = tcfg
            t0 = time.process_time()
            fit(task, lcfg if r >= 0 else replace(lcfg, steps=2), seed=max(r, 0), desc=f"{NAME}/throughput/{name}")
            if r >= 0:
                per[name].append((time.process_time() - t0) / cfg.throughput_steps)
    # target + source tokens of those steps (both tasks saw the same batches: same seed, same bucketing)
    tokens = []
    for r in range(cfg.throughput_rounds):
        task, g = TranslationTask(None, tr["src"], tr["tgt"], cfg.train.batch_size), torch.Generator().manual_seed(r)
        n = sum(int((b[0] != 0).sum() + (b[3] != 0).sum()) for b in (task.train_batch(s, g)
                                                                      for s in range(cfg.throughput_steps)))
        tokens.append(n / cfg.throughput_steps)
    return {
        "luong_variant": luong_variant,
        "cpu_s_per_step": {k: stats.summarize(v) for k, v in per.items()},
        "tokens_per_cpu_s": {k: stats.summarize(np.divide(tokens, v)) for k, v in per.items()},
        "transformer_over_luong_speed": stats.ratio(per["luong"], per["transformer"]),  # >1: Transformer faster
    }


def interpolate(curve: dict[str, float], step: float) -> float:
    """BLEU at a (fractional) step, linear between snapshots; BLEU 0 at step 0; clipped at the last."""
    xs = [0.0] + [float(k) for k in curve]
    ys = [0.0] + list(curve.values())
    return float(np.interp(step, xs, ys))


def unpaired(a: dict, b: dict) -> dict:
    """Difference of two independent means from their summaries (Welch t interval); seeds are not paired."""
    se = float(np.hypot(a["se"], b["se"]))
    df = se ** 4 / (a["se"] ** 4 / (a["n"] - 1) + b["se"] ** 4 / (b["n"] - 1)) if se > 0 else 1.0
    half = stats.t_quantile(0.5 + stats.LEVEL / 2, max(int(df), 1)) * se
    mean = a["mean"] - b["mean"]
    return {"mean": mean, "std": float(np.hypot(a["std"], b["std"])), "se": se, "n": min(a["n"], b["n"]),
            "ci_lo": mean - half, "ci_hi": mean + half, "level": stats.LEVEL, "method": "Welch t (unpaired seeds)"}


def evaluate(cfg: TransformerExpConfig, paths: Paths) -> None:
    s2s = load_section(Multi30kConfig, "seq2seq_multi30k", paths.root / "params.yaml")
    if (s2s.train.steps, s2s.train.batch_size) != (cfg.train.steps, cfg.train.batch_size):
        raise ValueError(f"transformer.train steps/batch ({cfg.train.steps}, {cfg.train.batch_size}) must equal "
                         f"seq2seq_multi30k.train's ({s2s.train.steps}, {s2s.train.batch_size}): equal steps")
    luong = luong_results(paths)
    speed = throughput(cfg, s2s, paths)  # before the pool: no worker of ours competes with the timing
    jobs = jobs_of(cfg)
    results = parallel_map(functools.partial(evaluate_job, cfg, paths), jobs, paths.compute)
    base = [r for (v, _), r in zip(jobs, results) if v == "base"]
    per = collect([{k: v for k, v in r.items() if k != "curve"} for r in base])
    lv = speed["luong_variant"]
    out: dict = {"decode": {"beam": cfg.data.beam, "alpha": cfg.data.alpha}, "luong_variant": lv,
                 "ablation_steps": cfg.ablation_steps, "batch_size": cfg.train.batch_size,
                 "n_train": len(load_prepared(paths)[2]["train"]["src"]),
                 "base": summaries(per), "curve": {k: stats.summarize([r["curve"][k] for r in base])
                                                   for k in base[0]["curve"]}}
    out["vs_luong_equal_steps"] = {
        "beam": unpaired(out["base"]["bleu_test_2016_flickr"], luong[lv]["bleu_test_2016_flickr"]),
        "greedy": unpaired(out["base"]["bleu_greedy_test_2016_flickr"], luong[lv]["bleu_greedy_test_2016_flickr"])}
    # equal training time: Luong's steps x (Transformer steps per Luong step of CPU time), on the curve
    ratio = speed["transformer_over_luong_speed"]["mean"]
    matched = s2s.train.steps * ratio
    at = [interpolate(r["curve"], matched) for r in base]
    speed["equal_time"] = {"matched_steps": matched, "clipped": matched > cfg.train.steps,
                           "bleu_greedy": stats.summarize(at),
                           "minus_luong_greedy": unpaired(stats.summarize(at), luong[lv]["bleu_greedy_test_2016_flickr"])}
    out["throughput"] = speed  # wall/CPU-clock dependent: skipped by tolerances
    out["ablations"] = {}
    ref = collect([r["at_ablation_steps"] for r in base])
    for a in cfg.ablations:
        rows = collect([r for (v, _), r in zip(jobs, results) if v == a])
        out["ablations"][a] = {"summary": summaries(rows),
                               "base_minus_ablation": {k: stats.paired(ref[k], rows[k]) for k in rows}}
    out["ablations"]["base"] = {"summary": summaries(ref)}
    write_json(paths.metrics / f"{NAME}.json", out)
    curve = [{"variant": "transformer", "seed": s, "step": int(k), "bleu": v}
             for s, r in zip(cfg.seeds, base) for k, v in r["curve"].items()]
    write_csv(paths.plots / NAME / "bleu_vs_step.csv", curve)
