"""generative.load: sample from GANs and VAEs, encode and decode with autoencoders, from run or artifact folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trained_runs import artifact_folder, tiny_run

import generative
from generative import vae
from generative.common import restore_tree
from networks.errors import ConfigError
from networks.run_folder import load_checkpoint


@pytest.mark.parametrize(("name", "shape"), [("digits-gan", (5, 1, 8, 8)), ("digits-dcgan", (5, 1, 16, 16))])
def test_gans_sample_as_dlforge_generate_does(name, shape):
    model = generative.load(tiny_run(name))
    images = model.sample(5, seed=3)
    assert images.shape == shape and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    np.testing.assert_array_equal(images, model.sample(5, seed=3))
    assert not np.array_equal(images, model.sample(5, seed=4))
    tree, _, _ = load_checkpoint(tiny_run(name), "last")
    np.testing.assert_array_equal(images, model.module.generate(model.config, tree, n=5, seed=3))
    z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the exported network: z -> image in [0, 1]
        np.testing.assert_allclose(model.generator()(z).numpy(), images, atol=1e-6)


def test_vae_encodes_to_the_posterior_mean_and_decodes_to_pixel_means():
    run_dir = tiny_run("digits-vae")
    model = generative.load(run_dir)
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    codes = model.encode(x)
    assert codes.shape == (6, 20) and model.encode(x[0]).shape == (20,)
    tree, _, _ = load_checkpoint(run_dir, "last")
    reference = vae.VAE(model.config, (1, 8, 8))
    restore_tree(tree, reference.parts())
    reference.eval()
    with torch.no_grad():
        mu, _ = reference.encode(torch.from_numpy(x))
        np.testing.assert_allclose(codes, mu.numpy(), rtol=1e-5, atol=1e-6)
        pixels = torch.sigmoid(reference.decoder(mu)).numpy()
    np.testing.assert_allclose(model.decode(codes), pixels, rtol=1e-5, atol=1e-6)
    assert model.sample(4, seed=0).shape == (4, 1, 8, 8)


def test_autoencoders_encode_and_decode_but_do_not_sample():
    model = generative.load(tiny_run("digits-ae"))
    x = np.random.default_rng(1).random((3, 1, 8, 8))
    assert model.encode(x).shape == (3, 32) and model.decode(model.encode(x)).shape == (3, 1, 8, 8)
    with pytest.raises(ConfigError, match="ae runs have no prior to sample from"):
        model.sample(2)
    with pytest.raises(ConfigError, match=r"x: expected shape \(1, 8, 8\) or \(N, 1, 8, 8\), got \(3, 8, 8, 1\)"):
        model.encode(np.zeros((3, 8, 8, 1)))
    with pytest.raises(ConfigError, match=r"z: expected shape \(32,\) or \(N, 32\)"):
        model.decode(np.zeros((2, 31)))
    sequences = generative.load(tiny_run("sines-seq2seq"))
    waves = np.sin(np.linspace(0, 6, 50))[None, :, None].repeat(4, 0)  # (4, 50, 1), in the data's own units
    codes = sequences.encode(waves)
    assert codes.shape == (4, 16)
    assert sequences.decode(codes).shape == (4, 50, 1) and sequences.decode(codes, steps=10).shape == (4, 10, 1)


def test_an_artifact_folder_loads_and_a_classifier_run_is_refused(tmp_path):
    folder = artifact_folder(tiny_run("digits-vae"), tmp_path / "artifact", stem="vae-model")
    np.testing.assert_array_equal(
        generative.load(folder).sample(3, seed=1), generative.load(tiny_run("digits-vae")).sample(3, seed=1)
    )
    with pytest.raises(ConfigError, match="'classify' run, which holds no generative model"):
        generative.load(tiny_run("digits-classify"))
