"""What a paper plugs into the pipeline: one ``Experiment`` per params.yaml section.

The CLI (and so every DVC stage) is generic: ``mlpapers train <experiment> <variant>``
looks the experiment up in ``EXPERIMENTS`` -- gathered from the papers' ``pipeline.yaml``
files (``mlpapers.pipeline``) -- and calls the paper's functions. Adding a paper means adding
a folder under ``papers/`` (code, ``pipeline.yaml``, ``tiny.yaml``), its params sections and a
line in ``papers/__init__.py``; ``mlpapers dvc-yaml --write`` regenerates ``dvc.yaml``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mlpapers.config import load_section
from mlpapers.pipeline import experiments
from mlpapers.runner import DEFAULT_COMPUTE, Compute


@dataclass(frozen=True)
class Paths:
    """Where stages read and write (relative to the repository root), and the compute
    (``compute`` section of params.yaml: threads, parallel workers) they may use."""

    root: Path = Path(".")
    compute: Compute = DEFAULT_COMPUTE

    def checkpoint(self, experiment: str, variant: str, key: str) -> Path:
        """``models/<experiment>/<variant>/<key>.pt``, e.g. key ``seed0`` or ``n100_seed0``."""
        return self.models / experiment / variant / f"{key}.pt"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def metrics(self) -> Path:
        """Where an evaluate function writes ``<experiment>.json``; the ``evaluate`` command then
        moves it to ``results/`` and keeps its headline numbers here (``mlpapers.pipeline``)."""
        return self.root / "metrics"

    @property
    def results(self) -> Path:
        """Every number an experiment measured (git-tracked detail the README sections read)."""
        return self.root / "results"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


@dataclass(frozen=True)
class Experiment:
    name: str  # its params.yaml section
    config: type  # frozen dataclass of that section
    variants: Callable[[Any], Sequence[str]]  # cfg -> trainable variant names
    train: Callable[[Any, str, Paths], None]  # (cfg, variant, paths): checkpoints + history
    evaluate: Callable[[Any, Paths], None]  # (cfg, paths): metrics/<name>*.json + plot data
    plot: Callable[[Any, Paths], None]  # (cfg, paths): PNGs from the plot data (after evaluate, same stage)
    prepare: Callable[[Any, Paths], None] | None = None  # (cfg, paths): data/prepared/...
    report: Callable[[Paths], str] | None = None  # markdown for the README results section
    # (cfg, paths): results/<name>_speed.json, the CPU timings of this machine. The one stage
    # whose output is not byte-stable, so kept apart from evaluate's results (README "Byte-stable")
    speed: Callable[[Any, Paths], None] | None = None


# experiment name -> "module:attribute" (imported on use, so one paper's import cost or
# breakage never reaches the others' stages), from the papers' pipeline.yaml files
EXPERIMENTS: dict[str, str] = experiments()

# order of sections in the README results
REPORT_ORDER: list[str] = list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment '{name}'; known: {', '.join(EXPERIMENTS)}")
    module, attr = EXPERIMENTS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def load_config(exp: Experiment, params: str | Path = "params.yaml") -> Any:
    return load_section(exp.config, exp.name, params)


def load_compute(params: str | Path = "params.yaml") -> Compute:
    """The shared ``compute`` section (threads per process, parallel workers)."""
    return load_section(Compute, "compute", params)
