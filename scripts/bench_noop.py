"""Where the time of a no-op `dvc repro` goes (issue 9: <= 2 s). Prints numbers; changes nothing.

    python scripts/bench_noop.py [--runs 5]

Run it on a quiet machine after a finished `dvc repro` (otherwise the "no-op" runs stages).
It reports the wall time of `dvc repro` (median of --runs), the fixed part (`dvc --version`:
interpreter and CLI start-up), and the two costs that grow with the pipeline: DVC parses
dvc.yaml / dvc.lock once, and parses params.yaml again for every stage that lists params.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        if cmd[1:2] == ["repro"] and "Running stage" in r.stdout:
            sys.exit("`dvc repro` ran a stage: finish the pipeline first, then benchmark the no-op")
    return statistics.median(times)


def parse_ms(text: str, typ: str, n: int = 20) -> float:
    from ruamel.yaml import YAML  # what DVC parses with

    t0 = time.perf_counter()
    for _ in range(n):
        YAML(typ=typ).load(text)
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    dvc = shutil.which("dvc") or sys.exit("dvc not on PATH (export PATH=$PWD/.venv/bin:$PATH)")

    from mlpapers.pipeline import expanded_stages

    stages = expanded_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    with_params = sum(1 for s in stages.values() if s.get("params"))
    params_ms = parse_ms((ROOT / "params.yaml").read_text(), "safe")
    dvc_yaml_ms = parse_ms((ROOT / "dvc.yaml").read_text(), "safe", 5)
    lock_ms = parse_ms((ROOT / "dvc.lock").read_text(), "safe", 5)

    noop = wall([dvc, "repro"], args.runs)
    start = wall([dvc, "--version"], args.runs)
    status = wall([dvc, "status"], args.runs)
    print(f"stages                       {len(stages)} ({with_params} with params)")
    print(f"dvc repro (no-op), median    {noop:.2f} s over {args.runs} runs")
    print(f"dvc status, median           {status:.2f} s")
    print(f"dvc --version (start-up)     {start:.2f} s")
    print(f"params.yaml parses           {with_params} x {params_ms:.1f} ms = {with_params * params_ms / 1000:.2f} s")
    print(f"dvc.yaml + dvc.lock parse    {dvc_yaml_ms:.0f} + {lock_ms:.0f} ms (DVC reads each twice)")


if __name__ == "__main__":
    main()
