"""The measuring half of scripts/gpu_check.sh: the same stage on CPU and on CUDA, compared.

Runs `mlpapers train` (and `prepare` for FoX) in fresh roots under <out>/runs/ that share
data/raw, with params.yaml shrunk to one seed (FoX: the `fox` variant, --fox-steps steps).
Prints and saves (<out>/summary.json) per run: wall seconds, examples/s and tokens/s from the
loop's timing log, and vs the CPU run the largest |difference| of each history column and of
the final weights. Not run yet on a GPU (see the README, "Scaling out").
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mlpapers.config import load_params
from mlpapers.train import load_checkpoint


def train(root: Path, params: dict, exp: str, variant: str, prepare: bool) -> float:
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw").symlink_to(Path("data/raw").resolve())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    base = ["--root", str(root), "--params", str(root / "params.yaml")]
    env = dict(os.environ, MLPAPERS_VERIFY_RAW="0")
    if prepare:
        subprocess.run([sys.executable, "-m", "mlpapers.cli", "prepare", exp, *base], check=True, env=env)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlpapers.cli", "train", exp, variant, *base], check=True, env=env)
    return time.perf_counter() - t0


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.is_file() else []


def compare(ref: Path, run: Path, exp: str, variant: str) -> dict:
    out: dict = {}
    hist = Path("plots") / exp / f"history_{variant}.csv"
    ra, rb = rows(ref / hist), rows(run / hist)
    for c in (ra[0] if ra else {}):
        if c not in ("seed", "step", "n", "lr"):
            out[f"max_abs_diff.{c}"] = max(abs(float(x[c]) - float(y[c])) for x, y in zip(ra, rb))
    for ck in sorted((ref / "models").rglob("*.pt")):
        a, b = load_checkpoint(ck)["model"], load_checkpoint(run / ck.relative_to(ref))["model"]
        out[f"max_abs_diff.weights.{ck.stem}"] = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    return out


def speed(root: Path, exp: str, variant: str, tokens_per_example: int) -> dict:
    t = rows(root / "logs" / "timings" / "plots" / exp / f"history_{variant}.csv")
    t = t[1:] or t  # the first interval includes warm-up (and compilation)
    if t and "tokens_per_s" in t[0]:  # FoX logs tokens/s itself
        tps = [float(r["tokens_per_s"]) for r in t]
    else:
        tps = [float(r["examples_per_s"]) * tokens_per_example for r in t]
    mean = sum(tps) / len(tps) if tps else float("nan")
    return {"tokens_per_s": mean, "examples_per_s": mean / tokens_per_example}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("logs/gpu_check"))
    p.add_argument("--fox-steps", type=int, default=500)
    p.add_argument("--cuda-device", default="cuda", help="'cpu' dry-runs this script on a CPU-only machine "
                   "(then the 'cuda' rows must show zero differences in fp32)")
    args = p.parse_args()
    base = load_params("params.yaml")
    base["compute"].update(workers=1, processes=1)
    summary: dict = {}
    cases = [  # (experiment, variant, prepare, params edits, tokens per example)
        ("dropout_toy", "plain", False, {"seeds": [0]}, 1),
        ("fox", "fox", True, {"seeds": [0], "train": {"steps": args.fox_steps, "eval_every": min(100, args.fox_steps),
                                                      "warmup_steps": min(base["fox"]["train"]["warmup_steps"],
                                                                          args.fox_steps // 5)}},
         base["fox"]["model"]["context"]),
    ]
    for exp, variant, prepare, edits, tokens in cases:
        runs = {}
        gpu = args.cuda_device
        for name, device, precision in (("cpu", "cpu", "fp32"), ("cuda", gpu, "fp32"), ("cuda_bf16", gpu, "bf16")):
            if exp != "fox" and name == "cuda_bf16":
                continue
            params = json.loads(json.dumps(base))
            sec = params[exp]
            for k, v in edits.items():
                sec[k] = {**sec[k], **v} if isinstance(v, dict) else v
            sec["train"].update(device=device, precision=precision)
            root = args.out / "runs" / f"{exp}_{name}"
            wall = train(root, params, exp, variant, prepare)
            runs[name] = root
            summary[f"{exp}.{name}"] = {"wall_s": wall, **speed(root, exp, variant, tokens)}
            if name != "cpu":
                summary[f"{exp}.{name}"].update(compare(runs["cpu"], root, exp, variant))
    for k, v in summary.items():
        print(k, json.dumps({a: (round(b, 6) if isinstance(b, float) else b) for a, b in v.items()}))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
