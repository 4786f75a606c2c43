import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline dataset mirror (MLPAPERS_DATA_MIRROR, else ../shared/datasets)."""
    path = Path(os.environ.get("MLPAPERS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets")
    if not path.is_absolute():
        path = (ROOT / path).resolve()
    if not path.is_dir():
        pytest.skip(f"dataset mirror {path} not present; set MLPAPERS_DATA_MIRROR")
    return path
