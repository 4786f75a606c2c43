"""FoX experiments as pipeline stages (params section ``fox``).

* prepare -- the corpus as token-id streams in data/prepared/fox/ (train, val, vocab).
* train   -- one variant (transformer, transformer_rope, transformer_nope, fox, gla) per
             stage, every seed, with the shared ``fit()``; checkpoints + training curves.
* evaluate -- experiments 1-5 of the issue: perplexity at the training length, length
             extrapolation (per-position loss, perplexity at 1x..16x the training length),
             exact incremental decoding and cache memory, training throughput, forget-gate
             statistics. Writes metrics/fox.json and the plot data under plots/fox/.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.fox.model import LM, VARIANTS, LMConfig, Variant, count_params
from mlpapers.papers.fox.task import (LMTask, char_corpus, decode_check, gate_stats, position_loss,
                                      train_throughput, wikitext_corpus, windows)
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import atomic_write_text, mean_std, resolve_device, seed_everything, write_csv, write_json

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

    def validate(self) -> None:
        if min(self.n_layer, self.n_head, self.d_model, self.context) < 1:
            raise ValueError("model sizes must be >= 1")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"model.d_model={self.d_model} must split into n_head={self.n_head} heads of even size")


@dataclass(frozen=True)
class FoxEval:
    eval_windows: int  # validation windows of L tokens behind the training curves
    extrapolation: tuple[int, ...]  # evaluation lengths as multiples of L, e.g. [1, 2, 4, 8, 16]
    extrapolation_tokens: int  # the first N validation tokens, cut into windows of each length
    decode_length: int  # tokens decoded incrementally for the parallel-vs-incremental check
    speed_steps: int  # updates per timing round (throughput)
    speed_rounds: int  # interleaved rounds; the median is reported

    def validate(self) -> None:
        if not self.extrapolation or min(self.extrapolation) < 1 or 1 not in self.extrapolation:
            raise ValueError(f"eval.extrapolation must hold 1 and multiples >= 1, got {list(self.extrapolation)}")
        if min(self.eval_windows, self.extrapolation_tokens, self.decode_length, self.speed_steps, self.speed_rounds) < 1:
            raise ValueError("eval counts must be >= 1")


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
        if self.eval.extrapolation_tokens < max(self.eval.extrapolation) * self.model.context:
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
    return LM(LMConfig(variant, vocab_size, m.n_layer, m.n_head, m.d_model, m.context))


def checkpoint(paths: Paths, variant: str, seed: int):
    return paths.models / "fox" / variant / f"seed{seed}.pt"


# -------------------------------------------------------------------------- train


def train(cfg: FoxConfig, variant: str, paths: Paths) -> None:
    train_ids, val_ids, vocab = load_data(paths)
    rows = []
    for seed in cfg.seeds:
        seed_everything(seed)
        model = build(cfg, variant, vocab)
        task = LMTask(model, train_ids, val_ids, cfg.train.batch_size, cfg.model.context, cfg.eval.eval_windows)
        history = fit(task, cfg.train, seed=seed, desc=f"fox/{variant}/seed{seed}")
        for r in history:  # sequences/s -> tokens/s
            r["tokens_per_s"] = r.pop("examples_per_s") * cfg.model.context
        rows += [{"seed": seed, **r} for r in history]
        save_checkpoint(checkpoint(paths, variant, seed), model, model_config=model.cfg,
                        train_config=cfg.train, seed=seed)
    write_csv(paths.plots / "fox" / f"history_{variant}.csv", rows)


# ----------------------------------------------------------------------- evaluate


def evaluate(cfg: FoxConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seeds[0])
    train_ids, val_ids, vocab = load_data(paths)
    L, ev = cfg.model.context, cfg.eval
    out: dict = {"variants": {}}
    curves, ppl_rows, gate_rows = [], [], []
    for variant in cfg.variants:
        res: dict = {"extrapolation": {}}
        losses, ext = [], {k: [] for k in ev.extrapolation}
        pos_curve = {}
        for seed in cfg.seeds:
            model = build(cfg, variant, vocab)
            load_checkpoint(checkpoint(paths, variant, seed), model)
            model.to(device).eval()
            # (1) loss at the training length on the whole validation stream
            losses.append(float(position_loss(model, *windows(val_ids, L), device).mean()))
            # (2) the first extrapolation_tokens tokens cut into windows of k * L
            for k in ev.extrapolation:
                if variant == "transformer" and k > 1:
                    continue  # learned absolute positions do not exist past L
                pl = position_loss(model, *windows(val_ids, k * L, ev.extrapolation_tokens), device)
                ext[k].append(float(pl.mean()))
                pos_curve[k] = pos_curve.get(k, 0) + pl / len(cfg.seeds)
            if seed == cfg.seeds[0] and model.blocks[0].mixer.gated:  # (5) forget-gate statistics
                x, _ = windows(val_ids, L, ev.extrapolation_tokens)
                gate_rows += [{"variant": variant, **r} for r in gate_stats(model, x, device)]
        counts = count_params(model)
        res["params"] = {**counts, "forget_gate_pct": 100 * counts["forget_gate"] / counts["total"]}
        res["val_loss"] = mean_std(losses)
        res["val_ppl"] = mean_std(np.exp(losses))
        for k, v in ext.items():
            if v:
                res["extrapolation"][f"{k}x"] = {"loss": mean_std(v), "ppl": mean_std(np.exp(v))}
                ppl_rows.append({"variant": variant, "length": k * L, "ppl": float(np.mean(np.exp(v)))})
        longest = max(pos_curve)
        curves += [{"variant": variant, "length": longest * L, "position": i + 1, "loss": float(x)}
                   for i, x in enumerate(pos_curve[longest])]
        out["variants"][variant] = res
    # (3) exact incremental decoding and cache memory, on the first decode_length validation tokens
    out["decode"], memory_rows = {}, []
    marks = tuple(sorted({min(ev.decode_length, 2**i) for i in range(int(math.log2(ev.decode_length)) + 1)}
                         | {ev.decode_length}))
    for variant in [v for v in ("fox", "gla") if v in cfg.variants]:
        model = build(cfg, variant, vocab)
        load_checkpoint(checkpoint(paths, variant, cfg.seeds[0]), model)
        d = decode_check(model, val_ids[: ev.decode_length], marks)
        out["decode"][variant] = {"tokens": ev.decode_length, "max_abs_diff": d["max_abs_diff"],
                                  "max_abs_logit": d["max_abs_logit"],
                                  "cache_bytes": {str(t): b for t, b in d["cache_bytes"].items()}}
        memory_rows += [{"variant": variant, "tokens": t, "cache_bytes": b} for t, b in d["cache_bytes"].items()]
    # (4) training throughput, interleaved so that background load hits every variant alike
    models = {v: build(cfg, v, vocab) for v in cfg.variants}
    tps = train_throughput(models, train_ids, cfg.train.batch_size, L, cfg.train.precision,
                           ev.speed_steps, ev.speed_rounds, cfg.seeds[0])
    out["throughput"] = {"train_tokens_per_s": tps, "precision": cfg.train.precision,
                         "threads": torch.get_num_threads()}
    if {"fox", "transformer_rope"} <= set(tps):
        out["throughput"]["fox_over_rope_per_s_ratio"] = tps["fox"] / tps["transformer_rope"]
    # (5) per-variant summary of the gates (per-head rows go to plots/fox/gates.csv)
    out["gates"] = {}
    for variant in {r["variant"] for r in gate_rows}:
        g = [r for r in gate_rows if r["variant"] == variant]
        out["gates"][variant] = {
            "mean_gate": float(np.mean([r["mean_gate"] for r in g])),
            "min_head_half_life": min(r["half_life"] for r in g),
            "median_head_half_life": float(np.median([r["half_life"] for r in g])),
            "max_head_half_life": max(r["half_life"] for r in g),
        }
    out["setup"] = {"context": L, "seeds": len(cfg.seeds), "corpus": cfg.data.corpus, "vocab_size": vocab,
                    "train_tokens": cfg.train.steps * cfg.train.batch_size * L, "steps": cfg.train.steps,
                    "extrapolation_tokens": ev.extrapolation_tokens, "val_tokens": len(val_ids)}
    write_json(paths.metrics / "fox.json", out)
    write_csv(paths.plots / "fox" / "position_loss.csv", curves)
    write_csv(paths.plots / "fox" / "ppl_vs_length.csv", ppl_rows)
    write_csv(paths.plots / "fox" / "gates.csv", gate_rows)
    write_csv(paths.plots / "fox" / "cache_memory.csv", memory_rows)


def plot(cfg: FoxConfig, paths: Paths) -> None:
    from mlpapers.papers.fox import report  # matplotlib/pandas only where needed (seconds of import)

    report.plot(cfg, paths)


def markdown(paths: Paths) -> str:
    from mlpapers.papers.fox import report

    return report.markdown(paths)


FOX = Experiment(
    name="fox", config=FoxConfig, variants=lambda cfg: list(cfg.variants),
    train=train, evaluate=evaluate, plot=plot, report=markdown, prepare=prepare,
)
assert set(VARIANTS) >= set(Variant.__args__)  # the Literal and the model agree
