import os
import sys
from pathlib import Path

# Tests import the small helpers beside them (tests/wandb_reader.py).
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests use small networks: one intra-op thread avoids oversubscribing the two CI cores
# (SB3's 2k-step DQN test: 0.45 s with one thread, 7.8 s with two on a loaded machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def wandb_data_dir(tmp_path_factory):
    """W&B copies a run's artifact files into WANDB_DATA_DIR (default ~/.local/share/wandb) until `wandb sync`
    sends them; the tests' copies go to a temporary folder instead."""
    os.environ["WANDB_DATA_DIR"] = str(tmp_path_factory.mktemp("wandb-data"))
