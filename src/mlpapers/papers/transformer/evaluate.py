"""Evaluate and speed stages of the Transformer experiment. ``evaluate``: BLEU (Seq2Seq's decoders
and sacreBLEU), the comparison with Luong's model at equal steps, ablations. ``speed``: CPU time
per step of both models and the comparison at equal training time (timings: their own file).

Kept apart from ``experiments.py`` so that changing the evaluation does not retrain.
"""
from __future__ import annotations

import csv
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
    return read_json(paths.results / "seq2seq_multi30k.json")


def luong_variant(s2s: Multi30kConfig) -> str:
    """Luong's attention model: the Seq2Seq section's variant that is not the no-attention baseline."""
    return next(v for v in s2s.models if v != "baseline")


def seq2seq_config(cfg: TransformerExpConfig, paths: Paths) -> Multi30kConfig:
    """The Seq2Seq section (Luong's recipe), checked for equal steps and batch with the Transformer's."""
    s2s = load_section(Multi30kConfig, "seq2seq_multi30k", paths.root / "params.yaml")
    if (s2s.train.steps, s2s.train.batch_size) != (cfg.train.steps, cfg.train.batch_size):
        raise ValueError(f"transformer.train steps/batch ({cfg.train.steps}, {cfg.train.batch_size}) must equal "
                         f"seq2seq_multi30k.train's ({s2s.train.steps}, {s2s.train.batch_size}): equal steps")
    return s2s


def throughput(cfg: TransformerExpConfig, s2s: Multi30kConfig, paths: Paths) -> dict:
    """CPU seconds per training step of Luong's attention model and of the Transformer, in this
    process (one thread), in interleaved rounds on identical batches; tokens per CPU-second."""
    vde, ven, splits = load_prepared(paths)
    tr = splits["train"]
    tcfg = replace(cfg.train, steps=cfg.throughput_steps, eval_every=0)
    per = {"luong": [], "transformer": []}
    for r in [-1, *range(cfg.throughput_rounds)]:  # round -1: an untimed warm-up of both models
        for name in per:
            seed_everything(max(r, 0))
            if name == "luong":
                task = TranslationTask(build_luong(s2s.models[luong_variant(s2s)], len(vde), len(ven)), tr["src"], tr["tgt"],
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
        "luong_variant": luong_variant(s2s),
        "cpu_s_per_step": {k: stats.summarize(v) for k, v in per.items()},
        "tokens_per_cpu_s": {k: stats.summarize(np.divide(tokens, v)) for k, v in per.items()},
        "transformer_over_luong_speed": stats.ratio(per["luong"], per["transformer"]),  # >1: Transformer faster
    }


def interpolate(curve: dict[str, float], step: float) -> float:
    """BLEU at a (fractional) step, linear between snapshots; BLEU 0 at step 0; clipped at the last."""
    xs = [0.0] + [float(k) for k in curve]
    ys = [0.0] + list(curve.values())
    return float(np.interp(step, xs, ys))


def evaluate(cfg: TransformerExpConfig, paths: Paths) -> None:
    s2s = seq2seq_config(cfg, paths)
    luong = luong_results(paths)
    jobs = jobs_of(cfg)
    results = parallel_map(functools.partial(evaluate_job, cfg, paths), jobs, paths.compute)
    base = [r for (v, _), r in zip(jobs, results) if v == "base"]
    per = collect([{k: v for k, v in r.items() if k != "curve"} for r in base])
    lv = luong_variant(s2s)
    out: dict = {"decode": {"beam": cfg.data.beam, "alpha": cfg.data.alpha}, "luong_variant": lv,
                 "ablation_steps": cfg.ablation_steps, "batch_size": cfg.train.batch_size,
                 "n_train": len(load_prepared(paths)[2]["train"]["src"]),
                 "base": summaries(per), "curve": {k: stats.summarize([r["curve"][k] for r in base])
                                                   for k in base[0]["curve"]}}
    out["vs_luong_equal_steps"] = {
        "beam": stats.unpaired(out["base"]["bleu_test_2016_flickr"], luong[lv]["bleu_test_2016_flickr"]),
        "greedy": stats.unpaired(out["base"]["bleu_greedy_test_2016_flickr"], luong[lv]["bleu_greedy_test_2016_flickr"])}
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


def speed(cfg: TransformerExpConfig, paths: Paths) -> None:
    """§4 / Table 2's cost side on this machine, into ``results/transformer_speed.json`` (CPU timings,
    the one output that differs between runs): CPU seconds per training step of both models in
    interleaved rounds, and the comparison at equal training time -- Luong's steps × (Transformer
    steps per Luong step of CPU time), read off each seed's BLEU-vs-steps curve of the evaluate
    stage (``plots/transformer/bleu_vs_step.csv``) and set against Luong's greedy BLEU."""
    s2s = seq2seq_config(cfg, paths)
    luong = luong_results(paths)
    out = throughput(cfg, s2s, paths)
    lv = out["luong_variant"]
    curves: dict[int, dict[str, float]] = {}
    with open(paths.plots / NAME / "bleu_vs_step.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            curves.setdefault(int(row["seed"]), {})[row["step"]] = float(row["bleu"])
    matched = s2s.train.steps * out["transformer_over_luong_speed"]["mean"]
    at = [interpolate(curves[s], matched) for s in cfg.seeds]
    out["equal_time"] = {"matched_steps": matched, "clipped": matched > cfg.train.steps,
                         "bleu_greedy": stats.summarize(at),
                         "minus_luong_greedy": stats.unpaired(stats.summarize(at), luong[lv]["bleu_greedy_test_2016_flickr"])}
    write_json(paths.results / f"{NAME}_speed.json", {"throughput": out})
