"""generative/: every kind trains a few steps through launch's LocalTracker on real data, then samples,
reconstructs, resumes; bad input through the CLI is exit code 2 and one line. Tiny budgets: "does it learn?"
lives in benchmarks/generative.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import generative
import networks
from launch.cli import main as dlforge
from launch.config import parse_config
from launch.registry import trainer_module, with_env_factory
from launch.run import load_run_spec
from launch.tracking import LocalTracker, load_latest, read_metrics
from networks.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def train(kind: str, run_dir: Path, resume: dict | None = None, **fields):
    """Train `kind` with `fields` (validated by the real config loader) into run_dir."""
    spec = parse_config({"kind": kind, "tracking": {"wandb": "disabled"}, **fields})
    tracker = LocalTracker(run_dir, spec.tracking, resume_step=None if resume is None else resume["step"])
    summary = with_env_factory(trainer_module(kind).train)(spec.config, tracker, resume=resume)  # as launch/ does
    tracker.close()
    tree, meta = load_latest(run_dir)
    return spec.config, summary, read_metrics(run_dir / "metrics.jsonl"), tree


def media(run_dir: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[0] for p in (run_dir / "media").glob("*.png")}


def assert_unit_images(samples: np.ndarray, shape: tuple[int, ...]) -> None:
    assert samples.shape == shape and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0


def test_gan_on_digits_two_phases_metrics_generate_and_resume(tmp_path):
    run = tmp_path / "gan"
    config, summary, rows, tree = train(
        "gan", run, data="digits", total_steps=50, eval_every=25, eval_samples=200, judge_steps=100, seed=1
    )
    evals = [r for r in rows if "eval/fld" in r]
    assert [r["step"] for r in evals] == [25, 50]
    assert all(math.isfinite(r["eval/fld"]) for r in evals)
    assert sum(evals[-1][f"eval/class_{c}"] for c in range(10)) == pytest.approx(1.0)
    assert "eval/alarm_mode_collapse" in evals[-1] and "eval/judge_accuracy" in rows[0]
    assert {"losses/discriminator", "losses/generator", "charts/images_per_s"} <= set(rows[-2])
    assert summary["eval/best_fld"] <= summary["eval/fld"]
    assert {"eval_samples", "eval_interpolation"} <= media(run)
    assert sorted(tree["model"]) == ["discriminator", "generator"] and tree["step"] == 50

    module = trainer_module("gan")
    assert_unit_images(module.generate(config, tree, n=7, seed=3), (7, 1, 8, 8))
    same_seed = [module.generate(config, tree, n=3, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(*same_seed)

    _, _, rows, resumed = train("gan", run, resume=tree, data="digits", total_steps=60, eval_every=25,
                                eval_samples=200, judge_steps=100, seed=1)  # fmt: skip
    assert resumed["step"] == 60 and rows[-1]["step"] == 60


def test_gan_stability_options_and_discriminator_alarm(tmp_path):
    # a discriminator 20x faster than the generator wins quickly; the alarm fires after 5 steps near zero
    _, summary, rows, _ = train(
        "gan", tmp_path / "gan", data="digits", total_steps=60, eval_every=60, judge_steps=0, lr_d=2e-2, lr_g=1e-4,
        stability={"non_saturating": False, "label_smoothing": 0.1, "spectral_norm": True},
        alarms={"d_loss_below": 0.5, "d_loss_steps": 5},
    )  # fmt: skip
    assert summary["charts/alarm_discriminator_wins"] >= 1
    assert any(r.get("charts/alarm_discriminator_wins") == 1.0 for r in rows)
    assert "eval/fld" not in summary  # judge_steps 0: no judge metrics


@pytest.mark.parametrize("data, size", [("mnist5k", 28), ("digits", 32)])
def test_dcgan_trains_and_samples(tmp_path, data, size):
    config, summary, rows, tree = train(
        "dcgan", tmp_path / "dcgan", data=data, image_size=size, ngf=8, ndf=8, batch_size=16, total_steps=4,
        eval_every=4, eval_samples=64, judge_steps=10 if data == "mnist5k" else 0,
    )  # fmt: skip
    assert math.isfinite(summary["charts/images_per_s"])
    assert_unit_images(trainer_module("dcgan").generate(config, tree, n=5, seed=0), (5, 1, size, size))


def test_dcgan_with_r1_penalty_and_top_k_updates_on_packed_pairs(tmp_path):
    _, summary, rows, tree = train(
        "dcgan", tmp_path / "dcgan", data="digits", image_size=16, ngf=4, ndf=4, batch_size=16, total_steps=4,
        eval_every=4, judge_steps=0, stability={"pack": 2, "r1_gamma": 1.0, "top_k": 0.5},
    )  # fmt: skip
    logged = [r for r in rows if "losses/r1" in r]
    assert tree["step"] == 4 and logged and all(math.isfinite(r["losses/r1"]) and r["losses/r1"] > 0 for r in logged)
    _, _, plain_rows, _ = train("dcgan", tmp_path / "plain", data="digits", image_size=16, ngf=4, ndf=4, batch_size=16,
                                total_steps=4, eval_every=4, judge_steps=0)  # fmt: skip
    assert not any("losses/r1" in r for r in plain_rows)  # off by default: no penalty computed


def test_dcgan_gpu_speed_options_run_on_the_cpu(tmp_path):
    # bf16 autocast and channels_last are meant for GPUs; they must still train (slowly) on a CPU
    _, summary, _, tree = train(
        "dcgan", tmp_path / "dcgan", data="digits", image_size=16, ngf=4, ndf=4, batch_size=8, total_steps=2,
        eval_every=2, judge_steps=0, amp=True, channels_last=True,
    )  # fmt: skip
    assert tree["step"] == 2 and math.isfinite(summary["charts/images_per_s"])


def test_dcgan_with_averaged_generator_minibatch_std_and_classes(tmp_path, capsys):
    run = tmp_path / "cdcgan"
    assert dlforge(["train", str(REPO / "configs/dcgan/mnist5k.yaml"), "ngf=8", "ndf=8", "batch_size=16",
                    "total_steps=6", "eval_every=3", "eval_samples=100", "judge_steps=20", "conditional=true",
                    "stability={ema_decay: 0.99, minibatch_std: true}", "tracking.wandb=disabled",
                    "--out", str(tmp_path), "--name", "cdcgan"]) == 0  # fmt: skip
    tree, _ = load_latest(run)
    assert sorted(tree["model"]) == ["discriminator", "generator", "generator_ema"]
    assert tree["specs"]["generator"]["num_classes"] == 10 and tree["specs"]["generator"]["ema"] is True
    assert not torch.equal(tree["model"]["generator"]["net.0.weight"], tree["model"]["generator_ema"]["net.0.weight"])
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "eval/fld" in r]
    for key in ("precision", "recall", "density", "coverage", "label_accuracy"):
        assert 0 <= evals[-1][f"eval/{key}"] <= (10 if key == "density" else 1), key
    module, config = trainer_module("dcgan"), load_run_spec(run).config
    threes = module.generate(config, tree, n=4, seed=0, label=3)
    assert_unit_images(threes, (4, 1, 28, 28))
    assert_unit_images(module.generate(config, tree, n=25, seed=0), (30, 1, 28, 28))  # 3 of each digit

    # generative.load draws what generate draws, from the averaged generator; its exported network too
    model = generative.load(run)
    assert model.num_classes == 10
    np.testing.assert_array_equal(model.sample(4, seed=0, label=3), threes)
    np.testing.assert_array_equal(model.sample(25, seed=0), module.generate(config, tree, n=25, seed=0))
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(model.generator()(z, torch.full((4,), 3)).numpy(), threes, atol=1e-6)
    with pytest.raises(ConfigError, match="must be a class in 0..9"):
        model.sample(4, label=10)
    assert dlforge(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0

    # the CLI: one digit, a row per digit, and bad labels
    assert dlforge(["generate", str(run), "--label", "3", "--n", "4", "--out", str(tmp_path / "3.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "3.npz")["samples"], threes)
    assert dlforge(["generate", str(run), "--n", "20"]) == 0
    capsys.readouterr()
    for label in ("10", "-1"):
        assert dlforge(["generate", str(run), "--label", label]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: --label: must be a class in 0..9, got {label}"


def test_label_on_a_run_that_does_not_draw_by_class_is_exit_2(tmp_path, capsys):
    for kind, fields in [("dcgan", {"ngf": 4, "ndf": 4, "image_size": 16}), ("vae", {})]:
        assert dlforge(["train", str(REPO / f"configs/{kind}/mnist5k.yaml"), "total_steps=2", "eval_every=2",
                        "judge_steps=0", "batch_size=8", *[f"{k}={v}" for k, v in fields.items()],
                        "tracking.wandb=disabled", "--out", str(tmp_path), "--name", kind]) == 0  # fmt: skip
        capsys.readouterr()
        assert dlforge(["generate", str(tmp_path / kind), "--label", "3"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: --label: ")
        assert ("not class-conditional" if kind == "dcgan" else "does not draw by class") in err
        with pytest.raises(ConfigError, match="conditional"):
            generative.load(tmp_path / kind).sample(2, label=3)


def test_vae_with_a_judge_logs_fld_and_prdc(tmp_path):
    _, summary, _, _ = train("vae", tmp_path / "vae", data="mnist5k", total_steps=4, eval_every=4, batch_size=16,
                             judge_steps=20, eval_samples=100)  # fmt: skip
    assert {"eval/fld", "eval/precision", "eval/recall", "eval/density", "eval/coverage"} <= set(summary)
    assert "eval/label_accuracy" not in summary


@pytest.mark.parametrize("arch, noise_std", [("conv", 0.0), ("dense", 0.3)])
def test_autoencoders_report_reconstruction_and_reconstruct_on_generate(tmp_path, arch, noise_std):
    run = tmp_path / "ae"
    config, summary, rows, tree = train(
        "ae", run, data="mnist5k", arch=arch, noise_std=noise_std, total_steps=10, eval_every=10, batch_size=32
    )
    assert 0 < summary["eval/bce_per_pixel"] < 1 and 0 < summary["eval/mse_per_pixel"] < 1
    assert ("eval/denoise_bce_per_pixel" in summary) == (noise_std > 0)
    assert {"eval_reconstructions", "eval_code_scatter", "eval_interpolation"} <= media(run)
    assert_unit_images(trainer_module("ae").generate(config, tree, n=6, seed=0), (6, 1, 28, 28))


def test_autoencoder_recipe_options_and_denoising_at_several_noise_levels(tmp_path):
    _, summary, _, tree = train(
        "ae", tmp_path / "ae", data="mnist5k", total_steps=4, eval_every=4, batch_size=16, decoder_norm=True,
        decoder_blocks=1, shift=1, cosine_decay=True, noise_std=0.3, eval_noise=[0.3, 0.5],
        encoder={"type": "cnn", "conv": [[8, 3, 2, 1], [16, 3, 2, 1]], "norm": "batch"}, decoder_channels=[16, 8],
    )  # fmt: skip
    assert summary["eval/denoise0.3_bce_per_pixel"] == pytest.approx(summary["eval/denoise_bce_per_pixel"])
    assert "eval/denoise0.5_bce_per_pixel" in summary
    decoder = tree["model"]["decoder"]
    assert any(".bn1." in key for key in decoder) and any(key.endswith("running_var") for key in decoder)


def test_conv_autoencoder_on_env_frames_saves_an_encoder_agents_can_rebuild(tmp_path):
    _, _, _, tree = train("ae", tmp_path / "ae", data="env:MiniGrid-Empty-5x5-v0", env_frames=100, total_steps=5,
                          eval_every=5, batch_size=16)  # fmt: skip
    spec = tree["specs"]["encoder"]
    assert spec["input_shape"] == [3, 7, 7] and spec["output_dim"] == 32  # envs.make's MiniGrid observation
    encoder = networks.build(spec["spec"], tuple(spec["input_shape"]), output_dim=spec["output_dim"])
    networks.io.load_module_state(encoder, tree["model"]["encoder"], "encoder")
    obs = torch.randint(0, 256, (2, 3, 7, 7), dtype=torch.uint8)
    assert encoder(obs.float() / 255).shape == (2, 32)


def test_vae_reports_test_elbo_and_samples_from_the_prior(tmp_path):
    run = tmp_path / "vae"
    config, summary, rows, tree = train("vae", run, data="mnist5k", total_steps=10, eval_every=10, batch_size=32)
    assert summary["eval/elbo"] < 0 and math.isfinite(summary["eval/elbo"])
    assert summary["eval/elbo"] == pytest.approx(-(summary["eval/reconstruction"] + summary["eval/kl"]))
    assert {"eval_samples", "eval_reconstructions", "eval_code_scatter", "eval_interpolation"} <= media(run)
    assert_unit_images(trainer_module("vae").generate(config, tree, n=5, seed=0), (5, 1, 28, 28))


def test_seq2seq_autoencoder_on_sines(tmp_path):
    _, summary, _, tree = train("seq2seq_ae", tmp_path / "s2s", n_sequences=100, total_steps=10, eval_every=10)
    assert 0 < summary["eval/mse"] < 5
    assert tree["specs"]["encoder"]["spec"]["type"] == "lstm"


# --- the CLI: bundled config end to end, bad input ---------------------------------------------------


def test_cli_trains_a_bundled_config_and_generates_npz(tmp_path, capsys):
    code = dlforge(["train", str(REPO / "configs/vae/mnist5k.yaml"), "total_steps=5", "eval_every=5",
                    "tracking.wandb=disabled", "--out", str(tmp_path), "--name", "vae"])  # fmt: skip
    assert code == 0
    out = tmp_path / "samples.npz"
    assert dlforge(["generate", str(tmp_path / "vae"), "--n", "8", "--out", str(out)]) == 0
    assert_unit_images(np.load(out)["samples"], (8, 1, 28, 28))


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("gan/digits.yaml", ["data=mnist60k"], "error: data: unknown data set 'mnist60k'"),
        ("gan/digits.yaml", ["data=npz:{npz}"], "none named x / images / samples"),
        ("dcgan/mnist5k.yaml", ["image_size=30"], "error: image_size: a DCGAN generator makes 4*2^k or 7*2^k"),
        ("gan/digits.yaml", ["latent_dim=0"], "latent_dim"),
        ("vae/mnist5k.yaml", ["latent_dim=0"], "latent_dim"),
        ("ae/mnist5k-conv.yaml", ["code_dim=0"], "code_dim"),
    ],
)
def test_bad_generative_input_is_exit_2_one_line_no_run_folder(tmp_path, capsys, config, overrides, message):
    npz = tmp_path / "wrong.npz"
    np.savez(npz, pictures=np.zeros((4, 8, 8)))
    overrides = [o.format(npz=npz) for o in overrides]
    code = dlforge(["train", str(REPO / "configs" / config), *overrides, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_generate_on_a_run_without_a_generator_is_exit_2(tmp_path, capsys):
    assert dlforge(["train", str(REPO / "configs/classify/digits-lenet.yaml"), "total_steps=2", "eval_every=2",
                    "tracking.wandb=disabled", "--out", str(tmp_path), "--name", "cls"]) == 0  # fmt: skip
    capsys.readouterr()
    assert dlforge(["generate", str(tmp_path / "cls")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no generator" in err and len(err.splitlines()) == 1
