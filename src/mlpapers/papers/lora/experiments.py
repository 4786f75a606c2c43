"""LoRA experiments as pipeline stages (params section ``lora``).

* train    -- every (variant, seed) in one stage (``train lora all``, jobs side by side:
              ``compute.workers``) with the shared ``fit()``. Seed s starts from the FoX stage's
              pretrained Transformer ``models/fox/<pretrained>/seed<s>.pt`` (a DVC dependency,
              read in place); ``scratch`` starts from a fresh init of the same architecture.
* evaluate -- every checkpoint (and the pretrained model zero-shot) on the whole Multi30k
              validation and test streams; for LoRA also the merged model (outputs, ppl,
              parameter count); then, alone, CPU time per training update and per forward pass
              (base vs merged vs unmerged adapter) in interleaved rounds. Everything goes to
              metrics/lora.json (moved to results/lora.json by the CLI), per-seed rows to
              plots/lora/per_seed.csv.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from dataclasses import dataclass
from typing import Literal, Mapping

import torch

from mlpapers import stats
from mlpapers.config import ParamError, check_range
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.fox.model import LM, LMConfig
from mlpapers.papers.fox.task import LMTask, loss_matrix, windows
from mlpapers.papers.lora.model import adapt, merge_lora, trainable
from mlpapers.papers.lora.task import load_domain
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import seed_everything, write_csv, write_json

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test_2016_flickr")  # Multi30k English: train / tune on val / held-out test


@dataclass(frozen=True)
class Spec:
    """One compared model: how it starts, what trains, at which learning rate."""

    method: Literal["scratch", "full", "lora"]  # fresh init / all weights / LoRA adapters only
    targets: Literal["none", "qv", "all"]  # LoRA: W_q,W_v or every attention and MLP matrix
    rank: int  # LoRA r (0 for scratch / full)
    lr: float  # peak learning rate of this model (tuned on validation, README)

    def validate(self) -> None:
        check_range(self, "lr", 0, 10, lo_open=True)
        if self.method == "lora":
            check_range(self, "rank", 1, 1024)
            if self.targets == "none":
                raise ParamError("targets", "a lora variant needs targets qv or all")
        elif self.rank != 0 or self.targets != "none":
            raise ParamError("rank", f"{self.method} has no adapter: use rank 0 and targets none")


@dataclass(frozen=True)
class LoraTrain:
    """The shared schedule of every variant (``TrainConfig`` without lr: each Spec has its own)."""

    steps: int
    batch_size: int
    optimizer: Literal["adamw", "sgd"]
    momentum: float
    beta2: float
    weight_decay: float
    schedule: Literal["constant", "cosine", "linear"]
    warmup_steps: int
    min_lr_ratio: float
    grad_clip: float
    eval_every: int
    precision: Literal["fp32", "bf16"]
    device: str

    def with_lr(self, lr: float) -> TrainConfig:
        return TrainConfig(lr=lr, **dataclasses.asdict(self))

    def validate(self) -> None:
        self.with_lr(1e-3).validate()


@dataclass(frozen=True)
class LoraEval:
    eval_windows: int  # validation windows behind the training curves
    merge_windows: int  # validation windows for the merged-vs-adapter output comparison
    speed_steps: int  # training updates per timing round
    speed_rounds: int  # interleaved timing rounds (intervals are over rounds)

    def validate(self) -> None:
        check_range(self, "eval_windows", 1, 100_000)
        check_range(self, "merge_windows", 1, 100_000)
        check_range(self, "speed_steps", 1, 1000)
        check_range(self, "speed_rounds", 2, 1000)


@dataclass(frozen=True)
class LoraConfig:
    seeds: tuple[int, ...]  # seed s fine-tunes models/fox/<pretrained>/seed<s>.pt
    pretrained: str  # the FoX variant whose checkpoints are the pretrained models
    alpha: float  # LoRA α: ΔW is scaled by α/r (Section 4.1); fixed, not tuned, as in the paper
    variants: Mapping[str, Spec]  # name -> model; 'full' is the claims' baseline
    train: LoraTrain
    eval: LoraEval

    def validate(self) -> None:
        check_range(self, "alpha", 0, 1e4, lo_open=True)
        if self.pretrained != "transformer":
            raise ParamError("pretrained", "only 'transformer' (the FoX stage's learned-position model) is supported")
        if "full" not in self.variants or self.variants["full"].method != "full":
            raise ParamError("variants", "needs a variant 'full' (method full): the baseline of the claims")
        if not any(s.method == "lora" for s in self.variants.values()):
            raise ParamError("variants", "needs at least one lora variant")
        if "pretrained" in self.variants or "all" in self.variants:
            raise ParamError("variants", "'pretrained' and 'all' are reserved names")


# ----------------------------------------------------------------------- models


def pretrained_path(cfg: LoraConfig, paths: Paths, seed: int):
    return paths.checkpoint("fox", cfg.pretrained, f"seed{seed}")


def load_pretrained(cfg: LoraConfig, paths: Paths, seed: int) -> LM:
    """The FoX stage's model of this seed, built from the config stored in its checkpoint."""
    payload = load_checkpoint(pretrained_path(cfg, paths, seed))
    model = LM(LMConfig(**payload["meta"]["model_config"]))
    model.load_state_dict(payload["model"])
    return model


def build(cfg: LoraConfig, variant: str, paths: Paths, seed: int) -> LM:
    """Seed s: the pretrained model (scratch: a fresh one of its shape), then adapters if LoRA."""
    spec = cfg.variants[variant]
    base = load_pretrained(cfg, paths, seed)
    seed_everything(seed)
    if spec.method == "scratch":
        return LM(base.cfg)  # GPT-2 style init of fox.model.LM
    if spec.method == "lora":
        return adapt(base, spec.targets, spec.rank, cfg.alpha)  # A ~ N(0, 1/k) drawn from this seed
    return base


def vocab(paths: Paths) -> list[str]:
    return json.loads((paths.prepared / "fox" / "vocab.json").read_text(encoding="utf-8"))


def checkpoint(paths: Paths, variant: str, seed: int):
    return paths.checkpoint("lora", variant, f"seed{seed}")


# ----------------------------------------------------------------------- train


def train_seed(cfg: LoraConfig, paths: Paths, job: tuple[str, int]) -> list[dict]:
    variant, seed = job
    data = load_domain(paths.raw / "multi30k", vocab(paths), SPLITS[:2])
    model = build(cfg, variant, paths, seed)
    task = LMTask(model, data["train"][0], data["val"][0], cfg.train.batch_size, model.cfg.block_size,
                  cfg.eval.eval_windows)
    history = fit(task, cfg.train.with_lr(cfg.variants[variant].lr), seed=seed, desc=f"lora/{variant}/seed{seed}")
    save_checkpoint(checkpoint(paths, variant, seed), model, spec=cfg.variants[variant], alpha=cfg.alpha,
                    model_config=model.cfg, train_config=cfg.train, seed=seed)
    return [{"variant": variant, "seed": seed, **r} for r in history]


def train(cfg: LoraConfig, variant: str, paths: Paths) -> None:
    """One variant's seeds, or (``all``, what the pipeline runs) every (variant, seed) pair."""
    names = list(cfg.variants) if variant == "all" else [variant]
    for s in cfg.seeds:  # fail before any work when a pretrained model is missing
        if not pretrained_path(cfg, paths, s).is_file():
            raise FileNotFoundError(f"{pretrained_path(cfg, paths, s)}: no pretrained model for lora seed {s}; "
                                    "lora.seeds must be a subset of fox.seeds (run `dvc repro fox_train`)")
    jobs = [(v, s) for v in names for s in cfg.seeds]
    rows = parallel_map(functools.partial(train_seed, cfg, paths), jobs, paths.compute)
    write_history(paths.plots / "lora" / f"history_{variant}.csv", [r for rs in rows for r in rs], paths.root)


# -------------------------------------------------------------------- evaluate


def evaluate_one(cfg: LoraConfig, paths: Paths, job: tuple[str, int]) -> dict:
    """Val/test loss of one checkpoint (``pretrained``: zero-shot); LoRA: also the merged model."""
    variant, seed = job
    data = load_domain(paths.raw / "multi30k", vocab(paths), SPLITS[1:])
    if variant == "pretrained":
        model = load_pretrained(cfg, paths, seed)
    else:
        model = build(cfg, variant, paths, seed)
        load_checkpoint(checkpoint(paths, variant, seed), model)
    model.eval()
    T, cpu = model.cfg.block_size, torch.device("cpu")
    r = {"variant": variant, "seed": seed, "trainable": trainable(model) if variant != "pretrained" else 0}
    val = windows(data["val"][0], T)
    r["val_loss"] = loss_matrix(model, *val, cpu).double().mean().item()
    r["test_loss"] = loss_matrix(model, *windows(data["test_2016_flickr"][0], T), cpu).double().mean().item()
    if variant != "pretrained" and cfg.variants[variant].method == "lora":
        xm, ym = val[0][: cfg.eval.merge_windows], val[1][: cfg.eval.merge_windows]
        r["merge"] = merge_check(model, xm)
        r["merge"]["val_loss_adapter"] = loss_matrix(model, xm, ym, cpu).double().mean().item()
        r["merge"]["val_loss_merged"] = loss_matrix(merge_lora(model).eval(), xm, ym, cpu).double().mean().item()
    return r


@torch.no_grad()
def merge_check(model: LM, x: torch.Tensor) -> dict:
    """max |logits(merged) - logits(adapter)| and the float32 rounding bound it must stay under.

    Both paths compute the same function (W0 + (α/r)BA) x = W0 x + (α/r) B (A x) in exact
    arithmetic; in float32 each is off the exact value only by rounding, which the float64
    copies measure: |m - a| <= |m - m64| + |a - a64| + |m64 - a64| elementwise. ``of_bound`` is
    the observed difference over that bound (< 1 when merging is exact up to rounding; a
    wrong merge, e.g. without the α/r scale, gives differences orders of magnitude larger).
    """
    merged = merge_lora(model).eval()
    a, m = model(x), merged(x)  # (N, T, V)
    a64 = copy_double(model)(x)
    m64 = copy_double(merged)(x)
    diff = (m - a).abs().max().item()
    bound = (m.double() - m64).abs().max().item() + (a.double() - a64).abs().max().item() \
        + (m64 - a64).abs().max().item()
    same_arch = type(merged) is type(model) and not any("LoRA" in type(mod).__name__ for mod in merged.modules())
    base_params = sum(p.numel() for p in merged.parameters())
    return {"max_abs_diff": diff, "bound": bound, "of_bound": diff / bound, "max_abs_logit": a.abs().max().item(),
            "same_architecture": same_arch, "merged_params": base_params}


def copy_double(model: LM) -> LM:
    import copy

    return copy.deepcopy(model).double().eval()


def speed(cfg: LoraConfig, paths: Paths) -> None:
    """CPU time per update of every variant and per forward pass of merged and unmerged adapters
    (``bench.timings``), into ``results/lora_speed.json``: timings, the one output that differs
    between runs. ``train_cpu_s``: the variant's training cost, steps × CPU-s per update."""
    from mlpapers.papers.lora.bench import timings

    data = load_domain(paths.raw / "multi30k", vocab(paths), SPLITS)
    tp = timings(cfg, paths, data["train"][0])
    cpu = {v: {k: t[k] * cfg.train.steps for k in ("mean", "ci_lo", "ci_hi")}
           for v, t in tp["train_cpu_s_per_step"].items()}
    write_json(paths.results / "lora_speed.json", {"throughput": tp, "train_cpu_s": cpu})
    from mlpapers.papers.lora.report import plot_speed

    plot_speed(paths)  # quality (results/lora.json) against the cost just measured


def evaluate(cfg: LoraConfig, paths: Paths) -> None:
    voc = vocab(paths)
    seeds, names = cfg.seeds, ["pretrained", *cfg.variants]
    jobs = [(v, s) for v in names for s in seeds]
    res = {(r["variant"], r["seed"]): r for r in
           parallel_map(functools.partial(evaluate_one, cfg, paths), jobs, paths.compute)}
    data = load_domain(paths.raw / "multi30k", voc, SPLITS)
    out = summarize(cfg, res)
    base = load_pretrained(cfg, paths, seeds[0])
    out["setup"] = {"seeds": len(seeds), "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
                    "context": base.cfg.block_size, "alpha": cfg.alpha, "base_params": trainable(base),
                    "base_model": {k: v for k, v in dataclasses.asdict(base.cfg).items() if k != "rope_base"},
                    "train_chars": cfg.train.steps * cfg.train.batch_size * base.cfg.block_size,
                    "chars": {s: len(d[0]) for s, d in data.items()},
                    "chars_mapped": {s: d[1] for s, d in data.items()}}
    write_json(paths.metrics / "lora.json", out)
    # `variant` is the line of the mean_band plot (a family: lora_qv joins its ranks), `model` the run
    rows = [{"variant": family(cfg, r["variant"]), "model": r["variant"], "seed": r["seed"],
             "trainable_params": r["trainable"], "val_ppl": math.exp(r["val_loss"]),
             "test_ppl": math.exp(r["test_loss"])} for r in res.values()]
    write_csv(paths.plots / "lora" / "per_seed.csv", rows)


def family(cfg: LoraConfig, variant: str) -> str:
    if variant == "pretrained":
        return "pretrained (zero-shot)"
    s = cfg.variants[variant]
    return f"lora_{s.targets}" if s.method == "lora" else s.method


def summarize(cfg: LoraConfig, res: dict) -> dict:
    """Per-seed results -> summaries (mlpapers.stats), paired by seed against full fine-tuning."""
    seeds = cfg.seeds
    ppl = {v: [math.exp(res[v, s]["val_loss"]) for s in seeds] for v in ["pretrained", *cfg.variants]}
    base_params = res["full", seeds[0]]["trainable"]
    out: dict = {"variants": {}, "claims": {}}
    for v in ["pretrained", *cfg.variants]:
        n = res[v, seeds[0]]["trainable"]
        out["variants"][v] = {
            "trainable_params": n, "trainable_pct": 100 * n / base_params,
            "val_ppl": stats.summarize(ppl[v]),
            "test_ppl": stats.summarize([math.exp(res[v, s]["test_loss"]) for s in seeds])}
    full = stats.summarize(ppl["full"])
    # closeness threshold: the seed-to-seed spread of full fine-tuning itself (std, % of its mean ppl)
    noise_pct = 100 * full["std"] / full["mean"]
    out["claims"]["full_seed_std_pct"] = noise_pct
    for v, spec in cfg.variants.items():
        if spec.method != "lora":
            continue
        gap = [100 * (a - b) / b for a, b in zip(ppl[v], ppl["full"])]  # paired: same pretrained seed
        merge = [res[v, s]["merge"] for s in seeds]
        out["claims"][v] = {
            "gap_vs_full_pct": stats.summarize(gap),
            "trainable_pct": 100 * res[v, seeds[0]]["trainable"] / base_params,
            "merge_diff_of_bound": stats.summarize([m["of_bound"] for m in merge]),
            "merge_max_abs_diff": max(m["max_abs_diff"] for m in merge),
            "merged_minus_adapter_val_ppl": stats.summarize(  # on the merge_windows
                [math.exp(m["val_loss_merged"]) - math.exp(m["val_loss_adapter"]) for m in merge]),
            "merged_same_architecture": all(m["same_architecture"] for m in merge),
            "merged_params": merge[0]["merged_params"]}
    out["claims"]["scratch_minus_full_pct"] = stats.summarize(
        [100 * (a - b) / b for a, b in zip(ppl["scratch"], ppl["full"])]) if "scratch" in cfg.variants else None
    return out


def plot(cfg: LoraConfig, paths: Paths) -> None:
    from mlpapers.papers.lora.report import plot_all

    plot_all(cfg, paths)


def markdown(paths: Paths) -> str:
    from mlpapers.papers.lora.report import markdown as md

    return md(paths)


LORA = Experiment(name="lora", config=LoraConfig, variants=lambda cfg: [*cfg.variants, "all"],
                  train=train, evaluate=evaluate, plot=plot, report=markdown, speed=speed)
