"""End-to-end CLI runs: the classifier through the whole spine, and bad input that must exit 2 cleanly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_reader import history, offline_runs

from launch.cli import main
from launch.tracking import read_metrics

REPO = Path(__file__).resolve().parents[1]
DIGITS = str(REPO / "configs/classify/digits-lenet.yaml")
DLFORGE = str(Path(sys.executable).parent / "dlforge")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(
        [DLFORGE, "train", DIGITS, "--out", str(out), "--name", "digits"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "digits", done.stdout


def test_train_writes_the_run_folder_and_prints_it_last(digits_run):
    run_dir, stdout = digits_run
    assert stdout.strip().splitlines()[-1] == f"run: {run_dir}"
    for name in ("config.yaml", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("step-*.safetensors"))
    assert list((run_dir / "checkpoints").glob("step-*.json"))


def test_lenet_reaches_97_percent_and_wandb_holds_the_accuracy(digits_run):
    run_dir, _ = digits_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval/accuracy"] >= 0.97
    logged = [r["eval/accuracy"] for r in read_metrics(run_dir / "metrics.jsonl") if "eval/accuracy" in r]
    assert logged and logged[-1] == summary["eval/accuracy"]
    (wandb_file,) = offline_runs(run_dir)
    rows = [r for r in history(wandb_file) if "eval/accuracy" in r]
    assert [r["eval/accuracy"] for r in rows] == logged


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_INPUTS = {
    "unknown key": ([DIGITS, "lrr=0.1"], "lrr: unknown key (did you mean 'lr'?)"),
    "wrong type": ([DIGITS, "batch_size=many"], "batch_size: expected an integer"),
    "out of range": ([DIGITS, "lr=-1"], "lr: must be > 0"),
    "missing file": (["configs/classify/nope.yaml"], "file not found"),
    "malformed yaml": (["@bad.yaml"], "malformed YAML"),
    "unknown kind": (["@kind.yaml"], "kind: unknown trainer 'clasify' (did you mean 'classify'?)"),
    "unknown preset": ([DIGITS, "network.type=lenet6"], "network"),
    "unknown activation": ([DIGITS, "network={type: mlp, hidden: [32], activation: relu6}"], "relu6"),
    "network does not fit": ([DIGITS, "network={type: cnn, conv: [[8, 64, 1, valid]]}"], "network"),
    "bad override": ([DIGITS, "lr"], "override: expected key=value"),
    "unknown data set": ([DIGITS, "data=cifar10"], "data"),
    "bad tracking mode": ([DIGITS, "tracking.wandb=maybe"], "tracking.wandb: got 'maybe'"),
    "resume a folder without a run": (["--resume", "@empty"], "holds no dlforge run"),
    "missing config": ([], "config: missing"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_no_run_folder(case, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    files = {
        "@bad.yaml": _write(tmp_path, "bad.yaml", "kind: classify\nlr: [0.1\n"),
        "@kind.yaml": _write(tmp_path, "kind.yaml", "kind: clasify\n"),
        "@empty": str(tmp_path / "empty"),
    }
    argv, expected = BAD_INPUTS[case]
    argv = [files.get(a, a) for a in argv]
    out = tmp_path / "runs"
    code = main(["train", *argv, "--out", str(out), "--name", "bad"])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert expected in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (out / "bad").exists()


def test_an_existing_run_folder_is_never_overwritten(digits_run, capsys):
    run_dir, _ = digits_run
    before = (run_dir / "metrics.jsonl").read_text()
    code = main(["train", DIGITS, "--out", str(run_dir.parent), "--name", run_dir.name])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [DLFORGE, "train", DIGITS, "lr=0", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: lr: must be > 0, got 0.0"
    assert not any(tmp_path.iterdir())


def test_list_shows_presets_kinds_and_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("lenet5", "resnet18", "classify", "configs/classify/digits-lenet.yaml"):
        assert word in out


def test_help_lists_every_subcommand():
    done = subprocess.run([DLFORGE, "--help"], capture_output=True, text=True, timeout=60)
    for command in ("train", "sweep", "eval", "generate", "report", "list"):
        assert command in done.stdout


def test_overrides_may_follow_the_flags(tmp_path, capsys):
    assert main(["train", DIGITS, "--out", str(tmp_path), "--name", "late", "lr=-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: lr: must be > 0, got -1.0"
    with pytest.raises(SystemExit) as info:
        main(["train", DIGITS, "--out", str(tmp_path), "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
