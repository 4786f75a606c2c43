"""A params profile (dotted-key overrides, e.g. params-gpu.yaml) -> `dvc exp run -S` arguments or a merged params file.

    eval "dvc exp run $(python scripts/profile.py params-gpu.yaml)"
    python scripts/profile.py params-gpu.yaml --write /tmp/gpu.yaml && mlpapers check-params --params /tmp/gpu.yaml

Every key must already exist in the base params file (a typo fails here, not after an hour).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import yaml

from mlpapers.config import load_params, load_yaml


def merged(base: dict, overrides: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        *head, last = key.split(".")
        node = out
        for i, part in enumerate(head):
            if not isinstance(node, dict) or part not in node:
                sys.exit(f"{key}: '{'.'.join(head[:i + 1])}' is not in the base params file")
            node = node[part]
        if not isinstance(node, dict) or last not in node:
            sys.exit(f"{key}: not in the base params file")
        node[last] = value
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--base", type=Path, default=Path("params.yaml"))
    p.add_argument("--write", type=Path, help="write the merged params file here instead of printing -S args")
    args = p.parse_args()
    overrides = load_yaml(args.profile, "params profile") or {}
    params = merged(load_params(args.base), overrides)
    if args.write:
        args.write.write_text(yaml.safe_dump(params, sort_keys=False))
        return
    flow = lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict, bool)) else str(v)  # noqa: E731
    print(" ".join(f"-S {shlex.quote(f'{k}={flow(v)}')}" for k, v in overrides.items()))


if __name__ == "__main__":
    main()
