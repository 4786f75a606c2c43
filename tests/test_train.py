"""The shared training loop: overfits one batch, stops on NaN, saves loadable checkpoints."""
import dataclasses

import pytest
import torch

from mlpapers.train import NonFiniteLossError, TrainConfig, fit, load_checkpoint, lr_at, save_checkpoint

CFG = TrainConfig(steps=300, batch_size=8, lr=0.01, optimizer="adamw", momentum=0.9, beta2=0.99,
                  weight_decay=0.0, schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=1.0,
                  eval_every=100, precision="fp32", device="auto")


class OneBatch:
    """Regression on one fixed batch: a healthy loop drives the loss to ~0."""

    def __init__(self):
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
        self.x, self.y = torch.randn(8, 4), torch.randn(8, 1)
        self.calls = 0

    def train_batch(self, step, generator):
        return self.x, self.y

    def loss(self, batch):
        x, y = batch
        return ((self.model(x) - y) ** 2).mean()

    def evaluate(self):
        self.calls += 1
        return {"eval_loss": self.loss((self.x.to(self.device), self.y.to(self.device))).item()}


def test_fit_overfits_one_batch_and_logs_evals():
    task = OneBatch()
    hist = fit(task, CFG, seed=0)
    assert [r["step"] for r in hist] == [100, 200, 300] and task.calls == 3
    assert hist[-1]["eval_loss"] < 1e-3 < hist[0]["train_loss"]


def test_fit_is_repeatable_for_a_seed():
    torch.manual_seed(1)
    a = fit(OneBatch(), dataclasses.replace(CFG, steps=20), seed=0)
    torch.manual_seed(1)
    b = fit(OneBatch(), dataclasses.replace(CFG, steps=20), seed=0)
    assert a[-1]["train_loss"] == b[-1]["train_loss"]


def test_nan_loss_stops_training_with_a_message():
    task = OneBatch()
    task.x[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 0.*lower train.lr"):
        fit(task, CFG, seed=0)


def test_exploding_loss_stops_training():
    task = OneBatch()
    cfg = dataclasses.replace(CFG, lr=1e6, optimizer="sgd", momentum=0.0, grad_clip=0.0, steps=50)
    task.y *= 1e30
    with pytest.raises(NonFiniteLossError, match="loss became (inf|nan)"):
        fit(task, cfg, seed=0)


def test_lr_schedule_warmup_then_cosine_to_floor():
    cfg = dataclasses.replace(CFG, steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.001)
    assert lr_at(9, cfg) == pytest.approx(0.01)
    assert lr_at(10, cfg) == pytest.approx(0.01)
    assert lr_at(99, cfg) == pytest.approx(0.001, rel=0.01)


def test_checkpoint_roundtrip_with_weights_only(tmp_path):
    task = OneBatch()
    save_checkpoint(tmp_path / "m.pt", task.model, train_config=CFG, seed=3)
    fresh = OneBatch().model
    payload = load_checkpoint(tmp_path / "m.pt", fresh)
    for a, b in zip(task.model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert payload["meta"]["train_config"]["lr"] == 0.01 and payload["meta"]["seed"] == 3
    assert payload["versions"]["torch"] == torch.__version__
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file
