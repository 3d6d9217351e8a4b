
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


