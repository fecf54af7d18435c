"""Anomaly maps, scores, thresholds, AUROC/PRO and the PCA baseline; a planted defect scores higher."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from skimage.metrics import structural_similarity
from sklearn.decomposition import PCA

from lecture_ae.data.mvtec import add_defect, make_texture_set  # noqa: E402
from lecture_ae.metrics import image_auroc, pixel_auroc, pro_curve, pro_score  # noqa: E402
from lecture_ae.plots.anomaly import anomaly_figure, defect_gallery, score_histograms  # noqa: E402
from lecture_ae.tasks.anomaly import (  # noqa: E402
    PCABaseline,
    anomaly_map,
    choose_threshold,
    evaluate_methods,
    image_score,
    l2_map,
    per_defect_auroc,
    reconstruct,
    smooth_map,
    ssim_map,
    texture_autoencoder,
    train_texture_autoencoder,
)


def test_l2_map_by_hand():
    X = torch.zeros(1, 2, 2, 2)
    X_hat = torch.tensor([[[[1.0, 0.0], [2.0, 0.0]], [[1.0, 3.0], [0.0, 0.0]]]])
    expected = torch.tensor([[[2.0, 9.0], [4.0, 0.0]]])  # summed over the two channels
    assert torch.equal(l2_map(X, X_hat), expected)
    assert torch.equal(anomaly_map(X, X_hat), expected)
    assert l2_map(torch.zeros(3, 5, 4), torch.ones(3, 5, 4)).shape == (3, 5, 4)  # grey (N, H, W) accepted


@pytest.mark.parametrize("options, sk_options", [
    ({}, {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}),
    ({"gaussian_weights": True, "use_sample_covariance": True}, {"gaussian_weights": True}),
    ({"gaussian_weights": False, "use_sample_covariance": True}, {}),  # skimage's defaults: 7 x 7 uniform window
    ({"gaussian_weights": False, "win_size": 5, "use_sample_covariance": True}, {"win_size": 5}),
])
def test_ssim_map_equals_skimage_full_map(options, sk_options):
    rng = np.random.default_rng(0)
    a = rng.random((2, 1, 21, 19))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    S = ssim_map(torch.tensor(a), torch.tensor(b), **options).numpy()
    for i in range(2):
        _, full = structural_similarity(a[i, 0], b[i, 0], data_range=1.0, full=True, **sk_options)
        np.testing.assert_allclose(S[i], full, atol=1e-10)
    assert torch.allclose(ssim_map(torch.tensor(a), torch.tensor(a)), torch.ones(2, 21, 19, dtype=torch.float64))
    ssim_err = anomaly_map(torch.tensor(a), torch.tensor(b), "ssim", **options).numpy()
    np.testing.assert_allclose(ssim_err, 1 - S)


def test_ssim_map_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=g)
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=g).requires_grad_()
    # fast mode: the analytical and the numerical derivative along random directions (a few
    # evaluations instead of one per pixel; float64 convolutions are slow on a busy CPU)
    assert torch.autograd.gradcheck(lambda t: ssim_map(x, t).mean(), (y,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: ssim_map(x, t)[0, ::3, ::3], (y,), fast_mode=True)


def test_smoothing_keeps_constants_and_mass():
    A = torch.full((2, 9, 7), 3.0)
    assert torch.allclose(smooth_map(A, 1.0), A)
    B = torch.zeros(1, 15, 15)
    B[0, 7, 7] = 1.0
    S = smooth_map(B, 1.5)
    assert abs(float(S.sum()) - 1.0) < 1e-6 and int(S.flatten().argmax()) == 7 * 15 + 7


def test_image_score_by_hand():
    A = torch.arange(16.0).reshape(1, 4, 4).repeat(2, 1, 1)
    A[1] = -A[1]
    # k = ceil(0.25 * 16) = 4 largest: 12..15 -> 13.5 ; -0, -1, -2, -3 -> -1.5
    assert torch.equal(image_score(A, 0.25), torch.tensor([13.5, -1.5]))
    assert torch.equal(image_score(A, 1e-6), torch.tensor([15.0, 0.0]))  # the maximum
    assert torch.equal(image_score(A, 1.0), A.reshape(2, -1).mean(1))  # the mean
    assert torch.equal(image_score(A, 0.2), image_score(A, 0.25))  # ceil(3.2) = 4


def test_choose_threshold_by_hand():
    s = torch.tensor([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 8.0, 7.0])
    assert choose_threshold(s, 0.0) == 9.0  # nothing good above it
    assert choose_threshold(s, 0.2) == 7.0  # m = 2 scores (9, 8) above
    assert choose_threshold(s, 0.25) == 7.0  # floor(2.5) = 2
    assert choose_threshold(s, 0.3) == 6.0
    t = choose_threshold(s, 0.05)
    assert float((s > t).float().mean()) <= 0.05


def test_auroc_against_hand_counts():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    # pairs (defective, good): (0.35 > 0.1) yes, (0.35 > 0.4) no, 0.8 beats both: 3 of 4
    assert image_auroc(scores, labels) == 0.75
    assert image_auroc(-scores, labels) == 0.25
    amaps = torch.zeros(2, 2, 2)
    amaps[0, 0, 0] = 1.0
    masks = torch.zeros(2, 1, 2, 2)
    masks[0, 0, 0, 0] = 1
    assert pixel_auroc(amaps, masks) == 1.0


def test_pro_counts_every_region_equally():
    masks = torch.zeros(1, 40, 40)
    masks[0, 2:4, 2:4] = 1  # a small region of 4 pixels
    masks[0, 10:30, 10:30] = 1  # a large region of 400 pixels
    amaps = torch.zeros(1, 40, 40)
    amaps[0, 2:4, 2:4] = 1.0  # the small region is found, the large one missed
    # every threshold below 1 flags exactly the small region: PRO = (1 + 0) / 2 at FPR 0
    fpr, pro = pro_curve(amaps, masks)
    assert np.all(fpr[1:] == 0) and np.allclose(pro[1:], 0.5)
    assert pro_score(amaps, masks) == pytest.approx(0.5)
    assert pixel_auroc(amaps, masks) < 0.6  # pixel-wise, the large region dominates


def test_pro_of_perfect_and_random_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((20, 32, 32))
    for i in range(10):
        y, x = rng.integers(0, 24, 2)
        masks[i, y : y + 8, x : x + 6] = 1
    perfect = masks + 0.01 * rng.random(masks.shape)
    assert pro_score(perfect, masks) == pytest.approx(1.0)
    # a random map: PRO(t) = FPR(t) on average, so the normalised area up to 0.3 is 0.3 / 2 = 0.15
    assert pro_score(rng.random(masks.shape), masks) == pytest.approx(0.15, abs=0.02)


def test_pca_baseline_matches_an_svd_projection():
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.random((30, 1, 6, 5)))
    pca = PCABaseline(4).fit(X)
    flat = X.reshape(30, -1)
    mu = flat.mean(0)
    _, _, Vh = torch.linalg.svd(flat - mu, full_matrices=False)
    V = Vh[:4].T
    Y = torch.tensor(rng.random((3, 1, 6, 5)))
    expected = ((Y.reshape(3, -1) - mu) @ V @ V.T + mu).reshape(Y.shape)
    assert torch.allclose(reconstruct(pca, Y), expected, atol=1e-10)
    sk = PCA(4).fit(flat.numpy())
    assert np.allclose(reconstruct(pca, Y).reshape(3, -1).numpy(), sk.inverse_transform(sk.transform(Y.reshape(3, -1).numpy())))


@pytest.fixture(scope="module")
def brick():
    return make_texture_set("brick", n_train=96, n_test_good=12, n_test_defect=3, seed=0)


def test_planted_defect_scores_higher_than_clean_tiles(brick):
    """A conv AE trained briefly on good tiles and PCA: every tile with a planted cut or hole outscores every clean tile."""
    train = torch.tensor(brick.train, dtype=torch.float32)[:, None]
    model, hist = train_texture_autoencoder(train, epochs=4, seed=0, device="cpu", show_progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    clean = brick.test_clean[:12]
    planted = np.stack([add_defect(t, kind, seed=i)[0] for i, t in enumerate(clean) for kind in ("cut", "hole")])
    Xc = torch.tensor(clean, dtype=torch.float32)[:, None]
    Xd = torch.tensor(planted, dtype=torch.float32)[:, None]
    for m in (model, PCABaseline(16).fit(train)):
        sc = image_score(anomaly_map(Xc, reconstruct(m, Xc)))
        sd = image_score(anomaly_map(Xd, reconstruct(m, Xd)))
        assert sd.min() > sc.max(), (type(m).__name__, sd.min(), sc.max())


def test_evaluate_methods_table(brick):
    X = torch.tensor(brick.test, dtype=torch.float32)[:, None]
    pca = PCABaseline(16).fit(torch.tensor(brick.train, dtype=torch.float32)[:, None])
    df = evaluate_methods(X, {"PCA": reconstruct(pca, X), "identity": X}, brick.labels, brick.masks)
    assert list(df.index) == ["PCA-L2", "PCA-SSIM", "identity-L2", "identity-SSIM"]
    assert list(df.columns) == ["image AUROC", "pixel AUROC", "PRO (FPR<=0.3)"]
    assert df.loc["identity-L2", "pixel AUROC"] == 0.5  # a perfect reconstruction finds nothing
    assert df.loc["PCA-L2", "image AUROC"] > 0.7


def test_bad_arguments():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="X_hat"):
        l2_map(x, torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="X"):
        l2_map(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="kind"):
        anomaly_map(x, x, "l1")
    with pytest.raises(ValueError, match="fraction"):
        image_score(torch.zeros(2, 4, 4), 0.0)
    with pytest.raises(ValueError, match="amap"):
        image_score(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="max_fpr"):
        choose_threshold(torch.ones(5), 1.0)
    with pytest.raises(ValueError, match="scores_good_val"):
        choose_threshold(torch.ones(5, 2))
    with pytest.raises(ValueError, match="labels"):
        image_auroc(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="masks"):
        pixel_auroc(torch.ones(2, 3, 3), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="n_components"):
        PCABaseline(50).fit(x)
    with pytest.raises(ValueError, match="fit"):
        PCABaseline(2).reconstruct(x)


def test_per_defect_auroc_by_hand():
    defects = ["good", "cut", "good", "stain", "cut", "good", "stain"]
    scores = torch.tensor([0.2, 0.9, 0.5, 0.3, 0.4, 0.1, 0.6])
    # cut (0.9, 0.4) against good (0.2, 0.5, 0.1): 0.9 beats 3, 0.4 beats 2 -> 5 / 6
    # stain (0.3, 0.6) against good: 0.3 beats 2, 0.6 beats 3 -> 5 / 6; ties count 1/2
    assert per_defect_auroc(scores, defects) == {"cut": pytest.approx(5 / 6), "stain": pytest.approx(5 / 6)}
    out = per_defect_auroc(np.array([1.0, 1.0, 0.0, 2.0]), ("good", "hole", "good", "scratch"))
    assert list(out) == ["hole", "scratch"]  # sorted
    assert out == {"hole": 0.75, "scratch": 1.0}  # 1.0 ties one good 1.0 and beats 0.0: (0.5 + 1) / 2
    assert per_defect_auroc(scores, defects)["cut"] == image_auroc(scores[[0, 1, 2, 4, 5]], [0, 1, 0, 1, 0])


def _figure_inputs(n=5, hw=(16, 12)):
    rng = np.random.default_rng(0)
    X = rng.random((n, 1, *hw))
    masks = np.zeros((n, 1, *hw), bool)
    masks[1:, 0, 4:8, 3:6] = True
    defects = ["good", "cut", "hole", "cut", "stain"][:n]
    return X, np.clip(X + 0.1, 0, 1), ((X - 0.5) ** 2)[:, 0], masks, defects


def test_defect_gallery_shows_one_tile_per_type():
    X, _, _, masks, defects = _figure_inputs()
    fig = defect_gallery(torch.tensor(X), torch.tensor(masks), defects, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["good", "cut", "hole", "stain"]
    assert len(fig.axes[1].collections) == 1 and len(fig.axes[0].collections) == 0  # outline only where a defect is
    plt.close(fig)
    fig = defect_gallery(X[:, 0], masks[:, 0], defects, per_type=2)
    assert [ax.get_title() for ax in fig.axes] == ["good", "cut", "cut", "hole", "stain"]
    plt.close(fig)


def test_anomaly_figure_has_four_columns_and_one_colour_bar():
    X, X_hat, amap, masks, defects = _figure_inputs()
    fig = anomaly_figure(X, X_hat, amap, masks, index=[0, 2], row_titles=["good", "hole"], map_name="L2 error", title="T")
    axes, cbar = fig.axes[:-1], fig.axes[-1]
    assert len(axes) == 2 * 4
    assert [ax.get_title() for ax in axes[:4]] == ["input $x$", r"reconstruction $\hat x$", "anomaly map (L2 error)", "ground truth"]
    assert [axes[0].get_ylabel(), axes[4].get_ylabel()] == ["good", "hole"]
    assert cbar.get_ylabel() == "L2 error"
    heat = axes[6].images[0]
    assert heat.get_cmap().name == "inferno" and heat.get_clim() == (0.0, pytest.approx(np.percentile(amap[[0, 2]], 99.5)))
    assert np.allclose(axes[4].images[0].get_array(), X[2, 0]) and np.allclose(axes[5].images[0].get_array(), X_hat[2, 0])
    assert len(axes[7].collections) == 1 and len(axes[3].collections) == 0  # the outline of the hole, none on the good tile
    plt.close(fig)
    fig = anomaly_figure(torch.tensor(X), torch.tensor(X_hat), torch.tensor(amap), torch.tensor(masks), vmax=1.0, labels=defects)
    assert len(fig.axes) == 5 * 4 + 1 and fig.axes[4].get_ylabel() == "cut"
    assert fig.axes[2].images[0].get_clim() == (0.0, 1.0)
    plt.close(fig)


def test_score_histograms_split_good_and_defective():
    ax = score_histograms(torch.tensor([0.1, 0.2, 0.8, 0.9, 0.3]), torch.tensor([0, 0, 1, 1, 0]), threshold=0.5, bins=4)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["good", "defective", "threshold"]
    good, bad = ax.containers
    assert sum(p.get_height() for p in good) == 3 and sum(p.get_height() for p in bad) == 2
    assert ax.lines[0].get_xdata()[0] == 0.5
    plt.close(ax.figure)


def test_texture_autoencoder_takes_the_tiles_shape():
    model = texture_autoencoder(64)
    assert model.code_shape == (16, 4, 4) and isinstance(model.decoder[-1], torch.nn.ConvTranspose2d)  # linear output
    assert isinstance(texture_autoencoder(64, output="sigmoid").decoder[-1], torch.nn.Sigmoid)
    X = torch.rand(6, 3, 32, 48)
    model, hist = train_texture_autoencoder(X, X[:2], epochs=1, device="cpu", show_progress=False)
    assert model.in_channels == 3 and model.image_size == (32, 48) and hist.epochs == 1
    assert reconstruct(model, X).shape == X.shape


def test_bad_arguments_of_the_chapter_helpers():
    X, X_hat, amap, masks, defects = _figure_inputs()
    with pytest.raises(ValueError, match="defects"):
        per_defect_auroc(torch.ones(3), ["good", "cut"])
    with pytest.raises(ValueError, match="good"):
        per_defect_auroc(torch.ones(2), ["cut", "hole"])
    with pytest.raises(ValueError, match="defects"):
        per_defect_auroc(torch.ones(4), "good")
    with pytest.raises(ValueError, match="scores"):
        per_defect_auroc(torch.ones(2, 2), ["good", "cut"])
    with pytest.raises(ValueError, match="val"):
        train_texture_autoencoder(torch.rand(4, 1, 16, 16), torch.rand(2, 1, 32, 32), epochs=1)
    with pytest.raises(ValueError, match="defects"):
        defect_gallery(X, masks, defects[:3])
    with pytest.raises(ValueError, match="masks"):
        defect_gallery(X, masks[:, :, :8], defects)
    with pytest.raises(ValueError, match="per_type"):
        defect_gallery(X, masks, defects, per_type=0)
    with pytest.raises(ValueError, match="X_hat"):
        anomaly_figure(X, X_hat[:4], amap, masks)
    with pytest.raises(ValueError, match="amap"):
        anomaly_figure(X, X_hat, amap[:, None], masks)
    with pytest.raises(ValueError, match="index"):
        anomaly_figure(X, X_hat, amap, masks, index=[7])
    with pytest.raises(ValueError, match="row_titles"):
        anomaly_figure(X, X_hat, amap, masks, index=[0, 1], row_titles=["a"])
    with pytest.raises(ValueError, match="scores and labels"):
        score_histograms(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="labels"):
        score_histograms(np.ones(3), np.array([0, 1, 2]))
    plt.close("all")
