"""The real dvc.yaml, end to end, on tiny params (tests/params_tiny.yaml) in a temp git repo.

Checks: `dvc repro` runs every stage; a second `dvc repro` is a no-op; changing one
model's param reruns only that model's stages (and its evaluation, plot and the report);
`dvc metrics diff` shows the change; `mlpapers verify` passes on the committed numbers
and fails on a tampered metric.
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


def run(args, cwd, env, check=True):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mirror):
    d = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(ROOT / "src", d / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ["dvc.yaml", "tolerances.yaml", "README.md", ".gitignore", ".gitattributes"]:
        shutil.copy(ROOT / f, d / f)
    shutil.copy(ROOT / "tests" / "params_tiny.yaml", d / "params.yaml")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLPAPERS_DATA_MIRROR": str(mirror),
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], d, env)
    run([BIN / "dvc", "init", "-q"], d, env)
    run([BIN / "dvc", "config", "core.analytics", "false"], d, env)
    shutil.copytree(ROOT / ".dvc" / "plots", d / ".dvc" / "plots")  # plot templates and the offline page
    run([BIN / "dvc", "config", "plots.html_template", "plots/offline.html"], d, env)
    first = run([BIN / "dvc", "repro"], d, env)
    run(["git", "add", "-A"], d, env)
    run(["git", "commit", "-qm", "tiny pipeline"], d, env)
    return d, env, first.stdout


def test_repro_runs_every_stage_and_fills_readme(repo):
    d, env, out = repo
    listed = run([BIN / "dvc", "stage", "list", "--name-only"], d, env).stdout.split()
    assert stages_run(out) == set(listed)
    readme = (d / "README.md").read_text()
    assert "Test acc." in readme and "Training images N" in readme
    for m in (d / "metrics").glob("*.json"):
        json.loads(m.read_text())
    assert (d / "plots" / "dropout_mnist.png").stat().st_size > 1000


def test_second_repro_is_a_noop(repo):
    d, env, _ = repo
    t0 = time.perf_counter()
    out = run([BIN / "dvc", "repro"], d, env).stdout
    assert stages_run(out) == set()
    assert "up to date" in out
    assert run(["git", "status", "--porcelain"], d, env).stdout == ""  # nothing rewritten
    print(f"no-op dvc repro: {time.perf_counter() - t0:.1f} s")


def test_every_rendered_plot_names_its_x_and_y(repo):
    d, env, _ = repo
    shown = json.loads(run([BIN / "dvc", "plots", "show", "--json"], d, env).stdout)["data"]
    specs = [p for plots in shown.values() for p in plots if p.get("type") == "vega"]
    assert len(specs) >= 8
    for p in specs:
        content = p["content"]
        enc = {**content.get("encoding", {}), **{k: v for layer in content.get("layer", [])
                                                 for k, v in layer.get("encoding", {}).items()}}
        assert enc["x"]["field"] and enc["y"]["field"], p
        assert enc["x"].get("title") and enc["y"].get("title"), f"unnamed axis in {content.get('title')}"
        assert enc["y"]["field"] != "examples_per_s"  # the old default: last column vs row index
    out = d / "dvc_plots"
    run([BIN / "dvc", "plots", "show", "-o", str(out)], d, env)
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vegaEmbed" in page  # offline: Vega inlined, no CDN


def test_forced_rerun_with_same_params_changes_no_tracked_byte(repo):
    d, env, _ = repo
    # a train chain, and the evaluate stages that used to time the machine (timings: *_speed stages)
    stages = ["dropout_toy_train@plain", "dropout_toy_evaluate", "fox_evaluate",
              "transformer_evaluate", "mamba_evaluate", "lora_evaluate", "report"]
    out = run([BIN / "dvc", "repro", "-f", "--single-item", *stages], d, env).stdout
    assert stages_run(out) == set(stages)
    assert run(["git", "status", "--porcelain"], d, env).stdout == ""  # dvc.lock, CSVs, PNG, README identical
    # the CPU timings live in the speed stages' own files: rerunning one touches that file only
    out = run([BIN / "dvc", "repro", "-f", "--single-item", "fox_speed"], d, env).stdout
    assert stages_run(out) == {"fox_speed"}
    changed = {line[3:] for line in run(["git", "status", "--porcelain"], d, env).stdout.splitlines()}
    assert changed <= {"results/fox_speed.json", "dvc.lock"}, changed
    run(["git", "checkout", "--", "."], d, env)


def test_verify_passes_then_catches_a_tampered_metric(repo):
    d, env, _ = repo
    assert run([BIN / "mlpapers", "verify"], d, env, check=False).returncode == 0
    path = d / "metrics" / "dropout_toy.json"
    original = path.read_text()
    m = json.loads(original)
    m["dropout"]["test_acc"]["mean"] += 0.1
    path.write_text(json.dumps(m))
    try:
        r = run([BIN / "mlpapers", "verify"], d, env, check=False)
        assert r.returncode == 1
        assert re.search(r"dropout_toy\.json:dropout\.test_acc\.mean .* NO", r.stdout)
    finally:
        path.write_text(original)


def test_changing_one_param_reruns_only_its_stages(repo):
    d, env, _ = repo
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["dropout_toy"]["models"]["dropout"]["p_hidden"] = 0.25
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([BIN / "dvc", "repro"], d, env).stdout
    assert stages_run(out) == {"dropout_toy_train@dropout", "dropout_toy_evaluate", "report"}
    diff = json.loads(run([BIN / "dvc", "metrics", "diff", "HEAD", "--json"], d, env).stdout)
    changed = diff["metrics/dropout_toy.json"]
    assert any(v.get("diff") for v in changed.values())  # e.g. dropout.test_acc.mean moved
    assert all(not v.get("diff") for k, v in diff.get("metrics/dropout_mnist.json", {}).items())


def test_local_remote_push_and_pull_restore_models(repo, tmp_path):
    d, env, _ = repo
    run([BIN / "dvc", "remote", "add", "-f", "-d", "scratch", str(tmp_path / "remote")], d, env)
    run([BIN / "dvc", "push"], d, env)
    shutil.rmtree(d / "models")
    shutil.rmtree(d / ".dvc" / "cache")
    run([BIN / "dvc", "pull"], d, env)
    assert any((d / "models").rglob("*.pt"))
    assert "modified" not in run([BIN / "dvc", "status"], d, env).stdout
