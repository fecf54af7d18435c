"""The generated texture set (defects with pixel-exact masks) and the MVTec AD layout loader."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lecture_ae.data.mvtec import (
    DEFECT_TYPES,
    MIN_CHANGE,
    MVTEC_ENV,
    TEXTURES,
    add_defect,
    load_mvtec,
    make_texture_set,
    mvtec_categories,
    texture_dataset,
    write_mvtec,
)

SMALL = dict(n_train=12, n_test_good=3, n_test_defect=2, seed=5)


@pytest.fixture(scope="module")
def sets():
    return {c: make_texture_set(c, **SMALL) for c in TEXTURES}


@pytest.mark.parametrize("category", TEXTURES)
def test_masks_align_with_defects_pixel_for_pixel(sets, category):
    ts = sets[category]
    assert ts.train.shape == (12, 64, 64) and ts.test.shape == (3 + 2 * len(DEFECT_TYPES), 64, 64)
    assert ts.defects == ["good"] * 3 + [d for d in DEFECT_TYPES for _ in range(2)]
    for x, clean, mask, d in zip(ts.test, ts.test_clean, ts.masks, ts.defects):
        changed = x != clean
        assert np.array_equal(changed, mask), d  # the mask is exactly where the defect changed the tile
        if d == "good":
            assert not mask.any()
        else:
            assert mask.sum() >= 10
            assert np.abs(x - clean)[mask].min() >= MIN_CHANGE - 1e-12
    for a in (ts.train, ts.test):  # 8-bit grey levels in [0, 1], as stored in the PNGs
        assert a.min() >= 0 and a.max() <= 1 and np.allclose(a * 255, np.round(a * 255))
    np.testing.assert_array_equal(ts.labels, [0] * 3 + [1] * 8)


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_add_defect_is_seeded_and_exact(kind):
    rng = np.random.default_rng(0)
    tile = np.round(rng.uniform(0.2, 0.8, (32, 32)) * 255) / 255
    a, ma = add_defect(tile, kind, seed=3)
    b, mb = add_defect(tile, kind, seed=3)
    c, mc = add_defect(tile, kind, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(ma, mc)
    assert np.array_equal(a != tile, ma) and ma.any()
    assert np.array_equal(a[~ma], tile[~ma])


def test_add_defect_on_flat_tiles_still_changes_every_mask_pixel():
    for value in (0.0, 128 / 255, 1.0):  # a dark defect on black, a bright one on white
        tile = np.full((20, 20), value)
        for kind in DEFECT_TYPES:
            x, m = add_defect(tile, kind, seed=1)
            assert m.any() and np.abs(x - tile)[m].min() >= MIN_CHANGE


def test_generation_is_reproducible():
    a, b = make_texture_set("grass", **SMALL), make_texture_set("grass", **SMALL)
    c = make_texture_set("grass", **{**SMALL, "seed": 6})
    for f in ("train", "test", "masks"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.train, c.train)


def _expected_test_order(ts):
    """load_mvtec reads test/<defect>/ folders in sorted order, files by number."""
    idx = []
    for d in sorted(set(ts.defects)):
        idx += [i for i, x in enumerate(ts.defects) if x == d]
    return idx


def test_loader_round_trips_the_generated_tree(tmp_path, sets):
    ts = sets["gravel"]
    base = write_mvtec(ts, tmp_path)
    assert base == tmp_path / "gravel"
    assert (base / "train" / "good" / "000.png").is_file()
    assert (base / "ground_truth" / "hole" / "001_mask.png").is_file() and not (base / "ground_truth" / "good").exists()
    with Image.open(base / "ground_truth" / "hole" / "000_mask.png") as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}
    s = load_mvtec(tmp_path, "gravel", val_fraction=0.0)
    assert s.train.dtype == torch.float32 and s.train.shape == (12, 1, 64, 64) and s.val.shape == (0, 1, 64, 64)
    np.testing.assert_array_equal(s.train[:, 0].numpy(), ts.train.astype(np.float32))
    order = _expected_test_order(ts)
    np.testing.assert_array_equal(s.test[:, 0].numpy(), ts.test[order].astype(np.float32))
    np.testing.assert_array_equal(s.test_masks[:, 0].numpy(), ts.masks[order].astype(np.float32))
    assert s.test_defects == [ts.defects[i] for i in order]
    assert s.test_labels.tolist() == ts.labels[order].tolist()
    assert s.defect_types == sorted(DEFECT_TYPES)
    assert mvtec_categories(tmp_path) == ["gravel"]


def test_validation_split_is_seeded_and_disjoint(tmp_path, sets):
    write_mvtec(sets["brick"], tmp_path)
    a = load_mvtec(tmp_path, "brick", val_fraction=0.25, seed=1)
    b = load_mvtec(tmp_path, "brick", val_fraction=0.25, seed=1)
    assert a.val.shape[0] == 3 and a.train.shape[0] == 9
    assert torch.equal(a.val, b.val)
    rows = {tuple(t.flatten().tolist()[:50]) for t in torch.cat([a.train, a.val])}
    assert len(rows) == 12


def _png(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_loader_reads_a_real_mvtec_like_tree(tmp_path):
    """Colour 40 x 40 images as in MVTec AD's texture classes, masks 0/255, resized on loading."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mvtec_anomaly_detection"
    for i in range(3):
        _png(root / "carpet" / "train" / "good" / f"{i:03d}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB")
    _png(root / "carpet" / "test" / "good" / "000.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB")
    _png(root / "carpet" / "test" / "hole" / "000.png", np.full((40, 40, 3), 200, np.uint8), "RGB")
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 20:40] = 255
    _png(root / "carpet" / "ground_truth" / "hole" / "000_mask.png", mask, "L")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    s = load_mvtec(root, "carpet", image_size=20, val_fraction=0.0)
    assert s.train.shape == (3, 1, 20, 20) and s.test.shape == (2, 1, 20, 20)
    assert s.test_defects == ["good", "hole"] and s.test_labels.tolist() == [0, 1]
    expected = np.zeros((20, 20))
    expected[5:10, 10:20] = 1
    np.testing.assert_array_equal(s.test_masks[1, 0].numpy(), expected)
    assert s.test_masks[0].sum() == 0
    assert torch.allclose(s.test[1], torch.full((1, 20, 20), 200 / 255))
    colour = load_mvtec(root, "carpet", grey=False)
    assert colour.train.shape == (3, 3, 40, 40)
    assert mvtec_categories(root) == ["carpet"]


def test_missing_data_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(MVTEC_ENV, raising=False)
    with pytest.raises(ValueError, match=MVTEC_ENV):
        load_mvtec(None, "carpet")
    with pytest.raises(ValueError, match=r"no MVTec AD category 'carpet'.*train/good.*texture_dataset"):
        load_mvtec(tmp_path / "nowhere", "carpet")
    monkeypatch.setenv(MVTEC_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="categories found: \\[\\]"):
        load_mvtec(category="carpet")
    # a defective test image without its mask
    _png(tmp_path / "grid" / "train" / "good" / "000.png", np.zeros((8, 8), np.uint8), "L")
    _png(tmp_path / "grid" / "test" / "bent" / "000.png", np.zeros((8, 8), np.uint8), "L")
    with pytest.raises(ValueError, match="000_mask.png"):
        load_mvtec(category="grid")


def test_texture_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LECTURE_AE_CACHE", str(tmp_path))
    root = texture_dataset(categories=("brick",), **SMALL)
    assert root.parent == tmp_path and (root / "brick" / "train" / "good" / "011.png").is_file()
    stamp = (root / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns
    assert texture_dataset(categories=("brick",), **SMALL) == root
    assert (root / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    assert texture_dataset(categories=("brick",), **{**SMALL, "seed": 9}) != root
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    out = texture_dataset(tmp_path / "here", categories="grass", **SMALL)
    assert mvtec_categories(out) == ["grass"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="category"):
        make_texture_set("carpet")
    with pytest.raises(ValueError, match="tile_size"):
        make_texture_set("brick", tile_size=128, scale=0.5)
    with pytest.raises(ValueError, match="defect_types"):
        make_texture_set("brick", defect_types=("crack",))
    with pytest.raises(ValueError, match="kind"):
        add_defect(np.zeros((32, 32)), "crack")
    with pytest.raises(ValueError, match="tile"):
        add_defect(np.zeros((32, 16)), "hole")
    with pytest.raises(ValueError, match="n_train"):
        make_texture_set("brick", n_train=0)
