"""`mlpapers verify`: do the workspace metrics match the published ones?

Recomputes nothing. "Published" is the numbers committed at a git revision (default
HEAD): every ``results/*.json`` (all an experiment measured) and every ``metrics/*.json``
(the headline numbers, shown as ``metrics/<file>``); or a JSON file mapping such file names
to their contents. Each numeric metric
is compared within the tolerance of the first matching rule in ``tolerances.yaml``
(``|now - published| <= abs + rel * |published|``); a metric missing on either side, or
null (NaN), fails. Prints a table and returns 1 if anything failed.
"""
from __future__ import annotations

import fnmatch
import json
import math
import subprocess
from pathlib import Path
from typing import Any

from mlpapers.config import ConfigError, load_yaml
from mlpapers.pipeline import flatten
from mlpapers.utils import DataFileError, read_json

METRICS_DIR = "metrics"
RESULTS_DIR = "results"


def _collect(files: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for fname, content in files.items():
        for key, value in flatten(content).items():
            if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{fname}:{key}"] = value
    return out


def _published_files(names: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(folder, file name, label): every results file (labelled by its name) and every metrics
    file (labelled ``metrics/<name>`` when a results file of that name holds its detail)."""
    results = set(names.get(RESULTS_DIR, []))
    return ([(RESULTS_DIR, n, n) for n in sorted(results)]
            + [(METRICS_DIR, n, f"{METRICS_DIR}/{n}" if n in results else n)
               for n in sorted(names.get(METRICS_DIR, []))])


def workspace_metrics(root: Path) -> dict[str, Any]:
    names = {d: [p.name for p in (root / d).glob("*.json")] for d in (RESULTS_DIR, METRICS_DIR)}
    return _collect({label: read_json(root / d / n) for d, n, label in _published_files(names)})


def git_metrics(root: Path, rev: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        except FileNotFoundError:
            raise DataFileError("git is not installed; pass --published <file.json> instead of --rev") from None
        if r.returncode != 0:
            raise DataFileError(f"git {' '.join(args)} failed in {root}: {' '.join(r.stderr.split())[:300]}; "
                                "check --rev, or pass --published <file.json>")
        return r.stdout

    def parse(folder: str, name: str) -> Any:
        try:
            return json.loads(git("show", f"{rev}:{folder}/{name}"))
        except json.JSONDecodeError as e:
            raise DataFileError(f"{rev}:{folder}/{name}:{e.lineno}:{e.colno}: invalid JSON in the published "
                                f"metrics ({e.msg}); pick another --rev") from None

    tree = git("ls-tree", "--name-only", rev, "--", f"{RESULTS_DIR}/", f"{METRICS_DIR}/").split()
    names: dict[str, list[str]] = {}
    for path in tree:
        folder, _, name = path.partition("/")
        if name.endswith(".json") and "/" not in name:
            names.setdefault(folder, []).append(name)
    if METRICS_DIR not in names and RESULTS_DIR not in names:
        git("ls-tree", f"{rev}:{METRICS_DIR}")  # fails with git's message when the revision has no metrics
    return _collect({label: parse(d, n) for d, n, label in _published_files(names)})


def published_metrics(path: Path) -> dict[str, Any]:
    """``--published`` file: ``{"<metrics file>.json": {...its content...}, ...}``."""
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataFileError(f"{path}: expected a JSON object mapping metrics file names (e.g. \"dropout_toy.json\") "
                            "to their contents; fix the file")
    return _collect(data)


def load_rules(path: Path) -> list[dict[str, Any]]:
    """Tolerance rules; a malformed file is a one-line ``ConfigError`` naming it and the rule."""
    if not path.is_file():
        raise ConfigError(f"{path}: tolerances file not found; pass --tolerances or restore it (git checkout)")
    data = load_yaml(path, "tolerances file")
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: expected a top-level 'rules:' list of {{pattern, abs/rel or skip}}")
    for i, r in enumerate(rules):
        where = f"{path}: rules[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("pattern"), str):
            raise ConfigError(f"{where}: each rule needs a string 'pattern', got {r!r}")
        unknown = set(r) - {"pattern", "abs", "rel", "skip"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (allowed: pattern, abs, rel, skip)")
        if not (r.get("skip") or "abs" in r or "rel" in r):
            raise ConfigError(f"{where}: rule {r['pattern']!r} needs abs and/or rel, or skip: true")
        for k in ("abs", "rel"):
            v = r.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{where}.{k}: got {v!r}; allowed: a finite number >= 0")
        if "skip" in r and not isinstance(r["skip"], bool):
            raise ConfigError(f"{where}.skip: got {r['skip']!r}; allowed: true or false")
    return rules


def rule_for(key: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Rules name files without their folder: ``metrics/fox.json:x`` follows ``fox.json:x``."""
    key = key.removeprefix(f"{METRICS_DIR}/")
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
        a, b = (None if isinstance(v, float) and not math.isfinite(v) else v for v in (a, b))  # NaN/inf fail
        tol_abs, tol_rel = float(rule.get("abs", 0.0)), float(rule.get("rel", 0.0))
        tol = None if a is None else tol_abs + tol_rel * abs(a)
        ok = a is not None and b is not None and abs(b - a) <= tol + 1e-12
        rows.append({"metric": key, "published": a, "now": b, "tolerance": tol, "ok": ok})
    return rows


def verify(root: Path, rev: str = "HEAD", published: str | None = None, tolerances: Path = Path("tolerances.yaml")) -> int:
    """``tolerances.yaml`` is generated from the papers' ``pipeline.yaml`` files (``mlpapers dvc-yaml``)."""
    rules = load_rules(root / tolerances if not tolerances.is_absolute() else tolerances)
    now = workspace_metrics(root)
    if published:
        pub = published_metrics(Path(published))
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
        print(f"no metrics to compare (workspace {RESULTS_DIR}/ and {METRICS_DIR}/ vs {source})")
        return 1
    print(f"\n{len(rows) - len(bad)} of {len(rows)} metrics within tolerance of {source}"
          + (f"; {len(bad)} FAILED" if bad else ""))
    return 1 if bad else 0
