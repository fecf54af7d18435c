r"""Autoencoders of the lecture: linear, ReLU-sparse, deep (MLP), convolutional, denoising.

Sparse coding finds the code :math:`s` of every sample by an optimisation; an
autoencoder *learns the encoder* :math:`g` that computes it in one pass, together
with the decoder :math:`f`, so that :math:`\hat x = f(g(x)) \approx x`.
Notation as in :mod:`lecture_ae.sparse.coding`: a batch ``X`` (N, d) has one sample
per row, codes ``S`` (N, h), the decoder matrix ``W`` (d, h) and the encoder matrix
``V`` (h, d), so that :math:`S = X V^\top` and :math:`\hat X = S W^\top`.

The objective is written **once**, in :func:`sparse_ae_loss`, a mean over the N samples:

.. math::

    E(V, W) = \frac1N \sum_i \left(\|x_i - \hat x_i\|_2^2 + \lambda \|s_i\|_1\right) + \eta \|W\|_F^2,
    \qquad s_i = g(x_i),\ \hat x_i = f(s_i).

* :class:`LinearAutoencoder`: :math:`s = Vx`, :math:`\hat x = Ws`.  With
  :math:`\lambda = \eta = 0` the minimisers are exactly the rank-h maps whose
  decoder columns span the PCA subspace of the (centred) data (Baldi & Hornik 1989):
  a linear autoencoder *is* PCA, up to an invertible h x h mixing of the codes.
* :class:`ReLUSparseAutoencoder`: :math:`s = \max(0, Vx + c)`,
  :math:`\hat x = Ws + b`, with the L1 term and the dead-unit (relative-entropy) term
  :func:`dead_unit_term`, weighted by ``beta``.
* :class:`MLPAutoencoder`: deep :math:`f \circ g` with configurable widths.
* :class:`ConvAutoencoder`: strided convolutions down, transposed convolutions up;
  works for 8 x 8 digits and for larger single-channel tiles (64 x 64, 128 x 128, ...).
* :class:`DenoisingAutoencoder`: a :class:`NoiseLayer` (:func:`add_noise`: Gaussian,
  masking, salt-and-pepper) in front of any of them; the loss compares the
  reconstruction of the *corrupted* input with the *clean* one.

Every model has ``encode``, ``decode``, ``forward`` and ``loss(batch)`` (the one
:func:`lecture_ae.train.fit` calls); ``batch`` is ``X`` (reconstruct X) or a pair
``(X_in, X_target)``.
"""
from __future__ import annotations

import math
import numbers
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_tensor, check_int, check_scalar
from ..runtime import make_generator

__all__ = [
    "sparse_ae_loss",
    "reconstruction_error",
    "dead_unit_term",
    "activation_rates",
    "dead_fraction",
    "add_noise",
    "NOISE_KINDS",
    "relu_ae_forward",
    "Autoencoder",
    "LinearAutoencoder",
    "ReLUSparseAutoencoder",
    "MLPAutoencoder",
    "ConvAutoencoder",
    "NoiseLayer",
    "DenoisingAutoencoder",
]

NOISE_KINDS = ("gaussian", "masking", "salt_and_pepper")


# ============================================================================ losses
def _check_rows(X, X_hat):
    X = as_tensor(X, "X", ndim=2, shape="(N, d)")
    X_hat = as_tensor(X_hat, "X_hat", ndim=2, shape="(N, d)", device=X.device)
    if X_hat.shape != X.shape:
        raise ValueError(f"X_hat must have the shape of X, (N, d) = {tuple(X.shape)}; got {tuple(X_hat.shape)}")
    dtype = torch.promote_types(X.dtype, X_hat.dtype)
    return X.to(dtype), X_hat.to(dtype)


def reconstruction_error(X, X_hat) -> torch.Tensor:
    r"""Mean squared reconstruction error per sample, :math:`\frac1N\sum_i \|x_i - \hat x_i\|_2^2` (0-d tensor).

    ``X`` and ``X_hat`` are (N, d).  This is the first term of :func:`sparse_ae_loss`
    (a sum over the d pixels, a mean over the N samples).
    """
    X, X_hat = _check_rows(X, X_hat)
    return ((X - X_hat) ** 2).sum(dim=1).mean()


def sparse_ae_loss(X, X_hat, S, W, lam=0.0, eta=0.0) -> torch.Tensor:
    r"""The autoencoder objective of the lecture, written once:

    .. math::

        E = \frac1N \sum_{i=1}^N \left(\|x_i - \hat x_i\|_2^2 + \lambda \|s_i\|_1\right) + \eta \|W\|_F^2

    Parameters
    ----------
    X : (N, d) the inputs (targets of the reconstruction).
    X_hat : (N, d) the reconstructions :math:`\hat x_i = f(g(x_i))`.
    S : (N, h) the codes :math:`s_i = g(x_i)`.
    W : (d, h) the decoder matrix (its Frobenius norm is penalised), or ``None`` when ``eta = 0``.
    lam, eta : the weights :math:`\lambda \ge 0` of the L1 term and :math:`\eta \ge 0` of the Frobenius term.

    Returns a 0-d tensor, differentiable in all tensor arguments.  There is no factor
    1/2 and the mean is over samples, exactly as :func:`lecture_ae.sparse.coding.l1_objective`:
    with ``X_hat = S @ W.T`` both give the same number.
    """
    X, X_hat = _check_rows(X, X_hat)
    S = as_tensor(S, "S", ndim=2, shape="(N, h)", device=X.device)
    if S.shape[0] != X.shape[0]:
        raise ValueError(f"S must have shape (N, h) with N = X.shape[0] = {X.shape[0]} rows; got {tuple(S.shape)}")
    lam = check_scalar(lam, "lam")
    eta = check_scalar(eta, "eta")
    if W is None:
        if eta > 0:
            raise ValueError("W (d, h) is needed when eta > 0 (the term eta ||W||_F^2); got W=None")
        frob = 0.0
    else:
        W = as_tensor(W, "W", ndim=2, shape="(d, h)", device=X.device)
        if W.shape != (X.shape[1], S.shape[1]):
            raise ValueError(f"W must have shape (d, h) = {(X.shape[1], S.shape[1])} (d from X, h from S); got {tuple(W.shape)}")
        frob = eta * (W**2).sum()
    per_sample = ((X - X_hat) ** 2).sum(dim=1) + lam * S.abs().sum(dim=1)
    return per_sample.mean() + frob


def dead_unit_term(Z, tau=0.1) -> torch.Tensor:
    r"""The term against dead units (the lecture's "entropy term"), from the pre-activations ``Z`` (N, h).

    A ReLU unit :math:`s_j = \max(0, z_j)` is *dead* when :math:`z_{ij} \le 0` for every
    sample: it outputs 0, gets no gradient through the ReLU and never recovers.  The L1
    term pushes units that way.  The term measures how *unevenly* the h units are used:

    1. soft activation rate of unit j over the batch (the fraction of samples on which it
       fires, made differentiable with a sigmoid of temperature :math:`\tau`):
       :math:`p_j = \frac1N \sum_i \sigma(z_{ij} / \tau)`;
    2. share of unit j in the total activity: :math:`q_j = p_j / \sum_k p_k`
       (a probability distribution over the h units);
    3. the term is the relative entropy (Kullback-Leibler divergence) of the uniform
       usage :math:`u_j = 1/h` from the actual usage q,

       .. math:: D(Z) = \mathrm{KL}(u \,\|\, q) = \sum_{j=1}^h \frac1h \log\frac{1/h}{q_j}
                 = -\log h - \frac1h \sum_{j=1}^h \log q_j \;\ge 0.

    :math:`D = 0` exactly when all units fire equally often, and it grows without bound
    as one unit falls silent (:math:`q_j \to 0`).  Its gradient with respect to
    :math:`\log q_j` is the constant :math:`-1/h`, so a dead unit keeps receiving a push
    back to life (the term is computed on :math:`z`, not on :math:`\max(0, z)`, and in
    log space with ``logsigmoid`` / ``logsumexp``, so it stays finite and its gradient
    never vanishes numerically).  It does not fight the L1 term: the L1 term lowers the
    *total* activity, this term only balances it across units.  Returns a 0-d tensor.
    """
    Z = as_tensor(Z, "Z", ndim=2, shape="(N, h)")
    tau = check_scalar(tau, "tau", low=0.0, low_inclusive=False)
    N, h = Z.shape
    log_p = torch.logsumexp(F.logsigmoid(Z / tau), dim=0) - math.log(N)  # log p_j, shape (h,)
    log_q = log_p - torch.logsumexp(log_p, dim=0)
    return -math.log(h) - log_q.mean()


def activation_rates(S, tol=0.0) -> torch.Tensor:
    """Fraction of samples on which each unit is active, :math:`\\frac1N \\#\\{i : s_{ij} > tol\\}`, shape (h,)."""
    S = as_tensor(S, "S", ndim=2, shape="(N, h)")
    return (S > check_scalar(tol, "tol")).to(S.dtype).mean(dim=0)


def dead_fraction(S, tol=0.0) -> float:
    """Fraction of dead units: units j with :math:`s_{ij} \\le tol` for every sample i of ``S`` (N, h)."""
    return float((activation_rates(S, tol) == 0).to(torch.float64).mean())


def relu_ae_forward(X, V, c, W, b):
    r"""Forward pass of a one-hidden-layer ReLU autoencoder, as plain tensor algebra.

    .. math:: S = \max(0,\, X V^\top + c), \qquad \hat X = S W^\top + b

    ``X`` (N, d), encoder ``V`` (h, d) and bias ``c`` (h,), decoder ``W`` (d, h) and bias
    ``b`` (d,).  Returns ``(S, X_hat)`` with shapes (N, h) and (N, d).  This is exactly
    what :class:`ReLUSparseAutoencoder` computes (its ``encode`` and ``decode``).
    """
    X = as_tensor(X, "X", ndim=2, shape="(N, d)")
    V = as_tensor(V, "V", ndim=2, shape="(h, d)", device=X.device)
    if V.shape[1] != X.shape[1]:
        raise ValueError(f"V must have shape (h, d) with d = X.shape[1] = {X.shape[1]}; got {tuple(V.shape)}")
    h, d = V.shape
    c = as_tensor(c, "c", ndim=1, shape="(h,)", device=X.device)
    W = as_tensor(W, "W", ndim=2, shape="(d, h)", device=X.device)
    b = as_tensor(b, "b", ndim=1, shape="(d,)", device=X.device)
    if c.shape != (h,):
        raise ValueError(f"c must have shape (h,) = ({h},); got {tuple(c.shape)}")
    if W.shape != (d, h):
        raise ValueError(f"W must have shape (d, h) = {(d, h)}; got {tuple(W.shape)}")
    if b.shape != (d,):
        raise ValueError(f"b must have shape (d,) = ({d},); got {tuple(b.shape)}")
    S = torch.relu(X @ V.T + c)
    return S, S @ W.T + b


# ============================================================================= noise
def add_noise(X, kind="gaussian", level=0.1, generator=None, *, low=0.0, high=1.0) -> torch.Tensor:
    r"""A corrupted copy :math:`\tilde x` of ``X`` (any shape); ``X`` itself is not changed.

    * ``"gaussian"``: :math:`\tilde x = x + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, 1)`, with :math:`\sigma` = ``level``;
    * ``"masking"``: every entry is set to 0 with probability ``level`` (independently);
    * ``"salt_and_pepper"``: every entry is replaced with probability ``level``, by ``low``
      (pepper) or ``high`` (salt) with probability 1/2 each.

    ``level`` is >= 0 (and <= 1 for the two probabilities).  ``generator`` is a
    :class:`torch.Generator`, an integer seed, or ``None`` (torch's global random state).
    """
    X = as_tensor(X, "X")
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}; got {kind!r}")
    level = check_scalar(level, "level", high=None if kind == "gaussian" else 1.0)
    low = check_scalar(low, "low", low=None)
    high = check_scalar(high, "high", low=None)
    if generator is not None and not isinstance(generator, torch.Generator):
        generator = make_generator(generator)
    dev = generator.device if generator is not None else X.device

    def draw(fn):
        return fn(X.shape, generator=generator, device=dev, dtype=X.dtype).to(X.device)

    if kind == "gaussian":
        return X + level * draw(torch.randn)
    if kind == "masking":
        return torch.where(draw(torch.rand) < level, torch.zeros_like(X), X)
    hit = draw(torch.rand) < level
    salt = draw(torch.rand) < 0.5
    return torch.where(hit, torch.where(salt, torch.full_like(X, high), torch.full_like(X, low)), X)


# ============================================================================ models
@contextmanager
def _seeded(seed):
    """Build layers under a fixed seed without touching the global random state."""
    if seed is None:
        yield
        return
    seed = check_int(seed, "seed", low=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _split_batch(batch):
    if isinstance(batch, torch.Tensor):
        return batch, batch
    if isinstance(batch, (tuple, list)) and len(batch) == 1 and isinstance(batch[0], torch.Tensor):
        return batch[0], batch[0]
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, torch.Tensor) for b in batch):
        return batch[0], batch[1]
    raise ValueError("batch must be a tensor X or a pair (X_in, X_target) of tensors")


class Autoencoder(nn.Module):
    r"""Base class: :math:`\hat x = f(g(x))` with ``encode`` = g and ``decode`` = f.

    Subclasses define :meth:`encode`, :meth:`decode` and may override :meth:`objective`;
    the default objective is the reconstruction error :math:`\frac1N\sum_i \|x_i - \hat x_i\|^2`
    (summed over all pixels of a sample, whatever its shape).
    """

    def encode(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, s):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        return self.decode(self.encode(x))

    def objective(self, x_in, x_target) -> torch.Tensor:
        x_hat = self(x_in)
        return reconstruction_error(x_target.reshape(len(x_target), -1), x_hat.reshape(len(x_hat), -1))

    def loss(self, batch) -> torch.Tensor:
        """The training loss of a batch ``X`` (reconstruct X) or ``(X_in, X_target)``."""
        x_in, x_target = _split_batch(batch)
        return self.objective(x_in, x_target)

    @torch.no_grad()
    def codes(self, X, batch_size: int = 1024) -> torch.Tensor:
        """The codes g(X) in eval mode without gradients (on the model's device, returned like X)."""
        dev = next(self.parameters()).device
        was = self.training
        self.eval()
        out = torch.cat([self.encode(X[i : i + batch_size].to(dev)).to(X.device) for i in range(0, len(X), batch_size)])
        self.train(was)
        return out

    @torch.no_grad()
    def reconstruct(self, X, batch_size: int = 1024) -> torch.Tensor:
        """f(g(X)) in eval mode without gradients."""
        dev = next(self.parameters()).device
        was = self.training
        self.eval()
        out = torch.cat([self(X[i : i + batch_size].to(dev)).to(X.device) for i in range(0, len(X), batch_size)])
        self.train(was)
        return out


def _check_rows_input(x, d, name="x"):
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != d:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, d) with d = {d}; got {shape}")


class LinearAutoencoder(Autoencoder):
    r"""Linear autoencoder :math:`s = Vx`, :math:`\hat x = Ws` with the objective
    :math:`\frac1N\sum_i \|x_i - WVx_i\|_2^2 + \lambda\|Vx_i\|_1 + \eta\|W\|_F^2` (:func:`sparse_ae_loss`).

    ``V`` is (h, d), ``W`` is (d, h); there are no biases (the lecture's model), so
    centre the data first (subtract the mean image).  With ``lam = eta = 0`` the
    decoder columns span the top-h PCA subspace of the data at the optimum.
    """

    def __init__(self, d: int, h: int, *, lam=0.0, eta=0.0, seed: int | None = 0, dtype=torch.float32):
        super().__init__()
        self.d, self.h = check_int(d, "d"), check_int(h, "h")
        self.lam, self.eta = check_scalar(lam, "lam"), check_scalar(eta, "eta")
        with _seeded(seed):
            self.V = nn.Parameter(torch.randn(self.h, self.d, dtype=dtype) / math.sqrt(self.d))
            self.W = nn.Parameter(torch.randn(self.d, self.h, dtype=dtype) / math.sqrt(self.h))

    def encode(self, x):
        _check_rows_input(x, self.d)
        return x @ self.V.T

    def decode(self, s):
        return s @ self.W.T

    def objective(self, x_in, x_target):
        S = self.encode(x_in)
        return sparse_ae_loss(x_target, self.decode(S), S, self.W, self.lam, self.eta)

    def extra_repr(self) -> str:
        return f"d={self.d}, h={self.h}, lam={self.lam}, eta={self.eta}"


class ReLUSparseAutoencoder(Autoencoder):
    r"""ReLU sparse autoencoder :math:`s = \max(0, Vx + c)`, :math:`\hat x = Ws + b`.

    Objective (one batch): :func:`sparse_ae_loss` plus ``beta`` times :func:`dead_unit_term`
    of the pre-activations :math:`z = Vx + c`:

    .. math::

        E = \frac1N \sum_i \left(\|x_i - W s_i - b\|_2^2 + \lambda\|s_i\|_1\right) + \eta\|W\|_F^2
            + \beta\, D(Z).

    The encoder bias ``c`` is each unit's threshold (with :math:`c_j < 0` a unit fires
    only for inputs that match its filter well); the decoder bias ``b`` plays the role of
    the mean image.  :meth:`dead_fraction` reports the fraction of units that never fire
    on a data set.
    """

    def __init__(self, d: int, h: int, *, lam=0.0, eta=0.0, beta=0.0, tau=0.1, seed: int | None = 0, dtype=torch.float32):
        super().__init__()
        self.d, self.h = check_int(d, "d"), check_int(h, "h")
        self.lam, self.eta = check_scalar(lam, "lam"), check_scalar(eta, "eta")
        self.beta = check_scalar(beta, "beta")
        self.tau = check_scalar(tau, "tau", low=0.0, low_inclusive=False)
        with _seeded(seed):
            self.V = nn.Parameter(torch.randn(self.h, self.d, dtype=dtype) / math.sqrt(self.d))
            self.c = nn.Parameter(torch.zeros(self.h, dtype=dtype))
            self.W = nn.Parameter(torch.randn(self.d, self.h, dtype=dtype) / math.sqrt(self.h))
            self.b = nn.Parameter(torch.zeros(self.d, dtype=dtype))

    def preactivation(self, x):
        """:math:`z = Vx + c`, shape (N, h)."""
        _check_rows_input(x, self.d)
        return x @ self.V.T + self.c

    def encode(self, x):
        return torch.relu(self.preactivation(x))

    def decode(self, s):
        return s @ self.W.T + self.b

    def objective(self, x_in, x_target):
        Z = self.preactivation(x_in)
        S = torch.relu(Z)
        E = sparse_ae_loss(x_target, self.decode(S), S, self.W, self.lam, self.eta)
        if self.beta > 0:
            E = E + self.beta * dead_unit_term(Z, self.tau)
        return E

    def dead_fraction(self, X) -> float:
        """Fraction of units that output 0 on every row of ``X``."""
        return dead_fraction(self.codes(X))

    def extra_repr(self) -> str:
        return f"d={self.d}, h={self.h}, lam={self.lam}, eta={self.eta}, beta={self.beta}, tau={self.tau}"


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}
_OUTPUTS = {None: None, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def _check_widths(widths, name="widths"):
    if isinstance(widths, numbers.Integral) and not isinstance(widths, bool):
        widths = (widths,)
    if not isinstance(widths, (tuple, list)):
        raise ValueError(f"{name} must be a tuple of positive integers; got {widths!r}")
    return tuple(check_int(w, f"{name}[{i}]") for i, w in enumerate(widths))


class MLPAutoencoder(Autoencoder):
    r"""Deep autoencoder :math:`f \circ g`: fully connected layers d -> widths -> latent -> reversed widths -> d.

    ``widths=(128, 64)`` and ``latent=10`` give
    ``d -> 128 -> 64 -> 10 -> 64 -> 128 -> d`` with ``activation`` between layers, a
    linear code layer, and ``output`` (``"sigmoid"`` for data in [0, 1], or ``None``)
    on the reconstruction.  ``widths=()`` gives a one-layer encoder and decoder.
    """

    def __init__(self, d: int, latent: int, widths=(128,), *, activation="relu", output="sigmoid", seed: int | None = 0):
        super().__init__()
        self.d, self.latent = check_int(d, "d"), check_int(latent, "latent")
        self.widths = _check_widths(widths)
        act = _ACTIVATIONS[_check_choice(activation, "activation", _ACTIVATIONS)]
        out = _OUTPUTS[_check_choice(output, "output", _OUTPUTS)]
        sizes = (self.d, *self.widths)
        with _seeded(seed):
            enc, dec = [], []
            for a, b in zip(sizes[:-1], sizes[1:]):
                enc += [nn.Linear(a, b), act()]
            enc.append(nn.Linear(sizes[-1], self.latent))
            rsizes = (self.latent, *reversed(self.widths))
            for a, b in zip(rsizes[:-1], rsizes[1:]):
                dec += [nn.Linear(a, b), act()]
            dec.append(nn.Linear(rsizes[-1], self.d))
            if out is not None:
                dec.append(out())
            self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def encode(self, x):
        _check_rows_input(x, self.d)
        return self.encoder(x)

    def decode(self, s):
        return self.decoder(s)


def _check_image_size(image_size):
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise ValueError(f"image_size must be an integer or a pair (H, W); got {image_size!r}")
    return tuple(check_int(s, "image_size") for s in image_size)


class ConvAutoencoder(Autoencoder):
    r"""Convolutional autoencoder: ``depth = len(channels)`` strided convolutions down, transposed ones up.

    Each encoder block is ``Conv2d(kernel_size, stride 2) + ReLU`` and halves the image;
    the decoder mirrors it with ``ConvTranspose2d`` (stride 2, doubling exactly).  With
    ``latent`` set, a fully connected bottleneck of that many numbers sits in the middle;
    otherwise the code is the last feature map, ``channels[-1]`` x (H / 2^depth) x (W / 2^depth).

    ``image_size`` (H, W) must be divisible by ``2 ** depth``: 8 x 8 digits take depth <= 3,
    64 x 64 or 128 x 128 tiles e.g. ``channels=(16, 32, 64, 64)``.  Input is (N, C, H, W)
    or rows (N, C*H*W); the output has the shape of the input.
    """

    def __init__(self, image_size=8, channels=(16, 32), *, in_channels: int = 1, latent: int | None = None,
                 kernel_size: int = 3, output="sigmoid", seed: int | None = 0):
        super().__init__()
        self.image_size = _check_image_size(image_size)
        self.channels = _check_widths(channels, "channels")
        if not self.channels:
            raise ValueError("channels must hold at least one integer (the depth is len(channels))")
        self.in_channels = check_int(in_channels, "in_channels")
        self.kernel_size = check_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so that each stride-2 layer halves the image exactly); got {kernel_size}")
        depth = len(self.channels)
        H, W = self.image_size
        if H % 2**depth or W % 2**depth:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**depth = {2**depth} "
                             f"(depth = len(channels) = {depth}); use fewer channels entries or pad the images")
        self.latent = None if latent is None else check_int(latent, "latent")
        out = _OUTPUTS[_check_choice(output, "output", _OUTPUTS)]
        k, p = self.kernel_size, self.kernel_size // 2
        self.code_shape = (self.channels[-1], H // 2**depth, W // 2**depth)
        with _seeded(seed):
            enc, cin = [], self.in_channels
            for c in self.channels:
                enc += [nn.Conv2d(cin, c, k, stride=2, padding=p), nn.ReLU()]
                cin = c
            dec = []
            outs = (*reversed(self.channels[:-1]), self.in_channels)
            for i, c in enumerate(outs):
                dec.append(nn.ConvTranspose2d(cin, c, k, stride=2, padding=p, output_padding=1))
                if i < len(outs) - 1:
                    dec.append(nn.ReLU())
                cin = c
            if out is not None:
                dec.append(out())
            self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
            n_code = math.prod(self.code_shape)
            if self.latent is not None:
                self.to_latent = nn.Linear(n_code, self.latent)
                self.from_latent = nn.Sequential(nn.Linear(self.latent, n_code), nn.ReLU())

    def _as_images(self, x):
        H, W = self.image_size
        C = self.in_channels
        if isinstance(x, torch.Tensor) and x.dim() == 4 and tuple(x.shape[1:]) == (C, H, W):
            return x, False
        if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[1] == C * H * W:
            return x.reshape(len(x), C, H, W), True
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (N, {C}, {H}, {W}) or (N, {C * H * W}); got {shape}")

    def encode(self, x):
        x, _ = self._as_images(x)
        z = self.encoder(x)
        return self.to_latent(z.flatten(1)) if self.latent is not None else z

    def decode(self, s):
        if self.latent is not None:
            s = self.from_latent(s).reshape(len(s), *self.code_shape)
        return self.decoder(s)

    def forward(self, x):
        img, flat = self._as_images(x)
        out = self.decode(self.encode(img))
        return out.reshape(len(out), -1) if flat else out


class NoiseLayer(nn.Module):
    """Corrupts its input with :func:`add_noise` in training mode; the identity in eval mode (like dropout).

    ``always=True`` corrupts in eval mode too.
    """

    def __init__(self, kind="gaussian", level=0.1, *, low=0.0, high=1.0, always: bool = False):
        super().__init__()
        self.kind = _check_choice(kind, "kind", NOISE_KINDS)
        self.level = check_scalar(level, "level", high=None if kind == "gaussian" else 1.0)
        self.low, self.high = check_scalar(low, "low", low=None), check_scalar(high, "high", low=None)
        self.always = bool(always)

    def forward(self, x):
        if self.training or self.always:
            return add_noise(x, self.kind, self.level, low=self.low, high=self.high)
        return x

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, level={self.level}"


class DenoisingAutoencoder(Autoencoder):
    r"""A denoising autoencoder: a :class:`NoiseLayer` in front of any autoencoder.

    The loss of a clean batch X corrupts it, :math:`\tilde x = \mathrm{noise}(x)`, and
    compares the reconstruction of the corrupted input with the clean one, with the
    wrapped model's own objective (e.g. :math:`\frac1N\sum_i \|x_i - f(g(\tilde x_i))\|^2`).
    A pair ``(X_noisy, X_clean)`` is used as given.  In training mode ``forward``
    corrupts its input; in eval mode ``forward(x_noisy)`` is the denoised estimate.
    """

    def __init__(self, autoencoder: Autoencoder, kind="gaussian", level=0.3, *, low=0.0, high=1.0):
        super().__init__()
        if not isinstance(autoencoder, Autoencoder):
            raise ValueError(f"autoencoder must be a lecture_ae Autoencoder; got {type(autoencoder).__name__}")
        self.ae = autoencoder
        self.noise = NoiseLayer(kind, level, low=low, high=high)

    def encode(self, x):
        return self.ae.encode(x)

    def decode(self, s):
        return self.ae.decode(s)

    def forward(self, x):
        return self.ae(self.noise(x))

    def objective(self, x_in, x_target):
        return self.ae.objective(x_in, x_target)

    def loss(self, batch):
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            return self.ae.objective(batch[0], batch[1])
        x, _ = _split_batch(batch)
        x_noisy = add_noise(x, self.noise.kind, self.noise.level, low=self.noise.low, high=self.noise.high)
        return self.ae.objective(x_noisy, x)
