"""Every figure function draws for the book's column: fonts, width and resolution (lecture_ae.plots.style).

Each function is called on small made-up inputs under the book's style, and the drawn figure
must have no text smaller than ``MIN_FONT_PT``, be saved at most ``COLUMN_PX`` pixels wide
(shown unscaled in the 676 px column) and be drawn at ``DPI``.  The new figure functions
also reject bad input with a ValueError that names the argument.
"""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lecture_ae.plots import anomaly as pa  # noqa: E402
from lecture_ae.plots import representation as prep  # noqa: E402
from lecture_ae.plots import autoencoders as pae  # noqa: E402
from lecture_ae.plots import segmentation as pseg  # noqa: E402
from lecture_ae.plots import sparse as psp  # noqa: E402
from lecture_ae.plots import sparse_filters as psf  # noqa: E402
from lecture_ae.plots.style import BOOK_RC, COLUMN_PX, DPI, MIN_FONT_PT, figure_problems, saved_width_px  # noqa: E402
from lecture_ae.train import History  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def book_style():
    with matplotlib.rc_context(BOOK_RC):
        yield
    plt.close("all")


def _fig(obj):
    return obj.figure if hasattr(obj, "figure") and not isinstance(obj, plt.Figure) else obj


def _run(name, make):
    fig = _fig(make())
    problems = figure_problems(fig)
    assert not problems, f"{name}: " + "; ".join(problems)
    plt.close(fig)


def _dl_result(n=5):
    return SimpleNamespace(objective=list(np.linspace(2, 1, n)), seconds=list(np.linspace(0, 3, n)),
                           samples_seen=list(np.arange(n) * 100))


def _history(n=6):
    return History(train_loss=list(np.linspace(1, 0.2, n)), val_loss=list(np.linspace(1.1, 0.3, n)), best_epoch=n - 1,
                   best_val=0.3, seconds=1.0)


def _images(n=6, side=16):
    X = RNG.random((n, 1, side, side)).astype(np.float32)
    masks = np.zeros_like(X, dtype=bool)
    masks[1:, 0, 4:9, 3:7] = True
    return X, masks


def _replicas(h=16):
    R = RNG.random((h, h))
    return (R + R.T) / 2


SPARSE = {
    "atom_grid": lambda: psp.atom_grid(RNG.standard_normal((64, 121)), (8, 8), ncols=11, title="DCT dictionary"),
    "atom_grid of crops": lambda: psp.atom_grid(RNG.standard_normal((64 * 64, 6)), (64, 64), ncols=6, title="crops"),
    "atom_grids": lambda: psp.atom_grids({"batch (all N codes per iteration)": RNG.standard_normal((64, 100)),
                                          "online (mini-batches of 32)": RNG.standard_normal((64, 100))}, (8, 8)),
    "toy_sweep": lambda: psp.toy_sweep(RNG.standard_normal((50, 2)) * 3, {
        lam: (RNG.standard_normal((2, 3)), RNG.standard_normal((50, 3)) * (RNG.random((50, 3)) > 0.5))
        for lam in (0.2, 0.6, 2.0, 6.0, 20.0)}),
    "learning_curves": lambda: psp.learning_curves({"batch (all N codes per iteration)": _dl_result(),
                                                    "online (mini-batches of 32)": _dl_result(8)}, ylim=(0.9, 2.1)),
    "convergence_curves": lambda: psp.convergence_curves({"ISTA": np.logspace(0, -3, 50), "FISTA": np.logspace(0, -6, 50)},
                                                         ylabel="$E_1(S_k) - E_1^\\star$", title="a fixed dictionary"),
    "objective_traces": lambda: psp.objective_traces({"$t = 1/L$": np.linspace(5, 1, 20)}, start=1,
                                                     xlabel="outer iteration", title="filter learning"),
    "penalties_and_prox": lambda: psp.penalties_and_prox(lam=1.0, t=0.5),
    "scaling_figure": lambda: psp.scaling_figure(
        np.logspace(-1, 2, 50), {"$E_1$": 0.1 + 0.5 / np.logspace(-1, 2, 50),
                                 "$E_{1,\\eta}$": 0.1 + 0.5 / np.logspace(-1, 2, 50) + 0.1 * np.logspace(-1, 2, 50) ** 2},
        {"$\\eta = 0$": np.arange(1, 41.0), "$\\eta = 0.1$": np.full(40, 3.0)}, c_star=1.4,
        title_right="toy data, batch algorithm, $\\lambda = 2$"),
}
FILTERS = {
    "filter_bank": lambda: psf.filter_bank(RNG.standard_normal((16, 8, 8)), ncols=8, title="filters"),
    "replica_comparison": lambda: psf.replica_comparison(
        {"patch dictionary": RNG.standard_normal((16, 8, 8)), "convolutional filters": RNG.standard_normal((16, 8, 8))},
        {"patch dictionary": _replicas(), "convolutional filters": _replicas()}),
    "replica_pairs": lambda: psf.replica_pairs(RNG.standard_normal((16, 8, 8)), _replicas(), n_pairs=6, title="pairs"),
    "replica_pairs_comparison": lambda: psf.replica_pairs_comparison(
        {"patch dictionary": RNG.standard_normal((16, 8, 8)), "convolutional filters": RNG.standard_normal((16, 8, 8))},
        {"patch dictionary": _replicas(), "convolutional filters": _replicas()}, n_pairs=6),
    "csc_reconstruction": lambda: psf.csc_reconstruction(RNG.standard_normal((64, 64)), RNG.standard_normal((64, 64)),
                                                         RNG.standard_normal((16, 57, 57)), n_maps=4),
    "topographic_maps": lambda: psf.topographic_maps({"topographic (3x3 windows)": RNG.standard_normal((64, 64)),
                                                      "plain L1 (1x1 windows)": RNG.standard_normal((64, 64))}, (8, 8)),
    "similarity_figure": lambda: psf.similarity_figure(
        {"topographic (3x3 windows)": {"neighbours": 0.5, "others": 0.25, "ratio": 2.0},
         "plain L1 (1x1 windows)": {"neighbours": 0.15, "others": 0.14, "ratio": 1.07}},
        {"topographic (3x3 windows)": {"distance": [1, 2, 3, 4], "similarity": [0.5, 0.3, 0.2, 0.2]},
         "plain L1 (1x1 windows)": {"distance": [1, 2, 3, 4], "similarity": [0.15, 0.14, 0.15, 0.15]}}),
}
AUTOENCODERS = {
    "image_rows (10 columns)": lambda: pae.image_rows(
        {k: RNG.random((10, 64)) for k in ("original", "PCA", "linear AE", "MLP AE", "conv AE")}, (8, 8)),
    "image_rows (titles)": lambda: pae.image_rows({"original": RNG.random((5, 64)), "AE, h = 20": RNG.random((5, 64))},
                                                  (8, 8), col_titles=[7, 2, 1, 0, 4], title="digits"),
    "filter_panels (stacked)": lambda: pae.filter_panels(
        {"principal components $u_k$": RNG.standard_normal((10, 64)),
         "decoder columns $w_j$ of the linear autoencoder": RNG.standard_normal((10, 64))}, (8, 8), ncols=10,
        stacked=True),
    "filter_panels (side by side)": lambda: pae.filter_panels(
        {"beta = 0: 43 dead": RNG.standard_normal((64, 64)), "beta = 1: 0 dead": RNG.standard_normal((64, 64))},
        (8, 8), dead={"beta = 0: 43 dead": RNG.random(64) > 0.5}, ncols=8),
    "activation_rate_bars": lambda: pae.activation_rate_bars({"beta = 0": RNG.random(64) * (RNG.random(64) > 0.6),
                                                              "beta = 1": RNG.random(64)}),
    "training_curves": lambda: pae.training_curves({"MLP": _history(), "conv": _history(8)}, title="loss per epoch"),
    "manifold_arrows": lambda: pae.manifold_arrows(RNG.standard_normal((100, 2)), RNG.standard_normal((20, 2)),
                                                   RNG.standard_normal((20, 2)), RNG.standard_normal((50, 2)),
                                                   field=(RNG.standard_normal((30, 2)), RNG.standard_normal((30, 2)))),
    "rate_distortion": lambda: pae.rate_distortion(pd.DataFrame(
        [{"method": m, "value_bits": b, "latents": h, "bits": h * b, "psnr": 10 + h / 4 + b / 8, "mse": 1 / h}
         for m in ("AE", "PCA") for b in (32, 8, 4) for h in (2, 5, 10, 20, 32)])),
    "psnr_bars": lambda: pae.psnr_bars(pd.DataFrame(RNG.random((3, 4)) * 20 + 5,
                                                    index=["gaussian 0.3", "masking 0.4", "salt_and_pepper 0.2"],
                                                    columns=["noisy", "PCA", "AE (clean training)", "DAE"])),
}
SEGMENTATION = {
    "cell_examples": lambda: pseg.cell_examples(*map(torch.as_tensor, _images()), n=6, title=None),
    "segmentation_grid": lambda: pseg.segmentation_grid(
        *map(torch.as_tensor, _images()), {m: torch.as_tensor(_images()[1]) for m in ("unet", "no_skip", "skip_only", "otsu")},
        index=(0, 1, 2, 3), names={"unet": "U-Net", "no_skip": "no shortcuts", "skip_only": "shortcuts only",
                                   "otsu": "Otsu threshold"},
        scores={m: torch.rand(6) for m in ("unet", "no_skip", "skip_only", "otsu")}, title=None),
    "feature_maps": lambda: pseg.feature_maps({"skip0": torch.rand(1, 8, 48, 48), "bottleneck": torch.rand(1, 32, 6, 6)},
                                              n_channels=6, image=torch.rand(48, 48), title=None),
    "score_bars": lambda: pseg.score_bars(pd.DataFrame({"IoU": [0.8, 0.6, 0.5, 0.3]},
                                                       index=["U-Net", "no shortcuts", "shortcuts only", "Otsu"]),
                                          title=None),
}
ANOMALY = {
    "defect_gallery": lambda: pa.defect_gallery(*_images(5), ["good", "cut", "hole", "scratch", "stain"]),
    "defect_galleries": lambda: pa.defect_galleries(
        {t: (*_images(5), ["good", "cut", "hole", "scratch", "stain"]) for t in ("brick", "grass", "gravel")}),
    "anomaly_figure": lambda: pa.anomaly_figure(
        _images(5)[0], _images(5)[0], RNG.random((5, 16, 16)), _images(5)[1], row_titles=list("abcde"),
        map_name="L2", map_label="L2 error", title="brick: convolutional autoencoder, L2 error"),
    "anomaly_figure (long name)": lambda: pa.anomaly_figure(
        _images(5)[0], _images(5)[0], RNG.random((5, 16, 16)), _images(5)[1], map_name="L2 error"),
    "threshold_histograms": lambda: pa.threshold_histograms(
        {t: (RNG.random(30), (RNG.random(30) > 0.6).astype(int), 0.5) for t in ("brick", "grass", "gravel")}),
}
_REPS = ["raw pixels", "PCA", "linear AE", "ReLU sparse AE", "deep AE", "DAE, sigma = 0.1", "DAE, sigma = 0.3",
         "DAE, sigma = 0.5", "shift/rotation AE", "sparse codes"]
_CONDITIONS = ["clean", "shift 0.5 px", "rotation 10 deg", "noise 0.1", "noise 0.3"]
REPRESENTATION = {
    "sensitivity_bars": lambda: prep.sensitivity_bars(pd.DataFrame(RNG.random((10, 4)) * 2, index=_REPS,
                                                                   columns=_CONDITIONS[1:])),
    "probe_accuracy": lambda: prep.probe_accuracy(
        pd.DataFrame(0.7 + 0.3 * RNG.random((10, 5)), index=_REPS, columns=_CONDITIONS),
        pd.DataFrame(0.01 * RNG.random((10, 5)), index=_REPS, columns=_CONDITIONS)),
    "margin_distributions": lambda: prep.margin_distributions({r: RNG.random(100) for r in _REPS},
                                                              relative_to="raw pixels"),
    "readout_bars": lambda: prep.readout_bars(pd.DataFrame(
        RNG.random((4, 3)), index=["U-Net: shortcut (full resolution)", "U-Net: bottleneck",
                                   "no shortcuts: bottleneck", "no shortcuts: first level"],
        columns=["fine detail ($R^2$)", "coarse image ($R^2$)", "class (accuracy)"])),
}
ALL = {**SPARSE, **FILTERS, **AUTOENCODERS, **SEGMENTATION, **ANOMALY, **REPRESENTATION}


@pytest.mark.parametrize("name", sorted(ALL))
def test_figure_fits_the_column(name):
    _run(name, ALL[name])


def test_style_matches_the_column():
    # the smallest text is at least the body's small size (0.9 x 16 px) when shown 1:1
    assert MIN_FONT_PT * DPI / 72 >= 0.9 * 16
    fig = plt.figure(figsize=(BOOK_RC["figure.figsize"][0], 2))
    assert saved_width_px(fig) <= COLUMN_PX
    assert figure_problems(fig) == []
    plt.close(fig)


def test_figure_problems_names_what_is_wrong():
    with matplotlib.rc_context({"figure.dpi": 72}):
        fig, ax = plt.subplots(figsize=(14, 3))
    ax.set_title("tiny", fontsize=7)
    problems = figure_problems(fig)
    assert any("'tiny' is 7 pt" in p for p in problems)
    assert any("px wide" in p for p in problems)
    assert any("dpi 72" in p for p in problems)


def test_new_figure_functions_check_their_arguments():
    with pytest.raises(ValueError, match="runs"):
        psp.toy_sweep(np.zeros((5, 2)), {})
    with pytest.raises(ValueError, match="X must have shape"):
        psp.toy_sweep(np.zeros((5, 3)), {1.0: (np.zeros((2, 3)), np.zeros((5, 3)))})
    with pytest.raises(ValueError, match=r"runs\[1.0\]"):
        psp.toy_sweep(np.zeros((5, 2)), {1.0: (np.zeros((2, 3)), np.zeros((4, 3)))})
    with pytest.raises(ValueError, match="ncols"):
        psp.toy_sweep(np.zeros((5, 2)), {1.0: (np.zeros((2, 3)), np.zeros((5, 3)))}, ncols=0)
    with pytest.raises(ValueError, match="dictionaries"):
        psp.atom_grids({}, (8, 8))
    with pytest.raises(ValueError, match="orders"):
        psp.atom_grids({"a": np.zeros((64, 4))}, (8, 8), orders={"b": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="runs"):
        psp.learning_curves({"a": SimpleNamespace(objective=[1.0])})
    with pytest.raises(ValueError, match="positive"):
        psp.convergence_curves({"ISTA": [1.0, 0.0]})
    with pytest.raises(ValueError, match="NaN"):
        psp.objective_traces({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="lam"):
        psp.penalties_and_prox(lam=-1.0)
    with pytest.raises(ValueError, match="c must"):
        psp.scaling_figure([1.0], {"a": [1.0]}, {"b": [1.0]})
    with pytest.raises(ValueError, match="one value per scale"):
        psp.scaling_figure([1.0, 2.0], {"a": [1.0]}, {"b": [1.0]})
    with pytest.raises(ValueError, match="replica_matrices"):
        psf.replica_comparison({"a": np.zeros((4, 3, 3))}, {})
    with pytest.raises(ValueError, match="n_maps"):
        psf.csc_reconstruction(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((2, 6, 6)), n_maps=3)
    with pytest.raises(ValueError, match="x and x_hat"):
        psf.csc_reconstruction(np.zeros((8, 8)), np.zeros((8, 7)), np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match="dictionaries"):
        psf.topographic_maps({}, (8, 8))
    with pytest.raises(ValueError, match="neighbours"):
        psf.similarity_figure({}, {})
    with pytest.raises(ValueError, match="scale"):
        pae.image_rows({"a": np.zeros((2, 4))}, (2, 2), scale=0)
    with pytest.raises(ValueError, match="image_shape"):
        pae.filter_grid(np.zeros((3, 5)), (2, 2))
    with pytest.raises(ValueError, match="panels"):
        pae.filter_panels({}, (2, 2))
    with pytest.raises(ValueError, match="dead"):
        pae.filter_panels({"a": np.zeros((3, 4))}, (2, 2), dead={"b": np.zeros(3, bool)})
    with pytest.raises(ValueError, match="rates"):
        pae.activation_rate_bars({})
    with pytest.raises(ValueError, match="histories"):
        pae.training_curves({})
    with pytest.raises(ValueError, match="X_rec"):
        pae.manifold_arrows(np.zeros((4, 2)), np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="y must"):
        pae.rate_distortion(pd.DataFrame(), y="ssim")
    with pytest.raises(ValueError, match="lacks the columns"):
        pae.rate_distortion(pd.DataFrame({"method": ["AE"]}))
    with pytest.raises(ValueError, match="table"):
        pae.psnr_bars(pd.DataFrame())
    with pytest.raises(ValueError, match="column 'IoU'"):
        pseg.score_bars(pd.DataFrame({"Dice": [0.5]}))
    with pytest.raises(ValueError, match="galleries"):
        pa.defect_galleries({})
    with pytest.raises(ValueError, match=r"galleries\['brick'\]"):
        pa.defect_galleries({"brick": (np.zeros((2, 4, 4)),)})
    with pytest.raises(ValueError, match=r"galleries\['brick'\]: defects"):
        pa.defect_galleries({"brick": (np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), ["good"])})
    with pytest.raises(ValueError, match="panels"):
        pa.threshold_histograms({})
    with pytest.raises(ValueError, match=r"panels\['brick'\]"):
        pa.threshold_histograms({"brick": (np.zeros(3), np.zeros(3))})


def test_representation_figures_check_their_arguments():
    with pytest.raises(ValueError, match="table must be a non-empty"):
        prep.sensitivity_bars(pd.DataFrame())
    with pytest.raises(ValueError, match="ratios >= 0"):
        prep.sensitivity_bars(pd.DataFrame({"a": [-1.0]}))
    with pytest.raises(ValueError, match="finite"):
        prep.readout_bars(pd.DataFrame({"a": [float("nan")]}))
    with pytest.raises(ValueError, match="stderr must have the shape"):
        prep.probe_accuracy(pd.DataFrame({"clean": [0.9, 0.8]}), pd.DataFrame({"clean": [0.01]}))
    with pytest.raises(ValueError, match="margins"):
        prep.margin_distributions({})
    with pytest.raises(ValueError, match=r"margins\['a'\]"):
        prep.margin_distributions({"a": [float("inf")]})
    with pytest.raises(ValueError, match="relative_to"):
        prep.margin_distributions({"a": [1.0]}, relative_to="b")


def test_anomaly_figure_colour_bar_is_named_below_the_maps():
    X, masks = _images(3)
    fig = pa.anomaly_figure(X, X, RNG.random((3, 16, 16)), masks, map_name="SSIM", map_label="SSIM error")
    assert fig.axes[2].get_title() == "anomaly map (SSIM)" and fig.axes[-1].get_ylabel() == "SSIM error"
    cbar = fig.axes[-1].get_position()
    assert cbar.y1 < fig.axes[-2].get_position().y0, "the colour bar goes below the images"
    plt.close(fig)


def test_scaling_figure_shows_the_whole_dip():
    c = np.logspace(-1, 2, 100)
    with_eta = 0.5 + 0.5 / c + 0.1 * c**2
    fig = psp.scaling_figure(c, {"$E_1$": 0.5 + 0.5 / c, "$E_{1,\\eta}$": with_eta}, {"a": [1.0, 2.0]})
    low, high = fig.axes[0].get_ylim()
    assert low == 0 and high == pytest.approx(3 * with_eta.min())
    plt.close(fig)


def test_toy_sweep_puts_the_legend_in_the_free_panel():
    X = RNG.standard_normal((20, 2))
    runs = {lam: (RNG.standard_normal((2, 3)), RNG.standard_normal((20, 3))) for lam in (0.2, 0.6, 2.0, 6.0, 20.0)}
    fig = psp.toy_sweep(X, runs)
    axes = fig.axes
    assert len(axes) == 6 and [ax.get_title() for ax in axes[:5]] == [f"$\\lambda = {lam:g}$" for lam in runs]
    assert axes[5].get_legend() is not None and not axes[5].axison
    plt.close(fig)
