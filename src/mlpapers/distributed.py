"""Data-parallel training on ``torch.distributed``: ranks, batch shards, the ``torchrun`` launch.

``compute.processes: N`` (params.yaml, shared by every paper) makes ``mlpapers train``
re-launch itself as ``torchrun --standalone --nproc-per-node N -m mlpapers.cli train ...``.
Inside each rank :func:`mlpapers.train.fit` then

* joins the process group from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``...): ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``);
* wraps the task's loss in ``DistributedDataParallel`` (gradients averaged over ranks);
* draws the *whole* batch ``B = train.batch_size`` from the seeded generator, exactly as a
  single process does, and keeps only its shard ``[r B/N, (r+1) B/N)`` (:func:`shard`).

So N ranks with B/N examples each compute the mean-loss gradient of the same B examples the
single-process run sees: for a loss that is a mean over equal-weight examples (Dropout, FoX)
the runs agree up to float reassociation (tests/test_distributed.py measures it). Losses that
average over a varying number of tokens (Seq2Seq's padded batches) get the mean of per-rank
means instead, and stochastic layers (dropout masks) draw per-rank random numbers: those runs
match the single-process run in distribution, not step by step.

Only rank 0 writes files (:func:`is_main`, checked in ``utils.atomic_write_bytes``, the one
place every output goes through); every rank evaluates (same weights, same numbers).
With ``WORLD_SIZE`` unset or 1 nothing here runs: single-process results are unchanged.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Any

log = logging.getLogger(__name__)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def active() -> bool:
    """True inside a multi-process torchrun job (``WORLD_SIZE`` > 1)."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0 (or no distributed job): the only process that writes outputs."""
    return rank() == 0


def setup(device):
    """Join the process group once per process; returns this rank's device.

    CPU -> ``gloo``; CUDA -> ``nccl`` with one GPU per local rank (``cuda:LOCAL_RANK``)."""
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()} "
                               "CUDA device(s); lower compute.processes to at most that number")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        log.debug("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(),
                  dist.get_backend())
    return device


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: Any, r: int, n: int) -> Any:
    """Rank ``r``'s slice ``[r B/n, (r+1) B/n)`` along dim 0 of every tensor in the batch.

    Every tensor with a batch dimension must have the same size ``B`` on dim 0 (batch-first
    layout) and ``B`` must be divisible by ``n``; otherwise a ``ValueError`` says so (a
    silent wrong slice of a time-first tensor would train on garbage)."""
    import torch

    sizes: set[int] = set()

    def collect(b: Any) -> None:
        if isinstance(b, torch.Tensor):
            if b.dim() > 0:
                sizes.add(b.shape[0])
        elif isinstance(b, (tuple, list)):
            for x in b:
                collect(x)
        elif isinstance(b, dict):
            for x in b.values():
                collect(x)

    collect(batch)
    if len(sizes) > 1:
        raise ValueError(f"cannot shard a batch whose tensors have different sizes on dim 0 {sorted(sizes)}: "
                         "data-parallel training needs batch-first tensors from task.train_batch")
    if not sizes:
        return batch
    size = sizes.pop()
    if size % n:
        raise ValueError(f"a batch of {size} examples does not split evenly over {n} processes; "
                         "make train.batch_size a multiple of compute.processes")
    per = size // n

    def cut(b: Any) -> Any:
        if isinstance(b, torch.Tensor):
            return b[r * per:(r + 1) * per] if b.dim() > 0 else b
        if isinstance(b, (tuple, list)):
            return type(b)(cut(x) for x in b)
        if isinstance(b, dict):
            return {k: cut(v) for k, v in b.items()}
        return b

    return cut(batch)


def mean(x):
    """The mean of a tensor over all ranks (a copy; every rank gets the same value)."""
    import torch.distributed as dist

    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def peer_lost(e: BaseException) -> bool:
    """A collective failed because another rank went away (gloo: closed socket; nccl: backend error)."""
    import torch.distributed as dist

    if not active():
        return False
    if isinstance(e, getattr(dist, "DistBackendError", ())) or isinstance(e, getattr(dist, "DistNetworkError", ())):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                                    "Broken pipe", "Socket Timeout", "Gloo"))


def launch(argv: list[str], processes: int) -> int:
    """Re-run ``mlpapers <argv>`` as ``processes`` ranks on this machine; returns an exit status.

    torchrun stops every rank when one fails; a failure is reported here as one line.
    Outputs are written only by rank 0, each atomically when its run completes, so a
    failed run leaves no half-written file (complete files of jobs finished before the
    failure stay, as in a single-process run; DVC records nothing for a failed stage)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "--max-restarts=0", "-m", "mlpapers.cli", *argv]
    log.info("compute.processes = %d: launching %s", processes, " ".join(cmd[1:]))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    try:
        rc = proc.wait()
    except BaseException:  # SIGTERM/Ctrl-C of this wrapper: stop torchrun, which stops its ranks
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if rc != 0:
        what = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        print(f"mlpapers {argv[0] if argv else ''}: error: distributed training failed: torchrun stopped all "
              f"{processes} processes after one of them failed ({what}; the failing rank and its error are "
              "printed above); no output of the unfinished run was written (rank 0 writes each checkpoint "
              "and history atomically only when its run completes)", file=sys.stderr)
        return 1
    return 0


def _die_with_parent() -> None:
    """torchrun gets SIGTERM when this wrapper dies (it then stops its ranks)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
