r"""Checks for problem set 2 (autoencoders): one ``check_*`` per function the students write.

Each check compares the student's function with the reference in
:mod:`lecture_ae.models.autoencoders` on random float64 inputs drawn from ``seeds``
and raises :class:`~lecture_ae.grading.checks.CheckFailed` with a message for the
student at the first difference.  The autograder cells of
``solutions/ps2_autoencoders`` call every check twice: once with the defaults (the
visible tests) and once between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``
with other seeds, shapes and ``edge_cases=True``.

* :func:`check_sparse_ae_loss`: :func:`~lecture_ae.models.autoencoders.sparse_ae_loss`.
* :func:`check_dead_unit_term`: :func:`~lecture_ae.models.autoencoders.dead_unit_term`.
* :func:`check_add_noise`: :func:`~lecture_ae.models.autoencoders.add_noise`, a *random*
  function.  Every case hands the student a fresh :class:`torch.Generator`; the reference
  draws from a replica in the same state.  A student who draws the random numbers as the
  notebook describes gets exactly the reference's noise.  A result that differs is not
  wrong by itself (``torch.bernoulli`` or another order of the draws give other, equally
  valid noise): it passes when its statistics are right (fraction of entries hit,
  masked entries 0, untouched entries unchanged, noise mean 0 and standard deviation
  ``level``, Gaussian shape, salt/pepper values and their 1/2 share, all within five
  standard errors) *and* it comes from the generator (two calls with generators in the
  same state agree, a differently seeded generator changes the noise).  The input must
  not change in place.
* :func:`check_ae_forward`: ``ae_forward(X, V, c, W, b) -> (X_hat, S)``, the forward pass
  of :class:`~lecture_ae.models.autoencoders.ReLUSparseAutoencoder` with its parameter
  names (``S = max(0, X V^T + c)``, ``X_hat = S W^T + b``); the reference *is* the
  module, loaded with the given weights.
* :func:`check_sensitivity`: ``sensitivity(V, c, X, T)``, the relative change of the ReLU
  representation ``f(x) = max(0, V x + c)`` under a linear transform ``T`` of the *input*
  (a sub-pixel shift or a small rotation as a (d, d) matrix), divided by the relative change
  of the input itself (:func:`lecture_ae.tasks.representation.sensitivity`, its ``ratio``).
"""
from __future__ import annotations

import math

import torch

from ..models import autoencoders as _ae
from .checks import Case, Check, Mistake, compare_tensors, scalar_close, tuple_close
from .inputs import gen as _gen
from .inputs import randn as _randn
from .inputs import relu_codes as _relu_codes

__all__ = ["check_sparse_ae_loss", "check_dead_unit_term", "check_add_noise", "check_ae_forward", "check_sensitivity"]

_F64 = torch.float64


# ------------------------------------------------------------------------ the loss
def _ref_sparse_ae_loss(X, X_hat, S, W, lam, eta):
    return _ae.sparse_ae_loss(X, X_hat, S, W, lam, eta)


def _loss_variant(X, X_hat, S, W, lam, eta, *, err="sq_sum", reduce="mean", pen="l1", eta_div_n=False,
                  eta_sq=True, half=False, recompute=False):
    R = X - (S @ W.T if recompute else X_hat)
    N = X.shape[0]
    e = {"sq_sum": (R**2).sum(dim=1), "norm": torch.linalg.vector_norm(R, dim=1), "sq_mean": (R**2).mean(dim=1)}[err]
    if half:
        e = 0.5 * e
    p = {"l1": S.abs().sum(dim=1), "l2": (S**2).sum(dim=1), "noabs": S.sum(dim=1)}[pen]
    total = (e + lam * p).mean() if reduce == "mean" else (e + lam * p).sum()
    reg = (W**2).sum() if eta_sq else torch.linalg.vector_norm(W)
    return total + eta * reg / (N if eta_div_n else 1)


def _loss_mistake(description, **kw):
    return Mistake(description, lambda X, X_hat, S, W, lam, eta: _loss_variant(X, X_hat, S, W, lam, eta, **kw))


_LOSS_MISTAKES = [
    _loss_mistake("the sum over the N samples is not divided by N (the objective is a mean over the samples)",
                  reduce="sum"),
    _loss_mistake("the reconstruction error is not squared: ||x - x_hat||_2 instead of ||x - x_hat||_2^2", err="norm"),
    _loss_mistake("the squared error is averaged over the d coordinates too (.mean() over the whole matrix); "
                  "||x_i - x_hat_i||^2 sums over the d coordinates", err="sq_mean"),
    _loss_mistake("the penalty is lam ||s||_2^2 (squares) instead of the L1 norm lam ||s||_1 (absolute values)",
                  pen="l2"),
    _loss_mistake("the absolute value is missing in ||s||_1: codes of a linear autoencoder can be negative",
                  pen="noabs"),
    _loss_mistake("the reconstruction is recomputed as S W^T; use the given X_hat (the decoder may add a bias b)",
                  recompute=True),
    _loss_mistake("eta ||W||_F^2 is divided by N; it is added once, outside the mean over the samples",
                  eta_div_n=True),
    Mistake("the eta term is missing: + eta ||W||_F^2",
            lambda X, X_hat, S, W, lam, eta: _loss_variant(X, X_hat, S, W, lam, 0.0)),
    _loss_mistake("the Frobenius norm of W is not squared: eta ||W||_F^2", eta_sq=False),
    _loss_mistake("a factor 1/2 in front of the reconstruction error; the lecture's objective has none", half=True),
    Mistake("lam is missing in front of ||s||_1",
            lambda X, X_hat, S, W, lam, eta: _loss_variant(X, X_hat, S, W, 1.0, eta)),
]


def _loss_case(gen, N, d, h, lam, eta, *, signed=False, label=""):
    X = torch.rand(N, d, generator=gen, dtype=_F64)
    S = _randn(gen, N, h) if signed else _relu_codes(gen, N, h)
    W = _randn(gen, d, h, scale=0.5)
    X_hat = S @ W.T + 0.1 * _randn(gen, d) + 0.05 * _randn(gen, N, d)  # a decoder with a bias, not S W^T
    return Case((X, X_hat, S, W, lam, eta), label=label)


def _loss_cases(gen, *, shapes, lams, etas):
    cases = []
    for N, d, h in shapes:
        for k, signed in enumerate((False, True)):
            lam, eta = lams[k % len(lams)], etas[k % len(etas)]
            kind = "signed codes" if signed else "ReLU codes S >= 0"
            cases.append(_loss_case(gen, N, d, h, lam, eta, signed=signed,
                                    label=f"N, d, h = {N}, {d}, {h}, {kind}, lam = {lam}, eta = {eta}"))
    return cases


def _loss_edges():
    gen = _gen(99)
    X = torch.rand(5, 4, generator=gen, dtype=_F64)
    return [
        _loss_case(gen, 1, 4, 6, 0.5, 0.2, signed=True, label="a single sample, N = 1"),
        Case((X, X.clone(), torch.zeros(5, 3, dtype=_F64), _randn(gen, 4, 3), 0.7, 0.25),
             label="perfect reconstruction, codes zero: only eta ||W||_F^2 is left"),
        _loss_case(gen, 6, 4, 2, 0.0, 0.0, signed=True, label="lam = eta = 0: the mean squared reconstruction error"),
        _loss_case(gen, 30, 3, 7, 2.0, 1.5, signed=True, label="large lam and eta, h > d"),
    ]


check_sparse_ae_loss = Check(
    "sparse_ae_loss", _ref_sparse_ae_loss, _loss_cases, _loss_edges, compare=scalar_close(1e-6, 1e-9),
    mistakes=_LOSS_MISTAKES, options=dict(shapes=((8, 6, 5),), lams=(0.3,), etas=(0.1,)),
    doc="""Check ``sparse_ae_loss(X, X_hat, S, W, lam, eta)`` (N, d, h in ``shapes``): one number.

    Every seed and shape gives one case with ReLU codes (S >= 0) and one with signed codes.""")


# -------------------------------------------------------------------- dead-unit term
def _ref_dead_unit_term(Z, tau=0.1):
    return _ae.dead_unit_term(Z, tau)


def _dead_variant(Z, tau=0.1, *, rate="sigmoid", use_tau=True, normalise=True, divergence="u||q", axis=0,
                  weights="1/h"):
    N, h = Z.shape
    t = tau if use_tau else 1.0
    if rate == "sigmoid":
        P = torch.sigmoid(Z / t)
    elif rate == "relu":
        P = torch.sigmoid(torch.relu(Z) / t)
    else:  # hard rates
        P = (Z > 0).to(Z.dtype)
    p = P.mean(dim=axis)
    q = p / p.sum() if normalise else p
    n = q.numel()
    if divergence == "q||u":
        return (q * torch.log(q * n)).sum()
    if divergence == "entropy":
        return -(q * torch.log(q)).sum()
    kl = -math.log(n) - torch.log(q).mean()
    return kl * n if weights == "1" else kl


def _dead_mistake(description, **kw):
    return Mistake(description, lambda Z, tau=0.1: _dead_variant(Z, tau, **kw))


_DEAD_MISTAKES = [
    _dead_mistake("the rates are computed from S = max(0, Z); use the pre-activations Z, so that a dead unit "
                  "(z <= 0 on every sample) still has a rate below 1/2 and a gradient", rate="relu"),
    _dead_mistake("hard activation rates (Z > 0).mean(): they have no gradient, and log 0 for a dead unit; "
                  "use the soft rate p_j = mean_i sigmoid(z_ij / tau)", rate="hard"),
    _dead_mistake("the temperature is missing: sigmoid(z / tau), not sigmoid(z)", use_tau=False),
    _dead_mistake("the rates p are not normalised: q_j = p_j / sum_k p_k", normalise=False),
    _dead_mistake("KL(q || u) = sum_j q_j log(h q_j); the term is the other direction, KL(u || q) = "
                  "sum_j (1/h) log((1/h) / q_j), which grows without bound when a unit falls silent",
                  divergence="q||u"),
    _dead_mistake("the entropy H(q) = -sum_j q_j log q_j; the term is the relative entropy KL(u || q) = "
                  "-log h - (1/h) sum_j log q_j (zero when all units are used equally)", divergence="entropy"),
    _dead_mistake("the weights 1/h of the uniform distribution are missing: KL(u || q) = "
                  "sum_j (1/h) log((1/h) / q_j)", weights="1"),
    _dead_mistake("the rates are averaged over the wrong axis: p_j is a mean over the N samples (dim=0), "
                  "one rate per unit", axis=1),
]


def _dead_cases(gen, *, shapes, taus):
    cases = []
    for N, h in shapes:
        for tau in taus:
            Z = _randn(gen, N, h, scale=0.5) + 0.4 * _randn(gen, h)  # units fire at different rates
            cases.append(Case((Z, tau), label=f"Z of shape {(N, h)}, tau = {tau}"))
    return cases


def _dead_edges():
    gen = _gen(77)
    Z_dead = _randn(gen, 15, 5, scale=0.3)
    Z_dead[:, 1] -= 20.0  # unit 1 never fires: z / tau is about -200
    col = _randn(gen, 12, 1)
    Z_even = torch.cat([col[torch.randperm(12, generator=gen)] for _ in range(4)], dim=1)
    return [
        Case((Z_dead, 0.1), label="unit 1 is dead (z <= -19 on every sample)"),
        Case((Z_even, 0.3), label="every unit fires equally often (columns are permutations): the term is 0"),
        Case((_randn(gen, 1, 7), 0.2), label="a single sample, N = 1"),
        Case((_randn(gen, 9, 1), 0.1), label="a single unit, h = 1: the term is 0"),
        Case((_randn(gen, 10, 4, scale=2.0), 5.0), label="a large temperature tau = 5"),
        Case((_randn(gen, 8, 3),), label="tau not given: the default tau = 0.1"),
    ]


check_dead_unit_term = Check(
    "dead_unit_term", _ref_dead_unit_term, _dead_cases, _dead_edges, compare=scalar_close(1e-6, 1e-9),
    mistakes=_DEAD_MISTAKES, options=dict(shapes=((20, 6),), taus=(0.1, 0.5)),
    doc="Check ``dead_unit_term(Z, tau=0.1)`` for pre-activations ``Z`` (N, h): one number >= 0.")


# -------------------------------------------------------------------------- noise
def _z(n: int, k: float = 5.0) -> float:
    """k standard errors of a mean of n samples with unit standard deviation."""
    return k / math.sqrt(max(n, 1))


def _noise_statistics_problem(got: torch.Tensor, X: torch.Tensor, kind: str, level: float) -> str | None:
    """None when ``got`` looks like a draw of the noise of ``kind`` and ``level`` applied to ``X``, else what is off."""
    n = X.numel()
    g, x = got.to(_F64), X.to(_F64)
    changed = g != x
    if kind == "gaussian":
        noise = (g - x).reshape(-1)
        if level == 0:
            return None if not bool(changed.any()) else "with level = 0 the result must equal X"
        mean, std = float(noise.mean()), float(noise.std())
        if abs(mean) > level * _z(n):
            return (f"the noise x~ - x has mean {mean:.4g}; Gaussian noise has mean 0 "
                    "(torch.rand is uniform on [0, 1): use torch.randn)")
        if abs(std / level - 1) > _z(2 * n) + 1e-9:
            hint = " (level**2? level is the standard deviation sigma)" if math.isclose(std, level**2, rel_tol=0.1) else ""
            return f"the noise x~ - x has standard deviation {std:.4g}; it should be about level = {level:g}{hint}"
        inside = float(((noise - mean).abs() <= std).to(_F64).mean())
        if abs(inside - 0.6827) > _z(n, 5.0) * math.sqrt(0.6827 * 0.3173):
            return (f"{inside:.1%} of the noise lies within one standard deviation of its mean; for Gaussian noise "
                    "that is 68.3% (is the noise uniform? use torch.randn)")
        return None
    hit = changed.reshape(-1)
    frac = float(hit.to(_F64).mean())
    if kind == "masking":
        if bool((g[changed] != 0).any()):
            return "entries that differ from X must be 0: masking sets an entry to 0 and leaves the others unchanged"
        what = "set to 0"
    else:
        vals = g[changed]
        if bool(((vals != 0) & (vals != 1)).any()):
            return ("entries that differ from X must be 0 (pepper) or 1 (salt); the others keep their value; "
                    f"found e.g. {float(vals[(vals != 0) & (vals != 1)][0]):.4g}")
        what = "replaced by 0 or 1"
    tol = _z(n) * math.sqrt(level * (1 - level)) + 1e-9
    if abs(frac - level) > tol:
        hint = " (level is the probability that an entry is hit, not that it is kept)" if abs(frac - (1 - level)) <= tol else ""
        return f"{frac:.1%} of the entries were {what}; about level = {level:.1%} should be{hint}"
    if kind == "salt_and_pepper" and int(hit.sum()) > 0:
        n_hit = int(hit.sum())
        salt = float((g[changed] == 1).to(_F64).mean())
        if abs(salt - 0.5) > _z(n_hit) * 0.5 + 1e-9:
            return (f"{salt:.1%} of the replaced entries are salt (1) and {1 - salt:.1%} pepper (0); "
                    "each should be about 50%")
    return None


def _generator(seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` and advanced by a few draws: its state is not the state
    ``manual_seed(generator.initial_seed())`` gives, so the noise must come from its state."""
    g = torch.Generator().manual_seed(int(seed))
    torch.rand(3 + int(seed) % 7, generator=g)
    return g


def _advanced(g: torch.Generator) -> torch.Generator:
    """A copy of ``g`` in another state, with the same seed."""
    other = torch.Generator()
    other.set_state(g.get_state())
    torch.rand(5, generator=other)
    return other


def _ref_add_noise(X, kind, level, generator):
    return _ae.add_noise(X, kind, level, generator)


def _rand(X, g):
    return torch.rand(X.shape, generator=g, dtype=X.dtype)


def _noise_mistake(kind, description, fn):
    """A wrong noise of ``kind``, drawn like the reference (it does not apply to the other kinds)."""
    return Mistake(description, lambda X, k, level, generator: fn(X, level, generator) if k == kind else None)


_NOISE_MISTAKES = [
    _noise_mistake("gaussian", "level is the standard deviation sigma of the Gaussian noise, not its variance: "
                   "x + level * eps", lambda X, level, g: X + level**2 * torch.randn(X.shape, generator=g, dtype=X.dtype)),
    _noise_mistake("gaussian", "the noise replaces x: Gaussian noise is added, x~ = x + level * eps",
                   lambda X, level, g: level * torch.randn(X.shape, generator=g, dtype=X.dtype)),
    _noise_mistake("gaussian", "torch.rand (uniform on [0, 1)) instead of torch.randn (standard normal) for Gaussian "
                   "noise", lambda X, level, g: X + level * _rand(X, g)),
    _noise_mistake("masking", "level is the probability that an entry is masked (set to 0), not that it is kept",
                   lambda X, level, g: torch.where(_rand(X, g) < level, X, torch.zeros_like(X))),
    _noise_mistake("masking", "the kept entries are rescaled by 1 / (1 - level) (the convention of dropout); "
                   "masking noise only sets entries to 0",
                   lambda X, level, g: torch.where(_rand(X, g) < level, torch.zeros_like(X), X / (1 - level))),
    _noise_mistake("salt_and_pepper", "salt only: a hit entry becomes 1 (salt) or 0 (pepper) with probability 1/2 each",
                   lambda X, level, g: torch.where(_rand(X, g) < level, torch.ones_like(X), X)),
    _noise_mistake("salt_and_pepper", "pepper only: a hit entry becomes 1 (salt) or 0 (pepper) with probability 1/2 "
                   "each", lambda X, level, g: torch.where(_rand(X, g) < level, torch.zeros_like(X), X)),
]


def _is_random(kind, level) -> bool:
    return level > 0 and (kind == "gaussian" or level < 1)


def _noise_compare(got, expected, ctx):
    """Exact agreement with the reference's draw, or the right statistics; either way drawn from ``generator``."""
    exact = compare_tensors(got, expected, rtol=1e-12, atol=1e-12, what=ctx.what)
    if not ctx.against_reference:  # a known mistake's result
        return exact
    X, kind, level, g = ctx.case.args
    if exact is not None:
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(X.shape) or not got.is_floating_point():
            return exact
        if got.dtype != X.dtype:
            return f"dtype {str(got.dtype).replace('torch.', '')}; keep the dtype of X ({str(X.dtype).replace('torch.', '')})"
        if not bool(torch.isfinite(got).all()):
            return exact
        problem = _noise_statistics_problem(got, X, kind, float(level))
        if problem is not None:
            return ("your noise differs from the reference's draw with the same generator, and it does not look like "
                    "the right noise: " + problem)
    if not _is_random(kind, level):
        return None
    return _generator_problem(got, ctx, X, kind, level, g, exact is None)


def _generator_problem(got, ctx, X, kind, level, g, exact):
    """None when the noise comes from ``generator``: it advanced, the same state gives the same noise and
    another state (same seed) other noise."""
    intro = "" if exact else "your noise differs from the reference's draw with the same generator, and "
    used = ctx.outcome.args[3] if ctx.outcome is not None and len(ctx.outcome.args) > 3 else None
    if isinstance(used, torch.Generator) and torch.equal(used.get_state(), g.get_state()):
        return (intro + "the generator you were given did not advance: draw every random number from `generator` "
                "(e.g. torch.rand(X.shape, generator=generator, dtype=X.dtype)), not from torch's global random state")
    if not exact:
        same = ctx.call(X.clone(), kind, level, _clone_generator(g))
        if same.error is not None:
            return intro + "calling it again with a generator in the same state failed: " + type(same.error).__name__
        if not (isinstance(same.value, torch.Tensor) and torch.equal(same.value, got)):
            return (intro + "two calls with generators in the same state gave different noise: draw every random "
                    "number from `generator`, not from torch's global random state")
    other = ctx.call(X.clone(), kind, level, _advanced(g))
    if other.error is None and isinstance(other.value, torch.Tensor) and torch.equal(other.value, got):
        return (intro + "a generator in another state (with the same seed) gave the same noise: draw the random "
                "numbers from the `generator` argument as it is (no torch.manual_seed, generator.initial_seed() or "
                "generator of your own inside the function)")
    return None


def _clone_generator(g):
    c = torch.Generator()
    c.set_state(g.get_state())
    return c


def _noise_cases(gen, *, shape, levels, seed_of=None):
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    X = torch.rand(*shape, generator=gen, dtype=_F64) * 0.8 + 0.1  # in (0.1, 0.9)
    return [Case((X, kind, level, _generator(seed + k)), label=f"kind = {kind!r}, level = {level}")
            for k, (kind, level) in enumerate(dict(levels).items())]


def _noise_edges():
    X3 = torch.rand(12, 8, 8, generator=_gen(5), dtype=_F64) * 0.8 + 0.1
    X = torch.rand(40, 30, generator=_gen(6), dtype=_F64) * 0.8 + 0.1
    return [
        Case((X3, "masking", 0.5, _generator(51)), label="a batch of images (12, 8, 8): any shape"),
        Case((X3, "salt_and_pepper", 0.4, _generator(52)), label="a batch of images (12, 8, 8), salt and pepper"),
        Case((X, "gaussian", 1.5, _generator(53)), label="Gaussian noise with level = 1.5 > 1"),
        Case((X, "gaussian", 0.0, _generator(54)), label="level = 0: X comes back unchanged"),
        Case((X, "masking", 1.0, _generator(55)), label="level = 1: every entry is masked"),
        Case((X, "salt_and_pepper", 1.0, _generator(56)), label="level = 1: every entry becomes 0 or 1"),
        Case((X, "masking", 0.05, _generator(57)), label="masking with a small level"),
    ]


check_add_noise = Check(
    "add_noise", _ref_add_noise, _noise_cases, _noise_edges, compare=_noise_compare, mistakes=_NOISE_MISTAKES,
    options=dict(shape=(60, 50), levels={"gaussian": 0.3, "masking": 0.3, "salt_and_pepper": 0.2}),
    doc="""Check ``add_noise(X, kind, level, generator)`` for the three kinds of noise.

    ``levels``: ``{kind: level}`` (default Gaussian 0.3, masking 0.3, salt and pepper 0.2).
    Every case hands the student a generator seeded and advanced by a few draws (the reference
    gets a copy in the same state). Exact agreement with the reference passes when the noise
    also comes from that generator: it advanced, and a generator in another state with the same
    seed gives other noise; otherwise the statistics of the result are checked and, in addition,
    two generators in the same state must give the same noise (see the module doc).""")


# ---------------------------------------------------------------------- forward pass
def _ref_ae_forward(X, V, c, W, b):
    """The forward pass of the reference module, loaded with the given weights: (X_hat, S)."""
    h, d = V.shape
    model = _ae.ReLUSparseAutoencoder(d, h, seed=0, dtype=X.dtype)  # seed: the global RNG is left alone
    model.load_state_dict({"V": V, "c": c, "W": W, "b": b})
    with torch.no_grad():
        return model(X), model.encode(X)


def _forward_variant(X, V, c, W, b, *, act="relu", c_after=False, out_relu=False, no_b=False, no_c=False,
                     swap=False, tied=False, v_t=True, w_t=True):
    pre = X @ (V.T if v_t else V) + (0 if (no_c or c_after) else c)
    f = {"relu": torch.relu, "none": lambda t: t, "sigmoid": torch.sigmoid}[act]
    S = f(pre) + (c if c_after else 0)
    D = V.T if tied else W
    X_hat = S @ (D.T if w_t else D) + (0 if no_b else b)
    if out_relu:
        X_hat = torch.relu(X_hat)
    return (S, X_hat) if swap else (X_hat, S)


def _fwd_mistake(description, **kw):
    return Mistake(description, lambda X, V, c, W, b: _forward_variant(X, V, c, W, b, **kw))


_FORWARD_MISTAKES = [
    _fwd_mistake("the ReLU is missing: S = max(0, X V^T + c) (without it this is a linear autoencoder)", act="none"),
    _fwd_mistake("a sigmoid instead of the ReLU: S = max(0, X V^T + c)", act="sigmoid"),
    _fwd_mistake("the encoder bias c is added after the ReLU; it belongs inside: S = max(0, X V^T + c)", c_after=True),
    _fwd_mistake("a ReLU on the output too: the decoder is linear, X_hat = S W^T + b", out_relu=True),
    _fwd_mistake("the decoder bias b is missing: X_hat = S W^T + b", no_b=True),
    _fwd_mistake("the encoder bias c is missing: S = max(0, X V^T + c)", no_c=True),
    _fwd_mistake("the tuple is in the wrong order: return (X_hat, S)", swap=True),
    _fwd_mistake("the decoder uses V^T (tied weights); it has its own matrix W: X_hat = S W^T + b", tied=True),
    _fwd_mistake("X @ V instead of X @ V.T: V is (h, d), one filter per row", v_t=False),
    _fwd_mistake("S @ W instead of S @ W.T: W is (d, h), one atom per column", w_t=False),
]


def _forward_case(gen, N, d, h, *, shift=0.0, label=""):
    X = torch.rand(N, d, generator=gen, dtype=_F64)
    V = _randn(gen, h, d, scale=1 / math.sqrt(d))
    c = _randn(gen, h, scale=0.3) + shift
    W = _randn(gen, d, h, scale=1 / math.sqrt(h))
    b = _randn(gen, d, scale=0.2)
    return Case((X, V, c, W, b), label=label)


def _forward_cases(gen, *, shapes):
    return [_forward_case(gen, N, d, h, label=f"N, d, h = {N}, {d}, {h}") for N, d, h in shapes]


def _forward_edges():
    gen = _gen(202)
    return [
        _forward_case(gen, 5, 4, 4, label="square V and W (d = h)"),
        _forward_case(gen, 1, 6, 9, label="a single sample, N = 1, more units than pixels (h > d)"),
        _forward_case(gen, 4, 5, 3, shift=-50.0, label="every unit dead (c very negative): S = 0, X_hat = b"),
        _forward_case(gen, 6, 3, 5, shift=5.0, label="every unit active (c large): no entry is clipped"),
    ]


check_ae_forward = Check(
    "ae_forward", _ref_ae_forward, _forward_cases, _forward_edges,
    compare=tuple_close("X_hat", "S", rtol=1e-6, atol=1e-9), mistakes=_FORWARD_MISTAKES,
    options=dict(shapes=((7, 6, 4), (3, 5, 8))),
    doc="""Check ``ae_forward(X, V, c, W, b) -> (X_hat, S)``: S = max(0, X V^T + c), X_hat = S W^T + b.

    ``shapes`` holds (N, d, h); some codes come out 0 in every case (the encoder biases
    have both signs).""")


# ---------------------------------------------------------------------- sensitivity
def _relu_encoder(V, c):
    return lambda X: torch.relu(X @ V.T + c)


def _ref_sensitivity(V, c, X, T):
    """The ratio of :func:`lecture_ae.tasks.representation.sensitivity` for f(x) = max(0, Vx + c) and x -> T x."""
    from ..tasks import representation as _rep

    result = _rep.sensitivity(_relu_encoder(V, c), X, lambda Z: Z @ T.T)
    return torch.tensor(result.ratio, dtype=X.dtype)


def _rel(A, B, per_sample=True, squared=False, relative=True, norm_of=None):
    """Mean over the rows of ||A - B|| / ||norm_of or A|| (variants for the mistakes)."""
    diff = torch.linalg.vector_norm(A - B, dim=1)
    ref = torch.linalg.vector_norm(A if norm_of is None else norm_of, dim=1)
    if squared:
        diff, ref = diff**2, ref**2
    return (diff / ref) if relative else diff


def _sens_variant(V, c, X, T, *, baseline=True, on_codes=False, relative=True, per_sample_ratio=False,
                  norm_after=False, inverted=False, squared=False, t_not_transposed=False, relu=True, batch_norms=False):
    f = (lambda Z: torch.relu(Z @ V.T + c)) if relu else (lambda Z: Z @ V.T + c)
    XT = X @ (T if t_not_transposed else T.T)
    S = f(X)
    if on_codes:
        if S.shape[1] != T.shape[0]:
            return None  # only possible when h = d
        ST = S @ T.T
    else:
        ST = f(XT)
    if batch_norms:
        rf = torch.linalg.matrix_norm(S - ST) / torch.linalg.matrix_norm(S)
        rx = torch.linalg.matrix_norm(X - XT) / torch.linalg.matrix_norm(X)
        return rf / rx
    rel_f = _rel(S, ST, squared=squared, relative=relative, norm_of=ST if norm_after else None)
    rel_x = _rel(X, XT, squared=squared, relative=relative)
    if not baseline:
        return rel_f.mean()
    if per_sample_ratio:
        return (rel_f / rel_x).mean()
    return rel_x.mean() / rel_f.mean() if inverted else rel_f.mean() / rel_x.mean()


def _sens_mistake(description, **kw):
    return Mistake(description, lambda V, c, X, T: _sens_variant(V, c, X, T, **kw))


_SENSITIVITY_MISTAKES = [
    _sens_mistake("no baseline: the mean relative change of f is divided by the mean relative change of the input, "
                  "(1/N) sum_i ||x_i - T x_i|| / ||x_i||, so that the identity scores 1", baseline=False),
    _sens_mistake("the transform is applied to the representation, T f(x), instead of to the input: compare f(x) "
                  "with f(T x), the code of the transformed image", on_codes=True),
    _sens_mistake("the changes are not relative: divide ||f(x_i) - f(T x_i)|| by ||f(x_i)|| (and ||x_i - T x_i|| by "
                  "||x_i||) for every sample before averaging", relative=False),
    _sens_mistake("the ratio is taken per sample and then averaged; the sensitivity is the ratio of the two means "
                  "over the samples", per_sample_ratio=True),
    _sens_mistake("the change of f is divided by ||f(T x_i)||; the relative change is measured against the code of "
                  "the original image, ||f(x_i)||", norm_after=True),
    _sens_mistake("the ratio is upside down: the sensitivity is the change of the representation divided by the change of "
                  "the input, rho_f / rho_x",
                  inverted=True),
    _sens_mistake("the norms are squared; the relative change is ||f(x) - f(T x)|| / ||f(x)|| (not squared)",
                  squared=True),
    _sens_mistake("X @ T instead of X @ T.T: T acts on one image as T x, so on a batch of rows as X T^T",
                  t_not_transposed=True),
    _sens_mistake("the ReLU is missing in the representation: f(x) = max(0, V x + c)", relu=False),
    _sens_mistake("the norms are taken over the whole batch (one Frobenius norm); the relative change is per sample "
                  "(a row), then averaged over the samples", batch_norms=True),
]


def _transform(gen, side):
    """A random sub-pixel shift or small rotation of side x side images, as a (d, d) matrix, and its label."""
    from ..tasks import representation as _rep

    kind = int(torch.randint(0, 2, (1,), generator=gen))
    if kind == 0:
        pixels = 0.3 + 0.7 * float(torch.rand(1, generator=gen, dtype=_F64))
        angle = 360.0 * float(torch.rand(1, generator=gen, dtype=_F64))
        t = _rep.shift(pixels, (side, side), angle=angle)
        label = f"a shift by {pixels:.2f} px at {angle:.0f} degrees"
    else:
        degrees = 3.0 + 12.0 * float(torch.rand(1, generator=gen, dtype=_F64))
        t = _rep.rotation(degrees, (side, side), random_sign=False)
        label = f"a rotation by {degrees:.1f} degrees"
    return _rep.transform_matrix(t), label


def _images(gen, N, side):
    """Digit-like images (N, side*side) in [0, 1]: ink on a blank border."""
    X = torch.rand(N, side, side, generator=gen, dtype=_F64)
    X[:, 0, :] = 0.0
    X[:, :, -1] *= 0.2
    return X.reshape(N, side * side)


def _encoder(gen, h, d, *, shift=0.2):
    V = _randn(gen, h, d, scale=1 / math.sqrt(d))
    c = _randn(gen, h, scale=0.3) + shift
    return V, c


def _sens_case(gen, N, side, h, *, label=""):
    d = side * side
    X = _images(gen, N, side)
    V, c = _encoder(gen, h, d)
    while bool((torch.relu(X @ V.T + c).abs().sum(dim=1) == 0).any()):  # every code non-zero
        c = c + 0.5
    T, what = _transform(gen, side)
    return Case((V, c, X, T), label=f"{label}, T = {what}")


def _sens_cases(gen, *, shapes):
    return [_sens_case(gen, N, side, h, label=f"N, d, h = {N}, {side * side}, {h}") for N, side, h in shapes]


def _sens_edges():
    from ..tasks import representation as _rep

    gen = _gen(303)
    X16 = _images(gen, 10, 4)
    periodic = _rep.transform_matrix(_rep.shift(0.5, (4, 4), angle=0.0, boundary="periodic"))
    V_avg = torch.full((3, 16), 1 / 16, dtype=_F64)
    X64 = _images(gen, 20, 8)
    rot = _rep.transform_matrix(_rep.rotation(10.0, (8, 8), random_sign=False))
    V_dead, c_dead = _encoder(gen, 12, 64)
    c_dead[2:] -= 50.0  # ten of the twelve units never fire
    c_dead[:2] += 2.0
    return [
        Case((V_avg, torch.full((3,), 0.1, dtype=_F64), X16, periodic),
             label="f(x) = the global average of the pixels, T = a periodic shift: invariant, the sensitivity is 0"),
        Case((torch.eye(16, dtype=_F64), torch.zeros(16, dtype=_F64), X16, periodic),
             label="f(x) = max(0, x) = x for images: the representation changes as much as the input, 1"),
        _sens_case(gen, 1, 4, 5, label="a single image, N = 1"),
        _sens_case(gen, 6, 4, 1, label="a single unit, h = 1"),
        Case((*_encoder(gen, 64, 64), X64, rot), label="8 x 8 images, h = d = 64, a rotation by 10 degrees"),
        Case((V_dead, c_dead, X64, rot), label="most units dead (c very negative): only two units carry the code"),
    ]


check_sensitivity = Check(
    "sensitivity", _ref_sensitivity, _sens_cases, _sens_edges, compare=scalar_close(1e-6, 1e-9),
    mistakes=_SENSITIVITY_MISTAKES, options=dict(shapes=((12, 4, 16), (9, 5, 7))),
    doc="""Check ``sensitivity(V, c, X, T)``: one number, the relative change of f(x) = max(0, V x + c) under
    x -> T x over the relative change of x, both averaged over the N rows of X.

    ``shapes`` holds (N, side, h): images of side x side pixels (d = side**2); T is a random
    sub-pixel shift or small rotation of those images as a (d, d) matrix. The first shape has
    h = d, so that transforming the codes instead of the images gives a result the hint
    recognises.""")
