r"""Microscopy-like cell images with ground-truth masks, generated from a seed.

:func:`make_cells` draws phase-contrast-like images of cells together with their
pixel masks, the segmentation task of the U-Net chapter
{cite:p}`ronneberger2015unet`.  Every image is drawn from its own random stream
``(seed, split, index)``, so the same seed gives the same images on every machine,
whatever ``n`` is.  What makes the task realistic (and hard for a global
threshold):

* **cells** of varied size and shape: star-shaped outlines
  :math:`r(\theta) = r_0\,(1 + e \cos 2(\theta-\varphi) + \sum_{k=3}^{5} a_k \cos(k\theta + \varphi_k))`
  (size :math:`r_0`, elongation :math:`e`, wobble :math:`a_k`), placed so that
  neighbours **touch** (their masks merge into one foreground);
* the **phase-contrast look**: a dark cell body with grainy **inner texture** and
  a few bright granules, surrounded by a bright **halo** that fades with the
  distance to the membrane;
* **debris**: small dark specks that look like cell texture but are not cells
  (only context, i.e. their size, tells them apart);
* **uneven illumination** (a smooth gain over the field of view), optical **blur**
  (Gaussian) and camera **noise**.

Images are ``X`` (N, 1, H, W) in [0, 1], masks ``Y`` (N, 1, H, W) with values 0/1
(float32, the form :func:`torch.nn.functional.binary_cross_entropy_with_logits`
expects).  The default size (64 x 64) trains a small U-Net on two CPU cores in
seconds; :func:`cell_splits` gives fixed train / validation / test splits.

:func:`load_isbi_cells` reads a user's own images and masks stored in the layout of
the ISBI Cell Tracking Challenge (``01/t000.tif`` with ``01_GT/SEG/man_seg000.tif``);
nothing downloads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.draw import polygon

from .._checks import check_int, check_scalar

__all__ = ["make_cells", "cell_splits", "CellSplits", "load_isbi_cells", "ISBI_LAYOUT"]

_SPLITS = {"train": 0, "val": 1, "test": 2}


def _outline(rng: np.random.Generator, r0: float, n_points: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dy, dx) of a star-shaped cell outline of mean radius ``r0``."""
    theta = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    e, phi = rng.uniform(0.0, 0.35), rng.uniform(0, np.pi)
    r = 1.0 + e * np.cos(2 * (theta - phi))
    for k in (3, 4, 5):
        r = r + rng.uniform(0.0, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r0 * r * np.sin(theta), r0 * r * np.cos(theta)


def _draw_one(rng: np.random.Generator, size: int, n_range: tuple[int, int], r_range: tuple[float, float],
              debris: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W) float and its instance labels (H, W) int (0 = background)."""
    labels = np.zeros((size, size), dtype=np.int32)
    n_cells = int(rng.integers(n_range[0], n_range[1] + 1))
    centers, radii = [], []
    for _ in range(40 * n_cells):
        if len(centers) == n_cells:
            break
        r0 = rng.uniform(*r_range) * size
        if centers and rng.random() < 0.6:
            # a neighbour: put it right next to an existing cell so that the two touch
            j = int(rng.integers(len(centers)))
            ang = rng.uniform(0, 2 * np.pi)
            dist = (radii[j] + r0) * rng.uniform(0.85, 1.0)
            c = centers[j] + dist * np.array([np.sin(ang), np.cos(ang)])
        else:
            c = rng.uniform(0.1 * size, 0.9 * size, size=2)
        if not (-0.3 * r0 <= c[0] < size + 0.3 * r0 and -0.3 * r0 <= c[1] < size + 0.3 * r0):
            continue
        if any(np.hypot(*(c - cc)) < 0.85 * (r0 + rr) for cc, rr in zip(centers, radii)):
            continue
        dy, dx = _outline(rng, r0)
        rr_, cc_ = polygon(c[0] + dy, c[1] + dx, shape=labels.shape)
        if rr_.size == 0:
            continue
        free = labels[rr_, cc_] == 0  # earlier cells keep their pixels: touching, not overlapping
        labels[rr_[free], cc_[free]] = len(centers) + 1
        centers.append(c)
        radii.append(r0)

    mask = labels > 0
    background = 0.55
    img = np.full((size, size), background)
    # dark cell bodies (each its own optical density) with grainy texture and bright granules
    texture = ndi.gaussian_filter(rng.standard_normal((size, size)), 1.0)
    texture /= texture.std() + 1e-12
    for k in range(1, len(centers) + 1):
        body = labels == k
        img[body] -= rng.uniform(0.12, 0.3)
    img += mask * rng.uniform(0.04, 0.08) * texture
    granules = (rng.random((size, size)) < 0.02) & ndi.binary_erosion(mask, iterations=2)
    img += 0.25 * ndi.gaussian_filter(granules.astype(float), 0.7)
    # bright halo outside the membrane, fading with the distance to the cell
    if mask.any():
        dist_out = ndi.distance_transform_edt(~mask)
        img += rng.uniform(0.2, 0.35) * np.exp(-dist_out / rng.uniform(1.2, 2.2)) * (~mask)
    # debris: small dark specks on the background (not cells)
    for _ in range(debris):
        c = rng.uniform(0, size, size=2)
        dy, dx = _outline(rng, rng.uniform(0.8, 1.6))
        rr_, cc_ = polygon(c[0] + dy, c[1] + dx, shape=labels.shape)
        keep = ~mask[rr_, cc_]
        img[rr_[keep], cc_[keep]] -= rng.uniform(0.15, 0.3)
    # uneven illumination: a smooth gain over the field of view
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    ang = rng.uniform(0, 2 * np.pi)
    gain = 1.0 + rng.uniform(0.15, 0.35) * (np.cos(ang) * xx + np.sin(ang) * yy) * 2 \
        - rng.uniform(0.0, 0.3) * (xx**2 + yy**2) * 2
    img = img * gain
    # optics and camera: blur, then noise
    img = ndi.gaussian_filter(img, rng.uniform(0.6, 1.1))
    img = img + rng.uniform(0.02, 0.05) * rng.standard_normal((size, size))
    return np.clip(img, 0.0, 1.0), labels


def make_cells(n: int, size: int = 64, *, seed: int = 0, split: str = "train", n_cells: tuple[int, int] | None = None,
               radius: tuple[float, float] = (0.07, 0.16), debris: int | None = None, return_labels: bool = False):
    """``n`` cell images ``X`` (n, 1, size, size) in [0, 1] and their masks ``Y`` (same shape, 0/1), float32.

    Parameters
    ----------
    n, size : number of images and their side in pixels (>= 16).
    seed, split : image ``i`` is drawn from the random stream ``(seed, split, i)``; the
        splits ``"train"``, ``"val"``, ``"test"`` of one seed never share an image.
    n_cells : (min, max) cells per image; default scales with the area, (3, 7) at 64 x 64.
    radius : (min, max) mean cell radius as a fraction of ``size``.
    debris : small dark specks per image that are not cells; default scales with the area (4 at 64 x 64).
    return_labels : also return the instance labels (n, size, size) int64 (0 = background,
        k = cell k), e.g. to see which cells touch.
    """
    n = check_int(n, "n")
    size = check_int(size, "size", low=16)
    seed = check_int(seed, "seed", low=0)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}; got {split!r}")
    scale = (size / 64) ** 2
    if n_cells is None:
        n_cells = (max(1, round(3 * scale)), max(1, round(7 * scale)))
    if (not isinstance(n_cells, (tuple, list)) or len(n_cells) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in n_cells)
            or not 1 <= n_cells[0] <= n_cells[1]):
        raise ValueError(f"n_cells must be a pair (min, max) of integers with 1 <= min <= max; got {n_cells!r}")
    if not isinstance(radius, (tuple, list)) or len(radius) != 2:
        raise ValueError(f"radius must be a pair (min, max) of fractions of size; got {radius!r}")
    r_lo = check_scalar(radius[0], "radius[0]", low=0.0, low_inclusive=False, high=0.5)
    r_hi = check_scalar(radius[1], "radius[1]", low=r_lo, high=0.5)
    debris = round(4 * scale) if debris is None else check_int(debris, "debris", low=0)
    X = np.empty((n, 1, size, size), dtype=np.float32)
    L = np.empty((n, size, size), dtype=np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, _SPLITS[split], i])
        X[i, 0], L[i] = _draw_one(rng, size, tuple(n_cells), (r_lo, r_hi), debris)
    X_t = torch.from_numpy(X)
    Y_t = torch.from_numpy((L > 0)[:, None].astype(np.float32))
    return (X_t, Y_t, torch.from_numpy(L)) if return_labels else (X_t, Y_t)


@dataclass(frozen=True)
class CellSplits:
    """Train / validation / test cell images ``X_*`` (N, 1, H, W) and masks ``Y_*`` (N, 1, H, W)."""

    X_train: torch.Tensor
    Y_train: torch.Tensor
    X_val: torch.Tensor
    Y_val: torch.Tensor
    X_test: torch.Tensor
    Y_test: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X_train, self.Y_train

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X_val, self.Y_val

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X_test, self.Y_test


def cell_splits(n_train: int = 256, n_val: int = 64, n_test: int = 64, size: int = 64, *, seed: int = 0,
                **params) -> CellSplits:
    """Fixed train / validation / test splits of :func:`make_cells` (same ``seed``, disjoint streams)."""
    parts = {}
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        X, Y = make_cells(check_int(n, f"n_{name}"), size, seed=seed, split=name, **params)
        parts[f"X_{name}"], parts[f"Y_{name}"] = X, Y
    return CellSplits(**parts)


# ------------------------------------------------------------------ user data (ISBI layout)
ISBI_LAYOUT = """\
<root>/
  01/t000.tif, t001.tif, ...              the images of sequence 01
  01_GT/SEG/man_seg000.tif, ...            the ground-truth masks (instance labels, 0 = background)
(sequence 02, 02_GT/SEG, ... the same way; 01_ST/SEG holds silver-truth masks: gt="ST")"""

_FRAME = re.compile(r"(\d+)$")
_EXTS = (".tif", ".tiff", ".png")


def _frames(folder: Path, prefix: str) -> dict[int, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in _EXTS and p.stem.startswith(prefix):
            m = _FRAME.search(p.stem[len(prefix):])
            if m and p.stem[len(prefix):].lstrip("_").isdigit():
                out[int(m.group(1))] = p
    return out


def _read(path: Path) -> np.ndarray:
    from skimage import io

    img = np.asarray(io.imread(path))
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # RGB(A) -> grey
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"{path} holds an array of shape {img.shape}; only 2-D (H, W) images are supported")
    return img


def load_isbi_cells(root, sequence: str = "01", *, gt: str = "GT", percentiles: tuple[float, float] = (0.5, 99.5)):
    """Images and binary masks of one sequence stored in the ISBI Cell Tracking Challenge layout.

    Only frames that have a mask are returned.  Each image is scaled to [0, 1] by its
    ``percentiles`` (robust to hot pixels) and clipped; masks are ``labels > 0``.
    Returns ``X, Y`` of shape (N, 1, H, W), float32, when all frames have one size,
    else two lists of (1, H, W) tensors.
    """
    root = Path(root)
    if not isinstance(sequence, str) or not sequence:
        raise ValueError(f"sequence must be a folder name such as '01'; got {sequence!r}")
    if gt not in ("GT", "ST"):
        raise ValueError(f"gt must be 'GT' (gold truth) or 'ST' (silver truth); got {gt!r}")
    lo, hi = (check_scalar(p, "percentiles", low=0.0, high=100.0) for p in percentiles)
    if not lo < hi:
        raise ValueError(f"percentiles must be (low, high) with low < high; got {percentiles!r}")
    img_dir, seg_dir = root / sequence, root / f"{sequence}_{gt}" / "SEG"
    for folder in (img_dir, seg_dir):
        if not folder.is_dir():
            raise ValueError(f"no folder {folder}: put your images and masks in this layout:\n{ISBI_LAYOUT}")
    images, masks = _frames(img_dir, "t"), _frames(seg_dir, "man_seg")
    common = sorted(set(images) & set(masks))
    if not common:
        raise ValueError(f"no frame of {img_dir} (t###.tif) has a mask in {seg_dir} (man_seg###.tif); layout:\n{ISBI_LAYOUT}")
    X, Y = [], []
    for t in common:
        img, lab = _read(images[t]).astype(np.float64), _read(masks[t])
        if img.shape != lab.shape:
            raise ValueError(f"frame {t}: image {images[t].name} is {img.shape} but mask {masks[t].name} is {lab.shape}")
        a, b = np.percentile(img, [lo, hi])
        img = np.clip((img - a) / (b - a), 0.0, 1.0) if b > a else np.zeros_like(img)
        X.append(torch.from_numpy(img.astype(np.float32))[None])
        Y.append(torch.from_numpy((lab > 0).astype(np.float32))[None])
    if len({x.shape for x in X}) == 1:
        return torch.stack(X), torch.stack(Y)
    return X, Y
