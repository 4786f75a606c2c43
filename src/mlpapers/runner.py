"""How a stage spends the machine: threads per process, jobs side by side, timings kept apart.

One shared place for compute settings (the top-level ``compute`` section of params.yaml),
used by every paper's stages:

* ``threads`` -- torch intra-op threads per process. Tiny models gain little from a second
  thread and lose badly to oversubscription when anything else runs, and float reductions
  depend on the thread count, so this value is part of what makes results repeatable.
* ``workers`` -- independent jobs of one stage (seeds, data-set sizes, models to evaluate)
  run side by side in that many processes. Every job seeds itself, so results do not depend
  on ``workers``; only the wall time does.
* ``processes`` -- data-parallel ranks per training run (``mlpapers.distributed``): a train
  stage re-launches itself under ``torchrun`` when > 1 and its jobs then run one after another
  on all ranks (``workers`` is not used there). 1 = today's single-process run, unchanged.
* ``compile`` -- ``torch.compile`` the model in ``fit()`` (a GPU-profile switch; off by default).

Wall-clock numbers never go into the histories that plots and ``dvc.lock`` hash:
:func:`write_history` writes them to ``logs/timings/`` (git-ignored, not a DVC output), so
re-running a stage with the same params changes no tracked byte.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

# columns of fit()'s rows that measure the machine, not the model
TIMING_COLUMNS = ("seconds", "examples_per_s", "tokens_per_s")


@dataclass(frozen=True)
class Compute:
    threads: int  # torch threads per process (part of what makes results bit-repeatable)
    workers: int  # processes running a stage's independent jobs side by side (wall time only)
    # data-parallel ranks of one training run (train stages re-launch under torchrun when > 1;
    # their jobs then run one after another on all ranks: `workers` applies to other stages only)
    processes: int = 1
    compile: bool = False  # torch.compile the model in fit() (GPU profile; needs a compiler toolchain)

    def validate(self) -> None:
        if not 1 <= self.threads <= 256:
            raise ValueError(f"threads must be in [1, 256], got {self.threads}")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be in [1, 256], got {self.workers}")
        if isinstance(self.processes, bool) or not 1 <= self.processes <= 1024:
            raise ValueError(f"processes must be in [1, 1024], got {self.processes}")


DEFAULT_COMPUTE = Compute(threads=1, workers=1)
_CURRENT = [DEFAULT_COMPUTE]  # what apply_compute() set in this process (fit() reads compute.compile)


def current_compute() -> Compute:
    return _CURRENT[0]


def effective_threads(compute: Compute) -> int:
    """``MLPAPERS_NUM_THREADS`` overrides params (e.g. on a big machine); else ``compute.threads``."""
    env = os.environ.get("MLPAPERS_NUM_THREADS")
    if env is None or env == "":
        return compute.threads
    if not env.isdigit() or int(env) < 1:
        from mlpapers.config import ConfigError

        raise ConfigError(f"MLPAPERS_NUM_THREADS={env!r}: expected a whole number >= 1 (or unset it)")
    return int(env)


def apply_threads(compute: Compute) -> None:
    import torch

    torch.set_num_threads(effective_threads(compute))
    _CURRENT[0] = compute


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the stage process dies, so no orphan writes outputs later."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown still applies
        pass


def _init_worker(threads: int, level: int, compute: Compute = DEFAULT_COMPUTE) -> None:
    _die_with_parent()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(threads)
    _CURRENT[0] = compute


def parallel_map(fn: Callable[[J], R], jobs: Iterable[J], compute: Compute) -> list[R]:
    """``[fn(job) for job in jobs]``, run in up to ``compute.workers`` spawned processes.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one,
    with picklable arguments: configs are). Results come back in job order. With one
    worker or one job everything runs in this process, with the same thread count, so
    the numbers are the same either way.
    """
    from mlpapers import distributed

    jobs = list(jobs)
    workers = min(compute.workers, len(jobs))
    if workers > 1 and distributed.active():  # every rank runs every job, in the same order
        log.info("%d jobs one after another on %d data-parallel processes (compute.workers is not used "
                 "when compute.processes > 1)", len(jobs), distributed.world_size())
        workers = 1
    if workers <= 1:
        return [fn(j) for j in jobs]
    threads = effective_threads(compute)
    log.info("%d jobs on %d worker processes x %d thread(s)", len(jobs), workers, threads)
    # spawn, not fork: forking after torch has started its thread pools can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads, logging.getLogger().level, compute)) as ex:
        return list(ex.map(fn, jobs))


def write_history(path: str | Path, rows: list[dict[str, Any]], root: str | Path = ".") -> None:
    """History rows -> a byte-stable CSV at ``path``; their wall-clock columns -> logs/timings/."""
    from mlpapers.utils import write_csv

    path = Path(path)
    stable = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    write_csv(path, stable)
    timing_keys = [k for k in ("seed", "n", "step") if rows and k in rows[0]]
    timings = [{**{k: r[k] for k in timing_keys}, **{k: r[k] for k in TIMING_COLUMNS if k in r}} for r in rows]
    if any(len(t) > len(timing_keys) for t in timings):
        try:
            rel = path.resolve().relative_to(Path(root).resolve())
        except ValueError:
            rel = Path(path.name)
        write_csv(Path(root) / "logs" / "timings" / rel, timings)
