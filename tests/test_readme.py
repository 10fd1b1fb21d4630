"""The README's sections on the Python API, export, the Hub folder and reliable statistics: their commands and
snippets run as written, in one working folder, in the README's order (the later sections use the earlier runs)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # real trainings, exports and a small sweep: a few minutes on 2 loaded cores


def section(title: str) -> list[tuple[str, str]]:
    """The fenced (language, code) blocks under the README heading `title`, up to the next heading of its level."""
    text = (REPO / "README.md").read_text()
    level = title.split(" ", 1)[0]
    start = text.index(f"\n{title}\n")
    end = re.search(rf"\n#{{1,{len(level)}}} ", text[start + 1 :])
    body = text[start : start + 1 + end.start()] if end else text[start:]
    return re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


def run_blocks(title: str, workdir: Path) -> list[str]:
    """Run each bash line and python block of a section in `workdir`; returns their outputs."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"}
    bin_dir = Path(sys.executable).parent  # the `dlforge` console script beside this interpreter
    outputs = []
    blocks = section(title)
    assert blocks, f"no code blocks under {title}"
    for language, code in blocks:
        if language == "bash":
            for line in code.splitlines():
                command = line.split(" #", 1)[0].strip()
                if command:
                    argv = shlex.split(command)
                    argv[0] = str(bin_dir / argv[0])
                    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
                    assert done.returncode == 0, f"{command}: {done.stderr[-1500:]}"
                    outputs.append(done.stdout)
        else:
            assert language == "python", language
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{code}\n{done.stderr[-1500:]}"
            outputs.append(done.stdout)
    return outputs


def test_python_api_section(workdir):
    outputs = run_blocks("## Python API", workdir)
    assert outputs[0].strip().endswith("run: runs/cartpole") and outputs[1].strip().endswith("run: runs/vae")
    assert "Discrete(2)" in outputs[2]
    shapes = outputs[3].strip()
    assert re.fullmatch(r"\(16, 1, 28, 28\) \(16, 20\) \(16, 1, 28, 28\)", shapes), shapes


def test_export_section(workdir):
    outputs = run_blocks("## Export: ONNX and TorchScript", workdir)
    assert (workdir / "runs/cartpole/export/policy.onnx").is_file() and (workdir / "cartpole.pt").is_file()
    assert (workdir / "vae-decoder.onnx").is_file()
    assert "onnxruntime matches torch" in outputs[0]
    assert re.match(r"\[[01]\] \[\[", outputs[-1])  # the action and the Q-values


def test_hub_folder_section(workdir):
    run_blocks("## Hub folder", workdir)
    from huggingface_hub import ModelCard

    card = ModelCard.load(workdir / "hub/cartpole-dqn/README.md")
    assert card.data.library_name == "dlforge" and "CartPole-v1" in card.data.tags
    assert re.fullmatch(r"\d+\.\d\d \+/- \d+\.\d\d", card.data.eval_results[0].metric_value)


def test_reliable_statistics_section(workdir):
    outputs = run_blocks("### Reliable statistics", workdir)
    printed = outputs[-1].strip().splitlines()
    assert sum(line.startswith("learning_rate=") for line in printed) == 4  # one row per learning rate
    assert sum(line.startswith("P(") for line in printed) == 6  # each pair of the four configs
    assert (workdir / "runs/sweeps/cartpole-lr/report/reliable/profiles-all.png").is_file()


def test_populations_section(workdir):
    outputs = run_blocks("## Populations", workdir)
    assert outputs[0].strip().endswith("run: runs/pop")
    assert [line.split(":")[0] for line in outputs[1].splitlines()[:4]] == ["seed0", "seed1", "seed2", "seed3"]
    assert [line for line in outputs[2].splitlines() if line.startswith("trajectories")] == [
        f"trajectories: steps-seed{k}.npz" for k in range(4)
    ]
    assert outputs[3].startswith("mean_return=")
    assert (workdir / "runs/pop/population.json").is_file() and (workdir / "runs/pop/report/index.html").is_file()
