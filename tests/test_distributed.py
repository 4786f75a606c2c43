"""Data-parallel training (mlpapers.distributed): N gloo ranks with B/N examples each reproduce
one process with batch B; a killed rank fails the stage cleanly; only rank 0 writes.

The two end-to-end tests run the real ``mlpapers train`` command (it re-launches itself under
``torchrun`` when ``compute.processes > 1``) on the tiny Dropout toy net, on this CPU.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mlpapers import distributed
from mlpapers.cli import main as cli_main
from mlpapers.config import ConfigError, from_dict
from mlpapers.runner import Compute, parallel_map
from mlpapers.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "params_tiny.yaml").read_text())
# measured on this test's net (SGD, 60 steps): max |w_2 ranks - w_1 process| = 2.4e-7 (float
# reassociation of the gradient mean only); the mutants tried (gradients not synchronised, both
# ranks on the same shard, gradients summed instead of averaged) end 1.6 apart
WEIGHT_TOL = 1e-5


def _params(tmp: Path, processes: int, steps: int) -> Path:
    p = yaml.safe_load(yaml.safe_dump(TINY))
    p["compute"].update(processes=processes, workers=1)
    p["dropout_toy"]["seeds"] = [0]
    # plain SGD without clipping: the update is proportional to the gradient, so a summed (not
    # averaged) or unsynchronised gradient shows in the weights (Adam would hide its scale)
    p["dropout_toy"]["train"].update(steps=steps, eval_every=10 if steps <= 1000 else 0, optimizer="sgd",
                                     lr=0.1, momentum=0.9, grad_clip=0.0)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def _train_cmd(root: Path, params: Path) -> list[str]:
    return [sys.executable, "-m", "mlpapers.cli", "train", "dropout_toy", "plain", "--root", str(root),
            "--params", str(params)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "DVC_STAGE")}
    return dict(env, OMP_NUM_THREADS="1", MLPAPERS_VERIFY_RAW="0")


def test_two_gloo_ranks_reproduce_one_process_with_the_whole_batch(tmp_path):
    """Same final weights (max abs difference < WEIGHT_TOL) and the same loss curve (6 decimals)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert cli_main(["train", "dropout_toy", "plain", "--root", str(one), "--params", str(_params(one, 1, 60))]) == 0
    run = subprocess.run(_train_cmd(two, _params(two, 2, 60)), env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "launching" in run.stderr and "--nproc-per-node=2" in run.stderr  # it really ran two ranks
    ckpt = "models/dropout_toy/plain/seed0.pt"
    a, b = load_checkpoint(one / ckpt)["model"], load_checkpoint(two / ckpt)["model"]
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"2 ranks vs 1 process after 60 steps: max |dw| = {diff:.3g}")
    assert diff < WEIGHT_TOL, f"2 ranks vs 1 process: max |dw| = {diff:.3g}"
    history = "plots/dropout_toy/history_plain.csv"
    assert (one / history).read_text() == (two / history).read_text()
    # rank 0 alone wrote: no temp files, nothing but the stage's outputs (and the git-ignored timings)
    written = sorted(str(p.relative_to(two)) for p in two.rglob("*") if p.is_file())
    assert written == sorted([ckpt, history, "logs/timings/" + history, "params.yaml"]), written


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _descendants(pid: int) -> list[int]:
    out = []
    for k in _children(pid):
        out += [k, *_descendants(k)]
    return out


def _rank_pid(wrapper: int, rank: int) -> int | None:
    for pid in _descendants(wrapper):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"mlpapers.cli" in cmd and f"RANK={rank}".encode() in env and b"torch.distributed.run" not in cmd:
            return pid
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's pid in /proc")
def test_killing_one_rank_fails_the_stage_and_writes_nothing(tmp_path):
    params = _params(tmp_path, 2, 2_000_000)  # far longer than the test waits
    proc = subprocess.Popen(_train_cmd(tmp_path, params), env=_env(), stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:  # rank 0 logs the model size just before its first step
            lines.append(line)
            if "dropout_toy/plain/seed0:" in line:
                break
        time.sleep(0.5)  # a few hundred steps in
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None, "".join(lines)
        os.kill(victim, signal.SIGKILL)
        rest = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc != 0
    last = rest.strip().splitlines()[-1]
    assert last.startswith("mlpapers train: error: distributed training failed"), rest[-3000:]
    assert "no output of the unfinished run was written" in last, last
    leftovers = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and p != params]
    assert leftovers == [], leftovers  # no checkpoint, no history, no temp file
    assert _descendants(proc.pid) == []  # torchrun and both ranks are gone


def test_shard_takes_this_ranks_slice_of_every_tensor():
    x, y, n = torch.arange(12).view(6, 2), torch.arange(6), torch.tensor(3.0)
    parts = [distributed.shard({"x": x, "y": (y, n), "tag": "a"}, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), x) and torch.equal(parts[1]["y"][0], y[2:4])
    assert parts[2]["y"][1] is n and parts[0]["tag"] == "a"
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.shard((x, y), 0, 4)
    with pytest.raises(ValueError, match="batch-first"):
        distributed.shard((x, torch.arange(5)), 0, 2)


def test_processes_validated_and_batch_must_split(tmp_path):
    base = {"threads": 1, "workers": 1, "processes": 1, "compile": False}
    for bad in (0, 1025):
        with pytest.raises(ConfigError, match=r"compute\.processes must be in \[1, 1024\]"):
            from_dict(Compute, {**base, "processes": bad}, "compute")
    with pytest.raises(ConfigError, match="compute.compile: expected bool"):
        from_dict(Compute, {**base, "compile": 1}, "compute")
    params = _params(tmp_path, 3, 6)  # the tiny batch of 16 does not split over 3 processes
    rc = cli_main(["train", "dropout_toy", "plain", "--root", str(tmp_path), "--params", str(params)])
    assert rc == 2 and not (tmp_path / "models").exists()  # refused before launching anything


def _square(x: int) -> int:
    return x * x


def test_under_torchrun_jobs_run_serially_and_only_rank_0_writes(tmp_path, monkeypatch):
    from mlpapers.utils import write_json

    import mlpapers.runner

    def no_pool(*a, **k):
        raise AssertionError("a worker pool was started inside a torchrun job")

    monkeypatch.setattr(mlpapers.runner, "ProcessPoolExecutor", no_pool)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert parallel_map(_square, [1, 2, 3], Compute(threads=1, workers=2)) == [1, 4, 9]  # no pool spawned
    write_json(tmp_path / "m.json", {"a": 1})
    assert not (tmp_path / "m.json").exists()
    monkeypatch.setenv("RANK", "0")
    write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").exists()


def test_compile_switch_compiles_the_model_in_fit(monkeypatch):
    """compute.compile: true -> fit() compiles the task's model in place; off (the default) -> untouched."""
    import mlpapers.runner
    from mlpapers.train import TrainConfig, fit

    class Task:
        def __init__(self):
            self.model = torch.nn.Linear(3, 1)

        def train_batch(self, step, generator):
            return torch.randn(4, 3, generator=generator)

        def loss(self, x):
            return self.model(x).pow(2).mean()

    cfg = TrainConfig(steps=2, batch_size=4, lr=0.01, optimizer="sgd", momentum=0.0, beta2=0.99, weight_decay=0.0,
                      schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=0.0, eval_every=0,
                      precision="fp32", device="cpu")
    for flag in (False, True):
        task, calls = Task(), []
        task.model.compile = lambda: calls.append("compiled")  # no compiler toolchain needed for this test
        monkeypatch.setattr(mlpapers.runner, "_CURRENT", [Compute(threads=1, workers=1, compile=flag)])
        fit(task, cfg, seed=0)
        assert calls == (["compiled"] if flag else [])


def test_gpu_profile_overrides_existing_keys_and_validates(tmp_path):
    """params-gpu.yaml only overrides keys params.yaml has, and the merged file passes check-params."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile", ROOT / "scripts" / "profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    from mlpapers.config import load_params, load_yaml

    overrides = load_yaml(ROOT / "params-gpu.yaml")
    merged = profile.merged(load_params(ROOT / "params.yaml"), overrides)
    assert any(k.endswith("precision") and v == "bf16" for k, v in overrides.items())
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(merged))
    assert cli_main(["check-params", "--params", str(tmp_path / "gpu.yaml")]) == 0
    with pytest.raises(SystemExit, match="fox.model.d_modle"):
        profile.merged(load_params(ROOT / "params.yaml"), {"fox.model.d_modle": 1})
