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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a stage is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' requested but CUDA is not available; use device: auto or cpu")
    return dev


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
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
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
    with open(path) as f:
        return json.load(f)


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
