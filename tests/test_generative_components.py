"""generative/: pure maths worked out by hand, data sources, shapes, ranges and round trips (fast, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generative import ae, data, dcgan, images, metrics
from generative.adversarial import discriminator_loss, generator_loss
from generative.common import make_tree, restore_tree
from generative.vae import negative_elbo
from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.typed_config import from_dict

LN2 = math.log(2)


# --- losses, by hand --------------------------------------------------------------------------


def test_discriminator_loss_by_hand():
    real, fake = torch.tensor([math.log(3.0)]), torch.tensor([math.log(3.0)])  # D = sigmoid(ln 3) = 0.75 on both
    # real target 1: -ln 0.75; fake target 0: -ln 0.25
    assert discriminator_loss(real, fake).item() == pytest.approx(-math.log(0.75) - math.log(0.25), abs=1e-6)
    # one-sided smoothing 0.1: real target 0.9 -> -(0.9 ln 0.75 + 0.1 ln 0.25); fakes keep target 0
    smoothed = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25)) - math.log(0.25)
    assert discriminator_loss(real, fake, smoothing=0.1).item() == pytest.approx(smoothed, abs=1e-6)
    assert discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * LN2, abs=1e-6)


def test_generator_losses_by_hand():
    fake = torch.tensor([math.log(3.0)])  # D(G(z)) = 0.75
    assert generator_loss(fake, non_saturating=True).item() == pytest.approx(-math.log(0.75), abs=1e-6)
    assert generator_loss(fake, non_saturating=False).item() == pytest.approx(math.log(0.25), abs=1e-6)
    # where D is sure the sample is fake, the minimax loss is flat and the non-saturating one is not
    sure = torch.tensor([-8.0], requires_grad=True)
    generator_loss(sure, non_saturating=False).backward()
    flat = sure.grad.abs().item()
    sure.grad = None
    generator_loss(sure, non_saturating=True).backward()
    assert flat < 1e-3 < sure.grad.abs().item()


def test_negative_elbo_by_hand():
    logits = torch.zeros(1, 1, 2, 2)  # Bernoulli(0.5) per pixel: ln 2 nats each, whatever the pixel
    x = torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]])
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)  # KL = 1/2 * mu^2 = 0.5
    loss, reconstruction, kl = negative_elbo(logits, x, mu, logvar)
    assert reconstruction.item() == pytest.approx(4 * LN2, abs=1e-6)
    assert kl.item() == pytest.approx(0.5, abs=1e-6)
    assert loss.item() == pytest.approx(4 * LN2 + 0.5, abs=1e-6)


def test_reconstruction_errors_by_hand():
    x = torch.tensor([0.0, 1.0])
    x_hat = torch.tensor([0.5, 0.5])
    errors = metrics.reconstruction_errors(x, x_hat)
    assert errors["bce_per_pixel"] == pytest.approx(LN2, abs=1e-6)
    assert errors["mse_per_pixel"] == pytest.approx(0.25, abs=1e-6)


# --- alarms and coverage ------------------------------------------------------------------------


def test_mode_collapse_alarm_thresholds():
    assert not metrics.mode_collapse(np.full(10, 0.1))
    assert metrics.mode_collapse(np.array([0.41] + [0.59 / 9] * 9))  # one class above 40%
    assert metrics.mode_collapse(np.array([0.019] + [0.981 / 9] * 9))  # one class under 2%
    histogram = metrics.class_histogram(torch.tensor([0, 0, 1, 3]), 4)
    np.testing.assert_allclose(histogram, [0.5, 0.25, 0.0, 0.25])
    coverage = metrics.coverage_metrics(histogram)
    assert coverage["eval/classes_present"] == 3 and coverage["eval/class_max"] == 0.5


def test_discriminator_watch_needs_consecutive_steps():
    watch = metrics.DiscriminatorWatch(threshold=0.05, patience=3)
    assert [watch.update(v) for v in (0.01, 0.01, 0.5, 0.01, 0.01, 0.01)] == [False] * 5 + [True]
    smoothed = metrics.DiscriminatorWatch(threshold=0.05, patience=1, smoothing=0.1)  # floor: H(0.9) = 0.3251
    assert smoothed.floor == pytest.approx(0.325083, abs=1e-6)
    assert smoothed.update(0.36) and not smoothed.update(0.38)


def test_frechet_lenet_distance_is_zero_on_identical_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    judge = metrics.Judge({"type": "lenet5"}, (1, 32, 32), 10, margin=2)  # untrained features still separate
    real = torch.rand(200, 1, 28, 28)
    fld = metrics.FrechetLeNetDistance(judge, real)
    same, shifted = fld(real), fld((real * 0.3).clamp(0, 1))
    assert abs(same) < 1e-3 < shifted


def test_lenet_judge_has_the_published_parameter_count():
    judge = metrics.Judge({"type": "lenet5"}, (1, 32, 32), 10, margin=4)
    assert sum(p.numel() for p in judge.parameters()) == 61_706
    assert judge.features.output_dim == 84


def test_cosine_schedule_by_hand_and_on_resume():
    from generative.common import cosine_schedule

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=2.0)
    schedule = cosine_schedule(optimizer, total_steps=4)
    seen = [optimizer.param_groups[0]["lr"]]
    for _ in range(4):
        optimizer.step()
        schedule.step()
        seen.append(optimizer.param_groups[0]["lr"])
    # lr * (1 + cos(pi * s / 4)) / 2 for s = 0..4
    assert seen == pytest.approx([2.0, 1 + math.sqrt(0.5), 1.0, 1 - math.sqrt(0.5), 0.0], abs=1e-9)
    resumed = torch.optim.SGD([weight], lr=2.0)
    cosine_schedule(resumed, total_steps=4, step=2)
    assert resumed.param_groups[0]["lr"] == pytest.approx(1.0)
    flat = torch.optim.SGD([weight], lr=2.0)
    cosine_schedule(flat, total_steps=4, enabled=False, step=3)
    assert flat.param_groups[0]["lr"] == 2.0


# --- precision, recall, density, coverage --------------------------------------------------------


def clusters(n: int, centres: torch.Tensor, seed: int) -> torch.Tensor:
    """n points spread evenly over the given cluster centres (C, D), each N(centre, 0.3^2 I)."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.arange(n) % len(centres)
    return centres[which] + 0.3 * torch.randn(n, centres.shape[1], generator=generator)


CENTRES = 4.0 * torch.eye(10, 16)  # ten well-separated "classes" in 16-d


def test_prdc_by_hand_on_a_line():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every real ball has radius 1
    fake = torch.tensor([[0.5], [10.0]])  # fake 0.5 is in the balls of reals 0 and 1; fake 10 is in none
    result = metrics.prdc(real, fake, k=1)
    # fake radii (k = 1): both 9.5, so every real is in fake 0.5's ball
    assert result == pytest.approx({"precision": 0.5, "recall": 1.0, "density": (2 + 0) / (1 * 2), "coverage": 0.5})


def test_prdc_two_samples_of_one_distribution_score_near_one():
    result = metrics.prdc(clusters(1000, CENTRES, seed=0), clusters(1000, CENTRES, seed=1), k=5)
    assert result["density"] == pytest.approx(1.0, abs=0.05) and result["coverage"] > 0.95
    assert result["precision"] > 0.85 and result["recall"] > 0.85  # k-NN balls miss some of a 16-d cloud's edge


def test_prdc_a_generator_that_drops_half_the_classes_loses_recall_and_coverage_but_keeps_precision():
    real = clusters(1000, CENTRES, seed=0)
    full = metrics.prdc(real, clusters(1000, CENTRES, seed=1), k=5)
    half = metrics.prdc(real, clusters(1000, CENTRES[:5], seed=1), k=5)
    assert half["precision"] == pytest.approx(full["precision"], abs=0.03)  # every fake still looks real
    assert half["density"] == pytest.approx(full["density"], abs=0.05)
    assert half["recall"] < 0.55 and half["coverage"] < 0.55  # half the reals are never reached


def test_prdc_handles_identical_points():
    ones = torch.ones(50, 8)  # every distance is 0, so every k-NN radius is 0: closed balls still hold them
    result = metrics.prdc(ones, ones.clone(), k=5)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    assert math.isfinite(result["density"]) and result["density"] >= 1.0
    real = torch.cat([clusters(100, CENTRES, seed=0)] * 2)  # every real point twice
    duplicated = metrics.prdc(real, clusters(200, CENTRES, seed=1), k=5)
    assert duplicated["coverage"] > 0.85 and duplicated["precision"] > 0.7  # a twin counts as a neighbour


# --- DCGAN options: minibatch standard deviation, weight averaging, classes ------------------------


def test_minibatch_std_appends_the_within_group_spread():
    from generative.adversarial import MinibatchStd

    x = torch.zeros(8, 3, 2, 2)
    x[:4] = 1.0  # groups of 4 are samples {i, i+2, i+4, i+6}: each holds two 1s and two 0s -> std 0.5
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (8, 4, 2, 2)
    torch.testing.assert_close(out[:, 3], torch.full((8, 2, 2), 0.5), atol=1e-3, rtol=0)
    same = MinibatchStd()(torch.ones(6, 5))  # identical samples: spread 0 (group 3 divides 6)
    assert same.shape == (6, 6) and same[:, -1].abs().max() < 1e-3


def test_packing_stacks_consecutive_samples_as_channels():
    from generative.adversarial import Stability, packed

    x = torch.arange(4.0)[:, None, None, None].expand(4, 1, 2, 2)  # sample i is all i
    pairs = packed(x, pack=2)
    assert pairs.shape == (2, 2, 2, 2) and pairs[1, :, 0, 0].tolist() == [2.0, 3.0]
    assert packed(x, pack=1) is x
    d = dcgan.build_networks(dcgan.Config(image_size=28, ngf=4, ndf=4, stability=Stability(pack=2)), (1, 28, 28))[1]
    assert d(pairs.new_zeros(3, 2, 28, 28)).shape == (3, 1)
    with pytest.raises(ConfigError, match="must divide batch_size 64, got 3"):
        dcgan.Config(stability=Stability(pack=3)).validate()
    with pytest.raises(ConfigError, match="one sample at a time") as info:
        dcgan.Config(conditional=True, stability=Stability(pack=2)).validate()
    assert info.value.field == "stability.pack"


def test_mode_seeking_loss_by_hand_and_pairs_share_a_class():
    from generative.adversarial import mode_seeking_loss, paired

    z = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # one pair, |z1 - z2| = 2 on average
    fake = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])  # |G(z1) - G(z2)| = 1 on average
    assert mode_seeking_loss(fake, z).item() == pytest.approx(1 / (0.5 + 1e-5))
    ignores_z = torch.zeros(2, 3)  # one image whatever z: the largest penalty
    assert mode_seeking_loss(ignores_z, z).item() == pytest.approx(1e5)
    assert paired(torch.tensor([3, 1, 4, 1, 5])).tolist() == [3, 1, 3, 1, 5] and paired(None) is None


def test_r1_penalty_by_hand_and_differentiable():
    from generative.adversarial import r1_penalty

    weight = torch.tensor([3.0, 4.0], requires_grad=True)
    real = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], requires_grad=True)
    # a linear D(x) = w . x has slope w at every x: ||w||^2 = 25 for each sample
    penalty = r1_penalty(real @ weight, real)
    assert penalty.item() == pytest.approx(25.0)
    penalty.backward()  # d||w||^2 / dw = 2w: D's optimiser can lower it
    torch.testing.assert_close(weight.grad, torch.tensor([6.0, 8.0]))
    # D(x) = sum x^2 has slope 2x: mean of ||2x||^2 = (4 * 5 + 4 * 1.25) / 2
    assert r1_penalty((real**2).sum(1), real).item() == pytest.approx(12.5)


def test_top_k_count_shrinks_per_epoch_to_its_floor():
    from generative.adversarial import top_k_count

    assert top_k_count(64, epoch=0, floor=0.5) == 64  # the whole batch at first
    assert top_k_count(64, epoch=10, floor=0.5) == 57  # int(64 * 0.99^10 = 57.9)
    assert top_k_count(64, epoch=1000, floor=0.5) == 32  # never below half the batch
    assert top_k_count(5, epoch=1000, floor=0.5) == 3  # ceil(2.5)
    assert top_k_count(64, epoch=1000, floor=1.0) == 64  # floor 1: every fake, always
    with pytest.raises(ConfigError) as info:  # keeping no fake would leave G nothing to learn from
        from_dict(dcgan.Config, {"stability": {"top_k": 0}}, "")
    assert info.value.field == "stability.top_k"


def test_average_follows_the_live_weights_slowly_and_copies_buffers():
    from generative.adversarial import Average

    live = torch.nn.BatchNorm1d(2)
    average = Average(live, decay=0.9)
    with torch.no_grad():
        live.weight.fill_(3.0)  # from 1.0
        live.running_mean.fill_(5.0)
    average.update(live, step=1000)  # decay 0.9: 1 + 0.1 * (3 - 1)
    torch.testing.assert_close(average.module.weight, torch.full((2,), 1.2))
    torch.testing.assert_close(average.module.running_mean, torch.full((2,), 5.0))
    assert not any(p.requires_grad for p in average.module.parameters())
    early = Average(live, decay=0.999)  # at step 0 the decay is 1/10: the average jumps most of the way
    with torch.no_grad():
        live.weight.fill_(13.0)
    early.update(live, step=0)
    torch.testing.assert_close(early.module.weight, torch.full((2,), 3.0 + 0.9 * 10.0))


def test_conditional_dcgan_networks_take_labels():
    g = dcgan.Generator(16, (1, 28, 28), ngf=8, num_classes=10)
    d = dcgan.Discriminator((1, 28, 28), ndf=8, num_classes=10, minibatch_std=True)
    labels = torch.tensor([0, 3, 9, 3])
    fake = g(torch.randn(4, 16), labels)
    assert fake.shape == (4, 1, 28, 28) and d(fake, labels).shape == (4, 1)
    with torch.no_grad():  # the projection term: the same image scores differently as a 3 and as a 7
        assert not torch.allclose(d(fake, labels), d(fake, torch.full((4,), 7)))


def test_requested_labels():
    from generative.adversarial import requested_labels

    assert requested_labels(5, 0, None) is None
    assert requested_labels(3, 10, 7).tolist() == [7, 7, 7]
    assert requested_labels(25, 10, None).tolist() == [c for c in range(10) for _ in range(3)]  # 3 per row
    with pytest.raises(ConfigError, match="not class-conditional") as info:
        requested_labels(4, 0, 3)
    assert info.value.field == "--label"
    with pytest.raises(ConfigError, match=r"must be a class in 0\.\.9, got -1"):
        requested_labels(4, 10, -1)


# --- data ---------------------------------------------------------------------------------------


def test_digits_split_is_fixed_by_the_seed_and_stratified():
    a, b, c = (data.load_images("digits", seed=s) for s in (0, 0, 1))
    assert a.shape == (1, 8, 8) and a.x_train.dtype == np.float32
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)
    assert len(a.x_train) + len(a.x_test) == 1797
    shares = np.bincount(a.y_test, minlength=10) / len(a.y_test)
    assert shares.min() > 0.08 and shares.max() < 0.12  # each class keeps ~10% in the test split


def test_mnist5k_and_resizing():
    mnist = data.load_images("mnist5k", seed=0, image_size=32)
    assert mnist.shape == (1, 32, 32) and len(mnist.x_train) == 4000 and len(mnist.x_test) == 1000
    assert mnist.num_classes == 10
    framed = data.fit_images(torch.ones(2, 1, 8, 8), 32, margin=4)
    assert framed.shape == (2, 1, 32, 32)
    assert framed[..., :4, :].abs().sum() == 0 and framed[..., 4:28, 4:28].min() > 0.99


def test_npz_source(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, samples=np.random.default_rng(0).random((20, 1, 6, 6)).astype(np.float32))
    loaded = data.load_images(f"npz:{path}", seed=0)
    assert loaded.shape == (1, 6, 6) and loaded.y_train is None and len(loaded.x_train) == 16
    hwc = tmp_path / "hwc.npz"
    np.savez(hwc, x=np.zeros((10, 5, 5, 3), np.uint8), y=np.arange(10) % 2)
    assert data.load_images(f"npz:{hwc}", seed=0).shape == (3, 5, 5)


def test_folder_source_reads_labels_from_subfolders(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    loaded = data.load_images(f"folder:{tmp_path}", seed=0, image_size=8)
    assert loaded.shape == (1, 8, 8) and loaded.num_classes == 2


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("mnist60k", "unknown data set 'mnist60k'"),
        ("npz:/nonexistent.npz", "does not exist"),
        ("folder:/nonexistent", "does not exist"),
        ("env:CartPole-v1", "env factory"),  # no make_env passed in
    ],
)
def test_bad_image_sources_are_config_errors(source, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        data.load_images(source, seed=0)
    assert info.value.field == "data"


def test_env_frames_must_be_images():
    import envs

    with pytest.raises(ConfigError, match=r"observations have shape \(4,\), which are not images"):
        data.load_images("env:CartPole-v1", seed=0, env_frames=5, make_env=envs.make)
    with pytest.raises(ConfigError, match="data: env:NoSuchEnv-v0: unknown environment"):
        data.load_images("env:NoSuchEnv-v0", seed=0, make_env=envs.make)


def test_npz_without_the_expected_array_names_what_it_holds(tmp_path):
    path = tmp_path / "wrong.npz"
    np.savez(path, pictures=np.zeros((4, 8, 8)))
    with pytest.raises(ConfigError, match=r"\['pictures'\] but none named x / images / samples"):
        data.load_images(f"npz:{path}", seed=0)


def test_check_shape_names_both_shapes():
    with pytest.raises(ConfigError, match=r"takes \(1, 32, 32\) but the data are \(3, 64, 64\)"):
        data.check_shape("judge", (1, 32, 32), (3, 64, 64), "the judge")


def test_trajectory_windows_stay_inside_episodes():
    obs = np.arange(12, dtype=np.float32)[:, None]  # steps 0..11; episodes end at steps 4 and 11
    dones = np.zeros(12, bool)
    dones[[4, 11]] = True
    windows = data.trajectory_windows(obs, dones, seq_len=3)
    np.testing.assert_array_equal(windows[..., 0], [[0, 1, 2], [5, 6, 7], [8, 9, 10]])
    with pytest.raises(ConfigError, match="seq_len"):
        data.trajectory_windows(obs, dones, seq_len=8)


def test_sine_sequences():
    seqs = data.load_sequences("sines", seed=0, seq_len=30, n=100)
    assert seqs.x_train.shape[1:] == (30, 1) and len(seqs.x_train) + len(seqs.x_test) == 100
    assert 15 <= len(seqs.x_test) <= 25  # 20%, rounded within each frequency bin
    assert np.abs(seqs.x_train).max() < 1.2


# --- networks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, plan", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (14, (7, 1))])
def test_dcgan_sizes(size, plan):
    assert dcgan.plan(size) == plan
    g = dcgan.Generator(16, (1, size, size), ngf=8)
    d = dcgan.Discriminator((1, size, size), ndf=8)
    out = g(torch.randn(3, 16))
    assert out.shape == (3, 1, size, size) and out.min() >= -1 and out.max() <= 1
    assert d(out).shape == (3, 1)


def test_dcgan_follows_the_recipe():
    g = dcgan.Generator(100, (3, 64, 64), ngf=64)  # pytorch/examples' 64x64 generator
    assert [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [512, 256, 128, 64, 3]
    d = dcgan.Discriminator((3, 64, 64), ndf=64)
    assert [m.negative_slope for m in d.modules() if isinstance(m, torch.nn.LeakyReLU)] == [0.2] * 4
    weights = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert weights.mean().abs() < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("size", [30, 48, 100])
def test_dcgan_refuses_sizes_it_cannot_make(size):
    with pytest.raises(ConfigError, match="4\\*2\\^k or 7\\*2\\^k") as info:
        dcgan.Config(image_size=size).validate()
    assert info.value.field == "image_size"


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 7, 7), (4, 84, 84), (1, 8, 8)])
def test_autoencoder_reconstructs_any_shape(shape):
    for arch in ("conv", "dense"):
        config = ae.Config(arch=arch, code_dim=5, decoder_channels=[8, 4], decoder_hidden=[16])
        model = ae.Autoencoder(config, shape)
        assert model(torch.rand(2, *shape)).shape == (2, *shape)


def test_checkpoint_round_trip_gives_the_same_network(tmp_path):
    g = dcgan.Generator(8, (1, 28, 28), ngf=4)
    opt = torch.optim.Adam(g.parameters())
    g(torch.randn(2, 8)).mean().backward()
    opt.step()
    io.save(tmp_path / "ckpt", make_tree({"generator": g}, {"generator": opt}, 7, specs={"generator": {}}))
    tree, _ = io.load(tmp_path / "ckpt")
    twin = dcgan.Generator(8, (1, 28, 28), ngf=4)
    twin_opt = torch.optim.Adam(twin.parameters())
    assert restore_tree(tree, {"generator": twin}, {"generator": twin_opt}) == 7
    z = torch.randn(4, 8)
    g.eval(), twin.eval()
    torch.testing.assert_close(g(z), twin(z))
    with pytest.raises(CheckpointError, match="no 'encoder'"):
        restore_tree(tree, {"encoder": twin})


# --- pictures -------------------------------------------------------------------------------------


def test_pictures_are_uint8_rgb():
    grid = images.grid(np.random.default_rng(0).random((10, 1, 8, 8)), nrow=5)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 25 + 1, 5 * 25 + 1, 3)  # 8x8 zoomed 3x, 1 px gaps
    assert images.pairs(np.zeros((16, 1, 28, 28)), np.ones((16, 1, 28, 28))).shape[2] == 3
    scatter = images.scatter(np.random.default_rng(0).normal(size=(50, 16)), np.arange(50) % 10, "codes")
    assert scatter.dtype == np.uint8 and scatter.ndim == 3
    codes = np.random.default_rng(1).normal(size=(20, 2))
    np.testing.assert_allclose(images.pca_2d(codes), codes)
