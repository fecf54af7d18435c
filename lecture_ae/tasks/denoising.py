r"""Denoising: PSNR of noisy input vs a PCA baseline vs autoencoders, and local invariance near a manifold.

* :func:`pca_denoiser` projects a corrupted image onto the top-k principal subspace of
  clean training images, with k chosen on the validation set: the linear baseline.
* :func:`denoising_benchmark` trains one denoising autoencoder per kind of noise and
  compares test PSNR of the noisy input, PCA, an autoencoder trained on clean images
  (same architecture) and the denoising autoencoder.
* :func:`local_gains` measures how a reconstruction :math:`r = f \circ g` reacts to a small
  step along the manifold (tangent) and across it (normal): a good denoiser keeps the
  first (gain near 1) and is *invariant* to the second (gain near 0).
"""
from __future__ import annotations

import pandas as pd
import torch

from .._checks import as_tensor, check_int
from ..data.digits import ImageSplits
from ..metrics import psnr
from ..models.autoencoders import NOISE_KINDS, DenoisingAutoencoder, MLPAutoencoder, add_noise
from ..runtime import progress
from ..train import fit
from .compression import PCACodec

__all__ = ["DEFAULT_NOISE", "pca_denoiser", "denoising_benchmark", "local_gains"]

#: The three corruptions of the chapter and their levels (images in [0, 1]).
DEFAULT_NOISE = {"gaussian": 0.3, "masking": 0.4, "salt_and_pepper": 0.2}


def pca_denoiser(X_train, X_val_clean, X_val_noisy, ks=range(2, 41, 2)) -> PCACodec:
    """The PCA codec (fitted on clean ``X_train``) whose k maximises validation PSNR on ``X_val_noisy``."""
    ks = [check_int(k, "ks") for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one number of components")
    best, best_psnr = None, -float("inf")
    for k in ks:
        codec = PCACodec(X_train, k)
        value = psnr(X_val_clean, codec.reconstruct(X_val_noisy).clamp(0, 1))
        if value > best_psnr:
            best, best_psnr = codec, value
    return best


def denoising_benchmark(data: ImageSplits, noise: dict | None = None, *, latent: int = 64, widths=(256,),
                        epochs: int = 40, lr: float = 3e-3, batch_size: int = 64, seed: int = 0, device=None,
                        show_progress: bool | None = None):
    """Test PSNR (dB) of four estimates of the clean test images, for each kind of noise.

    Columns: ``noisy`` (the corrupted input itself), ``PCA`` (:func:`pca_denoiser`),
    ``AE (clean training)`` (an :class:`~lecture_ae.models.MLPAutoencoder` trained to reconstruct
    clean images, fed the noisy ones) and ``DAE`` (the same architecture trained as a
    :class:`~lecture_ae.models.DenoisingAutoencoder` for that noise).  The test and
    validation corruptions are drawn from fixed seeds.

    Returns ``(table, extras)``: the DataFrame (rows: kinds of noise) and a dict with the
    trained models (``"AE"``, ``"DAE"`` per kind), the PCA codecs and the noisy test images.
    """
    if not isinstance(data, ImageSplits):
        raise ValueError(f"data must be an ImageSplits (e.g. lecture_ae.data.load_digits_splits()); got {type(data).__name__}")
    noise = dict(DEFAULT_NOISE if noise is None else noise)
    for kind in noise:
        if kind not in NOISE_KINDS:
            raise ValueError(f"noise keys must be among {NOISE_KINDS}; got {kind!r}")
    kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, show_progress=False)
    clean = MLPAutoencoder(data.d, latent, widths, seed=seed)
    fit(clean, data.X_train, data.X_val, **kw)
    clean.cpu()
    rows, extras = {}, {"AE": clean, "DAE": {}, "PCA": {}, "noisy": {}}
    for kind, level in progress(noise.items(), show=show_progress, desc="denoising"):
        X_val_noisy = add_noise(data.X_val, kind, level, seed + 1)
        X_test_noisy = add_noise(data.X_test, kind, level, seed + 2)
        dae = DenoisingAutoencoder(MLPAutoencoder(data.d, latent, widths, seed=seed), kind, level)
        fit(dae, data.X_train, data.X_val, **kw)
        dae.cpu()
        pca = pca_denoiser(data.X_train, data.X_val, X_val_noisy)
        rows[f"{kind} {level:g}"] = {
            "noisy": psnr(data.X_test, X_test_noisy),
            "PCA": psnr(data.X_test, pca.reconstruct(X_test_noisy).clamp(0, 1)),
            "AE (clean training)": psnr(data.X_test, clean.reconstruct(X_test_noisy)),
            "DAE": psnr(data.X_test, dae.reconstruct(X_test_noisy)),
        }
        extras["DAE"][kind], extras["PCA"][kind], extras["noisy"][kind] = dae, pca, X_test_noisy
    return pd.DataFrame(rows).T, extras


def local_gains(model, points, tangents) -> pd.DataFrame:
    r"""How much the reconstruction :math:`r(x)` moves per unit step along and across a 2-D curve.

    For each point :math:`x` (rows of ``points`` (m, 2)) with unit tangent :math:`t`
    (rows of ``tangents``) and normal :math:`n \perp t`, the Jacobian :math:`J = \partial r / \partial x`
    gives the gains :math:`\|J t\|` and :math:`\|J n\|`.  Returns a DataFrame with both per point.
    """
    P = as_tensor(points, "points", ndim=2, shape="(m, 2)")
    T = as_tensor(tangents, "tangents", ndim=2, shape="(m, 2)").to(P.dtype)
    if P.shape[1] != 2 or T.shape != P.shape:
        raise ValueError(f"points and tangents must both have shape (m, 2); got {tuple(P.shape)} and {tuple(T.shape)}")
    T = T / T.norm(dim=1, keepdim=True)
    Nrm = torch.stack([-T[:, 1], T[:, 0]], dim=1)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    rows = []
    for p, t, n in zip(P, T, Nrm):
        J = torch.autograd.functional.jacobian(lambda x: model(x[None].to(dev))[0].cpu(), p)
        rows.append({"x1": float(p[0]), "x2": float(p[1]),
                     "gain along the curve": float((J @ t).norm()), "gain across the curve": float((J @ n).norm())})
    model.train(was)
    return pd.DataFrame(rows)
