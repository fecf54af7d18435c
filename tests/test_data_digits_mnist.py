"""Digits (embedded) and MNIST (opt-in IDX files written by the test)."""
import gzip

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lecture_ae.data import (
    MNIST_ENV,
    chapter_digits,
    load_digits_splits,
    load_mnist,
    load_mnist_splits,
    read_idx,
    split_arrays,
    write_idx,
)


def test_digits_splits_are_disjoint_scaled_stratified_and_fixed_by_seed():
    D = load_digits_splits()
    assert D.image_shape == (8, 8) and D.d == 64 and D.name == "digits"
    assert D.sizes() == {"train": 1257, "val": 270, "test": 270}
    allX = torch.cat([D.X_train, D.X_val, D.X_test])
    assert float(allX.min()) == 0.0 and float(allX.max()) == 1.0
    ref = load_digits()
    # every image appears exactly once across the splits, with its own label, scaled by 1/16
    ref_rows = {tuple((r / 16).round(6)): int(t) for r, t in zip(ref.data, ref.target)}
    ours = [tuple(np.round(x.numpy().astype(np.float64), 6)) for x in allX]
    labels = torch.cat([D.y_train, D.y_val, D.y_test]).tolist()
    assert len(ours) == len(ref.data) and all(ref_rows[x] == y for x, y in zip(ours, labels))
    # stratified: every class in every split, with about the same share
    for y in (D.y_train, D.y_val, D.y_test):
        counts = torch.bincount(y, minlength=10).double() / len(y)
        assert float(counts.min()) > 0.08 and float(counts.max()) < 0.12
    D2, D3 = load_digits_splits(seed=0), load_digits_splits(seed=1)
    assert torch.equal(D.X_test, D2.X_test) and not torch.equal(D.X_test, D3.X_test)
    assert D.images(D.X_test).shape == (270, 1, 8, 8)
    assert load_digits_splits(dtype=torch.float64).X_train.dtype == torch.float64


def test_split_arrays():
    tr, va, te = split_arrays(100, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 20, 10)
    assert len(set(tr) | set(va) | set(te)) == 100
    with pytest.raises(ValueError, match="val_fraction"):
        split_arrays(100, val_fraction=0.0)
    with pytest.raises(ValueError, match="< 1"):
        split_arrays(100, val_fraction=0.6, test_fraction=0.5)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_roundtrip(tmp_path, dtype, compress):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if compress else "")), a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_idx_bytes_by_hand(tmp_path):
    # the MNIST label-file layout: magic 0x00000801, count, then the bytes
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])
    (tmp_path / "labels").write_bytes(raw)
    assert read_idx(tmp_path / "labels").tolist() == [7, 2, 1]
    with gzip.open(tmp_path / "labels.gz", "wb") as fh:
        fh.write(raw)
    assert read_idx(tmp_path / "labels.gz").tolist() == [7, 2, 1]
    (tmp_path / "bad").write_bytes(bytes([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="bytes"):
        read_idx(tmp_path / "short")


def _write_tiny_mnist(folder, n_train=60, n_test=20, gz=True, dotted=False):
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        sep = "." if dotted else "-"
        write_idx(folder / f"{split}-images{sep}idx3-ubyte{'.gz' if gz else ''}", images)
        write_idx(folder / f"{split}-labels{sep}idx1-ubyte{'.gz' if gz else ''}", labels)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)])
def test_mnist_from_tiny_idx_files(tmp_path, gz, dotted):
    ref = _write_tiny_mnist(tmp_path, gz=gz, dotted=dotted)
    images, labels = load_mnist(tmp_path, "test")
    assert np.array_equal(images, ref["t10k"][0]) and np.array_equal(labels, ref["t10k"][1])
    M = load_mnist_splits(tmp_path, val_fraction=0.2, seed=0)
    assert M.image_shape == (28, 28) and M.d == 784 and M.name == "mnist"
    assert M.sizes() == {"train": 48, "val": 12, "test": 20}
    assert torch.allclose(M.X_test, torch.as_tensor(ref["t10k"][0].reshape(20, -1) / 255.0, dtype=torch.float32))
    assert float(M.X_train.max()) <= 1.0 and M.y_test.dtype == torch.int64
    assert load_mnist_splits(tmp_path, n_train=10, n_test=5).sizes()["test"] == 5


def test_mnist_env_var_and_chapter_switch(tmp_path, monkeypatch):
    _write_tiny_mnist(tmp_path)
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    assert load_mnist_splits().sizes()["test"] == 20
    monkeypatch.delenv("LECTURE_AE_FULL", raising=False)
    assert chapter_digits().name == "digits"
    monkeypatch.setenv("LECTURE_AE_FULL", "1")
    assert chapter_digits().name == "mnist"
    monkeypatch.delenv(MNIST_ENV)
    assert chapter_digits().name == "digits"  # full size without MNIST: the embedded digits


def test_missing_mnist_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    with pytest.raises(ValueError, match=MNIST_ENV) as err:
        load_mnist_splits()
    assert "t10k-images-idx3-ubyte" in str(err.value)
    with pytest.raises(ValueError, match="does not exist") as err:
        load_mnist(tmp_path / "nowhere")
    assert "train-images-idx3-ubyte.gz" in str(err.value) and MNIST_ENV in str(err.value)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks train-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")
