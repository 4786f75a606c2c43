"""A stage's outputs are written only by a live stage: `mlpapers` under DVC dies with its parent
(issue 10; src/mlpapers/lifeline.py). Runs a real child process that a fake parent starts."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_inputs import TINY, set_key, write_params, trained, ws  # noqa: F401  (fixtures)


# ------------------------------------------------------------------ a stage dies with its parent

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen(sys.argv[2:], stderr=open(sys.argv[1], "w"))
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_stage_dies_with_its_parent_dvc(ws):
    """Killing the parent (dvc) must stop `mlpapers train` before it writes its history CSV."""
    f = write_params(ws, set_key(TINY, "dropout_toy.train.steps", 2_000_000))
    log_file = ws / "child.log"
    env = {**os.environ, "DVC_STAGE": "dropout_toy_train@plain", "MLPAPERS_PROGRESS_SECONDS": "1000"}
    history = ws / "plots" / "dropout_toy" / "history_plain.csv"
    before = history.read_bytes()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log_file), sys.executable, "-m", "mlpapers.cli",
                               "train", "dropout_toy", "plain", "--root", str(ws), "--params", str(f)],
                              stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    try:
        deadline = time.time() + 60
        while "parameters" not in log_file.read_text() and time.time() < deadline:
            time.sleep(0.2)  # wait until it trains
        assert "parameters" in log_file.read_text(), log_file.read_text()
        parent.kill()
        parent.wait()
        deadline = time.time() + 20
        while Path(f"/proc/{child}").exists() and time.time() < deadline:
            status = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0] \
                if Path(f"/proc/{child}/stat").exists() else "X"
            if status == "Z":
                break
            time.sleep(0.2)
        alive = Path(f"/proc/{child}/stat").exists() and \
            Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
        assert not alive, "mlpapers train outlived its parent"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert history.read_bytes() == before
    assert "stopped" in log_file.read_text()
