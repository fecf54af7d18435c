r"""Anomaly detection by reconstruction error.

An autoencoder trained on **good** images only learns to reconstruct what good images
look like.  On a defective image it reconstructs the good texture it expects, so the
defect shows up in the **error map**:

* per pixel, the squared (L2) error summed over the C channels (:func:`l2_map`)

  .. math:: a(x, \hat x)_{uv} = \sum_{c} (x_{cuv} - \hat x_{cuv})^2 ,

  or the SSIM error :math:`1 - \mathrm{SSIM}(x, \hat x)_{uv}` (:func:`ssim_map`), which
  compares local means, contrasts and structure in a window around each pixel
  instead of single grey levels;
* per image, a single score: the mean of the ``fraction`` largest values of the map
  (:func:`image_score`; ``fraction`` -> 0 gives the maximum);
* a threshold on the score, set on good **validation** images so that at most a fraction
  ``max_fpr`` of good images is flagged (:func:`choose_threshold`).

:class:`PCABaseline` is the linear reference: the reconstruction by the top principal
components of the good training images.  :func:`evaluate_methods` compares methods with
image-level and pixel-level AUROC and the per-region overlap
(:mod:`lecture_ae.metrics`).  Problem set 4 asks students to write
:func:`anomaly_map`, :func:`image_score` and :func:`choose_threshold` themselves.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_int, check_scalar
from ..metrics import image_auroc, pixel_auroc, pro_score
from ..models.autoencoders import ConvAutoencoder
from ..train import fit, predict

__all__ = [
    "MAP_KINDS",
    "l2_map",
    "ssim_map",
    "anomaly_map",
    "smooth_map",
    "image_score",
    "choose_threshold",
    "PCABaseline",
    "texture_autoencoder",
    "train_texture_autoencoder",
    "reconstruct",
    "evaluate_maps",
    "evaluate_methods",
    "per_defect_auroc",
]

MAP_KINDS = ("l2", "ssim")


def _images(X, name, device=None) -> torch.Tensor:
    X = as_tensor(X, name, shape="(N, C, H, W)", device=device)
    if X.dim() == 3:
        X = X[:, None]
    if X.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W) (or (N, H, W) for grey images); got {tuple(X.shape)}")
    return X


def _pair(X, X_hat):
    X = _images(X, "X")
    X_hat = _images(X_hat, "X_hat", device=X.device)
    if X_hat.shape != X.shape:
        raise ValueError(f"X_hat must have the shape of X, {tuple(X.shape)}; got {tuple(X_hat.shape)}")
    dtype = torch.promote_types(X.dtype, X_hat.dtype)
    return X.to(dtype), X_hat.to(dtype)


def l2_map(X, X_hat) -> torch.Tensor:
    r"""Per-pixel squared error summed over channels, :math:`\sum_c (x_{cuv} - \hat x_{cuv})^2`: (N, C, H, W) -> (N, H, W)."""
    X, X_hat = _pair(X, X_hat)
    return ((X - X_hat) ** 2).sum(dim=1)


# ------------------------------------------------------------------------------ SSIM
def _symmetric_index(n: int, r: int, device) -> torch.Tensor:
    # scipy's mode="reflect" (d c b a | a b c d | d c b a), as skimage's SSIM uses it
    return torch.as_tensor(np.pad(np.arange(n), r, mode="symmetric"), device=device)


def _separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter (B, 1, H, W) with the separable 1-D ``kernel`` in both directions, symmetric borders."""
    r = kernel.numel() // 2
    H, W = x.shape[-2:]
    x = x[..., _symmetric_index(H, r, x.device), :][..., _symmetric_index(W, r, x.device)]
    k = kernel.to(x)
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return F.conv2d(x, k.view(1, 1, 1, -1))


def _gaussian_kernel(sigma: float, truncate: float = 3.5) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def ssim_map(X, X_hat, *, gaussian_weights: bool = True, sigma: float = 1.5, win_size: int | None = None,
             data_range: float = 1.0, use_sample_covariance: bool = False, K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    r"""The local structural similarity of Wang et al. at every pixel: (N, C, H, W) -> (N, H, W) (mean over channels).

    .. math::

        \mathrm{SSIM}_{uv} = \frac{(2\mu_x\mu_{\hat x} + C_1)(2\sigma_{x\hat x} + C_2)}
                                 {(\mu_x^2 + \mu_{\hat x}^2 + C_1)(\sigma_x^2 + \sigma_{\hat x}^2 + C_2)},
        \quad C_1 = (K_1 R)^2,\ C_2 = (K_2 R)^2,

    with means, variances and the covariance taken in a window around the pixel: a
    Gaussian window (``sigma``, truncated at 3.5 sigma: 11 x 11 for sigma = 1.5) or, with
    ``gaussian_weights=False``, a uniform ``win_size`` x ``win_size`` window (default 7).
    The result equals :func:`skimage.metrics.structural_similarity` with ``full=True`` and
    the same options (its full map, symmetric borders); differentiable, on any device.
    """
    X, X_hat = _pair(X, X_hat)
    data_range = check_scalar(data_range, "data_range", low=0.0, low_inclusive=False)
    if gaussian_weights:
        sigma = check_scalar(sigma, "sigma", low=0.0, low_inclusive=False)
        kernel = _gaussian_kernel(sigma)
        win = kernel.numel() if win_size is None else check_int(win_size, "win_size", low=3)
    else:
        win = 7 if win_size is None else check_int(win_size, "win_size", low=3)
        if win % 2 == 0:
            raise ValueError(f"win_size must be odd; got {win}")
        kernel = torch.full((win,), 1.0 / win, dtype=torch.float64)
    N, C, H, W = X.shape
    x = X.reshape(N * C, 1, H, W)
    y = X_hat.reshape(N * C, 1, H, W)
    filt = lambda t: _separable_filter(t, kernel)  # noqa: E731
    ux, uy = filt(x), filt(y)
    uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
    cov_norm = win * win / (win * win - 1) if use_sample_covariance else 1.0
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    C1, C2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    S = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
    return S.reshape(N, C, H, W).mean(dim=1)


def smooth_map(amap, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of anomaly maps (N, H, W) (symmetric borders); ``sigma`` in pixels."""
    A = as_tensor(amap, "amap", ndim=3, shape="(N, H, W)")
    sigma = check_scalar(sigma, "sigma", low=0.0, low_inclusive=False)
    return _separable_filter(A[:, None], _gaussian_kernel(sigma))[:, 0]


def anomaly_map(X, X_hat, kind: str = "l2", *, smooth: float | None = None, **ssim_options) -> torch.Tensor:
    """The anomaly map (N, H, W) of images X and their reconstructions X_hat (N, C, H, W).

    ``kind="l2"``: :func:`l2_map`; ``kind="ssim"``: ``1 - ssim_map(X, X_hat)`` (0 where the
    reconstruction is perfect, up to 2).  ``smooth`` (pixels) applies :func:`smooth_map`.
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"kind must be one of {MAP_KINDS}; got {kind!r}")
    A = l2_map(X, X_hat) if kind == "l2" else 1.0 - ssim_map(X, X_hat, **ssim_options)
    return smooth_map(A, smooth) if smooth is not None else A


def image_score(amap, fraction: float = 0.01) -> torch.Tensor:
    r"""One anomaly score per image: the mean of the :math:`k = \lceil \text{fraction} \cdot H W \rceil`
    largest values of its map, (N, H, W) -> (N,).

    A defect covers a small part of the image: the mean of the whole map would dilute it,
    the maximum reacts to a single noisy pixel; the top-k mean sits in between.
    """
    A = as_tensor(amap, "amap", ndim=3, shape="(N, H, W)")
    fraction = check_scalar(fraction, "fraction", low=0.0, low_inclusive=False, high=1.0)
    flat = A.reshape(len(A), -1)
    k = max(1, math.ceil(fraction * flat.shape[1] - 1e-9))
    return flat.topk(k, dim=1).values.mean(dim=1)


def choose_threshold(scores_good_val, max_fpr: float = 0.05) -> float:
    r"""The decision threshold :math:`t` set on good validation images: flag an image when its score is :math:`> t`.

    With the :math:`n` validation scores sorted in decreasing order,
    :math:`s_{(1)} \ge s_{(2)} \ge \dots \ge s_{(n)}`, and :math:`m = \lfloor \text{max\_fpr} \cdot n \rfloor`
    good images allowed above the threshold, return :math:`t = s_{(m+1)}`: at most
    :math:`m` good validation images score strictly more than :math:`t` (exactly :math:`m`
    without ties), so the false-positive rate on the validation set is at most ``max_fpr``.
    ``max_fpr = 0`` gives the largest good score.
    """
    s = as_tensor(scores_good_val, "scores_good_val", ndim=1, shape="(n,)")
    if s.numel() == 0:
        raise ValueError("scores_good_val must hold at least one score")
    max_fpr = check_scalar(max_fpr, "max_fpr", high=1.0)
    if max_fpr >= 1.0:
        raise ValueError(f"max_fpr must be < 1; got {max_fpr}")
    m = math.floor(max_fpr * s.numel() + 1e-9)
    return float(torch.sort(s, descending=True).values[m])


# ------------------------------------------------------------------------------ models
class PCABaseline:
    """Reconstruction by the top ``n_components`` principal components of good images (scikit-learn's PCA).

    ``fit(X)`` on (N, C, H, W) good images; ``reconstruct(X)`` projects onto the mean +
    principal subspace and returns images of the same shape: the optimal *linear*
    autoencoder with ``n_components`` latents.
    """

    def __init__(self, n_components: int = 32, *, seed: int = 0):
        self.n_components = check_int(n_components, "n_components")
        self.seed = check_int(seed, "seed", low=0)
        self.pca = None

    def fit(self, X) -> "PCABaseline":
        from sklearn.decomposition import PCA

        X = _images(X, "X")
        if self.n_components > min(len(X), X[0].numel()):
            raise ValueError(f"n_components must be <= min(N, C*H*W) = {min(len(X), X[0].numel())}; got {self.n_components}")
        self.shape = tuple(X.shape[1:])
        self.pca = PCA(self.n_components, random_state=self.seed).fit(X.reshape(len(X), -1).double().cpu().numpy())
        return self

    def reconstruct(self, X) -> torch.Tensor:
        if self.pca is None:
            raise ValueError("PCABaseline.reconstruct needs fit(X) first")
        X = _images(X, "X")
        if tuple(X.shape[1:]) != self.shape:
            raise ValueError(f"X must have shape (N, {', '.join(map(str, self.shape))}) like the training images; got {tuple(X.shape)}")
        Z = self.pca.inverse_transform(self.pca.transform(X.reshape(len(X), -1).double().cpu().numpy()))
        return torch.as_tensor(Z, dtype=X.dtype, device=X.device).reshape(X.shape)


def texture_autoencoder(image_size=64, *, latent: int | None = None, channels=(16, 32, 32, 16),
                        kernel_size: int = 3, output=None, in_channels: int = 1, seed: int = 0) -> ConvAutoencoder:
    """The convolutional autoencoder of the chapter (a :class:`~lecture_ae.models.ConvAutoencoder`).

    Four stride-2 convolutions (ReLU) take a 64 x 64 tile to a 16 x 4 x 4 code (256 numbers,
    1/16 of the 4096 pixels), four transposed convolutions bring it back.  The output is
    linear by default (``output="sigmoid"`` squashes it into (0, 1)); on the chapter's tiles
    the linear output trains faster and reconstructs slightly better.  ``latent`` adds a
    fully connected bottleneck of that many numbers; ``image_size`` is an integer or (H, W),
    divisible by 16; ``in_channels`` 3 for colour images.
    """
    return ConvAutoencoder(image_size, channels, in_channels=in_channels, latent=latent, kernel_size=kernel_size,
                           output=output, seed=seed)


def train_texture_autoencoder(train, val=None, *, epochs: int = 10, batch_size: int = 16, lr: float = 3e-3,
                              latent: int | None = None, seed: int = 0, device=None, **fit_kwargs):
    """Build :func:`texture_autoencoder` for the tiles' size and channels and train it with :func:`lecture_ae.train.fit`.

    The loss is the squared error summed over the pixels of a tile, averaged over the
    batch (:meth:`~lecture_ae.models.Autoencoder.loss`).  ``train`` / ``val`` are good tiles
    (N, C, H, W) (or (N, H, W)); the weights of the best validation epoch are kept when
    ``val`` is given.  Returns ``(model, history)``.
    """
    train = _images(train, "train")
    if val is not None:
        val = _images(val, "val")
        if val.shape[1:] != train.shape[1:]:
            raise ValueError(f"val must have shape (N_val, {', '.join(map(str, train.shape[1:]))}) like train; got {tuple(val.shape)}")
    model = texture_autoencoder(tuple(train.shape[-2:]), latent=latent, in_channels=train.shape[1], seed=seed)
    hist = fit(model, train, val, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, **fit_kwargs)
    return model, hist


# ------------------------------------------------------------------------------ evaluation
def reconstruct(model, X, *, batch_size: int = 256) -> torch.Tensor:
    """The reconstruction of images X by ``model`` (an autoencoder or a :class:`PCABaseline`)."""
    if isinstance(model, PCABaseline):
        return model.reconstruct(X)
    return predict(model, _images(X, "X"), batch_size=batch_size)


def evaluate_maps(amaps, labels, masks, *, fraction: float = 0.01, max_fpr: float = 0.3) -> dict:
    """Image AUROC (scores of :func:`image_score`), pixel AUROC and PRO of the anomaly maps (N, H, W) of a test set."""
    amaps = as_tensor(amaps, "amaps", ndim=3, shape="(N, H, W)")
    scores = image_score(amaps, fraction)
    return {
        "image AUROC": image_auroc(scores, labels),
        "pixel AUROC": pixel_auroc(amaps, masks),
        "PRO (FPR<=0.3)" if max_fpr == 0.3 else f"PRO (FPR<={max_fpr:g})": pro_score(amaps, masks, max_fpr=max_fpr),
    }


def evaluate_methods(X, reconstructions: dict, labels, masks, *, methods=None, smooth: float | None = None,
                     fraction: float = 0.01) -> pd.DataFrame:
    """One row per method: image AUROC, pixel AUROC and PRO on the test images ``X``.

    ``reconstructions`` maps a model name to its reconstruction of ``X``; ``methods`` maps a
    method name to ``(model name, map kind)``, by default every model with ``"l2"`` and
    ``"ssim"`` (named ``"<model>-L2"``, ``"<model>-SSIM"``).
    """
    if methods is None:
        methods = {f"{m}-{k.upper()}": (m, k) for m in reconstructions for k in MAP_KINDS}
    rows = {}
    for name, (model, kind) in methods.items():
        if model not in reconstructions:
            raise ValueError(f"methods[{name!r}] names the model {model!r}, which is not in reconstructions {list(reconstructions)}")
        amaps = anomaly_map(X, reconstructions[model], kind, smooth=smooth)
        rows[name] = evaluate_maps(amaps, labels, masks, fraction=fraction)
    return pd.DataFrame.from_dict(rows, orient="index")


def per_defect_auroc(scores, defects) -> dict:
    """Image AUROC of each defect type against the good images: ``{defect: AUROC}``, defect types sorted.

    ``scores`` (N,) are image scores, ``defects`` names the type of each image (``"good"`` or
    the defect, e.g. :attr:`~lecture_ae.data.mvtec.MVTecSplits.test_defects`).  For a defect
    type, only the good images and the images of that type enter the AUROC.
    """
    s = as_tensor(scores, "scores", ndim=1, shape="(N,)")
    if isinstance(defects, str):
        raise ValueError("defects must be a sequence of names, one per image; got a single string")
    defects = [str(d) for d in defects]
    if len(defects) != len(s):
        raise ValueError(f"defects must name the type of each of the {len(s)} images; got {len(defects)} names")
    good = [i for i, d in enumerate(defects) if d == "good"]
    if not good:
        raise ValueError("defects must name at least one 'good' image (the negatives of every AUROC)")
    out = {}
    for d in sorted(set(defects) - {"good"}):
        idx = good + [i for i, x in enumerate(defects) if x == d]
        out[d] = image_auroc(s[idx], [int(defects[i] != "good") for i in idx])
    return out
