r"""Sparse codes: reconstruction, storage, the three objectives and the encoders.

Notation of the lecture.  A batch of N samples is the matrix ``X`` (N, d), one row
per sample; the dictionary ``W`` (d, h) holds the h atoms as columns; the codes
(sources) ``S`` (N, h) hold one code ``s_i`` per row, so that the reconstruction
of sample i is :math:`\hat x_i = W s_i` and of the batch :math:`\hat X = S W^\top`.

The three objectives, each a mean over the N samples as on the slides:

.. math::

    E_0(W, S)      &= \frac1N \sum_i \|x_i - W s_i\|_2^2 + \lambda \|s_i\|_0 \\
    E_1(W, S)      &= \frac1N \sum_i \|x_i - W s_i\|_2^2 + \lambda \|s_i\|_1 \\
    E_{1,\eta}(W, S) &= \frac1N \sum_i \left(\|x_i - W s_i\|_2^2 + \lambda \|s_i\|_1\right) + \eta \|W\|_F^2

There is no factor 1/2 in front of the reconstruction error.  scikit-learn's
``sparse_encode(alpha=a)`` minimises :math:`\tfrac12\|x - Ws\|^2 + a\|s\|_1`, the
same problem as ours with :math:`a = \lambda / 2`.

Encoders (all batched over the rows of X, on any device):

* :func:`ista` and :func:`fista` (Beck & Teboulle 2009) for :math:`E_1`, with the
  step :math:`1/L`, :math:`L = 2\|W\|_2^2` the Lipschitz constant of the gradient
  :math:`2 W^\top (W s - x)` of the reconstruction term;
* :func:`iht`, iterative hard thresholding, for :math:`E_0`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_int, check_same_rows, check_scalar
from .proximal import Smooth, accelerated_proximal_gradient, hard_prox, soft_prox

__all__ = [
    "reconstruct",
    "IndexValueCodes",
    "to_index_value",
    "reconstruct_index_value",
    "storage_bits",
    "sparsity",
    "per_sample_error",
    "l0_objective",
    "l1_objective",
    "soft_threshold",
    "hard_threshold",
    "lipschitz_constant",
    "ista",
    "fista",
    "iht",
    "l1_duality_gap",
]


# ----------------------------------------------------------------------------- checks
def _check_problem(X, W, S=None, *, device=None):
    """Validate X (N, d), W (d, h) and optionally S (N, h); put them on one device and dtype."""
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=device)
    W = as_tensor(W, "W", ndim=2, shape="(d, h)", device=X.device)
    if W.shape[0] != X.shape[1]:
        raise ValueError(
            f"W must have shape (d, h) with d = X.shape[1] = {X.shape[1]} rows; got W of shape {tuple(W.shape)}"
        )
    dtype = torch.promote_types(X.dtype, W.dtype)
    X, W = X.to(dtype), W.to(dtype)
    if S is None:
        return X, W
    S = as_tensor(S, "S", ndim=2, shape="(N, h)", device=X.device).to(dtype)
    check_same_rows(X, S, "X", "S")
    if S.shape[1] != W.shape[1]:
        raise ValueError(f"S must have shape (N, h) with h = W.shape[1] = {W.shape[1]}; got S of shape {tuple(S.shape)}")
    return X, W, S


# ----------------------------------------------------------------- reconstruction
def reconstruct(W, S) -> torch.Tensor:
    r"""Dense reconstruction :math:`\hat X = S W^\top`, i.e. :math:`\hat x_i = W s_i`.

    ``W`` is (d, h), ``S`` is (N, h) or a single code (h,); returns (N, d) or (d,).
    """
    W = as_tensor(W, "W", ndim=2, shape="(d, h)")
    S = as_tensor(S, "S", shape="(N, h)", device=W.device)
    if S.dim() not in (1, 2) or S.shape[-1] != W.shape[1]:
        raise ValueError(f"S must have shape (N, h) or (h,) with h = {W.shape[1]}; got {tuple(S.shape)}")
    dtype = torch.promote_types(W.dtype, S.dtype)
    return S.to(dtype) @ W.to(dtype).T


@dataclass(frozen=True)
class IndexValueCodes:
    """Codes in index-value form: for sample i, the pairs ``(indices[k], values[k])`` for
    ``k`` in ``range(offsets[i], offsets[i + 1])`` (compressed sparse rows).

    Only the non-zero entries are kept: ``nnz`` values and ``nnz`` indices, plus
    ``N + 1`` offsets that say where each sample's pairs start.
    """

    offsets: torch.Tensor  # (N + 1,) int64
    indices: torch.Tensor  # (nnz,) int64, atom index j of each entry
    values: torch.Tensor  # (nnz,) the coefficient s_ij
    n_atoms: int  # h

    @property
    def n_samples(self) -> int:
        return self.offsets.numel() - 1

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def pairs(self, i: int) -> list[tuple[int, float]]:
        """The (index, value) pairs of sample ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return [(int(j), float(v)) for j, v in zip(self.indices[a:b], self.values[a:b])]

    def to_dense(self) -> torch.Tensor:
        """Back to the dense (N, h) matrix."""
        S = torch.zeros(self.n_samples, self.n_atoms, dtype=self.values.dtype, device=self.values.device)
        rows = torch.repeat_interleave(torch.arange(self.n_samples, device=self.values.device), self.offsets.diff())
        S[rows, self.indices] = self.values
        return S


def to_index_value(S, tol: float = 0.0) -> IndexValueCodes:
    """Index-value form of the dense codes ``S`` (N, h); entries with ``|s| <= tol`` are dropped."""
    S = as_tensor(S, "S", ndim=2, shape="(N, h)")
    tol = check_scalar(tol, "tol")
    keep = S.abs() > tol
    rows, cols = keep.nonzero(as_tuple=True)  # row-major order: samples in turn
    counts = keep.sum(dim=1)
    offsets = torch.zeros(S.shape[0] + 1, dtype=torch.int64, device=S.device)
    offsets[1:] = counts.cumsum(0)
    return IndexValueCodes(offsets=offsets, indices=cols, values=S[rows, cols], n_atoms=S.shape[1])


def reconstruct_index_value(W, codes: IndexValueCodes) -> torch.Tensor:
    r"""Reconstruction from the index-value form: :math:`\hat x_i = \sum_k v_k\, w_{j_k}`.

    Touches only the ``nnz`` atoms that are used: cost ``O(nnz * d)`` instead of ``O(N h d)``.
    """
    W = as_tensor(W, "W", ndim=2, shape="(d, h)")
    if not isinstance(codes, IndexValueCodes):
        raise ValueError(f"codes must be an IndexValueCodes (see to_index_value); got {type(codes).__name__}")
    if codes.n_atoms != W.shape[1]:
        raise ValueError(f"codes index {codes.n_atoms} atoms but W has h = {W.shape[1]} columns")
    values = codes.values.to(W.device, W.dtype)
    rows = torch.repeat_interleave(torch.arange(codes.n_samples, device=W.device), codes.offsets.diff().to(W.device))
    out = torch.zeros(codes.n_samples, W.shape[0], dtype=W.dtype, device=W.device)
    out.index_add_(0, rows, values[:, None] * W.T[codes.indices.to(W.device)])
    return out


def storage_bits(S, value_bits: int = 32, index_bits: int | None = None, tol: float = 0.0) -> dict[str, int]:
    """Storage cost of the codes ``S`` (N, h) in bits, dense versus index-value.

    * dense: ``N * h * value_bits``;
    * index-value: ``nnz * (value_bits + index_bits)`` plus one count per sample
      (``ceil(log2(h + 1))`` bits each), with ``index_bits = ceil(log2 h)`` by default.

    Index-value form wins when the codes are sparse enough:
    ``nnz / (N h) < value_bits / (value_bits + index_bits)`` roughly.
    """
    S = as_tensor(S, "S", ndim=2, shape="(N, h)")
    value_bits = check_int(value_bits, "value_bits")
    N, h = S.shape
    if index_bits is None:
        index_bits = max(1, math.ceil(math.log2(h)))
    index_bits = check_int(index_bits, "index_bits")
    nnz = int((S.abs() > check_scalar(tol, "tol")).sum())
    count_bits = max(1, math.ceil(math.log2(h + 1)))
    return {
        "dense": N * h * value_bits,
        "index_value": nnz * (value_bits + index_bits) + N * count_bits,
        "nnz": nnz,
    }


def sparsity(S, tol: float = 0.0) -> float:
    """Mean number of non-zero entries per code, :math:`\\frac1N\\sum_i \\|s_i\\|_0`."""
    S = as_tensor(S, "S", ndim=2, shape="(N, h)")
    return float((S.abs() > check_scalar(tol, "tol")).sum(dim=1).double().mean())


# --------------------------------------------------------------------- objectives
def per_sample_error(X, W, S) -> torch.Tensor:
    r"""Squared reconstruction error of every sample, :math:`\|x_i - W s_i\|_2^2`, shape (N,)."""
    X, W, S = _check_problem(X, W, S)
    return _sq_error(X, W, S)


def _sq_error(X, W, S):
    return ((X - S @ W.T) ** 2).sum(dim=1)


def _l1_per_sample(X, W, S, lam):
    return _sq_error(X, W, S) + lam * S.abs().sum(dim=1)


def _l0_per_sample(X, W, S, lam):
    return _sq_error(X, W, S) + lam * (S != 0).sum(dim=1).to(X.dtype)


def l0_objective(X, W, S, lam) -> torch.Tensor:
    r""":math:`E_0 = \frac1N \sum_i \|x_i - W s_i\|_2^2 + \lambda \|s_i\|_0` (a 0-d tensor)."""
    X, W, S = _check_problem(X, W, S)
    lam = check_scalar(lam, "lam")
    return _l0_per_sample(X, W, S, lam).mean()


def l1_objective(X, W, S, lam, eta=0.0) -> torch.Tensor:
    r""":math:`E_{1,\eta} = \frac1N \sum_i (\|x_i - W s_i\|_2^2 + \lambda \|s_i\|_1) + \eta \|W\|_F^2`.

    With ``eta=0`` this is the plain L1 objective :math:`E_1`.  Returns a 0-d tensor
    (differentiable in X, W and S).
    """
    X, W, S = _check_problem(X, W, S)
    lam = check_scalar(lam, "lam")
    eta = check_scalar(eta, "eta")
    return _l1_per_sample(X, W, S, lam).mean() + eta * (W**2).sum()


# ------------------------------------------------------------------- proximal maps
def soft_threshold(x, lam) -> torch.Tensor:
    r"""Soft thresholding :math:`\mathrm{sign}(x)\max(|x| - \lambda, 0)`, element-wise, any shape.

    It is the proximal map of :math:`\lambda\|\cdot\|_1`:
    :math:`\arg\min_s \tfrac12\|s - x\|^2 + \lambda\|s\|_1`.  ``lam`` is a number or a
    tensor that broadcasts against ``x``.
    """
    x = as_tensor(x, "x", finite=False)
    if isinstance(lam, torch.Tensor) and lam.numel() > 1:
        if bool((lam < 0).any()) or not bool(torch.isfinite(lam).all()):
            raise ValueError("lam must be finite and >= 0 everywhere")
        lam = lam.to(x.device, x.dtype)
    else:
        lam = check_scalar(lam, "lam")
    return _soft(x, lam)


def _soft(x, lam):
    """sign(x) max(|x| - lam, 0) without checks: torch's one-pass softshrink for a number,
    x - clip(x, -lam, lam) for a tensor of thresholds."""
    if isinstance(lam, torch.Tensor):
        return x - torch.clamp(x, min=-lam, max=lam)
    return F.softshrink(x, lam)


def hard_threshold(x, threshold) -> torch.Tensor:
    r"""Hard thresholding: keep :math:`x` where :math:`|x| > \tau`, zero elsewhere.

    The proximal map of :math:`t\lambda\|\cdot\|_0` is hard thresholding at
    :math:`\tau = \sqrt{2 t \lambda}`.
    """
    x = as_tensor(x, "x", finite=False)
    threshold = check_scalar(threshold, "threshold")
    return torch.where(x.abs() > threshold, x, torch.zeros_like(x))


def lipschitz_constant(W) -> float:
    r"""Lipschitz constant :math:`L = 2\|W\|_2^2 = 2\sigma_{\max}(W)^2` of :math:`s \mapsto 2W^\top(Ws - x)`."""
    W = as_tensor(W, "W", ndim=2, shape="(d, h)")
    return _lipschitz_from_gram(W.T @ W)


def _lipschitz_from_gram(G) -> float:
    """2 * largest eigenvalue of the Gram matrix W^T W (computed in float64 for robustness)."""
    if G.numel() == 0:
        return 0.0
    G64 = G.double()
    try:
        return 2.0 * float(torch.linalg.eigvalsh(G64)[-1])
    except RuntimeError:  # LAPACK failure on a degenerate matrix: use the SVD instead
        return 2.0 * float(torch.linalg.matrix_norm(G64, ord=2))


# ------------------------------------------------------------------------ encoders
def _setup(X, W, lam, n_iter, step, S0, device):
    X, W = _check_problem(X, W, device=device)
    lam = check_scalar(lam, "lam")
    n_iter = check_int(n_iter, "n_iter", low=0)
    G = W.T @ W  # (h, h) Gram matrix
    B = X @ W  # (N, h) correlations W^T x_i
    if step is None:
        L = _lipschitz_from_gram(G)
        step = 1.0 / L if L > 0 else 1.0
    else:
        step = check_scalar(step, "step", low=0.0, low_inclusive=False)
    S = _check_start(S0, X.shape[0], W.shape[1], X)
    return X, W, lam, n_iter, step, G, B, S


def _check_start(S0, N, h, X):
    if S0 is None:
        return torch.zeros(N, h, dtype=X.dtype, device=X.device)
    S = as_tensor(S0, "S0", ndim=2, shape="(N, h)", device=X.device).to(X.dtype).clone()
    if S.shape != (N, h):
        raise ValueError(f"S0 must have shape (N, h) = {(N, h)}; got {tuple(S.shape)}")
    return S


class _GramLasso(Smooth):
    r"""The reconstruction error :math:`\|x_i - W s_i\|^2` of every row, its gradient :math:`2(sG - b)` from the
    Gram matrix G = W^T W and B = X W (computed once), and the fused step ``Y - 2t(YG - B)``."""

    def __init__(self, X, W, G, B, fused=True):
        self.X, self.W, self.G, self.B, self.fused = X, W, G, B, fused

    def grad(self, Y):
        return 2.0 * (Y @ self.G - self.B)

    def value(self, Y):
        return _sq_error(self.X, self.W, Y)

    def forward(self, Y, t):
        if self.fused:  # one addmm: Y - 2t Y G, then + 2t B
            return torch.addmm(Y, Y, self.G, alpha=-2.0 * t).add_(self.B, alpha=2.0 * t)
        return Y - t * 2.0 * (Y @ self.G - self.B)  # the plain step (ISTA and IHT, as the assignments write it)

    def restrict(self, rows):
        return _GramLasso(self.X[rows], self.W, self.G, self.B[rows], self.fused)


def _primal_terms(X, W, S, lam):
    """Residuals R = X - S W^T, their squared norms and the per-sample primal value P of the L1 objective."""
    R = X - S @ W.T
    rr = (R * R).sum(dim=1)
    return R, rr, rr + lam * S.abs().sum(dim=1)


def _gap_terms(X, W, S, lam):
    """Per-sample primal value P, duality gap P - D and correlations C = W^T (x - W s) of the L1 objective."""
    R, rr, P = _primal_terms(X, W, S, lam)
    C = R @ W
    cmax = C.abs().amax(dim=1) if C.shape[1] else torch.zeros_like(rr)
    # dual point theta = alpha r, scaled into the dual feasible set ||W^T theta||_inf <= lam / 2
    alpha = torch.where(cmax > 0.5 * lam, 0.5 * lam / cmax.clamp_min(1e-300), torch.ones_like(cmax))
    D = 2.0 * alpha * (X * R).sum(dim=1) - alpha * alpha * rr  # ||x||^2 - ||x - theta||^2
    return P, (P - D).clamp_min(0.0), C


def _relative_gap(P, gap):
    """gap / P per sample, 0 where P = 0 (codes and data all zero)."""
    return torch.where(P > 0, gap / P.clamp_min(1e-300), torch.zeros_like(gap))


def l1_duality_gap(X, W, S, lam, *, relative=True) -> torch.Tensor:
    r"""Duality gap of the L1 objective per sample, a certificate of how far codes are from optimal, (N,).

    For :math:`P(s) = \|x - Ws\|^2 + \lambda\|s\|_1` the dual is
    :math:`D(\theta) = \|x\|^2 - \|x - \theta\|^2` over :math:`\|W^\top\theta\|_\infty \le \lambda/2`; the
    dual point is the residual :math:`r = x - Ws` scaled into that set (as in scikit-learn's and
    celer's Lasso).  Always :math:`P(s) - P(s^\star) \le P(s) - D(\theta)`, so a relative gap of
    1e-6 proves that :math:`P(s)` is within 1e-6 of the optimum.  ``relative=True`` divides by
    :math:`P(s)` (0 where :math:`P(s) = 0`).  Lower-precision inputs are evaluated in float64 and the
    gap returned in their dtype: P - D cancels where P is small against :math:`\|x\|^2`, and float32's
    own rounding there can exceed 1e-5 for codes that are within 1e-6 of the optimum.
    """
    X, W, S = _check_problem(X, W, S)
    lam = check_scalar(lam, "lam")
    dtype = X.dtype
    if dtype != torch.float64:
        X, W, S = X.double(), W.double(), S.double()
    P, gap, _ = _gap_terms(X, W, S, lam)
    out = gap if not relative else _relative_gap(P, gap)
    return out.to(dtype)


def _gap_check(X, W, lam, tol):
    """A check for the loop: freeze the samples whose relative duality gap is <= tol."""

    def check(rows, S, smooth, R=None):
        P, gap, _ = _gap_terms(X[rows], W, S, lam)
        return gap <= tol * P

    return check


def ista(X, W, lam, n_iter=100, step=None, *, S0=None, tol=0.0, history=False, return_gap=False, device=None):
    r"""ISTA for the L1 objective :math:`E_1`: codes S (N, h) for data X (N, d) and dictionary W (d, h).

    One iteration is a gradient step on the reconstruction error followed by soft
    thresholding: :math:`s \leftarrow \mathrm{soft}_{t\lambda}(s - t\, 2W^\top(Ws - x))`, with
    step :math:`t = 1/L`, :math:`L = 2\|W\|_2^2` unless ``step`` is given.

    Parameters
    ----------
    n_iter : at most this many iterations (exactly this many when ``tol=0``).
    S0 : warm start (N, h); zeros by default.
    tol : stop a sample once its relative duality gap (:func:`l1_duality_gap`) is <= tol,
        checked every 10 iterations; the converged samples are frozen (0: run all iterations).
    history : also return the objective :math:`E_1` after every iteration (a list of floats).
    return_gap : also return the final relative duality gap of every sample, (N,).

    Returns ``S``, ``(S, objectives)`` when ``history=True``, with the gaps appended when
    ``return_gap=True``.  ISTA never increases :math:`E_1`.
    """
    X, W, lam, n_iter, t, G, B, S = _setup(X, W, lam, n_iter, step, S0, device)
    tol = check_scalar(tol, "tol")
    return _run(X, W, G, B, S, lam, t, n_iter, tol=tol, history=history, return_gap=return_gap, momentum=False)


def fista(X, W, lam, n_iter=100, step=None, *, S0=None, tol=0.0, history=False, monotone=False, restart=None,
          return_gap=False, device=None):
    r"""FISTA (Beck & Teboulle 2009) for the L1 objective :math:`E_1`; same arguments as :func:`ista`.

    Nesterov momentum on top of ISTA: the objective gap falls as :math:`O(1/k^2)`
    instead of :math:`O(1/k)`.  The objective may rise briefly; with ``monotone=True``
    the monotone variant (MFISTA) keeps, per sample, the better of the new proximal
    point and the previous iterate, so :math:`E_1` never increases (used by the batch
    dictionary learning, which promises a non-increasing objective).  ``restart=True``
    resets a sample's momentum when its step goes against it (O'Donoghue & Candès 2015):
    much faster to high accuracy; the default ``None`` restarts when a ``tol`` is given and runs
    the classical FISTA otherwise.  ``tol`` stops every sample on its relative duality gap
    (``return_gap=True`` returns it); for exact codes fast see :func:`lecture_ae.sparse.lasso`.
    """
    X, W, lam, n_iter, t, G, B, S = _setup(X, W, lam, n_iter, step, S0, device)
    tol = check_scalar(tol, "tol")
    restart = tol > 0 if restart is None else bool(restart)
    return _run(X, W, G, B, S, lam, t, n_iter, tol=tol, history=history, monotone=monotone, restart=restart,
                return_gap=return_gap)


def _run(X, W, G, B, S, lam, t, n_iter, *, tol=0.0, history=False, monotone=False, restart=False, momentum=True,
         return_gap=False):
    """ISTA / FISTA on checked inputs (G = W^T W, B = X W, step t) through the one proximal-gradient loop."""
    res = accelerated_proximal_gradient(
        _GramLasso(X, W, G, B, fused=momentum), soft_prox(lam), S, t, n_iter, momentum=momentum, restart=restart,
        monotone=monotone, history=history, check=_gap_check(X, W, lam, tol) if tol > 0 else None)
    out = (res.S, res.history) if history else (res.S,)
    if return_gap:
        P, gap, _ = _gap_terms(X, W, res.S, lam)
        out = out + (_relative_gap(P, gap),)
    return out if len(out) > 1 else out[0]


def iht(X, W, lam, n_iter=100, step=None, *, S0=None, tol=0.0, history=False, device=None):
    r"""Iterative hard thresholding for the L0 objective :math:`E_0`.

    :math:`s \leftarrow H_\tau(s - t\, 2W^\top(Ws - x))` with :math:`\tau = \sqrt{2t\lambda}`, the
    proximal map of :math:`t\lambda\|\cdot\|_0`.  With :math:`t \le 1/L` each step minimises a
    majoriser of :math:`E_0`, so the objective never increases; the L0 problem is
    NP-hard, so IHT finds a local minimum that depends on the start ``S0``.
    ``tol``: stop a sample when :math:`\|s_k - s_{k-1}\| \le tol \cdot \|s_k\|` (there is no
    duality gap for L0); checked every iteration.
    """
    X, W, lam, n_iter, t, G, B, S = _setup(X, W, lam, n_iter, step, S0, device)
    tol = check_scalar(tol, "tol")
    check = None
    if tol > 0:
        prev = {"S": S.clone()}

        def check(rows, S_rows, sm, R=None):
            stop = torch.linalg.vector_norm(S_rows - prev["S"][rows], dim=1) <= tol * torch.linalg.vector_norm(S_rows, dim=1)
            prev["S"][rows] = S_rows
            return stop

    res = accelerated_proximal_gradient(_GramLasso(X, W, G, B, fused=False), hard_prox(lam), S, t, n_iter,
                                        momentum=False, history=history, check=check, check_every=1)
    return (res.S, res.history) if history else res.S
