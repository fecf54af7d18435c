r"""The accelerated proximal-gradient loop, written once for every sparse solver of the package.

Every solver here minimises, per sample (the leading dimension of the variable ``S``),

.. math::  F(s) = f(s) + g(s),

with :math:`f` smooth (given by its gradient, and its value where that is cheap) and
:math:`g` simple (given by its proximal map
:math:`\mathrm{prox}_{t g}(v) = \arg\min_s \tfrac12\|s - v\|^2 + t\,g(s)`).  One iteration is

.. math::

    Z = \mathrm{prox}_{t g}\big(Y - t\nabla f(Y)\big), \qquad
    Y \leftarrow Z + \beta_k (Z - S), \quad S \leftarrow Z,

with the momentum :math:`\beta_k = (t_k - 1)/t_{k+1}`, :math:`t_{k+1} = (1 + \sqrt{1 + 4t_k^2})/2`
(FISTA, Beck & Teboulle 2009; :math:`\beta = 0` is the plain proximal-gradient method, ISTA).

Options, all per sample of the batch:

* ``restart=True``: adaptive restart (O'Donoghue & Candès 2015, gradient scheme): the
  momentum of a sample is reset when :math:`\langle Y - Z, Z - S\rangle > 0`, i.e. when the
  step just taken points against the momentum.  Keeps FISTA's speed and adds linear
  convergence near a strongly convex solution (where the sparse codes live once their
  support is found);
* ``monotone=True``: MFISTA (Beck & Teboulle 2009): keep the better of the new proximal
  point and the previous iterate, so :math:`F` never increases (needs the value of ``F``);
* ``backtrack=True`` (for a quadratic smooth part given by an affine residual): the step
  may grow by ``grow`` per iteration and is halved while the quadratic model stops
  majorising :math:`f` along the step taken (Calatroni & Chambolle 2019); never below the
  safe step ``step_min`` (:math:`1/L`), which always passes;
* ``check``: a callable run every ``check_every`` iterations on the samples still running;
  it returns a boolean mask of the samples that are done (for example: relative duality
  gap below a tolerance).  Those samples are frozen and the loop goes on with the others.

The smooth part is an object with ``grad(Y)`` (and, as needed, ``value(Y)`` per sample,
``forward(Y, t) = Y - t grad(Y)`` fused, ``restrict(rows)`` for a sub-batch); see
:class:`Smooth` and :class:`QuadraticResidual`.  The proximal maps of the package are
:func:`soft_prox`, :func:`hard_prox`, :func:`ball_prox` and :func:`identity_prox`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "Smooth",
    "QuadraticResidual",
    "ProxResult",
    "soft_prox",
    "hard_prox",
    "ball_prox",
    "identity_prox",
    "accelerated_proximal_gradient",
    "momentum_next",
]


# ------------------------------------------------------------------------ proximal maps
@dataclass(frozen=True)
class Prox:
    """A proximal map ``apply(V, t)`` of :math:`t g`, and the value ``value(S)`` of :math:`g` per sample."""

    apply: Callable
    value: Callable | None = None


def _per_sample_sum(T):
    return T.reshape(T.shape[0], -1).sum(dim=1)


def soft_prox(lam) -> Prox:
    r"""Soft thresholding at :math:`t\lambda`: the prox of :math:`\lambda\|s\|_1`."""
    return Prox(lambda V, t: F.softshrink(V, lam * t), lambda S: lam * _per_sample_sum(S.abs()))


def hard_prox(lam) -> Prox:
    r"""Hard thresholding at :math:`\sqrt{2t\lambda}`: the prox of :math:`\lambda\|s\|_0`."""

    def apply(V, t):
        tau = math.sqrt(2.0 * t * lam)
        return torch.where(V.abs() > tau, V, torch.zeros_like(V))

    return Prox(apply, lambda S: lam * _per_sample_sum((S != 0).to(S.dtype)))


def ball_prox(dims) -> Prox:
    r"""Projection of every slice over ``dims`` onto the unit ball :math:`\|w\|_2 \le 1` (indicator: value 0)."""
    return Prox(lambda V, t: V / torch.linalg.vector_norm(V, dim=dims, keepdim=True).clamp_min(1.0),
                lambda S: torch.zeros(S.shape[0], dtype=S.dtype, device=S.device))


def identity_prox() -> Prox:
    """No non-smooth part: the prox is the identity (plain accelerated gradient descent)."""
    return Prox(lambda V, t: V, lambda S: torch.zeros(S.shape[0], dtype=S.dtype, device=S.device))


# ------------------------------------------------------------------------ smooth parts
class Smooth:
    """A smooth part from callables: ``grad(Y)``, optional ``value(Y)`` (per sample) and fused ``forward(Y, t)``.

    ``rows`` (optional) makes a sub-batch: ``restrict(idx)`` returns the smooth part of the
    samples ``idx`` only (the callables then take the rows as their first argument).
    """

    linear = False

    def __init__(self, grad, value=None, forward=None, *, restrict=None):
        self._grad, self._value, self._forward, self._restrict = grad, value, forward, restrict

    def grad(self, Y):
        return self._grad(Y)

    def value(self, Y):
        if self._value is None:
            raise ValueError("this solver option needs the value of the smooth part, which was not given")
        return self._value(Y)

    def forward(self, Y, t):
        if self._forward is not None:
            return self._forward(Y, t)
        return Y - t * self._grad(Y)

    def restrict(self, rows):
        if self._restrict is None:
            raise ValueError("this smooth part cannot be restricted to a sub-batch")
        return self._restrict(rows)


class QuadraticResidual:
    r""":math:`f(S) = \|R(S)\|^2` per sample for an affine residual :math:`R(S) = A S - x`; :math:`\nabla f = 2A^\top R`.

    ``residual(S)`` computes :math:`A S - x`, ``adjoint(R)`` computes :math:`A^\top R`.
    Residuals and gradients are affine in S, so the loop carries them along with the
    iterates (the extrapolated point's residual is the same combination of the last
    two): one ``residual`` per trial step and one ``adjoint`` per iteration, and the
    backtracking test :math:`\|R(Z) - R(Y)\|^2 \le \|Z - Y\|^2 / (2t)` is exact and free.
    """

    linear = True

    def __init__(self, residual, adjoint, *, restrict=None):
        self.residual, self.adjoint, self._restrict = residual, adjoint, restrict

    def restrict(self, rows):
        if self._restrict is None:
            raise ValueError("this smooth part cannot be restricted to a sub-batch")
        return self._restrict(rows)

    def grad_of(self, R):
        return self.adjoint(2.0 * R)

    @staticmethod
    def value_of(R):
        return _per_sample_sum(R * R)


# ------------------------------------------------------------------------------- loop
@dataclass
class ProxResult:
    """What :func:`accelerated_proximal_gradient` returns.

    ``S`` the iterates (the frozen value for samples that a ``check`` stopped),
    ``history`` the mean of F after every iteration (when asked), ``step`` the last step,
    ``n_iter`` the iterations run per sample (N,), ``done`` the samples a ``check`` stopped,
    ``residual`` (for a :class:`QuadraticResidual`) :math:`R(S)`.
    """

    S: torch.Tensor
    history: list = field(default_factory=list)
    step: float = 0.0
    n_iter: torch.Tensor | None = None
    done: torch.Tensor | None = None
    residual: torch.Tensor | None = None


def momentum_next(tk, ratio=1.0):
    r""":math:`t_{k+1} = (1 + \sqrt{1 + 4 t_k^2 r}) / 2` (a float or a tensor of per-sample values;
    ``ratio`` r = old step / new step when the step changes, Calatroni & Chambolle 2019)."""
    if isinstance(tk, torch.Tensor):
        return 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk * ratio))
    return 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk * ratio))


def _bcast(v, like):
    """A per-sample value (a number or an (n,) tensor) shaped to broadcast against ``like`` (n, ...)."""
    if isinstance(v, torch.Tensor):
        return v.reshape(-1, *([1] * (like.dim() - 1)))
    return v


def accelerated_proximal_gradient(
    smooth,
    prox: Prox,
    S0: torch.Tensor,
    step: float,
    n_iter: int,
    *,
    momentum: bool = True,
    restart: bool = False,
    monotone: bool = False,
    backtrack: bool = False,
    step_min: float | None = None,
    grow: float = 1.1,
    shrink: float = 0.5,
    history: bool = False,
    check: Callable | None = None,
    check_every: int = 10,
) -> ProxResult:
    """The loop (see the module docstring).  ``S0`` is (N, ...) with one sample per leading index.

    ``smooth`` is a :class:`Smooth` or a :class:`QuadraticResidual`; ``prox`` a :class:`Prox`.
    With ``monotone`` or ``history`` the objective's value is needed (``smooth.value`` and
    ``prox.value``).  ``check(rows, S, smooth, R)`` gets the indices of the samples still running,
    their iterates, the smooth part restricted to them and (for a :class:`QuadraticResidual`)
    their residuals; it returns a boolean mask over ``rows`` of the samples to freeze, or the
    pair (mask, values) to freeze them at other values (a polished point, say), or the triple
    (mask, values, jump) where the samples in ``jump`` go on from ``values`` with their
    momentum reset.  Frozen samples keep their value and leave the batch.
    """
    linear = getattr(smooth, "linear", False)
    if backtrack and not linear:
        raise ValueError("backtrack=True needs a QuadraticResidual smooth part")
    if backtrack and monotone:
        raise ValueError("backtrack=True cannot be combined with monotone=True")
    if monotone and linear:
        raise ValueError("monotone=True needs a Smooth part with a value")
    N = S0.shape[0]
    out = S0.clone()
    rows = torch.arange(N, device=S0.device)
    iters = torch.zeros(N, dtype=torch.long, device=S0.device)
    done = torch.zeros(N, dtype=torch.bool, device=S0.device)
    S = S0.clone()
    sm = smooth
    # restart resets the momentum of single samples: one t_k per sample
    tk = torch.ones(N, dtype=S0.dtype, device=S0.device) if (restart and momentum) else 1.0
    tau = step
    t_min = step if step_min is None else step_min
    hist = []

    def F_of(Z, R=None):
        fz = sm.value_of(R) if linear else sm.value(Z)
        return fz + prox.value(Z)

    if linear:
        R = sm.residual(S)
        G = sm.grad_of(R)
        S_prev, R_prev, G_prev = S, R, G
    else:
        Y = S
    f_S = F_of(S) if monotone else None
    f_all = torch.zeros(N, dtype=S0.dtype, device=S0.device) if history else None  # F per sample, frozen ones too
    since = 0  # iterations since the per-sample counts were last brought up to date
    for k in range(n_iter):
        if S.shape[0] == 0:
            break
        if linear:
            tau_new = tau * grow if backtrack else tau
            while True:
                t_next = momentum_next(tk, tau / tau_new) if momentum else 1.0
                beta = (tk - 1.0) / t_next if momentum else 0.0
                if isinstance(beta, float) and beta == 0.0:
                    Y, RY, GY = S, R, G
                else:  # Y = S + beta (S - S_prev), and the same combination of residuals and gradients
                    Y = torch.lerp(S, S_prev, _bcast(-beta, S))
                    RY = torch.lerp(R, R_prev, _bcast(-beta, R))
                    GY = torch.lerp(G, G_prev, _bcast(-beta, G))
                Z = prox.apply(torch.add(Y, GY, alpha=-tau_new), tau_new)
                RZ = sm.residual(Z)
                if not backtrack or tau_new <= t_min:
                    break
                if 2.0 * tau_new * float(torch.dist(RZ, RY)) ** 2 <= float(torch.dist(Z, Y)) ** 2:
                    break
                tau_new = max(tau_new * shrink, t_min)
            rs = _per_sample_sum((Y - Z) * (Z - S)) > 0 if isinstance(tk, torch.Tensor) else None
            S_prev, R_prev, G_prev = S, R, G
            S, R = Z, RZ
            G = sm.grad_of(R)
            tau = tau_new
            if momentum:
                tk = t_next
            if rs is not None and bool(rs.any()):  # restart: no momentum out of these samples
                tk = torch.where(rs, torch.ones_like(tk), tk)
                S_prev = torch.where(_bcast(rs, S), S, S_prev)
                R_prev = torch.where(_bcast(rs, R), R, R_prev)
                G_prev = torch.where(_bcast(rs, G), G, G_prev)
            if history:
                if rows.numel() == N:
                    hist.append(float(F_of(S, R).mean()))
                else:
                    f_all[rows] = F_of(S, R)
                    hist.append(float(f_all.mean()))
        else:
            Z = prox.apply(sm.forward(Y, tau), tau)
            t_next = momentum_next(tk) if momentum else 1.0
            if monotone:
                f_Z = F_of(Z)
                S_new = torch.where(_bcast(f_Z <= f_S, Z), Z, S)
                f_S = torch.minimum(f_Z, f_S)
                if momentum:
                    Y_next = (S_new + _bcast(tk / t_next, Z) * (Z - S_new)
                              + _bcast((tk - 1.0) / t_next, Z) * (S_new - S))
                else:
                    Y_next = S_new
            else:
                S_new = Z
                if momentum:  # S_new + beta (S_new - S)
                    Y_next = torch.lerp(S, S_new, _bcast(1.0 + (tk - 1.0) / t_next, Z))
                else:
                    Y_next = S_new
            if isinstance(tk, torch.Tensor):  # gradient restart where the step went against the momentum
                rs = _per_sample_sum((Y - Z) * (Z - S)) > 0
                t_next = torch.where(rs, torch.ones_like(t_next), t_next)
                Y_next = torch.where(_bcast(rs, Z), S_new, Y_next)
            S, Y = S_new, Y_next
            if momentum:
                tk = t_next
            if history:
                if rows.numel() == N:  # (the same number, without the copy)
                    hist.append(float((f_S if monotone else F_of(S)).mean()))
                else:
                    f_all[rows] = f_S if monotone else F_of(S)
                    hist.append(float(f_all.mean()))
        since += 1
        if check is not None and ((k + 1) % check_every == 0 or k + 1 == n_iter):
            iters[rows] += since
            since = 0
            stop = check(rows, S, sm, R if linear else None)
            values, jump = S, None
            if isinstance(stop, tuple):  # (mask, values[, jump]): freeze at other values, or move and restart
                stop, values, jump = stop if len(stop) == 3 else (*stop, None)
            if jump is not None and bool(jump.any()):  # continue from a better point, without momentum
                S = torch.where(_bcast(jump, S), values, S)
                if not linear:
                    Y = torch.where(_bcast(jump, Y), values, Y)
                    if f_S is not None:
                        f_S = torch.where(jump, F_of(S), f_S)
                else:
                    R = torch.where(_bcast(jump, R), sm.residual(S), R)
                    G = sm.grad_of(R)
                    S_prev, R_prev, G_prev = S, R, G
                if isinstance(tk, torch.Tensor):
                    tk = torch.where(jump, torch.ones_like(tk), tk)
            if bool(stop.any()):
                keep = ~stop
                out[rows[stop]] = values[stop]
                if history:
                    f_all[rows] = (f_S if monotone else F_of(S, R if linear else None))
                done[rows[stop]] = True
                rows = rows[keep]
                S = S[keep]
                sm = smooth.restrict(rows)
                if isinstance(tk, torch.Tensor):
                    tk = tk[keep]
                if linear:
                    S_prev, R, R_prev, G, G_prev = S_prev[keep], R[keep], R_prev[keep], G[keep], G_prev[keep]
                else:
                    Y = Y[keep]
                if f_S is not None:
                    f_S = f_S[keep]
    out[rows] = S
    iters[rows] += since
    res = ProxResult(S=out, history=hist, step=tau, n_iter=iters, done=done)
    if linear and check is None:
        res.residual = R
    return res
