"""MNIST (opt-in): read the standard IDX files from a folder the user names.

Nothing downloads.  Put the four files of the MNIST distribution (gzipped or not)
in one folder and point ``LECTURE_AE_MNIST_DIR`` (or the ``folder`` argument) at it::

    train-images-idx3-ubyte.gz   train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz    t10k-labels-idx1-ubyte.gz

(the names without ``.gz``, and the ``train-images.idx3-ubyte`` spelling of some
mirrors, work too).  The IDX format (LeCun et al.): two zero bytes, a type code
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, then each dimension as a big-endian
int32, then the data in C order, big-endian.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int, check_scalar
from ..runtime import full_size
from .digits import ImageSplits, load_digits_splits, split_arrays

__all__ = ["MNIST_ENV", "MNIST_FILES", "read_idx", "write_idx", "mnist_folder", "load_mnist", "load_mnist_splits", "chapter_digits"]

#: Environment variable naming the folder with the MNIST IDX files.
MNIST_ENV = "LECTURE_AE_MNIST_DIR"

#: The four files of the standard distribution, by (split, kind).
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str.lstrip("<>|="): k for k, v in _IDX_TYPES.items()}


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped or not, detected from its first bytes) into a numpy array."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    with _open(path) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex() if raw else 'empty'})")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(path)!r}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{str(path)!r}: IDX header says shape {shape} ({count * dtype.itemsize} bytes of data) "
                         f"but the file holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or when the name ends in .gz)."""
    path = Path(path)
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=").str.lstrip("<>|=")
    if key not in _IDX_CODES:
        raise ValueError(f"array dtype {a.dtype} has no IDX type code; use uint8, int8, int16, int32, float32 or float64")
    code = _IDX_CODES[key]
    data = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">i4").tobytes() + a.astype(_IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as fh:
        fh.write(data)
    return path


def _help(folder) -> str:
    names = "\n".join(f"    {n}.gz (or {n})" for n in MNIST_FILES.values())
    where = f"the folder {str(folder)!r}" if folder is not None else f"a folder named by the environment variable {MNIST_ENV}"
    return (f"MNIST is opt-in and never downloaded. Put the four standard IDX files\n{names}\n"
            f"in {where} (e.g. `export {MNIST_ENV}=$HOME/data/mnist`), or pass folder=... . "
            f"Without MNIST, use the embedded digits: lecture_ae.data.load_digits_splits().")


def mnist_folder(folder=None) -> Path:
    """The MNIST folder: ``folder`` or else ``$LECTURE_AE_MNIST_DIR``; a clear error when it is missing."""
    if folder is None:
        folder = os.environ.get(MNIST_ENV) or None
        if folder is None:
            raise ValueError(f"no MNIST folder given and {MNIST_ENV} is not set.\n" + _help(None))
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"folder must be a path or None; got {type(folder).__name__}")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"MNIST folder {str(folder)!r} does not exist.\n" + _help(folder))
    return folder


def _find(folder: Path, base: str) -> Path | None:
    dotted = base.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors name it
    for name in (base + ".gz", base, dotted + ".gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(folder=None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The raw MNIST images (N, 28, 28) uint8 and labels (N,) of ``split`` (``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    folder = mnist_folder(folder)
    paths = {kind: _find(folder, MNIST_FILES[(split, kind)]) for kind in ("images", "labels")}
    missing = [MNIST_FILES[(split, k)] for k, p in paths.items() if p is None]
    if missing:
        raise ValueError(f"MNIST folder {str(folder)!r} lacks {', '.join(m + '[.gz]' for m in missing)}.\n" + _help(folder))
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {split} files disagree: images of shape {images.shape}, labels of shape {labels.shape}; "
                         "expected (N, H, W) and (N,)")
    return images, labels


def load_mnist_splits(folder=None, *, val_fraction=1 / 6, n_train: int | None = None, n_test: int | None = None,
                      seed=0, dtype=torch.float32) -> ImageSplits:
    """MNIST as :class:`ImageSplits`: the official test set, the training set split into train / validation.

    Grey levels are scaled to [0, 1] (divided by 255).  ``val_fraction`` of the
    official training images (stratified, fixed by ``seed``) form the validation set;
    ``n_train`` / ``n_test`` keep only the first images of each (for quick runs).
    """
    val_fraction = check_scalar(val_fraction, "val_fraction", low=0.0, low_inclusive=False, high=0.9)
    Xtr, ytr = load_mnist(folder, "train")
    Xte, yte = load_mnist(folder, "test")
    tr, va, _ = split_arrays(len(Xtr), ytr, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    if n_train is not None:
        tr = tr[: check_int(n_train, "n_train")]
    te = np.arange(len(Xte))
    if n_test is not None:
        te = te[: check_int(n_test, "n_test")]

    def t(a):
        a = a.reshape(len(a), -1)
        return torch.as_tensor(a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32), dtype=dtype)

    return ImageSplits(
        X_train=t(Xtr[tr]), X_val=t(Xtr[va]), X_test=t(Xte[te]),
        y_train=torch.as_tensor(ytr[tr].astype(np.int64)), y_val=torch.as_tensor(ytr[va].astype(np.int64)),
        y_test=torch.as_tensor(yte[te].astype(np.int64)),
        image_shape=tuple(int(s) for s in Xtr.shape[1:]), name="mnist",
    )


def chapter_digits(seed: int = 0) -> ImageSplits:
    """The image data of the autoencoder chapters.

    The embedded 8 x 8 digits, except at full size (``LECTURE_AE_FULL=1``) when
    ``LECTURE_AE_MNIST_DIR`` names a folder with MNIST: then MNIST.
    """
    if full_size() and os.environ.get(MNIST_ENV):
        return load_mnist_splits(seed=seed)
    return load_digits_splits(seed=seed)
