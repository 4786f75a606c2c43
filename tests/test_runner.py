"""Shared compute: parallel workers give the same numbers as one process; timings stay out of histories."""
import functools
import pickle

import pytest
import torch

from mlpapers.config import ConfigError, FrozenDict, from_dict
from mlpapers.runner import Compute, effective_threads, parallel_map, write_history
from mlpapers.train import TrainConfig, fit

CFG = TrainConfig(steps=40, batch_size=8, lr=0.01, optimizer="adamw", momentum=0.9, beta2=0.99,
                  weight_decay=0.0, schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=1.0,
                  eval_every=20, precision="fp32", device="cpu")


class Regression:
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.x, self.y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)

    def train_batch(self, step, generator):
        i = torch.randint(0, 64, (8,), generator=generator)
        return self.x[i], self.y[i]

    def loss(self, batch):
        x, y = batch
        return ((self.model(x) - y) ** 2).mean()


def train_one(cfg: TrainConfig, seed: int) -> tuple[list[float], list[float]]:
    """A module-level job (picklable): seeds itself, returns final weights and losses."""
    torch.manual_seed(seed)
    task = Regression(seed)
    hist = fit(task, cfg, seed=seed)
    return [float(p) for p in torch.cat([p.detach().flatten() for p in task.model.parameters()])], [r["train_loss"] for r in hist]


def test_parallel_workers_reproduce_the_inline_run_exactly():
    job = functools.partial(train_one, CFG)
    inline = parallel_map(job, [0, 1, 2], Compute(threads=1, workers=1))
    torch.set_num_threads(1)
    spread = parallel_map(job, [0, 1, 2], Compute(threads=1, workers=2))
    assert spread == inline  # bit-identical, in job order
    assert inline[0] != inline[1]  # the jobs really differ by seed


def test_config_mappings_pickle_and_stay_read_only():
    d = FrozenDict({"a": 1})
    assert pickle.loads(pickle.dumps(d)) == {"a": 1}
    with pytest.raises(TypeError):
        d["a"] = 2


def test_compute_validation_and_thread_override(monkeypatch):
    with pytest.raises(ConfigError, match=r"compute\.threads must be in \[1, 256\]"):
        from_dict(Compute, {"threads": 0, "workers": 1, "processes": 1, "compile": False}, "compute")
    c = Compute(threads=1, workers=2)
    monkeypatch.setenv("MLPAPERS_NUM_THREADS", "3")
    assert effective_threads(c) == 3
    monkeypatch.setenv("MLPAPERS_NUM_THREADS", "abc")
    with pytest.raises(ConfigError, match="MLPAPERS_NUM_THREADS"):
        effective_threads(c)


def test_history_is_byte_stable_and_timings_go_elsewhere(tmp_path):
    rows = [{"seed": 0, "step": 10, "train_loss": 0.5, "seconds": 1.23, "examples_per_s": 99.0}]
    out = tmp_path / "plots" / "x" / "history_a.csv"
    write_history(out, rows, root=tmp_path)
    first = out.read_bytes()
    assert b"seconds" not in first and b"examples_per_s" not in first
    rows[0]["seconds"] = 7.0  # a slower machine: the history must not change
    write_history(out, rows, root=tmp_path)
    assert out.read_bytes() == first
    timing = (tmp_path / "logs" / "timings" / "plots" / "x" / "history_a.csv").read_text()
    assert "seconds" in timing and "7.0" in timing
