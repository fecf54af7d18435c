"""U-Net: output sizes, the ablations really lack what they claim, crop_and_concat, IoU/Dice, Otsu, training helps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, jaccard_score

import lecture_ae.models.unet as unet_mod
from lecture_ae.data.cells import cell_splits
from lecture_ae.metrics import dice, iou
from lecture_ae.models.unet import UNET_VARIANTS, UNet, center_crop, crop_and_concat, predict_masks, segmentation_loss
from lecture_ae.tasks.segmentation import otsu_masks, score_table, train_unets


def _model(variant, **kw):
    m = UNet(variant=variant, seed=0, **{"depth": 2, "width": 4, **kw}).double()
    return m.eval()


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("variant", UNET_VARIANTS)
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("hw", [(37, 50), (5, 7), (1, 1), (16, 16), (33, 8)])
def test_output_has_the_input_size_for_any_size(variant, depth, hw):
    m = UNet(in_channels=3, out_channels=2, depth=depth, width=4, variant=variant, seed=0).eval()
    x = torch.rand(2, 3, *hw)
    assert m(x).shape == (2, 2, *hw)


def test_odd_sizes_are_padded_not_resampled():
    # the output for an image is the centre crop of the output for the same image embedded in a
    # reflection-padded frame: padding and cropping put every pixel back where it was
    m = _model("unet", depth=2)
    x = torch.rand(1, 1, 13, 10, dtype=torch.float64)
    y = m(x)
    xp = F.pad(x, (1, 1, 1, 2), mode="reflect")  # 16 x 12: what _pad builds for 13 x 10 and 2**depth = 4
    assert torch.allclose(m(xp)[..., 1:14, 1:11], y, atol=1e-12)


def test_weights_follow_the_seed():
    a, b, c = UNet(seed=1), UNet(seed=1), UNet(seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_width_and_depth_set_the_channels():
    m = UNet(depth=3, width=6)
    assert [blk[0].out_channels for blk in m.encoder] == [6, 12, 24] and m.bottleneck[0].out_channels == 48
    assert [blk[0].in_channels for blk in m.decoder] == [12, 24, 48]  # 2 x: shortcut + upsampled
    f = m.eval().features(torch.rand(1, 1, 32, 32))
    assert [tuple(f[k].shape[1:]) for k in ("skip0", "skip1", "skip2", "bottleneck")] == \
        [(6, 32, 32), (12, 16, 16), (24, 8, 8), (48, 4, 4)]


# ------------------------------------------------------------------ ablations
def _count_merges(monkeypatch):
    calls = []
    real = unet_mod.crop_and_concat

    def counting(skip, x):
        calls.append((tuple(skip.shape), tuple(x.shape)))
        return real(skip, x)

    monkeypatch.setattr(unet_mod, "crop_and_concat", counting)
    return calls


@pytest.mark.parametrize("variant, merges", [("unet", 2), ("no_skip", 0), ("skip_only", 0)])
def test_shortcut_merges_happen_only_where_claimed(monkeypatch, variant, merges):
    calls = _count_merges(monkeypatch)
    _model(variant)(torch.rand(1, 1, 16, 16, dtype=torch.float64))
    assert len(calls) == merges


@torch.no_grad()
def test_no_skip_has_no_shortcuts_everything_passes_the_bottleneck():
    m = _model("no_skip", depth=2, width=4)
    assert [blk[0].in_channels for blk in m.decoder] == [4, 8]  # only the upsampled map enters the decoder
    x1, x2 = torch.rand(2, 1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # replace the bottleneck by a constant: the output no longer depends on the input at all
    handle = m.bottleneck.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
    assert torch.equal(m(x1), m(x2))
    handle.remove()
    assert float((m(x1) - m(x2)).abs().max()) > 1e-6
    # the full U-Net still sees the input through its shortcuts when the bottleneck is silenced
    u = _model("unet", depth=2, width=4)
    u.bottleneck.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
    assert float((u(x1) - u(x2)).abs().max()) > 1e-6


@torch.no_grad()
def _influence(model, size=32, at=(16, 16)):
    """|change of the output| when one input pixel changes: where information from that pixel arrives."""
    x = torch.rand(1, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, 0, at[0], at[1]] += 1.0
    return (model(x2) - model(x)).abs()[0, 0]


def test_skip_only_never_downsamples_and_sees_a_9x9_window():
    m = _model("skip_only", width=4)
    assert m.bottleneck is None and len(m.up) == 0 and len(m.encoder) == len(m.decoder) == 1
    assert not any(isinstance(mod, (torch.nn.MaxPool2d, torch.nn.ConvTranspose2d)) for mod in m.modules())
    d = _influence(m)
    window = torch.zeros_like(d, dtype=torch.bool)
    window[12:21, 12:21] = True  # radius 2 * conv_per_block = 4 pixels around (16, 16)
    assert float(d[~window].max()) == 0.0 and float(d[16, 16]) > 0
    assert float(d[window].min()) >= 0 and int((d[window] > 0).sum()) > 40
    # the full U-Net spreads one pixel's information over the whole image (through the bottleneck)
    d_u = _influence(_model("unet", depth=3, width=4))
    assert int((d_u[~window] > 0).sum()) > 0.3 * int((~window).sum())


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        UNet(variant="resnet")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
    with pytest.raises(ValueError, match="width"):
        UNet(width=0)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(N, 1, H, W\)"):
        UNet()(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="pair"):
        UNet().loss(torch.rand(2, 1, 8, 8))


# ------------------------------------------------------------------ crop_and_concat
def test_crop_and_concat_by_hand():
    skip = torch.arange(2 * 1 * 7 * 6, dtype=torch.float64).reshape(2, 1, 7, 6)
    x = -torch.ones(2, 3, 4, 3, dtype=torch.float64)
    out = crop_and_concat(skip, x)
    assert out.shape == (2, 4, 4, 3)
    # 7 - 4 = 3 rows to drop: 1 above, 2 below; 6 - 3 = 3 columns: 1 left, 2 right
    assert torch.equal(out[:, :1], skip[:, :, 1:5, 1:4]) and torch.equal(out[:, 1:], x)
    assert torch.equal(crop_and_concat(x, x), torch.cat([x, x], dim=1))
    assert torch.equal(center_crop(skip, 7, 6), skip)
    with pytest.raises(ValueError, match="skip must be at least as large"):
        crop_and_concat(x, skip)
    with pytest.raises(ValueError, match="batch size"):
        crop_and_concat(skip[:1], x)
    with pytest.raises(ValueError, match=r"skip must be a tensor of shape \(N, C, H, W\)"):
        crop_and_concat(skip[0], x)


# ------------------------------------------------------------------ metrics
def test_iou_and_dice_by_hand():
    pred = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    target = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    # pooled: intersection 2 (one pixel in each of the first two rows), union 4; |P| + |T| = 3 + 3
    assert iou(pred, target) == pytest.approx(2 / 4) and dice(pred, target) == pytest.approx(4 / 6)
    assert iou(pred, target, per_image=True).tolist() == pytest.approx([1 / 3, 1.0, 1.0])
    assert dice(pred, target, per_image=True).tolist() == pytest.approx([1 / 2, 1.0, 1.0])
    assert iou(pred, target, per_image=True, empty=0.0).tolist()[2] == 0.0
    assert iou(pred.bool(), target.float()) == iou(pred, target)
    assert iou(torch.zeros(3, 3), torch.ones(3, 3)) == 0.0


def test_iou_and_dice_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    P, T = rng.random((5, 1, 9, 11)) < 0.4, rng.random((5, 1, 9, 11)) < 0.3
    assert iou(P, T) == pytest.approx(jaccard_score(T.ravel(), P.ravel()))
    assert dice(P, T) == pytest.approx(f1_score(T.ravel(), P.ravel()))
    per = iou(P, T, per_image=True)
    assert per.tolist() == pytest.approx([jaccard_score(t.ravel(), p.ravel()) for p, t in zip(P, T)])
    d, i = dice(P, T, per_image=True), per
    assert torch.allclose(d, 2 * i / (1 + i))


def test_metric_bad_arguments():
    with pytest.raises(ValueError, match="pred must be a binary mask"):
        iou(torch.rand(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="target must be a binary mask"):
        dice(torch.ones(2, 4), 2 * torch.ones(2, 4))
    with pytest.raises(ValueError, match="pred must have the shape of target"):
        iou(torch.ones(2, 4), torch.ones(4, 2))
    with pytest.raises(ValueError, match="empty"):
        iou(torch.ones(2, 4), torch.ones(2, 4), empty=2.0)


def test_segmentation_loss_by_hand():
    z = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]], dtype=torch.float64)
    y = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    p = 1 / (1 + torch.exp(-z))
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    soft_dice = (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    assert float(segmentation_loss(z, y)) == pytest.approx(float(bce + 1 - soft_dice), rel=1e-12)
    assert float(segmentation_loss(z, y, dice_weight=0.0)) == pytest.approx(float(bce), rel=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        segmentation_loss(z, y[..., :1])


# ------------------------------------------------------------------ Otsu and training
def test_otsu_finds_a_dark_disc_exactly():
    yy, xx = np.mgrid[:24, :24]
    disc = (yy - 11) ** 2 + (xx - 13) ** 2 <= 36
    img = np.where(disc, 0.2, 0.8)[None, None]
    m = otsu_masks(torch.tensor(img), sigma=0.0)
    assert iou(m, torch.tensor(disc[None, None])) == 1.0
    assert iou(otsu_masks(torch.tensor(img), sigma=0.0, dark=False, fill_holes=False), torch.tensor(~disc[None, None])) == 1.0
    with pytest.raises(ValueError, match="X must have shape"):
        otsu_masks(torch.rand(1, 3, 8, 8))


def test_training_improves_iou_on_a_fixed_seed():
    s = cell_splits(48, 16, 16, 32, seed=0)
    before = predict_masks(UNet(depth=2, width=4, seed=0), s.X_test)
    runs = train_unets(s.train, s.val, variants=("unet",), depth=2, width=4, epochs=6, batch_size=8, lr=5e-3,
                       seed=0, num_threads=1, show_progress=False)
    model, hist = runs["unet"]
    after = predict_masks(model, s.X_test)
    assert hist.val_loss[hist.best_epoch] < hist.val_loss[0]
    assert iou(after, s.Y_test) > iou(before, s.Y_test) + 0.2
    assert iou(after, s.Y_test) > 0.6
    # the same seed repeats the run exactly
    again, _ = train_unets(s.train, s.val, variants=("unet",), depth=2, width=4, epochs=6, batch_size=8, lr=5e-3,
                           seed=0, num_threads=1, show_progress=False)["unet"]
    assert torch.equal(predict_masks(again, s.X_test), after)
    table = score_table({"unet": after, "otsu": otsu_masks(s.X_test)}, s.Y_test)
    assert list(table.columns[:2]) == ["IoU", "Dice"] and table.loc["U-Net", "IoU"] == pytest.approx(iou(after, s.Y_test), abs=1e-3)
