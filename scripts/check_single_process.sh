#!/usr/bin/env bash
# Single-process runs are untouched by the data-parallel code (mlpapers.distributed): re-run one
# train stage from scratch with compute.processes = 1 and compare the hashes of its outputs
# (checkpoints, history) with those recorded in a reference dvc.lock (default: main's).
#   scripts/check_single_process.sh [stage] [git-rev]     e.g. dropout_toy_train@plain main
# Leaves the re-run outputs and dvc.lock in the workspace (`git checkout -- dvc.lock` to drop).
set -euo pipefail
stage=${1:-dropout_toy_train@plain}
ref=${2:-main}
python - <<'PY'
from mlpapers.experiment import load_compute
assert load_compute().processes == 1, "set compute.processes: 1 in params.yaml for this check"
PY
dvc repro -f -s "$stage"
python - "$stage" "$ref" <<'PY'
import subprocess, sys

import yaml

stage, ref = sys.argv[1:]
def outs(text):
    return {o["path"]: o.get("md5") for o in yaml.safe_load(text)["stages"][stage]["outs"]}
new = outs(open("dvc.lock").read())
old = outs(subprocess.run(["git", "show", f"{ref}:dvc.lock"], capture_output=True, text=True, check=True).stdout)
for path in sorted(set(new) | set(old)):
    print(f"{'same' if new.get(path) == old.get(path) else 'DIFFERENT'}  {path}  {ref}: {old.get(path)}  now: {new.get(path)}")
if new != old:
    sys.exit(f"{stage}: outputs differ from {ref}'s dvc.lock")
print(f"{stage}: outputs byte-identical to {ref}'s dvc.lock")
PY
