r"""Compression by bottleneck size: reconstruction error against code size in bits.

An autoencoder with an h-number bottleneck is a lossy codec: the sender stores or
transmits the code :math:`s = g(x)` (h numbers of b bits each, :math:`h \cdot b` bits per
image), the receiver decodes :math:`\hat x = f(s)`.  PCA with h components is the
linear codec of the same size, the optimum of a *linear* autoencoder.
:func:`bottleneck_sweep` trains one autoencoder per h and compares both codecs on the
test set; :func:`quantize` stores the codes with fewer bits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from .._checks import as_tensor, check_int
from ..data.digits import ImageSplits
from ..metrics import code_bits, mse, psnr
from ..models.autoencoders import MLPAutoencoder
from ..runtime import progress
from ..train import fit

__all__ = ["LECTURE_DIGITS", "PCACodec", "quantize", "digit_examples", "bottleneck_sweep"]

#: The digits of the lecture's compression figure, in its order.
LECTURE_DIGITS = (7, 2, 1, 0, 4)


class PCACodec:
    """PCA with ``h`` components as an encoder / decoder pair (fitted with scikit-learn on ``X_train`` (N, d))."""

    def __init__(self, X_train, h: int, *, seed: int = 0):
        X_train = as_tensor(X_train, "X_train", ndim=2, shape="(N, d)")
        self.h = check_int(h, "h")
        if self.h > min(X_train.shape):
            raise ValueError(f"h must be <= min(N, d) = {min(X_train.shape)} for PCA; got {h}")
        self.pca = PCA(self.h, random_state=seed).fit(X_train.detach().cpu().double().numpy())

    def encode(self, X) -> torch.Tensor:
        X = as_tensor(X, "X", ndim=2, shape="(N, d)")
        return torch.as_tensor(self.pca.transform(X.detach().cpu().double().numpy()), dtype=X.dtype)

    def decode(self, S) -> torch.Tensor:
        S = as_tensor(S, "S", ndim=2, shape="(N, h)")
        return torch.as_tensor(self.pca.inverse_transform(S.detach().cpu().double().numpy()), dtype=S.dtype)

    def reconstruct(self, X) -> torch.Tensor:
        return self.decode(self.encode(X))


def quantize(S, bits: int, lo, hi) -> torch.Tensor:
    r"""Uniform quantisation of the codes ``S`` (N, h) to :math:`2^{b}` levels per unit.

    Unit j is clipped to ``[lo[j], hi[j]]`` (the range seen on the training codes) and
    rounded to the nearest of :math:`2^b` equally spaced levels; the result is the
    de-quantised value, what the receiver decodes.
    """
    S = as_tensor(S, "S", ndim=2, shape="(N, h)")
    bits = check_int(bits, "bits")
    lo = as_tensor(lo, "lo", device=S.device).to(S.dtype).reshape(-1)
    hi = as_tensor(hi, "hi", device=S.device).to(S.dtype).reshape(-1)
    if lo.numel() not in (1, S.shape[1]) or hi.numel() not in (1, S.shape[1]):
        raise ValueError(f"lo and hi must be numbers or (h,) = ({S.shape[1]},) vectors; got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if bool((hi < lo).any()):
        raise ValueError("hi must be >= lo for every unit")
    levels = 2**bits - 1
    step = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    return lo + torch.round((torch.minimum(torch.maximum(S, lo), hi) - lo) / step) * step


def digit_examples(y, classes=LECTURE_DIGITS) -> list[int]:
    """Index of the first sample of each class in ``classes`` (in that order) among the labels ``y``."""
    y = torch.as_tensor(y)
    if y.dim() != 1:
        raise ValueError(f"y must be a 1-D tensor of labels (N,); got shape {tuple(y.shape)}")
    out = []
    for c in classes:
        hits = (y == c).nonzero()
        if len(hits) == 0:
            raise ValueError(f"class {c} does not occur in y; classes must be labels present in y")
        out.append(int(hits[0]))
    return out


def bottleneck_sweep(
    data: ImageSplits,
    latents=(2, 5, 10, 20, 32),
    *,
    widths=(128,),
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 3e-3,
    value_bits=(32, 8),
    seed: int = 0,
    device=None,
    show_progress: bool | None = None,
):
    """Train one :class:`~lecture_ae.models.MLPAutoencoder` per bottleneck size and compare with PCA.

    For every h in ``latents``: an autoencoder ``d -> widths -> h -> reversed widths -> d``
    (sigmoid output) is fitted on ``data.X_train`` with early stopping on ``data.X_val``,
    and PCA with h components on ``data.X_train``.  Both codecs are evaluated on
    ``data.X_test`` with codes stored at each of ``value_bits`` bits per number (32 =
    float32 as is; fewer bits = :func:`quantize` over the training range of each unit).

    Returns ``(table, models)``: a :class:`pandas.DataFrame` with one row per (method, h,
    value_bits) and columns ``method, latents, value_bits, bits`` (per image), ``mse``
    (per pixel) and ``psnr`` (dB); and a dict ``{h: autoencoder}``.
    """
    if not isinstance(data, ImageSplits):
        raise ValueError(f"data must be an ImageSplits (e.g. lecture_ae.data.load_digits_splits()); got {type(data).__name__}")
    if isinstance(latents, (int, np.integer)):
        latents = (latents,)
    latents = tuple(check_int(h, "latents") for h in latents)
    if isinstance(value_bits, (int, np.integer)):
        value_bits = (value_bits,)
    value_bits = tuple(check_int(b, "value_bits") for b in value_bits)
    for b in value_bits:
        if b > 32:
            raise ValueError(f"value_bits must be <= 32 (32 = float32 codes); got {b}")
    X_tr, X_te = data.X_train, data.X_test
    rows, models = [], {}
    for h in progress(latents, show=show_progress, desc="bottleneck sweep"):
        ae = MLPAutoencoder(data.d, h, widths, seed=seed)
        fit(ae, X_tr, data.X_val, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
            show_progress=False)
        ae.cpu()
        models[h] = ae
        pca = PCACodec(X_tr, h, seed=seed)
        codecs = {
            "AE": (ae.codes(X_tr), ae.codes(X_te), ae.decode),
            "PCA": (pca.encode(X_tr), pca.encode(X_te), pca.decode),
        }
        for method, (S_tr, S_te, decode) in codecs.items():
            lo, hi = S_tr.min(dim=0).values, S_tr.max(dim=0).values
            for b in value_bits:
                S = S_te if b == 32 else quantize(S_te, b, lo, hi)
                with torch.no_grad():
                    X_hat = decode(S).clamp(0.0, 1.0)
                rows.append({"method": method, "latents": h, "value_bits": b, "bits": code_bits(h, b),
                             "mse": mse(X_te, X_hat), "psnr": psnr(X_te, X_hat)})
    return pd.DataFrame(rows), models
