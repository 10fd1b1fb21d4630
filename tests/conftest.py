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
