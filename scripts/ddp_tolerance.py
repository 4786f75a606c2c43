"""Measure how far N data-parallel ranks drift from one process with the same whole batch.

    python scripts/ddp_tolerance.py dropout_toy plain --set dropout_toy.seeds=[0]
    python scripts/ddp_tolerance.py fox fox --set fox.seeds=[0] --set fox.train.steps=200 --prepare

Trains the variant twice through `mlpapers train` (compute.processes 1, then --processes),
in temporary roots that share data/raw, and prints the largest weight difference and the
largest difference of every history column (train_loss, val_loss, accuracies).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from mlpapers.config import load_params
from mlpapers.train import load_checkpoint


def run(root: Path, params: dict, exp: str, variant: str, prepare: bool) -> None:
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw").symlink_to(Path("data/raw").resolve())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, MLPAPERS_VERIFY_RAW="0")
    base = ["--root", str(root), "--params", str(root / "params.yaml")]
    if prepare:
        subprocess.run([sys.executable, "-m", "mlpapers.cli", "prepare", exp, *base], check=True, env=env)
    subprocess.run([sys.executable, "-m", "mlpapers.cli", "train", exp, variant, *base], check=True, env=env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiment")
    p.add_argument("variant")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="dotted.key=json value override")
    p.add_argument("--prepare", action="store_true", help="run the experiment's prepare step first")
    args = p.parse_args()
    params = load_params("params.yaml")
    for item in args.set:
        key, value = item.split("=", 1)
        *head, last = key.split(".")
        node = params
        for part in head:
            node = node[part]
        node[last] = json.loads(value)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for n in (1, args.processes):
            params["compute"].update(processes=n, workers=1)
            roots[n] = Path(tmp) / f"p{n}"
            run(roots[n], params, args.experiment, args.variant, args.prepare)
        one, many = roots[1], roots[args.processes]
        for ck in sorted((one / "models").rglob("*.pt")):
            a = load_checkpoint(ck)["model"]
            b = load_checkpoint(many / ck.relative_to(one))["model"]
            dw = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
            scale = max(a[k].double().abs().max().item() for k in a)
            print(f"{ck.relative_to(one)}: max |w_{args.processes} - w_1| = {dw:.3g} (max |w| = {scale:.3g})")
        for h in sorted((one / "plots").rglob("history_*.csv")):
            ra = list(csv.DictReader(open(h)))
            rb = list(csv.DictReader(open(many / h.relative_to(one))))
            cols = [c for c in ra[0] if c not in ("seed", "step", "n", "lr")]
            diffs = {c: max(abs(float(x[c]) - float(y[c])) for x, y in zip(ra, rb) if x[c] and y[c]) for c in cols}
            print(f"{h.relative_to(one)} ({len(ra)} rows): " + ", ".join(f"max |d {c}| = {d:.3g}" for c, d in diffs.items()))


if __name__ == "__main__":
    main()
