"""Pictures the generative trainers log: sample grids, reconstruction pairs, code scatters, line plots.

Everything returns an (H, W, C) uint8 array that `tracker.image` accepts.
"""

from __future__ import annotations

import math

import numpy as np


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, cols*W, C) uint8 image, row-major.

    Images smaller than 28 pixels are enlarged (nearest neighbour) so an 8x8 digit stays visible.
    """
    images = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float32)), 0.0, 1.0)
    zoom = max(1, 28 // images.shape[-1])
    if zoom > 1:
        images = images.repeat(zoom, axis=2).repeat(zoom, axis=3)
    n, c, h, w = images.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        canvas[top : top + h, left : left + w] = images[i].transpose(1, 2, 0)
    if c == 1:
        canvas = np.repeat(canvas, 3, axis=2)
    return (canvas * 255).round().astype(np.uint8)


def pairs(originals: np.ndarray, reconstructions: np.ndarray, per_row: int = 8) -> np.ndarray:
    """Rows alternate originals and their reconstructions."""
    n = min(len(originals), len(reconstructions)) // per_row * per_row
    rows = []
    for i in range(0, n, per_row):
        rows += [originals[i : i + per_row], reconstructions[i : i + per_row]]
    return grid(np.concatenate(rows), nrow=per_row)


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Project codes onto their first two principal components (identity for 2-D codes)."""
    codes = np.nan_to_num(np.asarray(codes, np.float64).reshape(len(codes), -1))  # a diverged run still plots
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1])))
    centred = codes - codes.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def scatter(codes: np.ndarray, labels: np.ndarray | None, title: str) -> np.ndarray:
    """The notes' dimensionality reduction for visualisation: 2-D codes (or their PCA), coloured by label."""
    points = pca_2d(codes)
    fig, ax = _figure()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.8)
    else:
        dots = ax.scatter(points[:, 0], points[:, 1], c=np.asarray(labels), cmap="tab10", s=6, alpha=0.8)
        ax.legend(*dots.legend_elements(), fontsize=6, loc="best", markerscale=0.7)
    dims = np.asarray(codes).reshape(len(codes), -1).shape[1]
    ax.set_title(title if dims <= 2 else f"{title} (PCA of {dims}-d code)", fontsize=9)
    return _render(fig)


def lines(originals: np.ndarray, reconstructions: np.ndarray, title: str, n: int = 4) -> np.ndarray:
    """Sequences (N, T, F): the first feature of each original (solid) and reconstruction (dashed)."""
    fig, ax = _figure()
    for i in range(min(n, len(originals))):
        (line,) = ax.plot(originals[i, :, 0], lw=1.2)
        ax.plot(reconstructions[i, :, 0], ls="--", lw=1.2, color=line.get_color())
    ax.set_title(title, fontsize=9)
    return _render(fig)


def _figure():
    # The object-oriented API: no pyplot global state, no backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _render(fig) -> np.ndarray:
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
