"""Guarantee 1: bad input never gives a traceback, for every command and every kind.

Each case: exit code 2, one `error: <field>: ...` line on stderr, no run (or sweep) folder left behind, and
nothing that existed before changed. Most cases call `launch.cli.main` in-process (an uncaught exception
would fail the test); `test_real_process_*` repeats one case per command through the console script.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from robustkit import (
    TINY,
    assert_one_line_error,
    has_field,
    kind_params,
    snapshot_files,
    spawn,
    tiny_document,
    write_config,
)

from launch.cli import main
from launch.registry import TRAINERS, trainer_module


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of `dlforge ARGV` in-process; argparse's SystemExit counts as an exit code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def expect_refused(argv: list[str], capsys, *expected: str) -> str:
    code, err = run_cli(argv, capsys)
    assert code == 2, f"exit {code} for {argv}: {err}"
    return assert_one_line_error(err, *expected)


# --- train: every kind --------------------------------------------------------------------------------------

# Per kind: overrides the loader accepts one by one, but the trainer must refuse (the run folder already exists
# when they fail, so these also prove it is removed), and cross-field rules.
IMPOSSIBLE: dict[str, list[tuple[list[str], str]]] = {
    "classify": [
        (["data=cifar10"], "data"),
        (["margin=15"], "margin"),
        (["network={type: cnn, conv: [[8, 64, 1, valid]]}"], "network"),
    ],
    "dqn": [
        (["buffer_size=8", "batch_size=16"], "buffer_size: must be >= batch_size"),
        (["env_id=FrozenLake-v1"], "env_id"),
        (["env_id=CartPol-v1"], "did you mean 'CartPole-v1'"),
        (["network={type: lstm, hidden_size: 8}"], "network"),
        (["network={type: cnn, conv: [[8, 3]]}"], "network"),
        (["exploration_initial_eps=0.01"], "exploration_final_eps"),
    ],
    "drqn": [(["env_id=FrozenLake-v1"], "env_id"), (["env_id=CartPol-v1"], "did you mean 'CartPole-v1'")],
    "pqn": [
        (["num_minibatches=7"], "num_minibatches: must divide num_envs x num_steps"),
        (["env_id=Pendulum-v1"], "env_id"),
        (["network={type: lstm, hidden_size: 8}"], "network"),
        (["exploration_initial_eps=0.01"], "exploration_final_eps"),
    ],
    "qlearning": [
        (["env_id=CartPole-v1"], "env_id"),
        (["exploration_initial_eps=0.01"], "exploration_final_eps"),
        (["env_id=FrozenLak-v1"], "did you mean 'FrozenLake-v1'"),
    ],
    "gan": [(["data=cifar10"], "data"), (["discriminator={type: cnn, conv: [[8, 64, 1, valid]]}"], "discriminator")],
    "dcgan": [(["data=cifar10"], "data"), (["data=npz:/nonexistent.npz"], "data")],
    "ae": [(["data=cifar10"], "data"), (["encoder={type: cnn, conv: [[8, 64, 1, valid]]}"], "encoder")],
    "vae": [(["data=cifar10"], "data"), (["encoder={type: mlp, hidden: [8], activation: relu6}"], "relu6")],
    "seq2seq_ae": [(["data=cifar10"], "data"), (["encoder={type: mlp, hidden: [8]}"], "encoder")],
}


def _total_steps_bound(kind: str) -> str | None:
    (f,) = [f for f in dataclasses.fields(trainer_module(kind).Config) if f.name == "total_steps"]
    return "total_steps=0" if {"gt", "ge"} & set(f.metadata) else None


def generic_cases(kind: str) -> list[tuple[list[str], str]]:
    cases = [
        (["total_stepz=5"], "total_stepz: unknown key (did you mean 'total_steps'?)"),
        (["total_steps=many"], "total_steps: expected an integer"),
        (["seed=[1, 2]"], "seed: expected an integer"),
        (["tracking.wandb=maybe"], "tracking.wandb"),
        (["tracking.colour=red"], "tracking.colour: unknown key"),
    ]
    if _total_steps_bound(kind):
        cases.append(([_total_steps_bound(kind)], "total_steps: must be"))
    return cases


@pytest.mark.parametrize("kind", kind_params())
def test_train_refuses_broken_overrides_for_every_kind(kind, tmp_path, capsys):
    config = write_config(tmp_path, kind)
    out = tmp_path / "runs"
    cases = generic_cases(kind) + IMPOSSIBLE.get(kind, [])
    for overrides, expected in cases:
        expect_refused(["train", config, *overrides, "--out", out, "--name", "bad"], capsys, expected)
        assert not (out / "bad").exists(), f"{overrides} left a run folder"


@pytest.mark.parametrize("kind", kind_params())
def test_train_refuses_an_unusable_device(kind, tmp_path, capsys):
    if not any(f.name == "device" for f in dataclasses.fields(trainer_module(kind).Config)):
        pytest.fail(f"{kind}.Config has no device field")
    config = write_config(tmp_path, kind)
    out = tmp_path / "runs"
    expect_refused(["train", config, "device=tpu", "--out", out, "--name", "bad"], capsys, "device")
    assert not (out / "bad").exists()


CONFIG_FILES = {
    "empty file": ("", "must hold a YAML mapping"),
    "a list": ("- 1\n- 2\n", "must hold a YAML mapping"),
    "malformed": ("kind: dqn\nlr: [0.1\n", "malformed YAML"),
    "no kind": ("total_steps: 10\n", "kind: missing"),
    "kind is a list": ("kind: [dqn]\n", "kind: unknown trainer"),
    "python tag": ("kind: !!python/object/apply:os.system ['touch MARKER']\n", "malformed YAML"),
    "binary": (b"\x80\x04\x95\xff\xfe", "config"),
    "tracking not a mapping": ("kind: classify\ntracking: 5\n", "tracking: expected a mapping"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_train_refuses_a_broken_config_file(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, expected = CONFIG_FILES[case]
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    expect_refused(["train", path, "--out", tmp_path / "runs"], capsys, expected)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "MARKER").exists(), "a YAML tag ran code"


def test_train_refuses_a_config_folder_and_a_bad_name(tmp_path, capsys):
    expect_refused(["train", tmp_path, "--out", tmp_path / "runs"], capsys, "is a folder")
    kind = next(iter(TRAINERS))
    config = write_config(tmp_path, kind) if kind in TINY else None
    if config is not None:
        for name in ("a/b", "..", "."):
            expect_refused(["train", config, "--out", tmp_path / "runs", "--name", name], capsys, "--name")


@pytest.mark.parametrize("kind", kind_params())
def test_existing_run_folder_is_never_overwritten(kind, finished_runs, capsys):
    run_dir = finished_runs(kind)
    before = snapshot_files(run_dir)
    config = write_config(run_dir.parent.parent, kind)
    expect_refused(["train", config, "--out", run_dir.parent, "--name", run_dir.name], capsys, "already exists")
    assert snapshot_files(run_dir) == before


# Overrides that the loader accepts but that do not fit the run's checkpoint: resuming with them must refuse
# and leave the run exactly as it was (its config.yaml included, so a plain --resume still works).
MISMATCH = {
    "classify": "network={type: mlp, hidden: [8]}",
    "dqn": "network={type: mlp, hidden: [8]}",
    "drqn": "network={type: gru, hidden_size: 8}",
    "pqn": "network={type: mlp, hidden: [8], norm: layer}",
    "qlearning": "env_id=FrozenLake8x8-v1",
    "gan": "generator={type: mlp, hidden: [8]}",
    "dcgan": "ngf=16",
    "ae": "code_dim=8",
    "vae": "latent_dim=8",
    "seq2seq_ae": "code_dim=8",
}


@pytest.mark.parametrize("kind", kind_params())
def test_resume_with_a_mismatched_override_changes_nothing(kind, run_copy, capsys):
    if kind not in MISMATCH:
        pytest.skip(f"no mismatching override for '{kind}' yet")
    run_dir = run_copy(kind)
    before = snapshot_files(run_dir)
    expect_refused(["train", "--resume", run_dir, MISMATCH[kind]], capsys, "does not match")
    assert snapshot_files(run_dir) == before
    assert run_cli(["train", "--resume", run_dir], capsys)[0] == 0, "the run no longer resumes"


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    expect_refused(["train", "--resume", tmp_path / "missing"], capsys, "holds no dlforge run")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("kind: [\n")
    expect_refused(["train", "--resume", tmp_path / "broken"], capsys, "malformed YAML")
    assert (tmp_path / "broken" / "config.yaml").read_text() == "kind: [\n"


# --- eval and generate ------------------------------------------------------------------------------------


def _run_without_checkpoint(tmp_path: Path, kind: str) -> Path:
    run_dir = tmp_path / f"{kind}-fresh"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tiny_document(kind)))
    return run_dir


def _kind_with(hook: str, present: bool = True) -> str | None:
    for kind in TRAINERS:
        if kind in TINY and hasattr(trainer_module(kind), hook) == present:
            return kind
    return None


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_eval_and_generate_refuse_bad_run_folders(command, tmp_path, capsys):
    expect_refused([command, tmp_path / "missing"], capsys, "holds no dlforge run")
    expect_refused([command, tmp_path], capsys, "holds no dlforge run")
    weird = tmp_path / "weird"
    weird.mkdir()
    (weird / "config.yaml").write_text("kind: nope\n")
    expect_refused([command, weird], capsys, "kind: unknown trainer 'nope'")
    (weird / "config.yaml").write_text("kind: classify\nlr: -3\n")
    expect_refused([command, weird], capsys, "lr: must be > 0")
    (weird / "config.yaml").write_text("{{{{")
    expect_refused([command, weird], capsys, "malformed YAML")
    hook = "evaluate" if command == "eval" else "generate"
    able, unable = _kind_with(hook), _kind_with(hook, present=False)
    if able:
        expect_refused([command, _run_without_checkpoint(tmp_path, able)], capsys, "holds no checkpoint yet")
    if unable:
        expect_refused([command, _run_without_checkpoint(tmp_path, unable)], capsys, f"'{unable}' run")


def test_eval_and_generate_refuse_bad_arguments(tmp_path, capsys):
    for argv, expected in [
        (["eval", tmp_path, "--episodes", "0"], "--episodes: must be >= 1"),
        (["eval", tmp_path, "--episodes", "many"], "invalid int value"),
        (["eval", tmp_path, "--checkpoint", "newest"], "invalid choice"),
        (["eval"], "required"),
        (["generate", tmp_path, "--n", "0"], "--n: must be >= 1"),
        (["generate", tmp_path, "--n", "-5"], "--n: must be >= 1"),
        (["generate", tmp_path, "--seed", "x"], "invalid int value"),
    ]:
        expect_refused(argv, capsys, expected)


@pytest.mark.parametrize("kind", kind_params())
def test_eval_and_generate_refuse_runs_of_the_wrong_kind(kind, finished_runs, capsys):
    """eval is for agents (evaluate(config, tree, episodes=...)), generate for generators; a run of another kind
    is refused in one line, even when its module has a helper of the same name with another signature."""
    import inspect

    module = trainer_module(kind)
    run_dir = finished_runs(kind)
    before = snapshot_files(run_dir)
    agent = "episodes" in inspect.signature(getattr(module, "evaluate", lambda: None)).parameters
    if not agent:
        expect_refused(["eval", run_dir, "--episodes", "1"], capsys, "has no evaluation")
    if not hasattr(module, "generate"):
        expect_refused(["generate", run_dir, "--n", "2"], capsys, "holds no generator")
    assert snapshot_files(run_dir) == before


@pytest.mark.parametrize("kind", kind_params(needs="generate"))
def test_generate_refuses_an_unusable_out_path(kind, run_copy, tmp_path, capsys):
    run_dir = run_copy(kind)
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    expect_refused(["generate", run_dir, "--n", "4", "--out", blocker / "grid.png"], capsys, "--out")
    expect_refused(["generate", run_dir, "--n", "4", "--out", tmp_path / "grid.txt"], capsys, "--out")
    assert blocker.read_text() == "keep me"
    assert not (tmp_path / "grid.txt").exists()


# --- sweep ------------------------------------------------------------------------------------------------


def _sweep_file(tmp_path: Path, **settings) -> Path:
    document = {"base": tiny_document("classify"), "metric": "eval/accuracy", "space": {"lr": {"grid": [1e-3]}}}
    document.update(settings)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


SWEEPS = {
    "unknown key": ({"metrc": "x"}, [], "metrc: unknown key (did you mean 'metric'?)"),
    "bad space type": ({"space": {"lr": {"gaussian": [1, 2]}}}, [], "space.lr: unknown search-space type"),
    "space value out of range": ({"space": {"lr": {"grid": [-1.0]}}}, [], "lr: must be > 0"),
    "space key unknown": ({"space": {"lrr": {"grid": [1]}}}, [], "lrr: unknown key"),
    "low >= high": ({"space": {"lr": {"uniform": [0.1, 0.01]}}}, [], "needs low < high"),
    "seed in space": ({"space": {"seed": {"grid": [1, 2]}}}, [], "space.seed"),
    "repeated seeds": ({"seeds": [1, 1]}, [], "seeds: repeats a seed"),
    "missing base file": ({"base": "nope.yaml"}, [], "base: file not found"),
    "base broken": ({"base": {"kind": "classify", "lr": "fast"}}, [], "lr: expected a number"),
    "bad override": ({}, ["lr=-2"], "lr: must be > 0"),
    "bad scheduler": ({"scheduler": {"type": "hyperband"}}, [], "scheduler.type"),
    "cpus 0": ({}, ["--cpus-per-trial", "0"], "resources.cpu: must be > 0"),
    "address format": ({}, ["--address", "nonsense"], "--address: expected host:port"),
    "address ray client": ({}, ["--address", "ray://127.0.0.1:10001"], "--address: Ray Client"),
    "address unreachable": ({}, ["--address", "127.0.0.1:9"], "--address: cannot reach"),
    "resume nothing": ({}, ["--resume"], "--resume: no sweep to continue"),
    "bad name": ({}, ["--name", "../up"], "--name"),
}


@pytest.mark.parametrize("case", list(SWEEPS))
def test_sweep_refuses_bad_input_without_leaving_a_folder(case, tmp_path, capsys):
    settings, extra, expected = SWEEPS[case]
    path = _sweep_file(tmp_path, **settings)
    out = tmp_path / "runs"
    argv = ["sweep", path, *extra]
    expect_refused([*argv, "--out", out], capsys, expected)
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def test_sweep_refuses_broken_files(tmp_path, capsys):
    expect_refused(["sweep", tmp_path / "missing.yaml"], capsys, "file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [\n")
    expect_refused(["sweep", bad], capsys, "malformed YAML")
    bad.write_text("- a list\n")
    expect_refused(["sweep", bad], capsys, "must hold a YAML mapping")
    bad.write_text("metric: eval/accuracy\n")
    expect_refused(["sweep", bad], capsys, "base: missing required field")


def test_sweep_never_overwrites_an_existing_sweep_folder(tmp_path, capsys):
    path = _sweep_file(tmp_path)
    existing = tmp_path / "runs" / "sweeps" / "sweep"
    existing.mkdir(parents=True)
    (existing / "results.json").write_text('{"keep": true}')
    expect_refused(["sweep", path, "--out", tmp_path / "runs"], capsys, "already exists")
    assert (existing / "results.json").read_text() == '{"keep": true}'


# --- report and list ----------------------------------------------------------------------------------------


def test_report_refuses_bad_folders_and_never_overwrites(tmp_path, capsys, finished_runs):
    expect_refused(["report", tmp_path / "missing"], capsys, "no such folder")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    expect_refused(["report", a_file], capsys, "not a folder")
    (tmp_path / "empty").mkdir()
    expect_refused(["report", tmp_path / "empty"], capsys, "holds no dlforge runs")
    kind = next((k for k in TRAINERS if k in TINY), None)
    if kind is None:
        pytest.skip("no kind with a tiny config")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    before = snapshot_files(finished_runs(kind))
    expect_refused(["report", finished_runs(kind), "--out", taken], capsys, "--out")
    assert snapshot_files(taken) == {"notes.txt": b"mine"}
    assert snapshot_files(finished_runs(kind)) == before
    expect_refused(["report", finished_runs(kind), "--out", a_file], capsys, str(a_file))
    assert a_file.read_text() == "x"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["list", "extra"], "unrecognized arguments"),
        (["bogus"], "invalid choice"),
        (["train", "--bogus"], "unrecognized arguments"),
        (["--version-please"], "unrecognized arguments"),
    ],
)
def test_argument_errors_are_one_line(argv, expected, capsys):
    expect_refused(argv, capsys, expected)


# --- the same through the real console script -----------------------------------------------------------------


def test_real_process_bad_input_prints_one_line(tmp_path):
    kind = next((k for k in TRAINERS if k in TINY), None)
    config = write_config(tmp_path, kind) if kind else tmp_path / "none.yaml"
    cases = {
        "train": (["train", config, "total_steps=-1", "--out", tmp_path / "runs"], "total_steps"),
        "eval": (["eval", tmp_path / "nope"], "holds no dlforge run"),
        "sweep": (["sweep", tmp_path / "nope.yaml", "--out", tmp_path / "runs"], "file not found"),
    }  # generate, report and list: in-process above (each real process costs a torch import)
    started = {command: spawn(*argv) for command, (argv, _) in cases.items()}  # side by side: startup dominates
    for command, process in started.items():
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 2, f"{command}: exit {process.returncode}\n{stderr}"
        assert_one_line_error(stderr, cases[command][1])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_every_registered_kind_has_a_tiny_config_or_says_why():
    missing = [kind for kind in TRAINERS if kind not in TINY]
    if missing:
        pytest.skip(f"kinds without a tiny config (add them to robustkit.TINY): {missing}")
    for kind in TINY:
        if kind in TRAINERS:
            assert has_field(kind, "total_steps")
