"""DVC experiments on the real dvc.yaml with tiny params (tests/params_tiny.yaml) in a temp git repo.

Checks the recipes of README.md "Experiments with DVC": `dvc exp run -S` on one Dropout toy
param reruns only the stages that depend on it (the other variant's training is skipped, its
dvc.lock entry untouched) and `dvc exp diff` shows exactly that param; a queued sweep of two
values (`dvc exp run --queue -S key=a,b`, `dvc queue start -j 1`) lands in `dvc exp show --json`
with its params and metrics. Independent of the metric key names (headline keys may change).
Only the Dropout toy stages run (targets), with `compute.workers: 1` (one process per stage),
so that the whole module stays near a minute on 2 cores.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent  # the venv's bin: mlpapers and dvc
TARGET = "dropout_toy_evaluate"  # with its upstream: dropout_toy_train@plain, dropout_toy_train@dropout
KEY = "dropout_toy.models.dropout.p_hidden"
METRICS = "metrics/dropout_toy.json"


def run(args, cwd, env, check=True):
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def stages_skipped(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("experiments")
    shutil.copytree(ROOT / "src", d / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ["dvc.yaml", ".gitignore", ".gitattributes"]:
        shutil.copy(ROOT / f, d / f)
    params = yaml.safe_load((ROOT / "tests" / "params_tiny.yaml").read_text())
    params["compute"]["workers"] = 1  # results do not depend on it; one process per stage keeps -j 1 on 2 cores
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    run(["git", "init", "-q"], d, env)
    # DVC-NOTES: `dvc exp run` commits experiments, so git needs an identity (a full clone, >= 1 commit)
    run(["git", "config", "user.name", "t"], d, env)
    run(["git", "config", "user.email", "t@t"], d, env)
    run([BIN / "dvc", "init", "-q"], d, env)
    run([BIN / "dvc", "config", "core.analytics", "false"], d, env)
    first = run([BIN / "dvc", "repro", TARGET], d, env).stdout
    assert stages_run(first) == {"dropout_toy_train@plain", "dropout_toy_train@dropout", TARGET}
    run(["git", "add", "-A"], d, env)
    run(["git", "commit", "-qm", "tiny toy pipeline"], d, env)
    yield d, env
    run([BIN / "dvc", "queue", "stop", "--kill"], d, env, check=False)  # no worker outlives the test


def test_exp_run_set_param_reruns_only_dependent_stages(repo):
    d, env = repo
    lock0 = yaml.safe_load((d / "dvc.lock").read_text())["stages"]
    old = committed_value(d, env)
    new = 0.25 if old != 0.25 else 0.1
    out = run([BIN / "dvc", "exp", "run", "-n", "single", "-S", f"{KEY}={new}", TARGET], d, env).stdout
    assert stages_run(out) == {"dropout_toy_train@dropout", TARGET}
    assert "dropout_toy_train@plain" in stages_skipped(out)
    lock1 = yaml.safe_load((d / "dvc.lock").read_text())["stages"]  # the experiment is applied to the workspace
    assert lock1["dropout_toy_train@plain"] == lock0["dropout_toy_train@plain"]
    assert lock1["dropout_toy_train@dropout"]["outs"] != lock0["dropout_toy_train@dropout"]["outs"]
    diff = json.loads(run([BIN / "dvc", "exp", "diff", "HEAD", "single", "--json"], d, env).stdout)
    assert diff["params"] == {"params.yaml": {KEY: {"old": old, "new": new, "diff": pytest.approx(new - old)}}}
    assert diff["metrics"].get(METRICS)  # some number of the Dropout toy moved
    run(["git", "checkout", "--", "."], d, env)  # back to HEAD for the sweep


def committed_value(d: Path, env: dict) -> float:
    """The value of KEY in the committed params.yaml."""
    value = yaml.safe_load(run(["git", "show", "HEAD:params.yaml"], d, env).stdout)
    for k in KEY.split("."):
        value = value[k]
    return value


def test_queued_sweep_lands_in_exp_show(repo):
    d, env = repo
    values = (0.1, 0.75)
    out = run([BIN / "dvc", "exp", "run", "--queue", "-S", f"{KEY}={values[0]},{values[1]}", TARGET], d, env).stdout
    assert out.count("Queued experiment") == 2
    run([BIN / "dvc", "queue", "start", "-j", "1"], d, env)
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", status := run([BIN / "dvc", "queue", "status"], d, env).stdout):
        assert time.monotonic() < deadline, f"queue still busy after 10 min:\n{status}"
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], d, env).stdout)
    found = {}
    for row in shown:
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                value = data["params"]["params.yaml"]["data"]
                for k in KEY.split("."):
                    value = value[k]
                found[value] = data["metrics"][METRICS].get("data")
    assert set(values) <= set(found)
    assert all(found[v] for v in values)  # each sweep point has its metrics
    assert found[values[0]] != found[values[1]]  # from its own run, not a copy of the baseline
