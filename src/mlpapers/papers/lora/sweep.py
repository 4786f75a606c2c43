"""Learning-rate sweep on the *validation* split (never test): one run per (variant, lr).

    python -m mlpapers.papers.lora.sweep VARIANT LR [SEED]

Reads the ``lora`` section of params.yaml, replaces the variant's lr, trains one seed
single-threaded with the shared ``fit()`` and prints one JSON line: validation perplexity
on the whole Multi30k validation stream and the CPU seconds of the run. The lr table in the
LoRA README came from this script.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time

import torch

from mlpapers.config import FrozenDict
from mlpapers.experiment import Paths, get_experiment, load_config
from mlpapers.papers.fox.task import LMTask, loss_matrix, windows
from mlpapers.papers.lora.experiments import build, vocab
from mlpapers.papers.lora.task import load_domain
from mlpapers.train import fit


def main(argv: list[str]) -> None:
    variant, lr = argv[0], float(argv[1])
    seed = int(argv[2]) if len(argv) > 2 else 0
    torch.set_num_threads(1)
    cfg = load_config(get_experiment("lora"))
    spec = dataclasses.replace(cfg.variants[variant], lr=lr)
    cfg = dataclasses.replace(cfg, variants=FrozenDict({**cfg.variants, variant: spec}))
    paths = Paths()
    data = load_domain(paths.raw / "multi30k", vocab(paths), ("train", "val"))
    model = build(cfg, variant, paths, seed)
    T = model.cfg.block_size
    task = LMTask(model, data["train"][0], data["val"][0], cfg.train.batch_size, T, 16)
    t0 = time.process_time()
    fit(task, dataclasses.replace(cfg.train.with_lr(lr), eval_every=0), seed=seed)
    cpu = time.process_time() - t0
    val = loss_matrix(model, *windows(data["val"][0], T), torch.device("cpu")).double().mean().item()
    print(json.dumps({"variant": variant, "lr": lr, "seed": seed, "steps": cfg.train.steps,
                      "batch": cfg.train.batch_size, "val_ppl": round(math.exp(val), 4), "cpu_s": round(cpu, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
