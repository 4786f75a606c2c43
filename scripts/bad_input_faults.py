"""Faults for the bad-input table: hooks that run in the forked child before ``main``
(read-only or full disks, a small-memory machine, an evil dataset registry, a planted bug)
and special cases that drive real processes (dvc killed mid-stage, SIGTERM, Ctrl-C, two
runs at once, the time estimate of a huge run).
"""
from __future__ import annotations

import copy
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from bad_input_cases import TIMEOUT, TINY, Case, write_params


# ---------------------------------------------------------------------------- child hooks

def readonly(folder: str) -> Callable[[Path], None]:
    def child(ws: Path):
        real = tempfile.mkstemp
        target = (ws / folder).resolve()

        def mkstemp(*a, dir=None, **kw):
            if dir is not None and Path(dir).resolve() == target:
                raise OSError(errno.EROFS, "Read-only file system", str(dir))
            return real(*a, dir=dir, **kw)

        tempfile.mkstemp = mkstemp

    return child


def disk_full_free(ws: Path) -> None:
    import collections

    usage = collections.namedtuple("usage", "total used free")
    shutil.disk_usage = lambda p: usage(1 << 30, (1 << 30) - 4096, 4096)


def enospc_on_write(ws: Path) -> None:
    import mlpapers.train
    import mlpapers.utils

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    mlpapers.utils.atomic_write_bytes = full
    mlpapers.train.atomic_write_bytes = full


def tiny_memory(ws: Path) -> None:
    import mlpapers.train

    mlpapers.train._available_memory = lambda: 100


def registry_with(rf_factory: Callable[[Path], Any]) -> Callable[[Path], None]:
    def child(ws: Path):
        from mlpapers.data.registry import DATASETS, Dataset

        DATASETS["evil"] = Dataset("evil", "CC0", "-", (rf_factory(ws),))

    return child


def zip_bomb(ws: Path):
    from mlpapers.data.registry import Archive, RemoteFile

    z = ws / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (50 << 20))
    return RemoteFile("big.bin", "0" * 64, 800_000, archive=Archive(z.as_uri(), "big.bin", None))


def zip_slip(ws: Path):
    from mlpapers.data.registry import Archive, RemoteFile

    z = ws / "slip.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escape.txt", b"pwned")
    return RemoteFile("escape.txt", "0" * 64, 5, archive=Archive(z.as_uri(), "../../escape.txt", None))


def wrong_member(ws: Path):
    from mlpapers.data.registry import Archive, RemoteFile

    z = ws / "ok.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", b"hello")
    return RemoteFile("b.txt", "0" * 64, 5, archive=Archive(z.as_uri(), "b.txt", None))


def not_a_zip(ws: Path):
    from mlpapers.data.registry import Archive, RemoteFile

    z = ws / "fake.zip"
    z.write_bytes(b"this is not a zip archive")
    return RemoteFile("a.txt", "0" * 64, 5, archive=Archive(z.as_uri(), "a.txt", None))


def raise_bug(ws: Path) -> None:
    import mlpapers.cli

    def boom(args):
        raise TypeError("a planted bug")

    mlpapers.cli.cmd_datasets = boom


# ---------------------------------------------------------------------------- special cases

def run_subprocess(ws: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlpapers.cli", *argv], cwd=ws, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def long_train_params(ws: Path, steps: int = 2_000_000) -> None:
    p = copy.deepcopy(TINY)
    p["dropout_toy"]["train"]["steps"] = steps
    write_params(ws, p)


def wait_for(path_or_proc_text: Callable[[], str], needle: str, timeout: float = 60) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in path_or_proc_text():
            return True
        time.sleep(0.2)
    return False


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[2:], stderr=open(sys.argv[1], "w"), stdout=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def kill_parent_dvc(ws: Path, case: Case) -> dict:
    long_train_params(ws)
    log = ws / "child.log"
    env = {**os.environ, "DVC_STAGE": "dropout_toy_train@plain", "MLPAPERS_PROGRESS_SECONDS": "1000"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log), sys.executable, "-m", "mlpapers.cli",
                               "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(ws / "params.yaml")],
                              stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    started = wait_for(lambda: log.read_text(), "parameters")
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    hung = _alive(child)
    if hung:
        os.kill(child, signal.SIGKILL)
    text = log.read_text()
    return {"rc": "killed" if not hung else "alive", "out": text, "hang": hung or not started,
            "one_line": "stopped" in text, "names": True, "expect_ok_override": not hung and started}


def signal_stage(sig: int) -> Callable[[Path, Case], dict]:
    def special(ws: Path, case: Case) -> dict:
        long_train_params(ws)
        p = run_subprocess(ws, ["train", "dropout_toy", "plain"], {"MLPAPERS_PROGRESS_SECONDS": "1000"})
        out: list[str] = []
        import threading

        t = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
        t.start()
        started = wait_for(lambda: "".join(out), "parameters")
        p.send_signal(sig)
        try:
            rc = p.wait(timeout=30)
            hung = False
        except subprocess.TimeoutExpired:
            p.kill()
            rc, hung = p.wait(), True
        t.join(5)
        text = "".join(out)
        return {"rc": rc, "out": text, "hang": hung or not started,
                "one_line": sum(": stopped (" in ln for ln in text.splitlines()) == 1, "names": True,
                "expect_ok_override": rc in (130, 143)}

    return special


def estimate_first(ws: Path, case: Case) -> dict:
    long_train_params(ws, 5_000_000)
    p = run_subprocess(ws, ["train", "dropout_toy", "plain"], {"MLPAPERS_PROGRESS_SECONDS": "1000"})
    out: list[str] = []
    import threading

    t = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
    t.start()
    ok = wait_for(lambda: "".join(out), "the estimate is", timeout=60)
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    t.join(5)
    text = "".join(out)
    return {"rc": rc, "out": text, "hang": False, "one_line": True, "names": ok and "parameters" in text,
            "expect_ok_override": ok}


def concurrent_train(ws: Path, case: Case) -> dict:
    procs = [run_subprocess(ws, ["train", "dropout_toy", "plain"], {}) for _ in range(2)]
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    rcs = [p.returncode for p in procs]
    hist = (ws / "plots" / "dropout_toy" / "history_plain.csv").read_text()
    ok = rcs == [0, 0] and hist.count("\n") > 1 and not list(ws.rglob("*.tmp"))
    return {"rc": rcs, "out": "\n".join(outs), "hang": False, "one_line": True, "names": True,
            "expect_ok_override": ok}


