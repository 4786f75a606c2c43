"""A stage's outputs are written only by a live stage.

When ``dvc repro`` is killed, its ``mlpapers`` child must not go on and rewrite tracked
outputs after DVC has written (or given up on) its lock. Under DVC the CLI therefore asks
the kernel to SIGTERM it when its parent dies (``PR_SET_PDEATHSIG``), and, for the case
where a shell sits between DVC and us, a watchdog thread polls the nearest ``dvc``
ancestor. SIGTERM raises :class:`Terminated` in the main thread, so atomic writes clean up
their temporary files and the process exits with 143 (worker processes die with us,
see ``runner._die_with_parent``).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """SIGTERM arrived (e.g. the parent dvc died); not an ``Exception`` so nothing swallows it."""


def raise_on_sigterm():
    """SIGTERM -> ``Terminated`` in the main thread; returns the previous handler (to restore)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated("SIGTERM")

    return signal.signal(signal.SIGTERM, handler)


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(a.decode(errors="replace")) for a in argv[:3]]
    return "dvc" in names or any(a == b"dvc" for a in argv[:4])


def dvc_ancestor(start: int | None = None, depth: int = 6) -> int | None:
    """The pid of the nearest ancestor whose command line is ``dvc ...`` (or ``python -m dvc``)."""
    pid = os.getppid() if start is None else start
    for _ in range(depth):
        if pid is None or pid <= 1:
            return None
        if _is_dvc(pid):
            return pid
        pid = _ppid(pid)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[:1] if Path(f"/proc/{pid}").exists() else ["X"]
    return state != ["Z"]  # a zombie has died


def die_with_parent(poll_s: float = 1.0, grace_s: float = 5.0) -> None:
    """SIGTERM this process when its parent or its ``dvc`` ancestor dies (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    watched = {p for p in (parent, dvc_ancestor()) if p and p > 1}
    if parent == 1:  # the parent died before we got here
        os.kill(os.getpid(), signal.SIGTERM)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent or not all(_alive(p) for p in watched):
                log.error("the parent process (dvc) died; stopping so no output is written after it")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(grace_s)  # e.g. a process pool waiting for its jobs: do not wait for them
                os._exit(143)

    threading.Thread(target=watch, name="mlpapers-lifeline", daemon=True).start()
