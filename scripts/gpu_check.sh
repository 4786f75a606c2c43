#!/usr/bin/env bash
# GPU check (issue 12, item 4). NOT RUN YET: no GPU was available in the session that wrote it.
# On a machine with a CUDA GPU, from the repository root, with a venv whose torch is a CUDA build:
#   scripts/gpu_check.sh [out-dir]          (default logs/gpu_check; ~5-10 min on one modern GPU)
# 1. the whole test suite (CPU tests; they must pass unchanged with a GPU present);
# 2. one Dropout stage (dropout_toy plain) and one FoX stage (fox fox, shortened) on CPU and on CUDA
#    (fp32, and bf16 autocast for FoX), printing wall time, tokens/s (FoX) and the largest
#    CUDA-vs-CPU differences of every history metric and of the final weights;
#    summary in <out-dir>/summary.json.
set -euo pipefail
out=${1:-logs/gpu_check}
mkdir -p "$out"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch (is this torch a CUDA build?)"
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|", torch.cuda.get_device_name(0))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
test -d data/raw/tinyshakespeare || mlpapers fetch tinyshakespeare   # needs a mirror or the internet
python -m pytest -q -x 2>&1 | tee "$out/pytest.txt" | tail -5
python scripts/gpu_check.py --out "$out"
