r"""Checks for problem set 1 (sparse coding): one ``check_*`` per function the students write.

Each check compares the student's function with the reference in
:mod:`lecture_ae.sparse` on random inputs drawn from ``seeds`` (float64) and
raises :class:`~lecture_ae.grading.checks.CheckFailed` with a message for the
student at the first difference.  The autograder cells of
``solutions/ps1_sparse_coding`` call every check twice: once with the defaults
(the visible tests the students run) and once between ``### BEGIN HIDDEN TESTS``
and ``### END HIDDEN TESTS`` with other seeds, shapes and ``edge_cases=True``.

The known wrong implementations (:class:`~lecture_ae.grading.checks.Mistake`)
are what turn "24 of 48 entries differ" into "the threshold should be
step * lam, not lam".
"""
from __future__ import annotations

import torch

from ..sparse import coding as _coding
from ..sparse import dictionary as _dictionary
from .checks import Case, Check, Mistake, scalar_close, tensor_close
from .inputs import F64 as _F64
from .inputs import gen as _gen
from .inputs import randn as _randn
from .inputs import sparse_codes as _sparse_codes
from .inputs import unit_columns as _dictionary_matrix

__all__ = ["check_soft_threshold", "check_l1_objective", "check_ista", "check_update_dictionary"]


# ----------------------------------------------------------------------- soft threshold
def _ref_soft_threshold(x, lam):
    return _coding.soft_threshold(x, lam)


_SOFT_MISTAKES = [
    Mistake("the sign is lost: max(|x| - lam, 0) must be multiplied by sign(x)",
            lambda x, lam: torch.clamp(x.abs() - lam, min=0)),
    Mistake("negative entries become 0: max(x - lam, 0) only handles the positive side; "
            "soft thresholding is sign(x) max(|x| - lam, 0)",
            lambda x, lam: torch.clamp(x - lam, min=0)),
    Mistake("hard thresholding: entries with |x| > lam are kept unchanged, but they must also shrink by lam",
            lambda x, lam: torch.where(x.abs() > lam, x, torch.zeros_like(x))),
    Mistake("entries with |x| < lam are not set to 0: x - lam sign(x) shrinks them past zero",
            lambda x, lam: x - lam * torch.sign(x)),
    Mistake("the threshold is lam / 2 instead of lam", lambda x, lam: _coding.soft_threshold(x, lam / 2)),
    Mistake("the threshold is 2 lam instead of lam", lambda x, lam: _coding.soft_threshold(x, 2 * lam)),
]


def _soft_threshold_cases(gen, *, shapes, lams):
    return [Case((_randn(gen, *shape, scale=2.0), lams[k % len(lams)]),
                 label=f"x of shape {tuple(shape)}, lam = {lams[k % len(lams)]}") for k, shape in enumerate(shapes)]


def _soft_threshold_edges():
    lam = 0.75
    return [
        Case((torch.tensor([-lam, lam, 0.0, lam + 1e-3, -lam - 1e-3, 1e-9], dtype=_F64), lam),
             label="entries exactly at +-lam and around 0"),
        Case((_randn(_gen(7), 3, 4), 0.0), label="lam = 0 returns x unchanged"),
        Case((_randn(_gen(8), 2, 3), 1e6), label="huge lam: everything becomes 0"),
        Case((_randn(_gen(9), 2, 3, 2, scale=3.0), 1.3), label="a 3-D tensor"),
    ]


check_soft_threshold = Check(
    "soft_threshold", _ref_soft_threshold, _soft_threshold_cases, _soft_threshold_edges,
    compare=tensor_close(1e-6, 1e-9), mistakes=_SOFT_MISTAKES, options=dict(shapes=((4, 5), (12,)), lams=(0.5, 1.0)),
    doc="Check ``soft_threshold(x, lam)``: element-wise, any shape, ``x`` not modified.")


# ----------------------------------------------------------------------- L1 objective
def _ref_l1_objective(X, W, S, lam, eta):
    return _coding.l1_objective(X, W, S, lam, eta)


def _residual(X, W, S):
    return X - S @ W.T


def _l1_variant(X, W, S, lam, eta, *, err="sq_sum", reduce="mean", pen="l1", eta_div_n=False, eta_sq=True, half=False):
    R = _residual(X, W, S)
    N = X.shape[0]
    if err == "sq_sum":
        e = (R**2).sum(dim=1)
    elif err == "norm":
        e = torch.linalg.vector_norm(R, dim=1)
    else:  # "sq_mean": averaged over the d coordinates too
        e = (R**2).mean(dim=1)
    if half:
        e = 0.5 * e
    p = S.abs().sum(dim=1) if pen == "l1" else (S**2).sum(dim=1)
    total = (e + lam * p).mean() if reduce == "mean" else (e + lam * p).sum()
    reg = (W**2).sum() if eta_sq else torch.linalg.vector_norm(W)
    return total + eta * reg / (N if eta_div_n else 1)


_L1_MISTAKES = [
    Mistake("the sum over the N samples is not divided by N (the objective is a mean over the samples)",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, reduce="sum")),
    Mistake("the reconstruction error is not squared: ||x - W s||_2 instead of ||x - W s||_2^2",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, err="norm")),
    Mistake("the squared error is averaged over the d coordinates too (.mean() over the whole matrix); "
            "||x_i - W s_i||^2 sums over the d coordinates",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, err="sq_mean")),
    Mistake("the penalty is lam ||s||_2^2 (squares) instead of the L1 norm lam ||s||_1 (absolute values)",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, pen="l2")),
    Mistake("eta ||W||_F^2 is divided by N; it is added once, outside the mean over the samples",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, eta_div_n=True)),
    Mistake("the eta term is missing: + eta ||W||_F^2",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, 0.0)),
    Mistake("the Frobenius norm of W is not squared: eta ||W||_F^2",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, eta_sq=False)),
    Mistake("a factor 1/2 in front of the reconstruction error; the lecture's objective has none",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, lam, eta, half=True)),
    Mistake("lam is missing in front of ||s||_1",
            lambda X, W, S, lam, eta: _l1_variant(X, W, S, 1.0, eta)),
]


def _l1_cases(gen, *, shapes, lams, etas):
    cases = []
    for N, d, h in shapes:
        for k, eta in enumerate(etas):
            lam = lams[k % len(lams)]
            X, W, S = _randn(gen, N, d), _dictionary_matrix(gen, d, h, scale=1.5), _sparse_codes(gen, N, h)
            cases.append(Case((X, W, S, lam, eta), label=f"N, d, h = {N}, {d}, {h}, lam = {lam}, eta = {eta}"))
    return cases


def _l1_edges():
    gen = _gen(99)
    X, W = _randn(gen, 1, 4), _dictionary_matrix(gen, 4, 6)
    return [
        Case((X, W, _sparse_codes(gen, 1, 6, density=0.6), 0.5, 0.2), label="a single sample, N = 1"),
        Case((_randn(gen, 5, 3), _dictionary_matrix(gen, 3, 4), torch.zeros(5, 4, dtype=_F64), 0.5, 0.25),
             label="all codes zero"),
        Case((_randn(gen, 6, 4), _randn(gen, 4, 2), _sparse_codes(gen, 6, 2, density=0.8), 0.0, 0.0),
             label="lam = eta = 0: the mean squared reconstruction error"),
        Case((_randn(gen, 30, 3), _dictionary_matrix(gen, 3, 5), _sparse_codes(gen, 30, 5), 2.0, 1.5),
             label="large lam and eta"),
    ]


check_l1_objective = Check(
    "l1_objective", _ref_l1_objective, _l1_cases, _l1_edges, compare=scalar_close(1e-6, 1e-9), mistakes=_L1_MISTAKES,
    options=dict(shapes=((8, 5, 7),), lams=(0.3,), etas=(0.1, 0.0)),
    doc="Check ``l1_objective(X, W, S, lam, eta)`` (N, d, h in ``shapes``): one number.")


# ------------------------------------------------------------------------------ ISTA
def _ref_ista(X, W, lam, n_iter, step=None):
    return _coding.ista(X, W, lam, n_iter=n_iter, step=step)


def _ista_variant(X, W, lam, n_iter, step=None, *, lipschitz="2spec", grad=2.0, threshold="t*lam", prox="soft",
                  extra=0, use_step=True):
    """ISTA with one thing changed (for the likely-mistake messages)."""
    if step is None or not use_step:
        spec = float(torch.linalg.matrix_norm(W, ord=2)) ** 2
        fro = float((W**2).sum())
        L = {"2spec": 2 * spec, "spec": spec, "2fro": 2 * fro, "fro": fro}[lipschitz]
        step = 1.0 / L
    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)
    tau = {"t*lam": step * lam, "lam": lam, "t*lam/2": step * lam / 2, "2*t*lam": 2 * step * lam}[threshold]
    for _ in range(max(n_iter + extra, 0)):
        Z = S - step * grad * (S @ W.T - X) @ W
        if prox == "soft":
            S = torch.sign(Z) * torch.clamp(Z.abs() - tau, min=0)
        elif prox == "hard":
            S = torch.where(Z.abs() > tau, Z, torch.zeros_like(Z))
        else:
            S = Z
    return S


def _ista_mistake(description, **kw):
    return Mistake(description, lambda X, W, lam, n_iter, step=None: _ista_variant(X, W, lam, n_iter, step, **kw))


_ISTA_MISTAKES = [
    _ista_mistake("the step uses L = ||W||_2^2; the gradient of ||x - W s||^2 is 2 W^T (W s - x), "
                  "so its Lipschitz constant is L = 2 ||W||_2^2", lipschitz="spec"),
    _ista_mistake("L uses the Frobenius norm ||W||_F^2; the Lipschitz constant needs the spectral norm "
                  "(largest singular value): L = 2 ||W||_2^2, e.g. torch.linalg.matrix_norm(W, ord=2)", lipschitz="2fro"),
    _ista_mistake("L uses ||W||_F^2 without the factor 2; the Lipschitz constant is L = 2 ||W||_2^2 "
                  "(spectral norm)", lipschitz="fro"),
    _ista_mistake("the threshold is lam; the proximal step of t * lam ||s||_1 thresholds at step * lam",
                  threshold="lam"),
    _ista_mistake("the threshold is step * lam / 2; the lecture's objective has no 1/2, so it is step * lam",
                  threshold="t*lam/2"),
    _ista_mistake("the gradient misses the factor 2: the gradient of ||x - W s||^2 is 2 W^T (W s - x)", grad=1.0),
    _ista_mistake("the gradient step goes uphill: s - step * 2 W^T (W s - x) (minus sign)", grad=-2.0),
    _ista_mistake("no soft thresholding after the gradient step (this is plain gradient descent)", prox="none"),
    _ista_mistake("hard thresholding instead of soft thresholding", prox="hard"),
    _ista_mistake("one iteration too many: run exactly n_iter iterations, starting from S = 0", extra=1),
    _ista_mistake("one iteration too few: run exactly n_iter iterations, starting from S = 0", extra=-1),
    _ista_mistake("the step argument is ignored: when step is given, use it instead of 1/L", use_step=False),
]


def _ista_cases(gen, *, shapes, lams, n_iters, steps):
    cases = []
    for N, d, h in shapes:
        W = _dictionary_matrix(gen, d, h)
        X = _sparse_codes(gen, N, h, density=0.25, scale=2.0) @ W.T + _randn(gen, N, d, scale=0.1)
        L = 2 * float(torch.linalg.matrix_norm(W, ord=2)) ** 2
        for k, n_iter in enumerate(n_iters):
            lam = lams[k % len(lams)]
            cases.append(Case((X, W, lam, n_iter), label=f"N, d, h = {N}, {d}, {h}, lam = {lam}, n_iter = {n_iter}"))
        for step in steps:
            if step == "half":
                cases.append(Case((X, W, lams[0], max(n_iters)), {"step": 0.5 / L},
                                  label=f"step = 0.5 / L given explicitly, n_iter = {max(n_iters)}"))
    return cases


def _ista_edges():
    gen = _gen(123)
    W = _dictionary_matrix(gen, 6, 3, scale=3.0)
    X = _randn(gen, 4, 6)
    W2 = _dictionary_matrix(gen, 5, 9)
    X2 = _randn(gen, 1, 5)
    return [
        Case((X, W, 0.1, 0), label="n_iter = 0 returns S = 0"),
        Case((X, W, 0.1, 2), label="columns of W of norm 3 (L is not 2 ||W||_2^2 = 2 * h) and h < d"),
        Case((X, W, 1e4, 5), label="huge lam: all codes stay 0"),
        Case((X2, W2, 0.05, 3), label="a single sample, N = 1"),
        Case((X2, W2, 0.05, 3), {"step": 0.01}, label="a small explicit step"),
    ]


check_ista = Check(
    "ista", _ref_ista, _ista_cases, _ista_edges, compare=tensor_close(1e-5, 1e-6), mistakes=_ISTA_MISTAKES,
    options=dict(shapes=((6, 5, 8),), lams=(0.2,), n_iters=(1, 30), steps=(None, "half")),
    doc="""Check ``ista(X, W, lam, n_iter, step=None)``: codes S (N, h) after exactly ``n_iter`` iterations from S = 0.

    ``steps``: ``None`` (the default 1/L) or ``"half"`` (``step=0.5 / L`` passed explicitly).""")


# ----------------------------------------------------------------- dictionary update
def _ref_update_dictionary(X, S, eta):
    return _dictionary.update_dictionary(X, S, eta)


def _closed_form(X, S, ridge):
    h = S.shape[1]
    A = S.T @ S + ridge * torch.eye(h, dtype=X.dtype)
    return torch.linalg.solve(A, S.T @ X).T


_DICT_MISTAKES = [
    Mistake("the ridge term is eta I; the objective's eta ||W||_F^2 is not divided by N, so it is (S^T S + N eta I)",
            lambda X, S, eta: _closed_form(X, S, eta)),
    Mistake("the ridge term is 2 N eta I; the factor 2 of the gradient appears on both sides and cancels: "
            "(S^T S + N eta I)", lambda X, S, eta: _closed_form(X, S, 2 * X.shape[0] * eta)),
    Mistake("eta is ignored: plain least squares instead of X^T S (S^T S + N eta I)^-1",
            lambda X, S, eta: torch.linalg.lstsq(S, X).solution.T if eta > 0 else None),
    Mistake("you returned W^T, shape (h, d): W = X^T S (S^T S + N eta I)^-1 has shape (d, h)",
            lambda X, S, eta: _dictionary.update_dictionary(X, S, eta).T),
    Mistake("the atoms (columns of W) are scaled to unit norm; the closed-form minimiser has no normalisation",
            lambda X, S, eta: (lambda W: W / torch.linalg.vector_norm(W, dim=0, keepdim=True).clamp_min(1e-12))(
                _dictionary.update_dictionary(X, S, eta))),
]


def _dictionary_cases(gen, *, shapes, etas):
    cases = []
    for N, d, h in shapes:
        for eta in etas:
            X, S = _randn(gen, N, d), _sparse_codes(gen, N, h, density=0.5)
            cases.append(Case((X, S, eta), label=f"N, d, h = {N}, {d}, {h}, eta = {eta}"))
    return cases


def _dictionary_edges():
    gen = _gen(321)
    S0 = _sparse_codes(gen, 15, 4, density=0.6)
    S0[:, 2] = 0.0
    return [
        Case((_randn(gen, 30, 4), _randn(gen, 30, 3), 0.0), label="eta = 0 (S of full column rank): least squares"),
        Case((_randn(gen, 15, 6), S0, 0.2), label="an atom no code uses comes out as 0"),
        Case((_randn(gen, 3, 5), _sparse_codes(gen, 3, 7, density=0.7), 0.5), label="fewer samples than atoms, N < h"),
        Case((_randn(gen, 10, 6), _sparse_codes(gen, 10, 6, density=0.5), 10.0), label="square W (d = h), large eta"),
    ]


check_update_dictionary = Check(
    "update_dictionary", _ref_update_dictionary, _dictionary_cases, _dictionary_edges, compare=tensor_close(1e-6, 1e-9),
    mistakes=_DICT_MISTAKES, options=dict(shapes=((20, 5, 4),), etas=(0.1, 0.01)),
    doc="Check ``update_dictionary(X, S, eta)``: W = X^T S (S^T S + N eta I)^-1 of shape (d, h).")
