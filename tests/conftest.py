
import sys
from pathlib import Path

import pytest
import torch

# Tests share 2 CPU cores; one intra-op thread keeps parallel jobs from thrashing.
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared footage not found at {SHARED}")
    return SHARED




@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A tiny prepared dataset of moving squares: two training sequences, one validation."""
    from synth import moving_square, write_prepared

    seqs = {
        "a": (moving_square(12, 40, 48, size=10, vx=2, seed=1), "train"),
        "b": (moving_square(12, 40, 48, size=8, vx=-1, vy=1, x0=30, seed=2), "train"),
        "c": (moving_square(10, 40, 48, size=10, vx=3, seed=3), "val"),
    }
    return write_prepared(tmp_path / "prepared", seqs, stride=2)


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    """The fault tests' inputs (faults.build_assets), made once; cases copy what they use."""
    from faults import build_assets

    return build_assets(tmp_path_factory.mktemp("assets"))
