"""Cell images with masks: shapes, repeatability, touching cells, the phase-contrast look; the ISBI loader on tiny files."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from lecture_ae.data.cells import ISBI_LAYOUT, cell_splits, load_isbi_cells, make_cells


@pytest.fixture(scope="module")
def cells():
    return make_cells(24, 64, seed=3, return_labels=True)


def test_shapes_ranges_and_binary_masks(cells):
    X, Y, L = cells
    assert X.shape == Y.shape == (24, 1, 64, 64) and L.shape == (24, 64, 64)
    assert X.dtype == Y.dtype == torch.float32
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert set(torch.unique(Y).tolist()) == {0.0, 1.0}
    assert torch.equal(Y[:, 0] > 0, L > 0)
    frac = Y.mean(dim=(1, 2, 3))
    assert bool((frac > 0.02).all()) and bool((frac < 0.8).all())  # every image has cells and background


def test_seeded_repeatable_and_independent_of_n():
    X1, Y1 = make_cells(5, 32, seed=1)
    X2, Y2 = make_cells(3, 32, seed=1)
    assert torch.equal(X1[:3], X2) and torch.equal(Y1[:3], Y2)
    X3, _ = make_cells(3, 32, seed=2)
    assert not torch.equal(X3, X2)
    s = cell_splits(4, 4, 4, 32, seed=1)
    assert torch.equal(s.X_train, X1[:4])
    for a, b in ((s.X_train, s.X_val), (s.X_val, s.X_test), (s.X_train, s.X_test)):
        assert not any(torch.equal(a[i], b[j]) for i in range(4) for j in range(4))
    assert s.train[0] is s.X_train and s.test[1] is s.Y_test


def test_touching_cells_of_varied_size(cells):
    _, _, L = cells
    touching, areas = 0, []
    for lab in L.numpy():
        ids = [k for k in np.unique(lab) if k]
        areas += [int((lab == k).sum()) for k in ids]
        # two different cells side by side (4-neighbours) somewhere in the image
        h = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
        v = (lab[1:, :] != lab[:-1, :]) & (lab[1:, :] > 0) & (lab[:-1, :] > 0)
        touching += bool(h.any() or v.any())
    assert touching >= len(L) // 3
    areas = np.array(areas)
    assert areas.max() > 3 * np.median(areas[areas > 20]) / 2 and np.percentile(areas, 90) > 2 * np.percentile(areas, 10)


def test_dark_cells_with_a_bright_halo_and_uneven_illumination(cells):
    X, Y, _ = cells
    inside, halo, far = [], [], []
    for x, y in zip(X[:, 0].numpy(), Y[:, 0].numpy().astype(bool)):
        d = ndi.distance_transform_edt(~y)
        inside.append(x[ndi.binary_erosion(y, iterations=1)].mean())
        halo.append(x[(d > 0) & (d <= 2)].mean())
        far.append(x[(d > 4) & (d <= 8)].mean())  # the background nearby
    inside, halo, far = map(np.array, (inside, halo, far))
    assert (inside < far).mean() > 0.9 and (halo > far).mean() > 0.9
    # the background brightness varies across the field of view (left half vs right half, top vs bottom)
    bg = (Y[:, 0] == 0).numpy()
    x = X[:, 0].numpy()
    diffs = [abs(x[i][:, :32][bg[i][:, :32]].mean() - x[i][:, 32:][bg[i][:, 32:]].mean())
             + abs(x[i][:32][bg[i][:32]].mean() - x[i][32:][bg[i][32:]].mean()) for i in range(len(x))]
    assert np.median(diffs) > 0.03


def test_options_and_bad_arguments():
    X, Y = make_cells(2, 40, seed=0, n_cells=(1, 1), debris=0)
    assert X.shape == (2, 1, 40, 40)
    for kwargs, name in [({"n": 0}, "n"), ({"size": 8}, "size"), ({"split": "dev"}, "split"),
                         ({"n_cells": (5, 2)}, "n_cells"), ({"radius": (0.0, 0.1)}, "radius"),
                         ({"radius": (0.2, 0.1)}, "radius"), ({"debris": -1}, "debris"), ({"seed": -3}, "seed")]:
        args = {"n": 2, "size": 32, **kwargs}
        with pytest.raises(ValueError, match=name):
            make_cells(args.pop("n"), args.pop("size"), **args)


def _write_isbi(root, sizes=((12, 10), (12, 10), (12, 10))):
    rng = np.random.default_rng(0)
    (root / "01").mkdir(parents=True)
    (root / "01_GT" / "SEG").mkdir(parents=True)
    frames = {}
    for t, (h, w) in enumerate(sizes):
        img = rng.integers(100, 4000, size=(h, w)).astype(np.uint16)
        lab = np.zeros((h, w), dtype=np.uint16)
        lab[2:5, 2:6] = 1
        lab[6:9, 3:5] = 7
        tifffile.imwrite(root / "01" / f"t{t:03d}.tif", img)
        if t != 1:  # frame 1 has no ground truth
            tifffile.imwrite(root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", lab)
        frames[t] = (img, lab)
    (root / "01" / "notes.txt").write_text("not an image")
    return frames


def test_isbi_loader_reads_the_annotated_frames(tmp_path):
    frames = _write_isbi(tmp_path)
    X, Y = load_isbi_cells(tmp_path, "01", percentiles=(0, 100))
    assert X.shape == Y.shape == (2, 1, 12, 10) and X.dtype == torch.float32
    for k, t in enumerate((0, 2)):
        img, lab = frames[t]
        expected = (img - img.min()) / (img.max() - img.min())
        np.testing.assert_allclose(X[k, 0].numpy(), expected, atol=1e-6)
        assert np.array_equal(Y[k, 0].numpy(), (lab > 0).astype(np.float32))
    X2, _ = load_isbi_cells(tmp_path)  # default percentiles clip the extremes
    assert float(X2.min()) == 0.0 and float(X2.max()) == 1.0


def test_isbi_loader_mixed_sizes_and_clear_errors(tmp_path):
    _write_isbi(tmp_path, sizes=((12, 10), (8, 8), (9, 11)))
    X, Y = load_isbi_cells(tmp_path)
    assert isinstance(X, list) and [tuple(x.shape) for x in X] == [(1, 12, 10), (1, 9, 11)]
    with pytest.raises(ValueError, match="02_GT") as err:
        (tmp_path / "02").mkdir()
        load_isbi_cells(tmp_path, "02")
    assert "man_seg000.tif" in str(err.value) and ISBI_LAYOUT.splitlines()[0] in str(err.value)
    with pytest.raises(ValueError, match="gt"):
        load_isbi_cells(tmp_path, gt="XX")
    with pytest.raises(ValueError, match="percentiles"):
        load_isbi_cells(tmp_path, percentiles=(90, 10))
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg000.tif", np.zeros((3, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match="frame 0"):
        load_isbi_cells(tmp_path)
