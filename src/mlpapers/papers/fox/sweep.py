"""Quality per CPU-second: one training run with overridden steps / batch / lr (validation only).

    python -m mlpapers.papers.fox.sweep VARIANT STEPS BATCH LR [SEED]

Reads the ``fox`` section of params.yaml, replaces ``train.steps``, ``batch_size``, ``lr``
(warmup: min(100, steps / 10)), trains one seed single-threaded with the shared ``fit()``
and prints one JSON line: validation loss on the whole validation split at L and the CPU
seconds of the run (``time.process_time``; the machine is shared, wall time is not a
measure of cost). Needs ``mlpapers prepare fox`` first. The table in the FoX README
came from this script.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import torch

from mlpapers.experiment import Paths, get_experiment, load_config
from mlpapers.papers.fox.experiments import build, load_data
from mlpapers.papers.fox.task import LMTask, position_loss, windows
from mlpapers.train import fit
from mlpapers.utils import seed_everything


def main(argv: list[str]) -> None:
    variant, steps, batch, lr = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    seed = int(argv[4]) if len(argv) > 4 else 0
    torch.set_num_threads(1)
    cfg = load_config(get_experiment("fox"))
    tc = dataclasses.replace(cfg.train, steps=steps, batch_size=batch, lr=lr, eval_every=0,
                             warmup_steps=min(100, steps // 10))
    train_ids, val_ids, vocab = load_data(Paths())
    seed_everything(seed)
    model = build(cfg, variant, vocab)
    task = LMTask(model, train_ids, val_ids, batch, cfg.model.context, 16)
    t0, w0 = time.process_time(), time.perf_counter()
    fit(task, tc, seed=seed)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    loss = float(position_loss(model, *windows(val_ids, cfg.model.context), torch.device("cpu")).mean())
    print(json.dumps({"variant": variant, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                      "val_loss": round(loss, 4), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
