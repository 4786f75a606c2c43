"""What a paper plugs into the pipeline: one ``Experiment`` per params.yaml section.

The CLI (and so every DVC stage) is generic: ``mlpapers train <experiment> <variant>``
looks the experiment up in ``EXPERIMENTS`` below -- an explicit table, one line per
experiment -- and calls the paper's functions. Adding a paper means adding a folder under
``papers/``, a line here, a params section and its stages in ``dvc.yaml``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mlpapers.config import load_section
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
        return self.root / "metrics"

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
    plot: Callable[[Any, Paths], None]  # (cfg, paths): PNGs from the plot data
    prepare: Callable[[Any, Paths], None] | None = None  # (cfg, paths): data/prepared/...
    report: Callable[[Paths], str] | None = None  # markdown for the README results section


# experiment name -> "module:attribute" (imported on use, so one paper's import cost or
# breakage never reaches the others' stages)
EXPERIMENTS: dict[str, str] = {
    "dropout_toy": "mlpapers.papers.dropout.experiments:TOY",
    "dropout_mnist": "mlpapers.papers.dropout.experiments:MNIST",
    "dropout_retention": "mlpapers.papers.dropout.experiments:RETENTION",
    "dropout_regularizers": "mlpapers.papers.dropout.experiments:REGULARIZERS",
    "dropout_averaging": "mlpapers.papers.dropout.experiments:AVERAGING",
    "dropout_sparsity": "mlpapers.papers.dropout.experiments:SPARSITY",
    # FoX experiments:
    "fox": "mlpapers.papers.fox.experiments:FOX",
    # Seq2Seq experiments:
    "seq2seq_multi30k": "mlpapers.papers.seq2seq.experiments:MULTI30K",
    "seq2seq_reverse": "mlpapers.papers.seq2seq.experiments:REVERSE",
    # Transformer experiments:
    "transformer": "mlpapers.papers.transformer.experiments:TRANSFORMER",
}

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
