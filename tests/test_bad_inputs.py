"""Bad inputs and faults: each gets one line naming the key or file, exit status 2, and no
tracked output changes (issue 10). The CLI runs in-process on tiny params in a temp folder.

The long table of cases (>= 100) is scripts/bad_inputs.py; this module holds one or more
cases per class so the suite catches a regression in each.
"""
import copy
import gzip
import hashlib
import logging
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from mlpapers.cli import main

TINY = yaml.safe_load((ROOT / "tests" / "params_tiny.yaml").read_text())
TINY["compute"]["workers"] = 1  # in-process: fast, and nothing to spawn


def write_params(root: Path, params: dict) -> Path:
    f = root / "params.yaml"
    f.write_text(yaml.safe_dump(params, sort_keys=False))
    return f


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every file except logs/ (git-ignored): 'no tracked output changed'."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "logs" not in p.relative_to(root).parts}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace with dropout_toy trained (6 steps) and evaluated, on tiny params."""
    root = tmp_path_factory.mktemp("ws")
    write_params(root, TINY)
    for argv in (["train", "dropout_toy", "plain"], ["train", "dropout_toy", "dropout"], ["evaluate", "dropout_toy"]):
        assert main([*argv, "--root", str(root), "--params", str(root / "params.yaml")]) == 0
    return root


@pytest.fixture
def ws(trained, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(trained, root)
    return root


def set_key(params: dict, dotted: str, value) -> dict:
    p = copy.deepcopy(params)
    *head, last = dotted.split(".")
    d = p
    for k in head:
        d = d[k]
    d[last] = value
    return p


# ------------------------------------------------------------------ params: values

PARAM_CASES = [
    ("dropout_toy.train.lr", float("inf"), "finite"),
    ("dropout_toy.train.lr", float("nan"), "finite"),
    ("dropout_toy.train.lr", -0.1, "allowed"),
    ("dropout_toy.train.momentum", 2.0, "allowed: [0, 1)"),
    ("dropout_toy.train.beta2", 1.5, "allowed: [0, 1)"),
    ("dropout_toy.train.weight_decay", -0.1, "allowed"),
    ("dropout_toy.train.steps", 0, "allowed"),
    ("dropout_toy.train.batch_size", 0, "allowed"),
    ("dropout_toy.train.steps", 10**9, "allowed"),
    ("dropout_toy.train.device", "tpu", "allowed: auto, cpu"),
    ("dropout_toy.train.device", "cuda:7", "cuda"),
    ("dropout_toy.seeds", [], "empty"),
    ("dropout_toy.seeds", [0, 0], "repeated"),
    ("dropout_toy.seeds", [-1], "allowed"),
    ("dropout_toy.models.dropout.max_norm", float("nan"), "finite"),
    ("compute.threads", 0, "[1, 256]"),
]


@pytest.mark.parametrize("key,value,msg", PARAM_CASES, ids=[f"{k}={v}" for k, v, _ in PARAM_CASES])
def test_bad_param_value_is_one_line_naming_the_key(ws, capsys, key, value, msg):
    if key.endswith("device") and value == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    f = write_params(ws, set_key(TINY, key, value))
    before = snapshot(ws)
    rc, err = run_cli(capsys, "train", "dropout_toy", "dropout", "--root", str(ws), "--params", str(f))
    line = error_line(err)
    assert rc == 2
    assert key in line and msg in line, line
    assert snapshot(ws) == before  # failed before any work


def test_every_number_is_finite_even_where_validate_forgets(capsys, tmp_path):
    """config._convert refuses .nan/.inf for every float field, so no validate() can miss one."""
    from mlpapers.config import ConfigError, from_dict
    from mlpapers.papers.dropout.experiments import ToyConfig

    p = set_key(TINY["dropout_toy"], "data.noise", float("inf"))
    with pytest.raises(ConfigError, match=r"dropout_toy\.data\.noise: got inf; allowed: a finite number"):
        from_dict(ToyConfig, p, "dropout_toy")


def test_bad_thread_env_is_one_line(ws, capsys, monkeypatch):
    monkeypatch.setenv("MLPAPERS_NUM_THREADS", "abc")
    f = write_params(ws, TINY)
    rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(f))
    assert rc == 2 and "MLPAPERS_NUM_THREADS" in error_line(err)


def test_empty_training_set_is_not_a_nan_loss(ws, capsys):
    f = write_params(ws, set_key(TINY, "dropout_toy.data.n_train", 0))
    before = snapshot(ws)
    rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(f))
    line = error_line(err)
    assert rc == 2 and "n_train" in line and "lower" not in line, line
    assert snapshot(ws) == before


# ------------------------------------------------------------------ params: the file

RAW_YAML = {
    "duplicate key": ("compute:\n  threads: 1\n  threads: 2\n  workers: 1\n", "written twice"),
    "alias": ("a: &x {threads: 1, workers: 1}\ncompute: *x\n", "anchors and aliases"),
    "merge key": ("compute:\n  <<: {threads: 1}\n  workers: 1\n", "merge keys"),
    "syntax error": ("compute:\n  threads: [1, 2\n  workers: 1\n", "YAML syntax error"),
    "not a mapping": ("- 1\n- 2\n", "expected a mapping"),
    "not utf-8": (b"compute: {threads: 1, workers: 1}\n# \xff\xfe\n", "UTF-8"),
}


@pytest.mark.parametrize("case", list(RAW_YAML))
def test_bad_params_file_is_one_line_with_file_and_line(tmp_path, capsys, case):
    text, msg = RAW_YAML[case]
    f = tmp_path / "params.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    rc, err = run_cli(capsys, "check-params", "--params", str(f))
    line = error_line(err)
    assert rc == 2 and str(f) in line and msg in line, line
    assert len(line) < 400


def test_duplicate_key_names_line_and_column(tmp_path, capsys):
    f = tmp_path / "params.yaml"
    f.write_text("compute:\n  threads: 1\n  threads: 2\n")
    rc, err = run_cli(capsys, "check-params", "--params", str(f))
    assert rc == 2 and f"{f}:3:3: key 'threads' is written twice" in err


# ------------------------------------------------------------------ files

def test_truncated_and_empty_checkpoint(ws, capsys):
    ckpt = ws / "models" / "dropout_toy" / "plain" / "seed0.pt"
    for content in (ckpt.read_bytes()[:100], b""):
        ckpt.write_bytes(content)
        before = snapshot(ws)
        rc, err = run_cli(capsys, "evaluate", "dropout_toy", "--root", str(ws), "--params", str(ws / "params.yaml"))
        line = error_line(err)
        assert rc == 2 and str(ckpt) in line and "re-run" in line, line
        assert snapshot(ws) == before


def test_flipped_weight_byte_in_checkpoint_is_caught(ws, capsys):
    """A bit flip inside the tensor bytes loads fine in torch; the stored weights checksum catches it."""
    import struct

    ckpt = ws / "models" / "dropout_toy" / "plain" / "seed0.pt"
    data = bytearray(ckpt.read_bytes())
    info = next(i for i in zipfile.ZipFile(ckpt).infolist() if "/data/" in i.filename)
    n, m = struct.unpack("<HH", bytes(data[info.header_offset + 26: info.header_offset + 30]))
    data[info.header_offset + 30 + n + m + 1] ^= 0x40
    ckpt.write_bytes(bytes(data))
    torch.load(ckpt, weights_only=True)  # torch itself does not notice
    rc, err = run_cli(capsys, "evaluate", "dropout_toy", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and str(ckpt) in line and "checksum" in line, line


def test_checkpoint_of_another_model(ws, capsys):
    f = write_params(ws, set_key(TINY, "dropout_toy.models.plain.hidden", 16))
    rc, err = run_cli(capsys, "evaluate", "dropout_toy", "--root", str(ws), "--params", str(f))
    line = error_line(err)
    assert rc == 2 and "seed0.pt" in line and "does not match" in line, line


def test_invalid_results_json(ws, capsys):
    m = ws / "results" / "dropout_toy.json"
    m.write_text("{not json")
    readme = ws / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = snapshot(ws)
    rc, err = run_cli(capsys, "report", "--root", str(ws), "--readme", str(readme))
    line = error_line(err)
    assert rc == 2 and str(m) in line and "invalid JSON" in line, line
    assert snapshot(ws) == before


@pytest.mark.parametrize("content,msg", [("{oops", "invalid JSON"), ("[1, 2]", "expected a JSON object")])
def test_invalid_published_json(ws, capsys, content, msg):
    pub = ws / "published.json"
    pub.write_text(content)
    rc, err = run_cli(capsys, "verify", "--root", str(ws), "--published", str(pub),
                      "--tolerances", str(ROOT / "tolerances.yaml"))
    line = error_line(err)
    assert rc == 2 and str(pub) in line and msg in line, line


@pytest.mark.parametrize("text,msg", [
    ("rules: [\n", "YAML syntax error"),
    ("rulez: []\n", "'rules:' list"),
    ("rules:\n  - {pattern: '*', abs: -1}\n", "abs: got -1"),
    ("rules:\n  - {pattern: '*', abs: .nan}\n", "abs: got nan"),
    ("rules:\n  - {abs: 1}\n", "pattern"),
])
def test_broken_tolerances(ws, capsys, text, msg):
    tol = ws / "tol.yaml"
    tol.write_text(text)
    rc, err = run_cli(capsys, "verify", "--root", str(ws), "--published", str(ws / "x.json"), "--tolerances", str(tol))
    line = error_line(err)
    assert rc == 2 and str(tol) in line and msg in line, line


def test_missing_inputs_name_the_file(ws, capsys):
    shutil.rmtree(ws / "models" / "dropout_toy" / "dropout")
    rc, err = run_cli(capsys, "evaluate", "dropout_toy", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and "seed0.pt" in line and "not found" in line, line


def test_unknown_experiment_and_variant(ws, capsys):
    rc, err = run_cli(capsys, "train", "nope", "plain", "--root", str(ws), "--params", str(ws / "params.yaml"))
    assert rc == 2 and "unknown experiment 'nope'" in error_line(err)
    rc, err = run_cli(capsys, "train", "dropout_toy", "nope", "--root", str(ws), "--params", str(ws / "params.yaml"))
    assert rc == 2 and "unknown variant 'nope'" in error_line(err)


# ------------------------------------------------------------------ raw data

def test_tampered_raw_file_is_refused_outside_dvc(ws, capsys, mirror, monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    raw = ws / "data" / "raw" / "tinyshakespeare"
    raw.mkdir(parents=True)
    text = (mirror / "tinyshakespeare" / "input.txt").read_bytes()
    (raw / "input.txt").write_bytes(text.replace(b"First Citizen", b"Second Citizen", 1))
    f = write_params(ws, TINY)
    before = snapshot(ws)
    rc, err = run_cli(capsys, "prepare", "fox", "--root", str(ws), "--params", str(f))
    line = error_line(err)
    assert rc == 2 and str(raw / "input.txt") in line and "registry" in line, line
    assert snapshot(ws) == before


def test_corrupted_gzip_in_raw_is_refused(ws, capsys, mirror):
    raw = ws / "data" / "raw" / "mnist"
    raw.mkdir(parents=True)
    for p in (mirror / "mnist").glob("*.gz"):
        shutil.copy(p, raw / p.name)
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    rc, err = run_cli(capsys, "prepare", "dropout_mnist", "--root", str(ws), "--params", str(write_params(ws, TINY)))
    line = error_line(err)
    assert rc == 2 and str(bad) in line, line
    assert not (ws / "data" / "prepared").exists()


def test_corrupted_gzip_reader_error_is_one_line(capsys):
    """Where a paper reads a corrupt .gz itself (e.g. under DVC, no re-check), still one line."""
    from mlpapers.errors import describe

    buf = gzip.compress(b"x" * 1000)
    with pytest.raises(Exception) as info:
        gzip.decompress(buf[:-10])
    msg, rc = describe(info.value)
    assert rc == 2 and "corrupt" in msg and "mlpapers fetch" in msg


# ------------------------------------------------------------------ archives

def test_zip_extraction_stops_at_the_registry_size(tmp_path):
    from mlpapers.data import fetch as F

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (20 << 20))  # 20 MiB of zeros in a ~20 KB archive
    assert bomb.stat().st_size < 100_000
    with pytest.raises(F.FetchError, match="declares 20,971,520 bytes, but the registry says 1,000"):
        F.safe_extract_member(bomb, "big.bin", tmp_path / "x", max_bytes=1000)
    assert not (tmp_path / "x" / "big.bin").exists()
    # the byte counter stops a stream whose header is not believed either
    src, out = open(bomb, "rb"), tmp_path / "copy"
    with src, open(out, "wb") as dst, pytest.raises(F.FetchError, match="larger than the registry's declared 5,000"):
        F._copy_limited(src, dst, 5000, "stream")
    assert out.stat().st_size <= 5000
    with pytest.raises(F.FetchError, match="over the limit"):
        F.safe_extract(bomb, tmp_path / "y", max_bytes=1 << 20)


def test_mirror_file_of_the_wrong_size_is_not_copied(tmp_path, monkeypatch):
    from mlpapers.data import fetch as F
    from mlpapers.data.registry import DATASETS, Dataset, RemoteFile

    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.bin").write_bytes(b"\0" * 100_000)
    monkeypatch.setitem(DATASETS, "toy", Dataset("toy", "CC0", "-", (RemoteFile("a.bin", "0" * 64, 10),)))
    with pytest.raises(F.FetchError, match="100,000 bytes, but the registry says toy/a.bin has 10"):
        F.fetch_dataset("toy", tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    assert list((tmp_path / "raw" / "toy").iterdir()) == []


# ------------------------------------------------------------------ disks

def test_read_only_output_folder_is_found_before_training(ws, capsys, monkeypatch):
    import errno
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and Path(dir).resolve() == (ws / "models").resolve():
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    before = snapshot(ws)
    rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and str(ws / "models") in line and "read-only" in line and "nothing was trained" in line, line
    assert snapshot(ws) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_for_real(ws, capsys):
    (ws / "plots").chmod(0o555)
    try:
        rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(ws / "params.yaml"))
        assert rc == 2 and str(ws / "plots") in error_line(err)
    finally:
        (ws / "plots").chmod(0o755)


def test_full_disk_is_found_before_training(ws, capsys, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - 4096, 4096))
    before = snapshot(ws)
    rc, err = run_cli(capsys, "evaluate", "dropout_toy", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and "MiB free" in line and str(ws / "metrics") in line, line
    assert snapshot(ws) == before


def test_disk_full_while_writing_is_one_line(capsys, ws, monkeypatch):
    import errno

    from mlpapers import utils

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(utils, "atomic_write_bytes", full)
    monkeypatch.setattr("mlpapers.train.atomic_write_bytes", full)
    before = snapshot(ws)
    rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and "seed0.pt" in line and "no space left" in line, line
    assert snapshot(ws) == before


# ------------------------------------------------------------------ training: progress and estimates

class TinyTask:
    def __init__(self, n=8):
        self.model = torch.nn.Linear(2, 1)
        self.x, self.y = torch.randn(n, 2), torch.randn(n, 1)

    def train_batch(self, step, gen):
        return self.x, self.y

    def loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)


def tiny_train_config(**kw):
    from mlpapers.train import TrainConfig

    base = dict(steps=5, batch_size=8, lr=0.01, optimizer="adamw", momentum=0.9, beta2=0.99, weight_decay=0.0,
                schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=0.0, eval_every=0,
                precision="fp32", device="cpu")
    return TrainConfig(**{**base, **kw})


def test_progress_is_logged_when_stderr_is_not_a_terminal(caplog, monkeypatch):
    from mlpapers.train import fit

    monkeypatch.setenv("MLPAPERS_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="mlpapers.train"):
        fit(TinyTask(), tiny_train_config(), seed=0, desc="tiny")
    text = caplog.text
    assert "tiny: 3 parameters" in text  # the estimate comes first
    assert "tiny: step 1/5 (20%)" in text and "tiny: step 5/5 (100%)" in text


def test_no_progress_lines_on_a_terminal(caplog, monkeypatch):
    from mlpapers.train import fit

    monkeypatch.setenv("MLPAPERS_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with caplog.at_level(logging.INFO, logger="mlpapers.train"):
        fit(TinyTask(), tiny_train_config(), seed=0, desc="tiny")
    assert "step 1/5" not in caplog.text  # tqdm shows progress there


def test_model_too_big_for_memory_is_refused_before_training(ws, capsys, monkeypatch):
    monkeypatch.setattr("mlpapers.train._available_memory", lambda: 100)
    before = snapshot(ws)
    rc, err = run_cli(capsys, "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(ws / "params.yaml"))
    line = error_line(err)
    assert rc == 2 and "out of memory" in line and "sizes in params" in line, line
    assert snapshot(ws) == before


# ------------------------------------------------------------------ unexpected errors, --debug

def test_unexpected_error_is_one_line_and_traceback_only_with_debug(ws, capsys, monkeypatch):
    import mlpapers.cli as cli

    def boom(args):
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "cmd_datasets", boom)
    rc, err = run_cli(capsys, "datasets", "--root", str(ws))
    line = error_line(err)
    assert rc == 1 and "unexpected TypeError: a bug" in line and "mlpapers-error.log" in line
    assert "Traceback" in (ws / "logs" / "mlpapers-error.log").read_text()
    rc, err = run_cli(capsys, "--debug", "datasets", "--root", str(ws))
    assert rc == 1 and "Traceback (most recent call last)" in err
    monkeypatch.setenv("MLPAPERS_DEBUG", "1")
    rc, err = run_cli(capsys, "datasets", "--root", str(ws))
    assert "Traceback (most recent call last)" in err
