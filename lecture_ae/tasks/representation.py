r"""What a representation is good for: invariance, prediction and margins, measured.

A representation is an encoder :math:`f: \mathbb R^d \to \mathbb R^h` applied to every row of
a batch ``X`` (N, d).  Three measurements, as the lecture states its claims:

* :func:`sensitivity`: how much the representation moves under a small transform :math:`T`
  of the input (a sub-pixel shift, a small rotation, additive noise), relative to its size,
  with the relative change of the input itself as the baseline,

  .. math:: \rho_f = \frac1N \sum_i \frac{\lVert f(x_i) - f(T x_i) \rVert}{\lVert f(x_i) \rVert},
            \qquad
            \rho_x = \frac1N \sum_i \frac{\lVert x_i - T x_i \rVert}{\lVert x_i \rVert},
            \qquad \text{ratio} = \rho_f / \rho_x .

  A ratio below 1: the representation changes less than the input (it is partly invariant);
  0: invariant; above 1: it amplifies the change.
* :func:`linear_probe`: the test accuracy of a logistic regression (scikit-learn) trained on
  the representation of the training split, on clean and on transformed test images, with its
  standard error over seeds (each seed: another subsample of the training split and other
  random transforms).
* :func:`input_margin`: the smallest input perturbation that changes the probe's decision,
  found by the DeepFool iteration (Moosavi-Dezfooli et al. 2016) through the encoder with torch
  autograd: per image, the distance from the input to the decision boundary of the probe.

The transforms (:func:`shift`, :func:`rotation`, :func:`additive_noise`) act on the images
as rows; shifts and rotations are bilinear interpolation (``torch.nn.functional.grid_sample``),
linear maps of the pixels, so a fixed one is a matrix (:func:`transform_matrix`).  Encoders
for representations that are not a torch module: :func:`linear_encoder` (PCA),
:func:`sparse_code_encoder` (the exact L1 codes for a dictionary, differentiable on their support).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_int, check_scalar
from ..runtime import get_device, make_generator

__all__ = [
    "Transform",
    "shift",
    "rotation",
    "additive_noise",
    "transform_matrix",
    "Sensitivity",
    "sensitivity",
    "LinearProbe",
    "ProbeResult",
    "linear_probe",
    "Margins",
    "input_margin",
    "linear_encoder",
    "pca_encoder",
    "sparse_code_encoder",
    "corruption_loss",
    "detail_split",
    "readout_r2",
]


# ------------------------------------------------------------------------ checks
def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def _check_image_shape(image_shape) -> tuple[int, int]:
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in image_shape)):
        raise ValueError(f"image_shape must be a pair (H, W) of positive integers; got {image_shape!r}")
    return int(image_shape[0]), int(image_shape[1])


def _check_encode(encode) -> Callable:
    if not callable(encode):
        raise ValueError(f"encode must be a function (N, d) -> (N, h), e.g. model.encode; got {type(encode).__name__}")
    return encode


def _check_transform(transform, name="transform"):
    if not isinstance(transform, Transform):
        raise ValueError(f"{name} must be a Transform (shift(...), rotation(...) or additive_noise(...)); "
                         f"got {type(transform).__name__}")
    return transform


def _encode(encode, X, name="encode") -> torch.Tensor:
    S = encode(X)
    if not isinstance(S, torch.Tensor) or S.dim() != 2 or S.shape[0] != X.shape[0]:
        got = f"shape {tuple(S.shape)}" if isinstance(S, torch.Tensor) else type(S).__name__
        raise ValueError(f"{name}(X) must return a tensor (N, h) with N = {X.shape[0]} rows; got {got}")
    return S


# ------------------------------------------------------------------------ transforms
@dataclass(frozen=True)
class Transform:
    """A small transform of images stored as rows (N, H*W): ``T(X, seed=0) -> (N, H*W)``.

    ``random`` transforms draw a parameter per image (a direction, a sign, the noise) from
    ``seed``; the same seed gives the same transform.  ``linear`` transforms are linear maps of
    the pixels (a fixed shift or rotation); :func:`transform_matrix` turns them into a matrix.
    """

    name: str
    image_shape: tuple[int, int] | None
    apply: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    random: bool
    linear: bool

    def __call__(self, X, *, seed: int = 0) -> torch.Tensor:
        """Apply the transform to ``X`` (N, d); random draws from ``seed``."""
        X = as_tensor(X, "X", ndim=2, shape="(N, d)")
        seed = _check_seed(seed)
        if self.image_shape is not None and X.shape[1] != self.image_shape[0] * self.image_shape[1]:
            raise ValueError(f"X must have H*W = {self.image_shape[0] * self.image_shape[1]} columns for "
                             f"image_shape {self.image_shape}; got shape {tuple(X.shape)}")
        gen = make_generator(seed)
        return self.apply(X, gen)

    def __repr__(self) -> str:
        return f"Transform({self.name!r})"


def _warp(X: torch.Tensor, image_shape, theta: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Bilinear resampling of the images ``X`` (N, H*W) by the affine maps ``theta`` (N, 2, 3)."""
    H, W = image_shape
    img = X.reshape(-1, 1, H, W)
    if periodic:  # wrap around: pad circularly, sample the padded image, keep the centre
        p = int(math.ceil(float(theta[:, :, 2].abs().max()) * max(H, W) / 2)) + 1
        img = F.pad(img, (p, p, p, p), mode="circular")
        scale = torch.tensor([W / (W + 2 * p), H / (H + 2 * p)], dtype=X.dtype, device=X.device)
        theta = theta.clone()
        theta[:, :, :2] = theta[:, :, :2] * scale.reshape(1, 1, 2) / scale.reshape(1, 2, 1)
        theta[:, :, 2] = theta[:, :, 2] * scale.reshape(1, 2)
        Hp, Wp = H + 2 * p, W + 2 * p
        grid = F.affine_grid(theta, (img.shape[0], 1, Hp, Wp), align_corners=False)
        out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out[:, :, p : p + H, p : p + W]
    else:
        grid = F.affine_grid(theta, (img.shape[0], 1, H, W), align_corners=False)
        out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(X.shape[0], H * W)


def shift(pixels: float, image_shape=(8, 8), *, angle: float | None = None, boundary: str = "zeros") -> Transform:
    """A sub-pixel translation by ``pixels`` (bilinear interpolation).

    Parameters
    ----------
    pixels : length of the shift in pixels (>= 0; 0.5 moves every image half a pixel).
    image_shape : (H, W) of the images stored as rows of length H*W.
    angle : direction in degrees (0 = to the right, 90 = up); ``None`` draws a direction
        uniformly at random for every image (from the ``seed`` of the call).
    boundary : ``"zeros"`` (the background comes in at the border) or ``"periodic"`` (what
        leaves on one side comes back on the other: the sum of the pixels is kept exactly).

    Returns
    -------
    Transform : ``T(X, seed=0)`` for ``X`` (N, H*W); linear when ``angle`` is given.
    """
    pixels = check_scalar(pixels, "pixels")
    H, W = _check_image_shape(image_shape)
    if angle is not None:
        angle = check_scalar(angle, "angle", low=None)
    if boundary not in ("zeros", "periodic"):
        raise ValueError(f"boundary must be 'zeros' or 'periodic'; got {boundary!r}")

    def apply(X, gen):
        N = X.shape[0]
        if angle is None:
            a = torch.rand(N, generator=gen, dtype=torch.float64) * 2 * math.pi
        else:
            a = torch.full((N,), math.radians(angle), dtype=torch.float64)
        dx, dy = pixels * torch.cos(a), -pixels * torch.sin(a)  # image rows go down
        theta = torch.zeros(N, 2, 3, dtype=X.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = (-2 * dx / W).to(X.dtype)  # output(u) = input(u - shift)
        theta[:, 1, 2] = (-2 * dy / H).to(X.dtype)
        return _warp(X, (H, W), theta.to(X.device), boundary == "periodic")

    where = "random direction" if angle is None else f"angle {angle:g} deg"
    return Transform(f"shift {pixels:g} px ({where})", (H, W), apply, random=angle is None, linear=angle is not None)


def rotation(degrees: float, image_shape=(8, 8), *, random_sign: bool = True) -> Transform:
    """A rotation by ``degrees`` about the image centre (bilinear interpolation, zeros outside).

    Parameters
    ----------
    degrees : the angle in degrees (>= 0, counter-clockwise).
    image_shape : (H, W) of the images stored as rows of length H*W.
    random_sign : rotate every image by +degrees or -degrees at random (from the call's
        ``seed``); ``False`` rotates every image counter-clockwise (a linear transform).

    Returns
    -------
    Transform : ``T(X, seed=0)`` for ``X`` (N, H*W).
    """
    degrees = check_scalar(degrees, "degrees", high=180.0)
    H, W = _check_image_shape(image_shape)
    if not isinstance(random_sign, bool):
        raise ValueError(f"random_sign must be True or False; got {random_sign!r}")

    def apply(X, gen):
        N = X.shape[0]
        sign = (torch.randint(0, 2, (N,), generator=gen) * 2 - 1).double() if random_sign else torch.ones(N).double()
        a = sign * math.radians(degrees)
        c, s = torch.cos(a), torch.sin(a)
        theta = torch.zeros(N, 2, 3, dtype=torch.float64)
        # normalised coordinates: x in units of W/2, y of H/2 (kept square for H != W)
        theta[:, 0, 0], theta[:, 0, 1] = c, -s * H / W
        theta[:, 1, 0], theta[:, 1, 1] = s * W / H, c
        return _warp(X, (H, W), theta.to(X.dtype).to(X.device), False)

    what = "+-" if random_sign else ""
    return Transform(f"rotation {what}{degrees:g} deg", (H, W), apply, random=random_sign, linear=not random_sign)


def additive_noise(sigma: float) -> Transform:
    r"""Additive Gaussian noise :math:`T x = x + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, I)`, drawn from the call's ``seed``.

    Parameters
    ----------
    sigma : the standard deviation of the noise (>= 0), in units of the pixel values.

    Returns
    -------
    Transform : ``T(X, seed=0)`` for ``X`` (N, d) of any d.
    """
    sigma = check_scalar(sigma, "sigma")

    def apply(X, gen):
        return X + sigma * torch.randn(X.shape, generator=gen, dtype=X.dtype).to(X.device)

    return Transform(f"noise sigma = {sigma:g}", None, apply, random=True, linear=False)


def transform_matrix(transform: Transform, d: int | None = None, *, dtype=torch.float64) -> torch.Tensor:
    """The matrix ``T`` (d, d) of a linear transform: ``transform(X) == X @ T.T``.

    Parameters
    ----------
    transform : a linear :class:`Transform` (a shift with a fixed ``angle``, a rotation with
        ``random_sign=False``).
    d : the number of pixels; default H*W of the transform's ``image_shape``.

    Returns
    -------
    T : tensor (d, d); column j is the transformed j-th unit image.
    """
    transform = _check_transform(transform)
    if not transform.linear:
        raise ValueError(f"transform must be linear and deterministic (a shift with a fixed angle, a rotation with "
                         f"random_sign=False); got {transform.name!r}")
    if d is None:
        d = transform.image_shape[0] * transform.image_shape[1]
    d = check_int(d, "d")
    return transform(torch.eye(d, dtype=dtype)).T.contiguous()


# ------------------------------------------------------------------------ sensitivity
@dataclass(frozen=True)
class Sensitivity:
    """The result of :func:`sensitivity`.

    ``representation`` is :math:`\\rho_f` (mean relative change of f), ``input`` is
    :math:`\\rho_x` (mean relative change of the input, the baseline), ``ratio`` is
    :math:`\\rho_f / \\rho_x`; ``per_sample`` holds the relative changes (N, 2) of f and of x.
    """

    representation: float
    input: float
    ratio: float
    per_sample: torch.Tensor

    def as_dict(self) -> dict:
        return {"representation": self.representation, "input": self.input, "ratio": self.ratio}


def sensitivity(encode, X, transform, *, seed: int = 0, eps: float = 1e-12, batch_size: int = 1024,
                device=None) -> Sensitivity:
    r"""Relative change of a representation under a transform of the input, with the input's change as baseline.

    Parameters
    ----------
    encode : the representation, ``encode(X) -> S`` for a batch ``X`` (n, d), ``S`` (n, h),
        rows independent (a model's ``encode`` in eval mode, a function of the rows).
    X : tensor (N, d), the inputs (one image per row).
    transform : a :class:`Transform` (or any function ``X -> X'`` of the same shape); the
        transform is applied to the **input**, never to the representation.
    seed : the random draws of a random transform.
    eps : floor of the norms :math:`\lVert f(x_i)\rVert` and :math:`\lVert x_i\rVert` we divide by.
    batch_size : rows encoded at a time.
    device : where to encode (default: the device of ``X``).

    Returns
    -------
    Sensitivity : :math:`\rho_f = \frac1N\sum_i \lVert f(x_i) - f(T x_i)\rVert / \lVert f(x_i)\rVert`,
        :math:`\rho_x = \frac1N\sum_i \lVert x_i - T x_i\rVert / \lVert x_i\rVert` and their ratio
        :math:`\rho_f / \rho_x` (0 for an invariant representation, 1 for the identity).
    """
    encode = _check_encode(encode)
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=device)
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one row (N >= 1)")
    if not (isinstance(transform, Transform) or callable(transform)):
        raise ValueError(f"transform must be a Transform or a function X -> X'; got {type(transform).__name__}")
    seed = _check_seed(seed)
    eps = check_scalar(eps, "eps", low=0.0, low_inclusive=False)
    batch_size = check_int(batch_size, "batch_size")
    XT = transform(X, seed=seed) if isinstance(transform, Transform) else transform(X)
    if not isinstance(XT, torch.Tensor) or XT.shape != X.shape:
        raise ValueError(f"transform(X) must return a tensor of the shape of X {tuple(X.shape)}; got "
                         f"{tuple(XT.shape) if isinstance(XT, torch.Tensor) else type(XT).__name__}")
    rel_f, rel_x = [], []
    with torch.no_grad():
        for i in range(0, X.shape[0], batch_size):
            x, xt = X[i : i + batch_size], XT[i : i + batch_size]
            s, st = _encode(encode, x), _encode(encode, xt)
            if st.shape != s.shape:
                raise ValueError(f"encode must return codes of one size h; got {tuple(s.shape)} and {tuple(st.shape)}")
            s, st = s.double(), st.double()
            rel_f.append(torch.linalg.vector_norm(s - st, dim=1) / torch.linalg.vector_norm(s, dim=1).clamp_min(eps))
            xd = x.double()
            rel_x.append(torch.linalg.vector_norm(xd - xt.double(), dim=1)
                         / torch.linalg.vector_norm(xd, dim=1).clamp_min(eps))
    rel_f, rel_x = torch.cat(rel_f).cpu(), torch.cat(rel_x).cpu()
    rho_f, rho_x = float(rel_f.mean()), float(rel_x.mean())
    ratio = rho_f / rho_x if rho_x > 0 else (0.0 if rho_f == 0 else math.inf)
    return Sensitivity(rho_f, rho_x, ratio, torch.stack([rel_f, rel_x], dim=1))


# ------------------------------------------------------------------------ linear probe
@dataclass
class LinearProbe:
    """A linear classifier on a representation: scores ``S @ W.T + b``, decision the arg max.

    ``W`` (K, h) and ``b`` (K,) are float64 tensors in the units of the representation (a
    standardisation of the probe's training is folded in); ``classes`` (K,) the labels.
    A binary scikit-learn model becomes K = 2 with the first row zero.
    """

    W: torch.Tensor
    b: torch.Tensor
    classes: np.ndarray

    @classmethod
    def from_sklearn(cls, model, scaler=None) -> "LinearProbe":
        """From a fitted :class:`sklearn.linear_model.LogisticRegression` (and the scaler before it:
        anything with ``mean_`` and ``scale_``, e.g. a :class:`~sklearn.preprocessing.StandardScaler`)."""
        if not hasattr(model, "coef_") or not hasattr(model, "intercept_"):
            raise ValueError(f"probe must be a fitted linear classifier with coef_ and intercept_; "
                             f"got {type(model).__name__}")
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
        if scaler is not None:
            scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
            coef = coef / scale
            intercept = intercept - coef @ scaler.mean_
        if coef.shape[0] == 1:  # binary: class 1 when w.s + b > 0
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        return cls(torch.as_tensor(coef), torch.as_tensor(intercept), np.asarray(model.classes_))

    def scores(self, S: torch.Tensor) -> torch.Tensor:
        """The K scores (N, K) of codes ``S`` (N, h), differentiable in ``S``."""
        W = self.W.to(S.device, S.dtype)
        return S @ W.T + self.b.to(S.device, S.dtype)

    def predict(self, S) -> np.ndarray:
        """The predicted labels (N,) of codes ``S`` (N, h)."""
        S = as_tensor(S, "S", ndim=2, shape="(N, h)")
        return self.classes[self.scores(S).argmax(dim=1).cpu().numpy()]


def _as_probe(probe) -> LinearProbe:
    if isinstance(probe, LinearProbe):
        return probe
    if isinstance(probe, (tuple, list)) and len(probe) == 2:
        W = as_tensor(probe[0], "probe[0] (W)", ndim=2, shape="(K, h)").double()
        b = as_tensor(probe[1], "probe[1] (b)", ndim=1, shape="(K,)").double()
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"probe (W, b) needs b of shape (K,) = ({W.shape[0]},); got {tuple(b.shape)}")
        if W.shape[0] < 2:
            raise ValueError("probe (W, b) needs K >= 2 classes (rows of W)")
        return LinearProbe(W, b, np.arange(W.shape[0]))
    if hasattr(probe, "coef_"):
        return LinearProbe.from_sklearn(probe)
    raise ValueError(f"probe must be a LinearProbe, a fitted LogisticRegression or a pair (W, b); "
                     f"got {type(probe).__name__}")


class _GlobalScaler:
    """Centre every unit, divide all by one scale: the root-mean-square deviation of the codes ``S`` (N, h)."""

    def __init__(self, S: np.ndarray):
        self.mean_ = S.mean(axis=0)
        rms = float(np.sqrt(((S - self.mean_) ** 2).mean()))
        self.scale_ = np.full(S.shape[1], rms if rms > 0 else 1.0)

    def transform(self, S: np.ndarray) -> np.ndarray:
        return (S - self.mean_) / self.scale_


@dataclass
class ProbeResult:
    """The result of :func:`linear_probe`.

    ``table``: one row per condition (``"clean"`` and one per transform), columns
    ``accuracy`` (mean over the seeds) and ``stderr`` (standard error of that mean);
    ``accuracies``: {condition: accuracy of every seed}; ``probe``: the :class:`LinearProbe`
    fitted on the whole training split (for :func:`input_margin`).
    """

    table: pd.DataFrame
    accuracies: dict
    probe: LinearProbe


def _splits(splits):
    if all(hasattr(splits, a) for a in ("X_train", "y_train", "X_test", "y_test")):
        return splits.X_train, splits.y_train, splits.X_test, splits.y_test
    if isinstance(splits, (tuple, list)) and len(splits) == 4:
        return tuple(splits)
    raise ValueError("splits must be an ImageSplits (lecture_ae.data.load_digits_splits()) or a tuple "
                     f"(X_train, y_train, X_test, y_test); got {type(splits).__name__}")


def _labels(y, name, n) -> np.ndarray:
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be a 1-D array of N = {n} labels; got shape {y.shape}")
    return y


def _codes(encode, X, batch_size=1024) -> np.ndarray:
    with torch.no_grad():
        parts = [_encode(encode, X[i : i + batch_size]).double().cpu() for i in range(0, X.shape[0], batch_size)]
    return torch.cat(parts).numpy()


def linear_probe(encode, splits, transforms=None, *, n_seeds: int = 3, subsample: float = 0.8, C: float = 1.0,
                 standardize: bool = True, max_iter: int = 2000, seed: int = 0, device=None) -> ProbeResult:
    r"""Test accuracy of a logistic regression trained on the representation, clean and under transforms.

    Parameters
    ----------
    encode : the representation, ``encode(X) -> S`` for ``X`` (n, d), ``S`` (n, h).
    splits : an :class:`~lecture_ae.data.ImageSplits` or ``(X_train, y_train, X_test, y_test)``
        with ``X_*`` (N, d) and labels ``y_*`` (N,). The probe is trained on the **training**
        split only; the test split is only ever predicted.
    transforms : ``{name: Transform}`` applied to the test **inputs** before encoding
        (default none: clean accuracy only).
    n_seeds : repetitions; repetition k uses ``seed + k`` to draw the subsample of the training
        split and the random transforms.
    subsample : fraction of the training split each repetition trains on (1.0: all of it; the
        clean accuracy is then the same for every seed and its standard error 0).
    C : inverse L2 strength of :class:`sklearn.linear_model.LogisticRegression`.
    standardize : centre the codes on the training split's mean and divide them by one number,
        their root-mean-square spread (the same for every unit, so the geometry of the
        representation is kept: no unit that hardly varies is blown up), so that one ``C``
        suits every representation.
    max_iter : iterations of the lbfgs solver.
    seed : the first seed.
    device : where to encode (default: the device of the data).

    Returns
    -------
    ProbeResult : the table (accuracy, standard error over the seeds, per condition), every
        seed's accuracies and the probe fitted on the whole training split.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    encode = _check_encode(encode)
    X_train, y_train, X_test, y_test = _splits(splits)
    X_train = as_tensor(X_train, "X_train", ndim=2, shape="(N, d)", device=device)
    X_test = as_tensor(X_test, "X_test", ndim=2, shape="(N, d)", device=device)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train and X_test must have the same d; got {X_train.shape[1]} and {X_test.shape[1]}")
    y_train = _labels(y_train, "y_train", X_train.shape[0])
    y_test = _labels(y_test, "y_test", X_test.shape[0])
    if len(np.unique(y_train)) < 2:
        raise ValueError("y_train must hold at least two classes")
    transforms = {} if transforms is None else transforms
    if not isinstance(transforms, dict):
        raise ValueError(f"transforms must be a dict {{name: Transform}}; got {type(transforms).__name__}")
    for name, t in transforms.items():
        _check_transform(t, f"transforms[{name!r}]")
    if "clean" in transforms:
        raise ValueError("transforms must not use the name 'clean' (the accuracy on the untransformed test split)")
    n_seeds = check_int(n_seeds, "n_seeds")
    subsample = check_scalar(subsample, "subsample", low=0.0, low_inclusive=False, high=1.0)
    C = check_scalar(C, "C", low=0.0, low_inclusive=False)
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be True or False; got {standardize!r}")
    max_iter = check_int(max_iter, "max_iter")
    seed = _check_seed(seed)

    S_train = _codes(encode, X_train)
    S_test = _codes(encode, X_test)

    def fit(S, y):
        scaler = _GlobalScaler(S) if standardize else None
        model = LogisticRegression(C=C, max_iter=max_iter)
        with threadpool_limits(1):  # a small problem: BLAS threads only cost time here
            model.fit(scaler.transform(S) if scaler is not None else S, y)
        return LinearProbe.from_sklearn(model, scaler)

    full = fit(S_train, y_train)
    acc = {"clean": [], **{name: [] for name in transforms}}
    n_train = X_train.shape[0]
    for k in range(n_seeds):
        if subsample < 1.0:
            rng = np.random.default_rng(seed + k)
            keep = np.sort(rng.choice(n_train, size=max(2, int(round(subsample * n_train))), replace=False))
            probe = fit(S_train[keep], y_train[keep])
        else:
            probe = full
        acc["clean"].append(float(np.mean(probe.predict(S_test) == y_test)))
        for name, t in transforms.items():
            S_t = _codes(encode, t(X_test, seed=seed + k))
            acc[name].append(float(np.mean(probe.predict(S_t) == y_test)))
    rows = {}
    for name, values in acc.items():
        v = np.asarray(values)
        se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        rows[name] = {"accuracy": float(v.mean()), "stderr": se}
    return ProbeResult(pd.DataFrame(rows).T, acc, full)


# ------------------------------------------------------------------------ margins
@dataclass
class Margins:
    """The result of :func:`input_margin` (N images).

    ``distance`` (N,): norm of the perturbation r that DeepFool found (``inf`` where the
    decision did not change within ``max_iter`` iterations); ``relative`` (N,): the same over
    :math:`\\lVert x\\rVert`; ``flipped`` (N,) bool; ``iterations`` (N,); ``perturbation``
    (N, d): r itself (``x + (1 + overshoot) r`` is classified differently).
    """

    distance: torch.Tensor
    relative: torch.Tensor
    flipped: torch.Tensor
    iterations: torch.Tensor
    perturbation: torch.Tensor

    def describe(self) -> dict:
        """Median, quartiles and mean of the distances of the images whose decision flipped."""
        d = self.distance[self.flipped].double()
        if d.numel() == 0:
            return {"median": math.inf, "q25": math.inf, "q75": math.inf, "mean": math.inf, "flipped": 0.0}
        q = torch.quantile(d, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "mean": float(d.mean()),
                "flipped": float(self.flipped.double().mean())}


def input_margin(encode, probe, X, *, max_iter: int = 50, overshoot: float = 0.02, n: int | None = None,
                 seed: int = 0, device=None) -> Margins:
    r"""Distance from each input to the probe's decision boundary, by DeepFool through the encoder.

    For an image x with decision :math:`k_0 = \arg\max_k z_k(x)`, scores
    :math:`z(x) = W f(x) + b`, DeepFool linearises every score difference
    :math:`g_k = z_k - z_{k_0}` at the current point, steps onto the nearest linearised boundary,
    :math:`r \mathrel{+}= \frac{|g_l|}{\lVert\nabla g_l\rVert^2}\nabla g_l` with
    :math:`l = \arg\min_{k \ne k_0} |g_k| / \lVert \nabla g_k \rVert`, and repeats from
    :math:`x + (1 + \text{overshoot})\, r` until the decision changes.  The gradients come from
    torch autograd through ``encode``.  For a linear encoder the first step lands exactly on the
    boundary: the distance is :math:`\min_{k \ne k_0} |g_k(x)| / \lVert \nabla g_k \rVert`.

    Parameters
    ----------
    encode : the representation, differentiable with torch autograd, rows independent
        (``encode(X)`` (n, d) -> (n, h); a model in eval mode).
    probe : a :class:`LinearProbe` (``linear_probe(...).probe``), a fitted scikit-learn
        ``LogisticRegression`` or a pair ``(W, b)`` of shapes (K, h), (K,).
    X : tensor (N, d), the inputs.
    max_iter : DeepFool iterations at most (>= 1).
    overshoot : the step past the linearised boundary (>= 0) that makes the decision flip.
    n : use ``n`` rows of ``X`` drawn at random (from ``seed``) instead of all.
    seed : the draw of the ``n`` rows.
    device : where to compute (default: the device of ``X``).

    Returns
    -------
    Margins : the distances (N,) (``inf`` where the decision did not flip), relative
        distances, which flipped, the iterations used and the perturbations (N, d).
    """
    encode = _check_encode(encode)
    probe = _as_probe(probe)
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=device)
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one row (N >= 1)")
    max_iter = check_int(max_iter, "max_iter")
    overshoot = check_scalar(overshoot, "overshoot")
    seed = _check_seed(seed)
    if n is not None:
        n = check_int(n, "n")
        if n > X.shape[0]:
            raise ValueError(f"n must be <= the number of rows of X ({X.shape[0]}); got {n}")
        idx = torch.randperm(X.shape[0], generator=make_generator(seed))[:n].sort().values
        X = X[idx.to(X.device)]
    X0 = X.detach()
    N = X0.shape[0]
    rows = torch.arange(N, device=X0.device)
    with torch.no_grad():
        S0 = _encode(encode, X0)
        if S0.shape[1] != probe.W.shape[1]:
            raise ValueError(f"probe has h = {probe.W.shape[1]} inputs but encode gives codes of size {S0.shape[1]}")
        k0 = probe.scores(S0).argmax(dim=1)
    r = torch.zeros_like(X0)
    flipped = torch.zeros(N, dtype=torch.bool, device=X0.device)
    iterations = torch.zeros(N, dtype=torch.long, device=X0.device)
    K = probe.W.shape[0]
    for it in range(max_iter + 1):
        x = (X0 + (1 + overshoot) * r).detach().requires_grad_(True)
        z = probe.scores(_encode(encode, x))
        flipped = flipped | (z.detach().argmax(dim=1) != k0)
        active = ~flipped
        if it == max_iter or not bool(active.any()):
            break
        grads = torch.stack([torch.autograd.grad(z[:, k].sum(), x, retain_graph=k < K - 1)[0] for k in range(K)],
                            dim=1)  # (N, K, d): rows independent, so the gradient of the sum is per row
        g = (z - z[rows, k0].unsqueeze(1)).detach()
        w = grads - grads[rows, k0].unsqueeze(1)
        wn = torch.linalg.vector_norm(w, dim=2)
        dist = g.abs() / wn.clamp_min(1e-30)
        dist[rows, k0] = math.inf
        dist = torch.where(wn > 0, dist, torch.full_like(dist, math.inf))
        best = dist.argmin(dim=1)
        gl, wl, wnl = g[rows, best], w[rows, best], wn[rows, best]
        step = (gl.abs() / wnl.clamp_min(1e-30) ** 2).unsqueeze(1) * wl
        ok = active & torch.isfinite(dist[rows, best])
        r = torch.where(ok.unsqueeze(1), r + step, r)
        iterations = iterations + ok.long()
        if not bool(ok.any()):
            break
    distance = torch.linalg.vector_norm(r, dim=1).double()
    distance = torch.where(flipped, distance, torch.full_like(distance, math.inf))
    norm_x = torch.linalg.vector_norm(X0.double(), dim=1).clamp_min(1e-30)
    return Margins(distance.cpu(), (distance / norm_x).cpu(), flipped.cpu(), iterations.cpu(), r.detach().cpu())


# ------------------------------------------------------------------------ encoders
def linear_encoder(V, c=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The affine representation ``f(X) = X @ V.T + c`` (differentiable).

    Parameters
    ----------
    V : tensor (h, d), one filter per row.
    c : tensor (h,) or None (zero).

    Returns
    -------
    encode : function (N, d) -> (N, h).
    """
    V = as_tensor(V, "V", ndim=2, shape="(h, d)")
    c = torch.zeros(V.shape[0], dtype=V.dtype) if c is None else as_tensor(c, "c", ndim=1, shape="(h,)")
    if c.shape[0] != V.shape[0]:
        raise ValueError(f"c must have shape (h,) = ({V.shape[0]},); got {tuple(c.shape)}")

    def encode(X):
        return X @ V.to(X.device, X.dtype).T + c.to(X.device, X.dtype)

    return encode


def pca_encoder(X_train, h: int, *, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The first ``h`` principal components of ``X_train`` (N, d) as a differentiable encoder (N, d) -> (N, h).

    ``f(x) = U (x - mean)`` with the components ``U`` (h, d) of scikit-learn's PCA.
    """
    from sklearn.decomposition import PCA

    X_train = as_tensor(X_train, "X_train", ndim=2, shape="(N, d)")
    h = check_int(h, "h")
    if h > min(X_train.shape):
        raise ValueError(f"h must be <= min(N, d) = {min(X_train.shape)}; got {h}")
    pca = PCA(h, random_state=_check_seed(seed)).fit(X_train.detach().cpu().double().numpy())
    U = torch.as_tensor(pca.components_)
    return linear_encoder(U, -U @ torch.as_tensor(pca.mean_))


def sparse_code_encoder(W, lam: float, *, n_iter: int = 300) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The sparse codes of a dictionary as an encoder: :math:`s(x) = \arg\min_s \lVert x - Ws\rVert^2 + \lambda\lVert s\rVert_1`.

    The support A and the signs :math:`\sigma` come from ``n_iter`` FISTA iterations
    (:func:`lecture_ae.sparse.fista`, in float64, no gradient); the returned codes are the
    closed form on that support,
    :math:`s_A = (W_A^\top W_A)^{-1} (W_A^\top x - \tfrac{\lambda}{2}\sigma_A)`, zero elsewhere:
    the exact minimiser when the support is right, and differentiable by torch autograd (the
    codes are piecewise linear in x).

    Parameters
    ----------
    W : tensor (d, h), the dictionary (one atom per column).
    lam : the L1 weight lambda (> 0).
    n_iter : FISTA iterations that find the support.

    Returns
    -------
    encode : function (N, d) -> (N, h).
    """
    from ..sparse import fista

    W = as_tensor(W, "W", ndim=2, shape="(d, h)").double()
    lam = check_scalar(lam, "lam", low=0.0, low_inclusive=False)
    n_iter = check_int(n_iter, "n_iter")

    def encode(X):
        Wd = W.to(X.device)
        with torch.no_grad():
            out = fista(X.detach().double(), Wd, lam, n_iter)
        S = (out[0] if isinstance(out, tuple) else out).to(X.dtype)
        Wd = Wd.to(X.dtype)
        m = (S != 0).to(X.dtype)  # (N, h) support
        G = Wd.T @ Wd
        eye = torch.eye(G.shape[0], dtype=X.dtype, device=X.device)
        M = m.unsqueeze(2) * G.unsqueeze(0) * m.unsqueeze(1) + (1 - m).unsqueeze(2) * eye  # identity off the support
        rhs = m * (X @ Wd - 0.5 * lam * torch.sign(S))
        return torch.linalg.solve(M, rhs.unsqueeze(2)).squeeze(2)

    return encode


# ------------------------------------------------------------------------ training for invariance
def corruption_loss(transforms, *, seed: int = 0):
    """A ``loss_fn(model, batch)`` for :func:`lecture_ae.train.fit`: reconstruct the clean batch from a transformed one.

    Every call applies each of ``transforms`` in turn to the clean batch ``x`` (a new random
    member each call, drawn from a generator seeded with ``seed``) and returns the model's
    objective ``model.objective(T x, x)``: a denoising autoencoder whose "noise" is the
    transform, e.g. small shifts and rotations, trained to map a moved digit back to the
    digit (the invariance the lecture asks for).

    Parameters
    ----------
    transforms : a :class:`Transform` or a sequence of them (applied in order).
    seed : seeds the draws of the transforms.

    Returns
    -------
    loss_fn : function ``(model, batch) -> scalar tensor``.
    """
    if isinstance(transforms, Transform):
        transforms = (transforms,)
    if not isinstance(transforms, (tuple, list)) or not transforms:
        raise ValueError("transforms must be a Transform or a non-empty sequence of them")
    for k, t in enumerate(transforms):
        _check_transform(t, f"transforms[{k}]")
    gen = make_generator(_check_seed(seed))

    def loss_fn(model, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        xt = x
        for t in transforms:
            xt = t(xt, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        return model.objective(xt, x)

    return loss_fn


# ------------------------------------------------------------------------ what a code keeps
def detail_split(X, image_shape=(8, 8), *, sigma: float = 1.0):
    """Split images into their coarse part (Gaussian blur) and their fine detail (the rest).

    Parameters
    ----------
    X : tensor (N, H*W), images as rows.
    image_shape : (H, W).
    sigma : standard deviation of the blur in pixels (> 0); zeros outside the image.

    Returns
    -------
    coarse, fine : tensors (N, H*W) with ``coarse + fine == X``.
    """
    from scipy.ndimage import gaussian_filter

    H, W = _check_image_shape(image_shape)
    X = as_tensor(X, "X", ndim=2, shape="(N, H*W)")
    if X.shape[1] != H * W:
        raise ValueError(f"X must have H*W = {H * W} columns for image_shape {(H, W)}; got shape {tuple(X.shape)}")
    sigma = check_scalar(sigma, "sigma", low=0.0, low_inclusive=False)
    imgs = X.detach().cpu().double().numpy().reshape(-1, H, W)
    low = gaussian_filter(imgs, (0, sigma, sigma), mode="constant")
    coarse = torch.as_tensor(low.reshape(X.shape[0], H * W), dtype=X.dtype, device=X.device)
    return coarse, X - coarse


def readout_r2(F_train, Y_train, F_test, Y_test, *, alpha: float = 1.0) -> float:
    r"""How much of ``Y`` a linear read-out of the features ``F`` recovers: test :math:`R^2` of ridge regression.

    The features are standardised on the training split (every column to unit variance) and
    :math:`\hat Y = F B + c` is fitted by ridge regression with weight ``alpha`` on the training
    split; the result is :math:`1 - \sum \lVert Y - \hat Y\rVert^2 / \sum \lVert Y - \bar Y\rVert^2`
    on the test split (1: all of Y is linearly readable; 0: no better than the mean).

    Parameters
    ----------
    F_train, F_test : tensors (N, p), (M, p): the features (e.g. a flattened feature map).
    Y_train, Y_test : tensors (N, q), (M, q): the targets (e.g. the fine detail of the images).
    alpha : the ridge weight (> 0).

    Returns
    -------
    float : the test R^2.
    """
    F_train = as_tensor(F_train, "F_train", ndim=2, shape="(N, p)").double()
    F_test = as_tensor(F_test, "F_test", ndim=2, shape="(M, p)").double()
    Y_train = as_tensor(Y_train, "Y_train", ndim=2, shape="(N, q)").double()
    Y_test = as_tensor(Y_test, "Y_test", ndim=2, shape="(M, q)").double()
    if F_train.shape[0] != Y_train.shape[0]:
        raise ValueError(f"F_train and Y_train must have the same number of rows; got {F_train.shape[0]} and "
                         f"{Y_train.shape[0]}")
    if F_test.shape[0] != Y_test.shape[0]:
        raise ValueError(f"F_test and Y_test must have the same number of rows; got {F_test.shape[0]} and "
                         f"{Y_test.shape[0]}")
    if F_train.shape[1] != F_test.shape[1] or Y_train.shape[1] != Y_test.shape[1]:
        raise ValueError("the training and test features (and targets) must have the same number of columns")
    alpha = check_scalar(alpha, "alpha", low=0.0, low_inclusive=False)
    mu, sd = F_train.mean(0), F_train.std(0).clamp_min(1e-12)
    A, B = (F_train - mu) / sd, (F_test - mu) / sd
    ym = Y_train.mean(0)
    coef = torch.linalg.solve(A.T @ A + alpha * torch.eye(A.shape[1], dtype=A.dtype), A.T @ (Y_train - ym))
    resid = ((Y_test - (B @ coef + ym)) ** 2).sum()
    total = ((Y_test - Y_test.mean(0)) ** 2).sum()
    return float(1 - resid / total) if total > 0 else float("nan")
