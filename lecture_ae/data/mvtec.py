r"""Texture tiles with synthetic defects in the MVTec AD layout, and a loader for that layout.

The MVTec anomaly detection data set {cite}`bergmann2021mvtec` (MVTec AD) stores each
category as a folder tree::

    <root>/<category>/train/good/000.png              defect-free training images
    <root>/<category>/test/good/000.png               defect-free test images
    <root>/<category>/test/<defect>/000.png           test images with a defect of that type
    <root>/<category>/ground_truth/<defect>/000_mask.png   its pixel mask (0 = normal, 255 = defect)

The real data set is opt-in (it is large and never downloaded here).  The embedded
default is built reproducibly from real texture photographs that ship inside
scikit-image (``brick``, ``grass``, ``gravel``):

* the photograph is scaled (``scale``) and split into two regions: the top rows give the
  **training** tiles (all good), the bottom rows the **test** tiles, so no test pixel was
  ever seen in training;
* tiles are random ``tile_size`` x ``tile_size`` crops, randomly flipped;
* test tiles are good or carry one synthetic defect (:data:`DEFECT_TYPES`: a bright thin
  ``scratch``, a dark straight ``cut``, a dark round ``hole``, a low-contrast ``stain``)
  painted by :func:`add_defect`, which returns the **pixel-exact** mask: a pixel is in the
  mask if and only if the defect changed its grey level (by at least ``MIN_CHANGE``, so that
  the change survives 8-bit PNG storage).

:func:`make_texture_set` builds one category in memory, :func:`write_mvtec` writes it in the
MVTec AD layout, :func:`texture_dataset` does both for all textures into a seeded cache
folder, and :func:`load_mvtec` reads any tree in that layout: the generated one or the
real MVTec AD (``root=`` or the environment variable ``LECTURE_AE_MVTEC_DIR``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int, check_scalar
from .images import load_image

__all__ = [
    "TEXTURES",
    "DEFECT_TYPES",
    "MIN_CHANGE",
    "MVTEC_ENV",
    "TextureSet",
    "MVTecSplits",
    "add_defect",
    "make_texture_set",
    "write_mvtec",
    "texture_dataset",
    "mvtec_categories",
    "load_mvtec",
]

#: Texture photographs bundled in scikit-image that the embedded data set is made from.
TEXTURES = ("brick", "grass", "gravel")
#: Synthetic defect types painted by :func:`add_defect`.
DEFECT_TYPES = ("scratch", "cut", "hole", "stain")
#: Every defect pixel changes by at least this much (grey levels in [0, 1]); 25 of 255 levels.
MIN_CHANGE = 0.1
#: Environment variable naming the folder of the real MVTec AD (the one that holds ``carpet/``, ``grid/``, ...).
MVTEC_ENV = "LECTURE_AE_MVTEC_DIR"
_VERSION = 1  # bump when the generator changes: the cache key includes it


# --------------------------------------------------------------------------- defects
def _blob(size: int, rng: np.random.Generator, r_min: float, r_max: float) -> np.ndarray:
    """An irregular star-shaped blob: radius r(theta) = r0 (1 + a sin(k theta + phi) + b sin(...))."""
    r0 = rng.uniform(r_min, r_max)
    margin = int(np.ceil(1.4 * r0)) + 1
    cy, cx = rng.uniform(margin, size - margin, size=2) if size > 2 * margin else (size / 2, size / 2)
    yy, xx = np.mgrid[:size, :size]
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    k1, k2 = rng.integers(2, 5), rng.integers(3, 7)
    a, b = rng.uniform(0.05, 0.25), rng.uniform(0.0, 0.12)
    aspect = rng.uniform(0.6, 1.0)
    rot = rng.uniform(0, np.pi)
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / aspect
    r = r0 * (1 + a * np.sin(k1 * theta + rng.uniform(0, 2 * np.pi)) + b * np.sin(k2 * theta + rng.uniform(0, 2 * np.pi)))
    return np.hypot(u, v) <= r


def _stroke(size: int, rng: np.random.Generator, length: tuple[float, float], width: int, curved: bool) -> np.ndarray:
    """A (slightly curved) stroke of ``width`` pixels, fully inside the tile."""
    from scipy.ndimage import binary_dilation
    from skimage.draw import line

    L = rng.uniform(*length) * size
    for _ in range(100):
        y0, x0 = rng.uniform(0.1 * size, 0.9 * size, size=2)
        ang = rng.uniform(0, np.pi)
        y1, x1 = y0 + L * np.sin(ang), x0 + L * np.cos(ang)
        if 1 <= y1 <= size - 2 and 1 <= x1 <= size - 2:
            break
    mask = np.zeros((size, size), bool)
    n_seg = 3 if curved else 1
    bend = rng.uniform(-0.12, 0.12) * L if curved else 0.0
    ts = np.linspace(0, 1, n_seg + 1)
    pts = []
    for t in ts:  # a quadratic bend perpendicular to the stroke
        off = bend * 4 * t * (1 - t)
        pts.append((y0 + t * (y1 - y0) + off * np.cos(ang), x0 + t * (x1 - x0) - off * np.sin(ang)))
    for (ya, xa), (yb, xb) in zip(pts[:-1], pts[1:]):
        rr, cc = line(int(round(ya)), int(round(xa)), int(round(yb)), int(round(xb)))
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        mask[rr[ok], cc[ok]] = True
    if width > 1:
        mask = binary_dilation(mask, iterations=width // 2, structure=np.ones((3, 3), bool) if width > 2 else None)
    return mask


def _ensure_change(x: np.ndarray, new: np.ndarray, mask: np.ndarray, direction: float) -> np.ndarray:
    """Inside ``mask``, move every pixel at least MIN_CHANGE away from ``x`` (in ``direction`` when it fits in [0, 1])."""
    new = np.clip(new, 0.0, 1.0)
    step = MIN_CHANGE + 1.0 / 255  # still >= MIN_CHANGE after rounding to 8 bits (x is already 8-bit)
    small = mask & (np.abs(new - x) < step)
    if small.any():
        up, down = np.minimum(x + step, 1.0), np.maximum(x - step, 0.0)
        prefer_up = direction >= 0
        first, second = (up, down) if prefer_up else (down, up)
        pick = np.where(np.abs(first - x) >= step, first, second)
        new = np.where(small, pick, new)
    return np.where(mask, new, x)


def add_defect(tile, kind: str, *, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect of type ``kind`` (:data:`DEFECT_TYPES`) on a grey tile (H, W) in [0, 1].

    Returns ``(defective, mask)``: the new tile (float64, quantized to 8 bits like a PNG)
    and the boolean mask of the defect.  The mask is pixel-exact: ``defective`` differs
    from the (quantized) input exactly on the mask, by at least :data:`MIN_CHANGE`.
    ``seed`` is an integer or a :class:`numpy.random.Generator`.
    """
    x = np.asarray(tile, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != x.shape[1] or x.shape[0] < 16:
        raise ValueError(f"tile must be a square grey image of shape (H, W) with H = W >= 16; got shape {x.shape}")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("tile must hold finite grey levels in [0, 1]")
    if kind not in DEFECT_TYPES:
        raise ValueError(f"kind must be one of {DEFECT_TYPES}; got {kind!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_int(seed, "seed", low=0))
    x = _quantize(x)
    n = x.shape[0]
    s = n / 64.0  # defect sizes scale with the tile
    noise = rng.normal(0.0, 0.03, size=x.shape)
    if kind == "scratch":  # thin bright line
        mask = _stroke(n, rng, (0.3, 0.6), width=max(1, int(round(1 * s))), curved=True)
        new = rng.uniform(0.85, 1.0) + noise
        direction = 1.0
    elif kind == "cut":  # straight dark gash, a few pixels wide
        mask = _stroke(n, rng, (0.35, 0.7), width=max(3, int(round(3 * s))), curved=False)
        new = rng.uniform(0.02, 0.12) + noise
        direction = -1.0
    elif kind == "hole":  # dark round hole with a lighter rim
        mask = _blob(n, rng, 3.5 * s, 7.0 * s)
        from scipy.ndimage import binary_erosion

        inner = binary_erosion(mask, iterations=max(1, int(round(s))))
        new = np.where(inner, rng.uniform(0.0, 0.08), rng.uniform(0.3, 0.45)) + noise
        direction = -1.0
    else:  # stain: the texture stays visible under a darker or lighter tint
        mask = _blob(n, rng, 6.0 * s, 11.0 * s)
        tint = rng.choice([0.1, 0.9])
        new = 0.45 * x + 0.55 * tint
        direction = 1.0 if tint > 0.5 else -1.0
    out = _quantize(_ensure_change(x, new, mask, direction))
    return out, out != x


def _quantize(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0


# --------------------------------------------------------------------------- one category in memory
@dataclass
class TextureSet:
    """One category of the generated data set, in memory (grey tiles in [0, 1], 8-bit levels).

    ``test_clean[i]`` is test tile ``i`` before its defect was painted (equal to ``test[i]``
    for good tiles), ``masks[i]`` the boolean defect mask, ``defects[i]`` ``"good"`` or the
    defect type.
    """

    category: str
    train: np.ndarray
    test: np.ndarray
    test_clean: np.ndarray
    masks: np.ndarray
    defects: list = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        """1 for a defective test tile, 0 for a good one."""
        return np.array([d != "good" for d in self.defects], dtype=np.int64)


def _crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    H, W = img.shape
    ys = rng.integers(0, H - size + 1, size=n)
    xs = rng.integers(0, W - size + 1, size=n)
    flips = rng.integers(0, 2, size=(n, 2))
    out = np.empty((n, size, size))
    for i, (y, x) in enumerate(zip(ys, xs)):
        t = img[y : y + size, x : x + size]
        if flips[i, 0]:
            t = t[::-1]
        if flips[i, 1]:
            t = t[:, ::-1]
        out[i] = t
    return out


def make_texture_set(
    category: str = "brick",
    *,
    tile_size: int = 64,
    scale: float = 0.5,
    n_train: int = 240,
    n_test_good: int = 24,
    n_test_defect: int = 8,
    defect_types=DEFECT_TYPES,
    test_rows: float = 0.25,
    seed: int = 0,
) -> TextureSet:
    """Tiles of one texture photograph with synthetic defects (see the module docstring).

    The photograph :func:`~lecture_ae.data.load_image` ``(category)`` is rescaled by ``scale``;
    training tiles come from its top ``1 - test_rows`` fraction of rows, test tiles from the
    bottom ``test_rows`` (which must be at least ``tile_size`` pixels high).  There are
    ``n_train`` training tiles, ``n_test_good`` good test tiles and ``n_test_defect`` test
    tiles per defect type.  The same arguments give the same tiles.
    """
    if category not in TEXTURES:
        raise ValueError(f"category must be one of {TEXTURES}; got {category!r}")
    tile_size = check_int(tile_size, "tile_size", low=16)
    scale = check_scalar(scale, "scale", low=0.0, low_inclusive=False, high=1.0)
    n_train = check_int(n_train, "n_train")
    n_test_good = check_int(n_test_good, "n_test_good", low=0)
    n_test_defect = check_int(n_test_defect, "n_test_defect", low=0)
    test_rows = check_scalar(test_rows, "test_rows", low=0.0, low_inclusive=False, high=0.9)
    seed = check_int(seed, "seed", low=0)
    defect_types = tuple(defect_types)
    for d in defect_types:
        if d not in DEFECT_TYPES:
            raise ValueError(f"defect_types must be a subset of {DEFECT_TYPES}; got {d!r}")
    from skimage.transform import rescale

    img = load_image(category)
    if scale != 1.0:
        img = np.clip(rescale(img, scale, anti_aliasing=True), 0.0, 1.0)
    H, W = img.shape
    split = int(round(H * (1 - test_rows)))
    if H - split < tile_size or split < tile_size or W < tile_size:
        raise ValueError(f"tile_size {tile_size} does not fit: the scaled photograph is {H} x {W}, its test region "
                         f"{H - split} rows high (scale={scale}, test_rows={test_rows}); use smaller tiles or a larger scale")
    ss = np.random.SeedSequence([seed, TEXTURES.index(category), _VERSION])
    rng_train, rng_test, rng_defect = (np.random.default_rng(s) for s in ss.spawn(3))
    train = _quantize(_crops(img[:split], n_train, tile_size, rng_train))
    defects = ["good"] * n_test_good + [d for d in defect_types for _ in range(n_test_defect)]
    clean = _quantize(_crops(img[split:], len(defects), tile_size, rng_test))
    test = clean.copy()
    masks = np.zeros(clean.shape, bool)
    for i, d in enumerate(defects):
        if d != "good":
            test[i], masks[i] = add_defect(clean[i], d, seed=rng_defect)
    return TextureSet(category, train, test, clean, masks, defects)


# --------------------------------------------------------------------------- the MVTec AD layout on disk
def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="L").save(path)


def write_mvtec(tset: TextureSet, root) -> Path:
    """Write ``tset`` under ``root/<category>/`` in the MVTec AD layout; return that folder.

    Files are numbered per folder (``000.png``, ``001.png``, ...) as in MVTec AD; a
    defective test image ``test/<defect>/k.png`` has its mask in
    ``ground_truth/<defect>/k_mask.png`` (0 or 255).
    """
    if not isinstance(tset, TextureSet):
        raise ValueError(f"tset must be a TextureSet (from make_texture_set); got {type(tset).__name__}")
    base = Path(root) / tset.category
    for i, t in enumerate(tset.train):
        _save_png(base / "train" / "good" / f"{i:03d}.png", t)
    counts: dict[str, int] = {}
    for t, m, d in zip(tset.test, tset.masks, tset.defects):
        k = counts.get(d, 0)
        counts[d] = k + 1
        _save_png(base / "test" / d / f"{k:03d}.png", t)
        if d != "good":
            _save_png(base / "ground_truth" / d / f"{k:03d}_mask.png", m.astype(np.float64))
    return base


def _default_cache() -> Path:
    return Path(os.environ.get("LECTURE_AE_CACHE", Path(tempfile.gettempdir()) / "lecture_ae_cache"))


def texture_dataset(root=None, categories=TEXTURES, **params) -> Path:
    """The generated texture data set on disk (MVTec AD layout); return its root folder.

    ``params`` go to :func:`make_texture_set` (``tile_size``, ``scale``, ``n_train``, ...,
    ``seed``).  Without ``root`` the tree lives in a cache folder named after the
    parameters (``$LECTURE_AE_CACHE`` or the system's temporary folder) and is generated
    only once; the folder is written completely before it appears, so concurrent builds
    never see half a tree.  With ``root`` it is (re)written there.
    """
    categories = tuple([categories] if isinstance(categories, str) else categories)
    for c in categories:
        if c not in TEXTURES:
            raise ValueError(f"categories must be a subset of {TEXTURES}; got {c!r}")
    if root is not None:
        root = Path(root)
        for c in categories:
            if (root / c).exists():
                shutil.rmtree(root / c)
            write_mvtec(make_texture_set(c, **params), root)
        return root
    key = json.dumps({"v": _VERSION, "categories": categories, **{k: params[k] for k in sorted(params)}},
                     sort_keys=True, default=str)
    final = _default_cache() / ("mvtec_textures_" + hashlib.sha1(key.encode()).hexdigest()[:12])
    if (final / "params.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=final.parent))
    try:
        for c in categories:
            write_mvtec(make_texture_set(c, **params), tmp)
        (tmp / "params.json").write_text(key)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first
            if not (final / "params.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- loading
@dataclass
class MVTecSplits:
    """One category of an MVTec-AD-layout tree as tensors.

    ``train`` (N, C, H, W) and ``val`` (N_val, C, H, W) are good images (``val`` is a seeded
    random part of ``train/good``: MVTec AD has no validation split); ``test``
    (M, C, H, W), ``test_masks`` (M, 1, H, W) with 1 on defect pixels, ``test_labels`` (M,)
    with 1 for a defective image, ``test_defects`` the folder name of each test image
    (``"good"`` or the defect type).  Grey levels are in [0, 1], float32.
    """

    category: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    test_masks: torch.Tensor
    test_labels: torch.Tensor
    test_defects: list
    test_paths: list = field(default_factory=list)

    @property
    def defect_types(self) -> list:
        """The defect types of the test set (without ``"good"``), sorted."""
        return sorted({d for d in self.test_defects if d != "good"})


def _mvtec_help(where: str) -> str:
    return (f"Put the data in {where} in the MVTec AD layout: <root>/<category>/train/good/*.png, "
            "<root>/<category>/test/<defect>/*.png and <root>/<category>/ground_truth/<defect>/*_mask.png "
            "(the real MVTec AD is opt-in and never downloaded: unpack mvtec_anomaly_detection.tar.xz from "
            f"https://www.mvtec.com/company/research/datasets/mvtec-ad and pass root=... or set {MVTEC_ENV}). "
            "Without it, use the embedded textures: lecture_ae.data.texture_dataset().")


def _mvtec_root(root) -> Path:
    if root is None:
        root = os.environ.get(MVTEC_ENV) or None
        if root is None:
            raise ValueError(f"no MVTec AD folder given and {MVTEC_ENV} is not set. " + _mvtec_help("a folder"))
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a path or None; got {type(root).__name__}")
    return Path(root).expanduser()


def mvtec_categories(root=None) -> list:
    """The categories (sub-folders with a ``train/good`` folder) of an MVTec-AD-layout tree."""
    root = _mvtec_root(root)
    if not root.is_dir():
        raise ValueError(f"MVTec AD folder {str(root)!r} does not exist. " + _mvtec_help(repr(str(root))))
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _images_in(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))


def _read(path: Path, size, grey: bool, mask: bool = False) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if (grey or mask) else "RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.NEAREST if mask else Image.BILINEAR)
        a = np.asarray(im)
    if mask:
        return (a > 127)[None]
    a = a.astype(np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_mvtec(root=None, category: str = "brick", *, image_size=None, grey: bool = True,
               val_fraction: float = 0.1, seed: int = 0) -> MVTecSplits:
    """Read one category of an MVTec-AD-layout tree (the generated textures or the real MVTec AD).

    ``root`` is the folder holding the category folders (default ``$LECTURE_AE_MVTEC_DIR``);
    ``image_size`` (an int or (H, W)) resizes images (bilinear) and masks (nearest),
    e.g. ``image_size=128`` for the 700-1024 pixel images of the real data set; ``grey``
    converts colour images to one channel.  A defective test image without its
    ``ground_truth`` mask is an error; good test images have an all-zero mask.
    ``val_fraction`` of the training images (seeded) become ``val``.
    """
    root = _mvtec_root(root)
    if not isinstance(category, str):
        raise ValueError(f"category must be a folder name (str); got {type(category).__name__}")
    base = root / category
    if not (base / "train" / "good").is_dir() or not (base / "test").is_dir():
        found = mvtec_categories(root) if root.is_dir() else []
        raise ValueError(f"no MVTec AD category {category!r} in {str(root)!r} (expected the folders "
                         f"{str(base / 'train' / 'good')!r} and {str(base / 'test')!r}; categories found: {found}). "
                         + _mvtec_help(repr(str(root))))
    if image_size is not None:
        if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
            image_size = (int(image_size), int(image_size))
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be None, an integer or a pair (H, W); got {image_size!r}")
        image_size = tuple(check_int(s, "image_size") for s in image_size)
    val_fraction = check_scalar(val_fraction, "val_fraction", high=0.9)
    seed = check_int(seed, "seed", low=0)
    train_paths = _images_in(base / "train" / "good")
    if not train_paths:
        raise ValueError(f"{str(base / 'train' / 'good')!r} holds no images. " + _mvtec_help(repr(str(root))))
    size = image_size
    if size is None:  # the size of the first training image; all must agree
        size = _read(train_paths[0], None, grey).shape[1:]
    train = np.stack([_read(p, size, grey) for p in train_paths])
    images, masks, defects, paths = [], [], [], []
    for folder in sorted(p for p in (base / "test").iterdir() if p.is_dir()):
        for p in _images_in(folder):
            images.append(_read(p, size, grey))
            if folder.name == "good":
                masks.append(np.zeros((1, *size), bool))
            else:
                mp = base / "ground_truth" / folder.name / f"{p.stem}_mask.png"
                if not mp.is_file():
                    raise ValueError(f"the defective test image {str(p)!r} has no mask {str(mp)!r}")
                masks.append(_read(mp, size, grey, mask=True))
            defects.append(folder.name)
            paths.append(str(p))
    if not images:
        raise ValueError(f"{str(base / 'test')!r} holds no images. " + _mvtec_help(repr(str(root))))
    shapes = {a.shape for a in images} | {train.shape[1:]}
    if len(shapes) != 1:
        raise ValueError(f"images of {category!r} have different shapes {sorted(shapes)}; pass image_size=... to resize")
    n_val = int(round(val_fraction * len(train)))
    if val_fraction > 0 and len(train) - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction} leaves no training image out of {len(train)}")
    order = np.random.default_rng(seed).permutation(len(train))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    T = torch.from_numpy(train)
    return MVTecSplits(
        category=category,
        train=T[train_idx].contiguous(),
        val=T[val_idx].contiguous(),
        test=torch.from_numpy(np.stack(images)),
        test_masks=torch.from_numpy(np.stack(masks)).float(),
        test_labels=torch.tensor([d != "good" for d in defects], dtype=torch.int64),
        test_defects=defects,
        test_paths=paths,
    )
