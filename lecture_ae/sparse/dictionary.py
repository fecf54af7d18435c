r"""Learning the dictionary: the batch and the online algorithm for :math:`E_{1,\eta}`.

Both minimise the lecture's objective

.. math::

    E_{1,\eta}(W, S) = \frac1N \sum_i \left(\|x_i - W s_i\|_2^2 + \lambda \|s_i\|_1\right) + \eta \|W\|_F^2 .

*Batch* (alternating minimisation): infer all codes with W fixed (monotone FISTA,
warm-started), then solve for W with all codes fixed.  For fixed S the objective is
a ridge regression in W with the closed-form minimiser

.. math::

    W = X^\top S \,(S^\top S + N\eta I)^{-1},

so neither half-step can increase :math:`E_{1,\eta}`.

*Online* (Mairal et al. 2009, 2010): sweep the training set mini-batch by mini-batch in
a new random order every epoch, infer the batch's codes
with the current W, add them to the running statistics :math:`A = \sum s s^\top`,
:math:`B = \sum x s^\top` (older terms down-weighted, terms older than the previous
epoch dropped), and set W to the minimiser of
the surrogate :math:`\frac1n\sum (\|x - Ws\|^2) + \eta\|W\|_F^2` built from those
statistics, :math:`W = B (A + n\eta I)^{-1}` (over the atoms used so far; an
atom no code has used keeps its initial value).  The update is approximate (the old codes
were inferred with older dictionaries) but costs only O(batch) per step, so it makes
progress long before the batch algorithm has finished its first pass.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import as_tensor, check_int, check_scalar
from ..runtime import get_device, make_generator, progress
from .coding import fista, l1_objective
from .exact import lasso

__all__ = ["update_dictionary", "init_dictionary", "dct_dictionary", "DictionaryLearningResult", "batch_dictionary_learning", "online_dictionary_learning"]


def update_dictionary(X, S, eta) -> torch.Tensor:
    r"""The W (d, h) that minimises :math:`E_{1,\eta}` for fixed codes: :math:`X^\top S (S^\top S + N\eta I)^{-1}`.

    With ``eta = 0`` the least-squares solution of minimum norm is returned
    (atoms that no code uses come out as zero).
    """
    X = as_tensor(X, "X", ndim=2, shape="(N, d)")
    S = as_tensor(S, "S", ndim=2, shape="(N, h)", device=X.device).to(X.dtype)
    if S.shape[0] != X.shape[0]:
        raise ValueError(f"X and S must have the same number of rows N; got {X.shape[0]} and {S.shape[0]}")
    eta = check_scalar(eta, "eta")
    N, h = S.shape
    A = S.T @ S
    if eta > 0:
        A = A + (N * eta) * torch.eye(h, dtype=X.dtype, device=X.device)
        # A is symmetric positive definite: solve A W^T = S^T X
        return torch.linalg.solve(A, S.T @ X).T
    return torch.linalg.lstsq(S, X, driver="gelsd" if X.device.type == "cpu" else None).solution.T


def init_dictionary(X, h, *, seed=0, device=None) -> torch.Tensor:
    """h atoms drawn from distinct random rows of X (without replacement), scaled to unit norm.

    All-zero rows, and the atoms beyond N when h > N, are random unit vectors instead.  (Drawn
    with replacement, a dictionary could hold the same atom twice: a degenerate dictionary on
    which the codes are not unique.)
    """
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=device)
    h = check_int(h, "h")
    gen = make_generator(seed)
    N, d = X.shape
    idx = torch.randperm(N, generator=gen)[:h]
    W = torch.zeros(d, h, dtype=X.dtype, device=X.device)
    W[:, : idx.numel()] = X[idx.to(X.device)].T
    noise = torch.randn(d, h, generator=gen, dtype=X.dtype).to(X.device)
    norms = torch.linalg.vector_norm(W, dim=0)
    W = torch.where(norms > 1e-12, W, noise)
    return W / torch.linalg.vector_norm(W, dim=0).clamp_min(1e-12)


def dct_dictionary(patch_size=8, atoms_per_dim=11, *, dtype=torch.float32) -> torch.Tensor:
    """The (overcomplete) 2-D DCT dictionary for ``patch_size`` x ``patch_size`` patches.

    A fixed, hand-designed dictionary: the Kronecker product of a 1-D DCT with
    ``atoms_per_dim`` frequencies (``atoms_per_dim > patch_size`` is overcomplete),
    columns of unit norm; the constant (DC) atom comes first.  Shape (p*p, a*a).
    """
    p = check_int(patch_size, "patch_size", low=2)
    a = check_int(atoms_per_dim, "atoms_per_dim", low=1)
    n = torch.arange(p, dtype=torch.float64)[:, None]
    k = torch.arange(a, dtype=torch.float64)[None, :]
    D1 = torch.cos(n * k * math.pi / a)
    D1[:, 1:] -= D1[:, 1:].mean(dim=0)
    D1 /= torch.linalg.vector_norm(D1, dim=0)
    return torch.kron(D1, D1).to(dtype)


@dataclass
class DictionaryLearningResult:
    """What a dictionary-learning run returns.

    ``objective[k]`` is :math:`E_{1,\\eta}` on the whole training set at the k-th
    checkpoint, reached after ``seconds[k]`` seconds of the algorithm's own work
    (evaluation time excluded), after ``samples_seen[k]`` inferred codes.
    """

    W: torch.Tensor
    S: torch.Tensor
    objective: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    samples_seen: list[int] = field(default_factory=list)


def _common(X, h, lam, eta, W0, device, seed):
    X = as_tensor(X, "X", ndim=2, shape="(N, d)", device=get_device(device) if device is not None else None)
    h = check_int(h, "h")
    lam = check_scalar(lam, "lam")
    eta = check_scalar(eta, "eta")
    if W0 is None:
        W = init_dictionary(X, h, seed=seed)
    else:
        W = as_tensor(W0, "W0", ndim=2, shape="(d, h)", device=X.device).to(X.dtype).clone()
        if W.shape != (X.shape[1], h):
            raise ValueError(f"W0 must have shape (d, h) = {(X.shape[1], h)}; got {tuple(W.shape)}")
    return X, h, lam, eta, W


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_dictionary_learning(
    X, h, lam, eta, *, n_iter=30, encoder_iter=50, W0=None, seed=0, tol=0.0, device=None, show_progress=None
) -> DictionaryLearningResult:
    r"""The batch algorithm: alternate "all codes" (monotone FISTA) and "W in closed form".

    The W step is :func:`update_dictionary` restricted to the atoms that some code
    uses; unused atoms keep their value instead of being set to zero, so that they can
    be picked up again later (zeroed atoms stay dead forever).  The objective :math:`E_{1,\eta}` recorded after every iteration never increases.
    ``n_iter`` outer iterations at most; stop early when the relative decrease of
    the objective falls below ``tol``.
    """
    X, h, lam, eta, W = _common(X, h, lam, eta, W0, device, seed)
    n_iter = check_int(n_iter, "n_iter")
    encoder_iter = check_int(encoder_iter, "encoder_iter")
    tol = check_scalar(tol, "tol")
    S = torch.zeros(X.shape[0], h, dtype=X.dtype, device=X.device)
    res = DictionaryLearningResult(W=W, S=S)
    res.objective.append(float(l1_objective(X, W, S, lam, eta)))
    res.seconds.append(0.0)
    res.samples_seen.append(0)
    elapsed = 0.0
    bar = progress(range(n_iter), show=show_progress, desc="batch dictionary learning", leave=False)
    for _ in bar:
        _sync(X.device)
        t0 = time.perf_counter()
        S = fista(X, W, lam, n_iter=encoder_iter, S0=S, monotone=True)
        W = _dictionary_step(W, S.T @ S, X.T @ S, X.shape[0] * eta)
        _sync(X.device)
        elapsed += time.perf_counter() - t0
        obj = float(l1_objective(X, W, S, lam, eta))
        res.objective.append(obj)
        res.seconds.append(elapsed)
        res.samples_seen.append(res.samples_seen[-1] + X.shape[0])
        bar.set_postfix(objective=f"{obj:.4g}")
        prev = res.objective[-2]
        if tol > 0 and prev - obj <= tol * abs(prev):
            break
    res.W, res.S = W, S
    return res


def _surrogate_solve(A, B, ridge):
    """argmin_W tr(W A W^T) - 2 tr(W^T B) + ridge ||W||_F^2 = B (A + ridge I)^-1."""
    if ridge > 0:
        return torch.linalg.solve(A + ridge * torch.eye(A.shape[0], dtype=A.dtype, device=A.device), B.T).T
    return torch.linalg.lstsq(A, B.T).solution.T


def _dictionary_step(W, A, B, ridge):
    """Minimise tr(W A W^T) - 2 tr(W^T B) + ridge ||W||_F^2 over the atoms that some code uses.

    ``A = S^T S`` and ``B = X^T S`` (or their running versions).  An atom that no code
    uses (``A_jj = 0``) keeps its current value: the ridge term alone would set it to
    zero, and a zero atom is never chosen again (it would be dead for good).  This is an
    exact minimisation over the block of used atoms, so the objective cannot increase.
    """
    used = torch.diagonal(A) > 0
    if bool(used.all()):
        return _surrogate_solve(A, B, ridge)
    W = W.clone()
    if bool(used.any()):
        W[:, used] = _surrogate_solve(A[used][:, used], B[:, used], ridge)
    return W


def _unit_norm_step(W, A, B, passes=1):
    r"""``passes`` passes of block-coordinate descent on tr(W A W^T) - 2 tr(W^T B), s.t. ||w_j|| <= 1.

    Atom by atom: :math:`w_j \leftarrow \Pi_{\|w\|\le1}\big(w_j + (b_j - W a_j)/A_{jj}\big)`, the exact
    minimiser over :math:`w_j` with the other atoms fixed.  The loop is sequential by nature (each
    atom sees the ones updated before it): on the CPU it runs compiled (:func:`_bcd_unit_ball`, numba;
    the loop of NumPy calls per atom was 15-20% of an online step at h = 100), on a GPU in torch
    without a host round trip per atom.
    """
    W = W.clone()
    used = torch.nonzero(torch.diagonal(A) > 0).flatten()
    if W.device.type == "cpu" and _bcd_unit_ball is not None:
        Wv = W.numpy()  # a view: writing Wv writes W
        An, Bn, un = np.ascontiguousarray(A.numpy()), np.ascontiguousarray(B.numpy()), used.numpy()
        for _ in range(passes):
            _bcd_unit_ball(Wv, An, Bn, un)
        return W
    if W.device.type == "cpu":  # without numba: the same loop on NumPy views
        Wv, Av, Bv = W.numpy(), A.numpy(), B.numpy()
        to_ball = lambda u: u / max(float(np.sqrt(u @ u)), 1.0)
    else:
        Wv, Av, Bv = W, A, B
        to_ball = lambda u: u / torch.clamp(torch.linalg.vector_norm(u), min=1.0)
    for _ in range(passes):
        for j in used.tolist():
            Wv[:, j] = to_ball(Wv[:, j] + (Bv[:, j] - Wv @ Av[:, j]) / Av[j, j])
    return W


try:  # numba is a dependency (the homotopy needs it too); without it the NumPy loop above
    from numba import njit
except ImportError:  # pragma: no cover
    _bcd_unit_ball = None
else:
    @njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
    def _bcd_unit_ball(W, A, B, used):
        """:func:`_unit_norm_step`'s loop in place on W (d, h), for the atoms ``used`` in that order."""
        d, h = W.shape
        col = np.empty(h, dtype=A.dtype)
        v = np.empty(d, dtype=W.dtype)
        for j in used:
            for q in range(h):
                col[q] = A[q, j]
            ajj = A[j, j]
            nn = 0.0
            for p in range(d):
                acc = 0.0
                for q in range(h):
                    acc += W[p, q] * col[q]
                vp = W[p, j] + (B[p, j] - acc) / ajj
                v[p] = vp
                nn += vp * vp
            scale = 1.0 / max(math.sqrt(nn), 1.0)
            for p in range(d):
                W[p, j] = v[p] * scale


def _shuffled_batches(N, batch_size, gen, device):
    """Endless mini-batches that sweep 0..N-1 in a new random order every epoch.

    Yields ``(indices, epoch)``, the epoch being that of the batch's first sample (a batch
    may run over into the next epoch's order).
    """
    perm, pos, epoch = torch.randperm(N, generator=gen), 0, 0
    while True:
        first_epoch, parts, need = epoch, [], batch_size
        while need:
            take = min(need, N - pos)
            parts.append(perm[pos : pos + take])
            pos, need = pos + take, need - take
            if pos == N:  # the epoch is complete: the next sample opens the next one
                perm, pos, epoch = torch.randperm(N, generator=gen), 0, epoch + 1
        yield torch.cat(parts).to(device), first_epoch


def _forgetting_factor(t, batch_size, N):
    """beta for the statistics before mini-batch t + 1 is added (t mini-batches seen so far).

    The rule of Mairal et al.'s own implementation (SPAMS; scikit-learn's
    ``MiniBatchDictionaryLearning`` uses it without the cap): the statistics weigh about
    the last theta samples, theta = t b for the first b steps, then b^2 + t - b, at most two
    epochs (2N); beta = (theta + 1 - b) / (theta + 1).  The first mini-batch, coded with the
    initial dictionary, is all but forgotten at once.
    """
    theta = t * batch_size if t < batch_size else batch_size**2 + t - batch_size
    theta = min(theta, 2 * N)
    return max(theta + 1.0 - batch_size, 0.0) / (theta + 1.0)


def online_dictionary_learning(
    X,
    h,
    lam,
    eta,
    *,
    n_steps=1000,
    batch_size=16,
    encoder_iter=50,
    encoder="fista",
    W0=None,
    seed=0,
    eval_every=100,
    eval_encoder_iter=100,
    unit_norm=False,
    dict_passes=1,
    device=None,
    show_progress=None,
) -> DictionaryLearningResult:
    r"""The online algorithm: random mini-batches, codes for the batch only, approximate W update.

    Step t: take the next ``batch_size`` rows of the training set (a new random order
    every epoch), infer their codes with FISTA and the current W, update the running
    statistics with the forgetting factor :math:`\beta_t` of SPAMS (:func:`_forgetting_factor`)

    .. math:: A \leftarrow \beta_t A + S_b^\top S_b,\quad B \leftarrow \beta_t B + X_b^\top S_b,\quad n \leftarrow \beta_t n + |b|

    and set :math:`W = B (A + n\eta I)^{-1}`.  On a finite training set every sample comes
    back once per epoch with a better code, so the terms from before the previous epoch
    are dropped (Mairal et al. 2010, "handling fixed-size data sets"): A, B and n hold the current and the
    previous epoch only.  ``batch_size=1`` is the pure online
    algorithm (one sample per step).  Every ``eval_every`` steps the full
    objective is measured (codes for all of X with ``eval_encoder_iter`` FISTA
    iterations); that time is not counted in ``seconds``.

    ``unit_norm=True`` solves the other classical formulation instead (Mairal et al.,
    scikit-learn): atoms constrained to :math:`\|w_j\| \le 1` rather than penalised
    (pass ``eta=0``); the W step is then one pass of block-coordinate descent over
    the atoms, :math:`w_j \leftarrow \Pi_{\|w\|\le1}\big(w_j + (b_j - W a_j)/A_{jj}\big)`.
    The reported objective is then :math:`E_1` (``eta`` = 0).  ``dict_passes`` passes of it per step
    (SPAMS' ``iter_updateD``): each pass is cheap against coding the mini-batch (h = 100, d = 64: about
    0.2 ms, a step 3-4 ms), and three passes reach a given objective in fewer steps (camera, lam 0.1,
    batches of 256, exact codes, four seeds: 0.3166 after 40 steps with three passes, 0.3175 with one).

    ``encoder="fista"`` (the default) codes each mini-batch with ``encoder_iter`` FISTA steps;
    ``encoder="lasso"`` with the exact codes of :func:`~lecture_ae.sparse.lasso` (the homotopy on the
    CPU, as SPAMS' ``trainDL`` uses LARS), ``encoder_iter`` then bounding the proximal-gradient steps
    of any sample the homotopy does not certify (relative gap 1e-10 in float64, 1e-5 in float32).
    """
    if encoder not in ("fista", "lasso"):
        raise ValueError(f"encoder must be 'fista' or 'lasso'; got {encoder!r}")
    X, h, lam, eta, W = _common(X, h, lam, eta, W0, device, seed)
    if unit_norm and eta != 0:
        raise ValueError(f"eta must be 0 with unit_norm=True (the constraint replaces the penalty); got {eta}")
    n_steps = check_int(n_steps, "n_steps")
    batch_size = check_int(batch_size, "batch_size")
    encoder_iter = check_int(encoder_iter, "encoder_iter")
    dict_passes = check_int(dict_passes, "dict_passes")
    if dict_passes != 1 and not unit_norm:
        raise ValueError(f"dict_passes applies to unit_norm=True (the penalised W step is exact); got {dict_passes}")
    eval_every = check_int(eval_every, "eval_every")
    eval_encoder_iter = check_int(eval_encoder_iter, "eval_encoder_iter")
    N = X.shape[0]
    gen = make_generator(seed)
    batches = _shuffled_batches(N, batch_size, gen, X.device)
    # the statistics of this epoch's and of the previous epoch's mini-batches
    A_cur = torch.zeros(h, h, dtype=X.dtype, device=X.device)
    B_cur = torch.zeros(X.shape[1], h, dtype=X.dtype, device=X.device)
    A_prev, B_prev = torch.zeros_like(A_cur), torch.zeros_like(B_cur)
    n_cur = n_prev = 0.0
    epoch = 0

    def evaluate():
        S_all = fista(X, W, lam, n_iter=eval_encoder_iter)
        return S_all, float(l1_objective(X, W, S_all, lam, eta))

    S_all, obj = evaluate()
    res = DictionaryLearningResult(W=W, S=S_all, objective=[obj], seconds=[0.0], samples_seen=[0])
    elapsed = 0.0
    bar = progress(range(1, n_steps + 1), show=show_progress, desc="online dictionary learning", leave=False)
    for step in bar:
        _sync(X.device)
        t0 = time.perf_counter()
        idx, batch_epoch = next(batches)
        if batch_epoch != epoch:  # a new epoch: drop the statistics older than the last one
            A_prev, B_prev, n_prev = A_cur, B_cur, n_cur
            A_cur, B_cur, n_cur = torch.zeros_like(A_cur), torch.zeros_like(B_cur), 0.0
            epoch = batch_epoch
        Xb = X[idx]
        if encoder == "lasso":
            Sb = lasso(Xb, W, lam, tol=1e-10 if X.dtype == torch.float64 else 1e-5, max_iter=encoder_iter).S
        else:
            Sb = fista(Xb, W, lam, n_iter=encoder_iter)
        beta = _forgetting_factor(step - 1, batch_size, N)
        A_prev.mul_(beta)
        B_prev.mul_(beta)
        A_cur.mul_(beta).add_(Sb.T @ Sb)
        B_cur.mul_(beta).add_(Xb.T @ Sb)
        n_prev, n_cur = beta * n_prev, beta * n_cur + batch_size
        A, B = A_prev + A_cur, B_prev + B_cur
        if unit_norm:
            W = _unit_norm_step(W, A, B, dict_passes)
        else:
            W = _dictionary_step(W, A, B, (n_prev + n_cur) * eta)
        _sync(X.device)
        elapsed += time.perf_counter() - t0
        if step % eval_every == 0 or step == n_steps:
            S_all, obj = evaluate()
            res.objective.append(obj)
            res.seconds.append(elapsed)
            res.samples_seen.append(step * batch_size)
            bar.set_postfix(objective=f"{obj:.4g}")
    res.W, res.S = W, S_all
    return res

