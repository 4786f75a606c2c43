"""Small helpers shared by every paper: seeding, devices, JSON, atomic writes, stats."""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

log = logging.getLogger("mlpapers")


class DataFileError(RuntimeError):
    """A file the pipeline reads (metrics JSON, checkpoint, prepared data) is missing, corrupt or
    unreadable. The message names the file and how to regenerate it; ``mlpapers`` exits with 2."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a stage is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str, key: str = "device") -> torch.device:
    """'auto' -> CUDA when present, else CPU; otherwise the named device ('cpu', 'cuda', 'cuda:N').

    An unknown or unavailable device is a ``ConfigError`` naming ``key`` (the params key)."""
    from mlpapers.config import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}: got {name!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}: got {name!r}; allowed: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: got {name!r} but CUDA is not available on this machine; use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: got {name!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return dev


def check_writable(folders: Iterable[str | Path], min_free: int = 16 << 20) -> None:
    """Before any work: each folder (or, if missing, the nearest existing parent) must accept a new
    file, and its file system must have ``min_free`` bytes free. Catches read-only and full
    output folders before a seed has trained instead of after."""
    import errno
    import shutil

    for folder in folders:
        folder = Path(folder)
        probe_dir = folder
        while not probe_dir.exists() and probe_dir.parent != probe_dir:
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise DataFileError(f"{probe_dir}: exists but is not a folder; outputs go to {folder}")
        try:
            fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".mlpapers-write-probe.")
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(tmp)
        except OSError as e:
            why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EROFS: "the file system is read-only"}.get(e.errno, e.strerror or str(e))
            raise DataFileError(f"{folder}: cannot write outputs here ({why}); fix permissions or free space "
                                "before re-running, nothing was trained") from None
        free = shutil.disk_usage(probe_dir).free
        if free < min_free:
            raise DataFileError(f"{folder}: only {free >> 20} MiB free on its disk (need at least {min_free >> 20} MiB); "
                                "free space before re-running, nothing was trained")


def versions() -> dict[str, str]:
    """Library versions recorded next to every checkpoint and metrics file."""
    import mlpapers

    return {
        "mlpapers": mlpapers.__version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file.

    Under a multi-process torchrun job only rank 0 writes (every output goes through here)."""
    from mlpapers import distributed

    if not distributed.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _round(x: Any, digits: int) -> Any:
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return None  # JSON has no NaN; a null metric fails `mlpapers verify` loudly
        if x != 0 and abs(x) < 10.0 ** -(digits - 3):  # tiny values (e.g. float64 errors): significant digits
            return float(f"{x:.{digits}g}")
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, digits) for v in x]
    return x


def write_json(path: str | Path, obj: Any, digits: int = 6) -> None:
    """Stable JSON (sorted keys, rounded floats) so unchanged results diff as unchanged."""
    atomic_write_text(path, json.dumps(_round(obj, digits), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or invalid one is a ``DataFileError`` naming it and the fix."""
    path = Path(path)
    fix = "re-run the stage that writes it (`dvc repro`) or restore it (`git checkout -- <file>`)"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found; {fix}") from None
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text ({e.reason}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFileError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg}); {fix}") from None


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    v = np.asarray(list(values), dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def fmt_mean_std(stat: dict[str, float], digits: int = 2, scale: float = 1.0) -> str:
    """'91.30 ± 0.45' (with n>1), or a plain number."""
    m = stat["mean"] * scale
    if stat.get("n", 1) > 1:
        return f"{m:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    return f"{m:.{digits}f}"


def write_csv(path: str | Path, rows: list[dict[str, Any]], digits: int = 6) -> None:
    """Rows of dicts -> CSV (columns in first-seen order), atomically; floats rounded."""
    import csv
    import io

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _round(v, digits) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
