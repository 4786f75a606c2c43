"""CPU time per training update and per forward pass (a declared throughput metric).

The machine is shared, so costs are CPU seconds of this single-threaded process
(``time.process_time``), not wall time; variants are timed in interleaved rounds so a slow
phase hits all of them, each round starting at the next model so that no model always runs
first or last, and ratios are taken per round (``stats.ratio``). These numbers
measure the machine, not the models: ``tolerances`` skip them.

Inference (Section 4.1, "No Additional Inference Latency"): rounds of their own after the
training rounds; within a round, forward passes of the same batch alternate one at a time
between the base model, a second copy of the base model (the control: how
much two identical models differ in timing on this machine), every merged LoRA model and
every unmerged adapter model. The claim is tested on the per-round difference of merged/base and
copy/base (``merged_minus_copy``) against a margin fixed before measuring (``report.LATENCY_MARGIN``).
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from mlpapers import stats
from mlpapers.train import make_optimizer


def timings(cfg, paths, train_ids: torch.Tensor) -> dict:
    from mlpapers.papers.lora.experiments import build, load_pretrained
    from mlpapers.papers.lora.model import merge_lora

    seed, ev = cfg.seeds[0], cfg.eval
    base = load_pretrained(cfg, paths, seed).eval()
    T, B = base.cfg.block_size, cfg.train.batch_size
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(len(train_ids) - T - 1, (B,), generator=gen)
    chunk = train_ids[start[:, None] + torch.arange(T + 1)]  # (B, T+1)
    x, y = chunk[:, :-1], chunk[:, 1:]

    models = {v: build(cfg, v, paths, seed) for v in cfg.variants}
    opts = {v: make_optimizer(m, cfg.train.with_lr(s.lr)) for (v, m), s in zip(models.items(), cfg.variants.values())}

    def update(v: str) -> None:
        m = models[v]
        loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        opts[v].zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.train.grad_clip)
        opts[v].step()

    infer = {"base": base, "base_copy": copy.deepcopy(base)}
    for v, s in cfg.variants.items():
        if s.method == "lora":
            infer[f"{v}:adapter"] = models[v].eval()
            infer[f"{v}:merged"] = merge_lora(models[v]).eval()
    train_t: dict[str, list[float]] = {v: [] for v in models}
    infer_t: dict[str, list[float]] = {k: [] for k in infer}
    for v in models:  # warm-up
        models[v].train()
        update(v)

    def rotated(keys: list[str], r: int) -> list[str]:  # round r starts at the r-th model: no fixed order
        return keys[r % len(keys):] + keys[:r % len(keys)]

    for r in range(ev.speed_rounds):
        for v in rotated(list(models), r):
            models[v].train()
            t0 = time.process_time()
            for _ in range(ev.speed_steps):
                update(v)
            train_t[v].append((time.process_time() - t0) / ev.speed_steps)
    with torch.no_grad():  # inference rounds on their own, one forward pass at a time, models interleaved
        for m in infer.values():  # eval mode (the adapters are the models just trained) and a warm-up pass
            m.eval()(x)
        for r in range(ev.speed_rounds):
            spent = dict.fromkeys(infer, 0.0)
            for step in range(ev.speed_steps):
                for k in rotated(list(infer), r * ev.speed_steps + step):
                    t0 = time.process_time()
                    infer[k](x)
                    spent[k] += time.process_time() - t0
            for k, s in spent.items():
                infer_t[k].append(s / ev.speed_steps)
    out = {"train_cpu_s_per_step": {v: stats.summarize(t) for v, t in train_t.items()},
           "forward_cpu_s": {k: stats.summarize(t) for k, t in infer_t.items()},
           "control_ratio": stats.ratio(infer_t["base_copy"], infer_t["base"]),
           "merged_over_base": {}, "adapter_over_base": {}, "merged_minus_copy": {},
           "rounds": ev.speed_rounds, "steps_per_round": ev.speed_steps, "batch": B,
           "threads": torch.get_num_threads()}
    for v, s in cfg.variants.items():
        if s.method == "lora":
            out["merged_over_base"][v] = stats.ratio(infer_t[f"{v}:merged"], infer_t["base"])
            out["adapter_over_base"][v] = stats.ratio(infer_t[f"{v}:adapter"], infer_t["base"])
            # the claim's test: per round, merged/base minus copy/base; the copy shares the round's
            # conditions and the base's work, so what is left is the merge's extra cost
            base = infer_t["base"]
            out["merged_minus_copy"][v] = stats.paired([m / b for m, b in zip(infer_t[f"{v}:merged"], base)],
                                                       [c / b for c, b in zip(infer_t["base_copy"], base)])
    return out
