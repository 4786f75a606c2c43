"""`mlpapers verify`: do the workspace metrics match the published ones?

Recomputes nothing. "Published" is the metrics committed at a git revision (default
HEAD) or a JSON file mapping metrics file names to their contents. Each numeric metric
is compared within the tolerance of the first matching rule in ``tolerances.yaml``
(``|now - published| <= abs + rel * |published|``); a metric missing on either side, or
null (NaN), fails. Prints a table and returns 1 if anything failed.
"""
from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

METRICS_DIR = "metrics"


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _collect(files: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for fname, content in files.items():
        for key, value in flatten(content).items():
            if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{fname}:{key}"] = value
    return out


def workspace_metrics(root: Path) -> dict[str, Any]:
    return _collect({p.name: json.loads(p.read_text()) for p in sorted((root / METRICS_DIR).glob("*.json"))})


def git_metrics(root: Path, rev: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            raise FileNotFoundError(f"git {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    names = [n for n in git("ls-tree", "--name-only", f"{rev}:{METRICS_DIR}").split() if n.endswith(".json")]
    return _collect({n: json.loads(git("show", f"{rev}:{METRICS_DIR}/{n}")) for n in names})


def load_rules(path: Path) -> list[dict[str, Any]]:
    rules = yaml.safe_load(path.read_text())["rules"]
    for r in rules:
        if "pattern" not in r or not (r.get("skip") or "abs" in r or "rel" in r):
            raise ValueError(f"{path}: each rule needs a pattern and abs/rel or skip: {r}")
    return rules


def rule_for(key: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    for r in rules:
        if fnmatch.fnmatchcase(key, r["pattern"]):
            return r
    return {"pattern": "(none)", "abs": 0.0, "rel": 0.0}


def compare(now: dict[str, Any], published: dict[str, Any], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(now) | set(published)):
        rule = rule_for(key, rules)
        if rule.get("skip"):
            continue
        a, b = published.get(key), now.get(key)
        tol_abs, tol_rel = float(rule.get("abs", 0.0)), float(rule.get("rel", 0.0))
        tol = None if a is None else tol_abs + tol_rel * abs(a)
        ok = a is not None and b is not None and abs(b - a) <= tol + 1e-12
        rows.append({"metric": key, "published": a, "now": b, "tolerance": tol, "ok": ok})
    return rows


def verify(root: Path, rev: str = "HEAD", published: str | None = None, tolerances: Path = Path("tolerances.yaml")) -> int:
    rules = load_rules(root / tolerances if not tolerances.is_absolute() else tolerances)
    now = workspace_metrics(root)
    if published:
        pub = _collect(json.loads(Path(published).read_text()))
        source = published
    else:
        pub = git_metrics(root, rev)
        source = f"git {rev}"
    rows = compare(now, pub, rules)
    fmt = lambda v: "missing" if v is None else f"{v:.6g}"  # noqa: E731
    width = max([len(r["metric"]) for r in rows] + [6])
    print(f"{'metric':{width}s}  {'published':>12s}  {'now':>12s}  {'tolerance':>10s}  ok")
    for r in rows:
        print(f"{r['metric']:{width}s}  {fmt(r['published']):>12s}  {fmt(r['now']):>12s}  "
              f"{fmt(r['tolerance']):>10s}  {'yes' if r['ok'] else 'NO'}")
    bad = [r for r in rows if not r["ok"]]
    if not rows:
        print(f"no metrics to compare (workspace {METRICS_DIR}/ vs {source})")
        return 1
    print(f"\n{len(rows) - len(bad)} of {len(rows)} metrics within tolerance of {source}"
          + (f"; {len(bad)} FAILED" if bad else ""))
    return 1 if bad else 0
