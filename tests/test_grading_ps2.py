"""The ps2 checks (autoencoders) with right and wrong functions, without nbgrader."""
from __future__ import annotations

import math

import pytest
import torch

from lecture_ae.grading import CheckFailed
from lecture_ae.grading import ps2
from lecture_ae.models import ReLUSparseAutoencoder
from lecture_ae.models import autoencoders as ae


# ------------------------------------------------------------- right implementations
def sparse_ae_loss(X, X_hat, S, W, lam, eta):
    return (((X - X_hat) ** 2).sum(dim=1) + lam * S.abs().sum(dim=1)).mean() + eta * (W**2).sum()


def dead_unit_term(Z, tau=0.1):
    p = torch.sigmoid(Z / tau).mean(dim=0)
    q = p / p.sum()
    return -math.log(Z.shape[1]) - torch.log(q).mean()


def add_noise(X, kind, level, generator):
    if kind == "gaussian":
        return X + level * torch.randn(X.shape, generator=generator, dtype=X.dtype)
    if kind == "masking":
        return torch.where(torch.rand(X.shape, generator=generator, dtype=X.dtype) < level, torch.zeros_like(X), X)
    hit = torch.rand(X.shape, generator=generator, dtype=X.dtype) < level
    salt = torch.rand(X.shape, generator=generator, dtype=X.dtype) < 0.5
    return torch.where(hit, salt.to(X.dtype), X)


def add_noise_drawn_otherwise(X, kind, level, generator):
    """Correct noise, drawn differently from the reference (other functions, other order)."""
    if kind == "gaussian":
        return X + torch.normal(0.0, 1.0, X.shape, generator=generator, dtype=X.dtype).flip(0) * level
    if kind == "masking":
        return X * torch.bernoulli(torch.full_like(X, 1 - level), generator=generator)
    salt = torch.rand(X.shape, generator=generator, dtype=X.dtype) < 0.5  # salt first, then the hits
    hit = torch.bernoulli(torch.full_like(X, level), generator=generator).bool()
    return torch.where(hit, salt.to(X.dtype), X)


def ae_forward(X, V, c, W, b):
    S = torch.relu(X @ V.T + c)
    return S @ W.T + b, S


def _norms(A):
    return torch.linalg.vector_norm(A, dim=1)


def sensitivity(V, c, X, T):
    XT = X @ T.T
    S, ST = torch.relu(X @ V.T + c), torch.relu(XT @ V.T + c)
    return (_norms(S - ST) / _norms(S)).mean() / (_norms(X - XT) / _norms(X)).mean()


def _sensitivity(*, baseline=True, on_codes=False, relative=True, per_sample=False, after=False, inverted=False,
                 squared=False, t_not_transposed=False, relu=True, batch=False):
    """A wrong sensitivity, written out (not the checks' own helpers: those are guarded)."""

    def fn(V, c, X, T):
        f = (lambda Z: torch.relu(Z @ V.T + c)) if relu else (lambda Z: Z @ V.T + c)
        XT = X @ (T if t_not_transposed else T.T)
        S = f(X)
        ST = S @ T.T if on_codes else f(XT)
        if batch:
            return (torch.linalg.norm(S - ST) / torch.linalg.norm(S)) / (torch.linalg.norm(X - XT) / torch.linalg.norm(X))
        p = 2 if squared else 1
        rf = _norms(S - ST) ** p / (_norms(ST if after else S) ** p if relative else 1)
        rx = _norms(X - XT) ** p / (_norms(X) ** p if relative else 1)
        if not baseline:
            return rf.mean()
        if per_sample:
            return (rf / rx).mean()
        return rx.mean() / rf.mean() if inverted else rf.mean() / rx.mean()

    return fn


RIGHT = {
    ps2.check_sparse_ae_loss: sparse_ae_loss,
    ps2.check_dead_unit_term: dead_unit_term,
    ps2.check_add_noise: add_noise,
    ps2.check_ae_forward: ae_forward,
    ps2.check_sensitivity: sensitivity,
}


@pytest.mark.parametrize("check", list(RIGHT), ids=lambda c: c.__name__)
def test_right_implementations_pass_visible_and_hidden_checks(check, capsys):
    assert check(RIGHT[check]) is None  # a value would be read by nbgrader as partial credit
    assert check(RIGHT[check], seeds=(5, 6), edge_cases=True) is None
    out = capsys.readouterr().out
    assert "visible checks passed" in out and "hidden checks passed" in out


def test_noise_drawn_otherwise_passes_by_its_statistics():
    ps2.check_add_noise(add_noise_drawn_otherwise)
    ps2.check_add_noise(add_noise_drawn_otherwise, seeds=(41, 42), shape=(50, 64), edge_cases=True,
                        levels={"gaussian": 0.5, "masking": 0.6, "salt_and_pepper": 0.1})


# -------------------------------------------------------------- the reference itself
def test_the_forward_reference_is_the_module_and_matches_the_formula():
    """The reference of ae_forward loads the weights into ReLUSparseAutoencoder; check it by hand."""
    g = torch.Generator().manual_seed(3)
    X, V, c = torch.rand(5, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64), \
        torch.randn(4, generator=g, dtype=torch.float64)
    W, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    X_hat, S = ps2._ref_ae_forward(X, V, c, W, b)
    S_hand = torch.clamp(X @ V.T + c, min=0)
    torch.testing.assert_close(S, S_hand, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(X_hat, S_hand @ W.T + b, rtol=1e-12, atol=1e-12)
    model = ReLUSparseAutoencoder(6, 4, dtype=torch.float64)
    with torch.no_grad():
        model.V.copy_(V), model.c.copy_(c), model.W.copy_(W), model.b.copy_(b)
    torch.testing.assert_close(model(X), X_hat)
    state = torch.random.get_rng_state()
    ps2._ref_ae_forward(X, V, c, W, b)
    assert torch.equal(state, torch.random.get_rng_state())  # building the module leaves the global RNG alone


def test_dead_unit_term_reference_by_hand():
    # two units, rates p = (sigmoid(1), sigmoid(-1)) at tau = 1 and N = 1: q = p (they sum to 1)
    Z = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    q = torch.sigmoid(torch.tensor([1.0, -1.0], dtype=torch.float64))
    expected = 0.5 * math.log(0.5 / float(q[0])) + 0.5 * math.log(0.5 / float(q[1]))
    assert math.isclose(float(ae.dead_unit_term(Z, 1.0)), expected, rel_tol=1e-12)
    assert math.isclose(float(dead_unit_term(Z, 1.0)), expected, rel_tol=1e-12)


def test_noise_statistics_accept_the_reference_and_reject_wrong_noise():
    X = torch.rand(60, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.8 + 0.1
    for seed in range(30):  # five standard errors: no false alarm on 30 x 3 honest draws
        for kind, level in (("gaussian", 0.3), ("masking", 0.3), ("salt_and_pepper", 0.2)):
            noisy = ae.add_noise(X, kind, level, torch.Generator().manual_seed(seed))
            assert ps2._noise_statistics_problem(noisy, X, kind, level) is None, (seed, kind)
    g = torch.Generator().manual_seed(1)
    problem = ps2._noise_statistics_problem
    assert "standard deviation" in problem(ae.add_noise(X, "gaussian", 0.09, g), X, "gaussian", 0.3)
    assert "mean" in problem(X + 0.3 * torch.rand(X.shape, generator=g, dtype=X.dtype), X, "gaussian", 0.3)
    assert "68.3%" in problem(X + 0.3 * 3**0.5 * (2 * torch.rand(X.shape, generator=g, dtype=X.dtype) - 1), X,
                              "gaussian", 0.3)
    assert "not that it is kept" in problem(ae.add_noise(X, "masking", 0.7, g), X, "masking", 0.3)
    assert "must be 0" in problem(torch.where(X < 0.3, torch.ones_like(X), X), X, "masking", 0.3)
    assert "salt (1)" in problem(torch.where(X < 0.26, torch.ones_like(X), X), X, "salt_and_pepper", 0.2)
    assert "0 (pepper) or 1 (salt)" in problem(torch.where(X < 0.26, X / 2, X), X, "salt_and_pepper", 0.2)


# ------------------------------------------------------------------- wrong functions
def _noise(gaussian=None, masking=None, salt_and_pepper=None):
    """add_noise with one kind replaced."""
    parts = {"gaussian": gaussian, "masking": masking, "salt_and_pepper": salt_and_pepper}

    def fn(X, kind, level, generator):
        return (parts[kind] or (lambda X, level, g: add_noise(X, kind, level, g)))(X, level, generator)

    return fn


def _rand(X, g):
    return torch.rand(X.shape, generator=g, dtype=X.dtype)


def _masking_in_place(X, level, g):
    X[_rand(X, g) < level] = 0
    return X


def _forward(act=torch.relu, c_after=False, swap=False, out_relu=False, tied=False):
    def fn(X, V, c, W, b):
        S = act(X @ V.T + (0 if c_after else c)) + (c if c_after else 0)
        X_hat = S @ (V if tied else W.T) + b
        X_hat = torch.relu(X_hat) if out_relu else X_hat
        return (S, X_hat) if swap else (X_hat, S)

    return fn


def _kl_q_u(Z, tau=0.1):
    q = torch.sigmoid(Z / tau).mean(0)
    q = q / q.sum()
    return (q * torch.log(q * Z.shape[1])).sum()


def _global_from_initial_seed(X, level, g):
    """The exploit of issue 13: reseed torch's global generator from the given one and draw from it."""
    torch.manual_seed(g.initial_seed())
    return X + level * torch.randn(X.shape, dtype=X.dtype)


def _private_from_initial_seed(X, level, g):
    """A private generator seeded like the given one, which is also advanced (so it looks used)."""
    torch.rand(1, generator=g)
    return add_noise(X, "gaussian", level, torch.Generator().manual_seed(g.initial_seed()))


def _draws_then_global(X, level, g):
    """Advances the given generator, but the noise comes from the global state (changes call to call)."""
    torch.rand(1, generator=g)
    return X + level * torch.randn(X.shape, dtype=X.dtype)


WRONG = [
    (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: ((X - X_hat) ** 2).sum() + lam * S.abs().sum()
     + eta * (W**2).sum(), "the sum over the N samples is not divided by N"),
    (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: sparse_ae_loss(X, S @ W.T, S, W, lam, eta),
     "the reconstruction is recomputed as S W^T"),
    (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: (((X - X_hat) ** 2).sum(1) + lam * S.sum(1)).mean()
     + eta * (W**2).sum(), "the absolute value is missing"),
    (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: ((X - X_hat) ** 2).mean() + lam * S.abs().sum(1).mean()
     + eta * (W**2).sum(), "averaged over the d coordinates too"),
    (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: sparse_ae_loss(X, X_hat, S, W, lam, eta / len(X)),
     "is divided by N"),
    (ps2.check_dead_unit_term, lambda Z, tau=0.1: dead_unit_term(torch.relu(Z), tau), "computed from S = max(0, Z)"),
    (ps2.check_dead_unit_term, lambda Z, tau=0.1: dead_unit_term(Z, 1.0), "the temperature is missing"),
    (ps2.check_dead_unit_term, _kl_q_u, "KL(q || u)"),
    (ps2.check_dead_unit_term, lambda Z, tau=0.1: -math.log(Z.shape[1]) - torch.log(torch.sigmoid(Z / tau).mean(0)).mean(),
     "the rates p are not normalised"),
    (ps2.check_dead_unit_term, lambda Z, tau=0.1: dead_unit_term(Z, tau) * Z.shape[1], "the weights 1/h"),
    (ps2.check_add_noise, _noise(gaussian=lambda X, level, g: X + level**2 * torch.randn(X.shape, generator=g, dtype=X.dtype)),
     "level is the standard deviation sigma"),
    (ps2.check_add_noise, _noise(gaussian=lambda X, level, g: X + level * torch.randn(X.shape, dtype=X.dtype)),
     "the generator you were given did not advance"),
    (ps2.check_add_noise, _noise(gaussian=lambda X, level, g: add_noise(X, "gaussian", level, torch.Generator().manual_seed(0))),
     "the generator you were given did not advance"),
    (ps2.check_add_noise, _noise(gaussian=_global_from_initial_seed), "did not advance"),
    (ps2.check_add_noise, _noise(gaussian=_private_from_initial_seed), "another state (with the same seed)"),
    (ps2.check_add_noise, _noise(gaussian=_draws_then_global), "two calls with generators in the same state"),
    (ps2.check_add_noise, _noise(masking=_masking_in_place), "changed its input X in place"),
    (ps2.check_add_noise, _noise(masking=lambda X, level, g: X * torch.bernoulli(torch.full_like(X, level), generator=g)),
     "not that it is kept"),
    (ps2.check_add_noise, _noise(masking=lambda X, level, g: torch.where(_rand(X, g) < level, 0 * X, X / (1 - level))),
     "rescaled by 1 / (1 - level)"),
    (ps2.check_add_noise, _noise(salt_and_pepper=lambda X, level, g: torch.where(_rand(X, g) < level, 1 + 0 * X, X)),
     "salt only"),
    (ps2.check_add_noise, _noise(salt_and_pepper=lambda X, level, g: torch.where(_rand(X, g) < level, _rand(X, g), X)),
     "must be 0 (pepper) or 1 (salt)"),
    (ps2.check_add_noise, _noise(gaussian=lambda X, level, g: add_noise(X.float(), "gaussian", level, g)),
     "keep the dtype of X"),
    (ps2.check_ae_forward, _forward(act=lambda t: t), "the ReLU is missing"),
    (ps2.check_ae_forward, _forward(act=torch.sigmoid), "a sigmoid instead of the ReLU"),
    (ps2.check_ae_forward, _forward(c_after=True), "the encoder bias c is added after the ReLU"),
    (ps2.check_ae_forward, _forward(swap=True), "the tuple is in the wrong order"),
    (ps2.check_ae_forward, _forward(tied=True), "tied weights"),
    (ps2.check_sensitivity, _sensitivity(baseline=False), "no baseline"),
    (ps2.check_sensitivity, _sensitivity(on_codes=True), "applied to the representation, T f(x), instead of to the input"),
    (ps2.check_sensitivity, _sensitivity(relative=False), "the changes are not relative"),
    (ps2.check_sensitivity, _sensitivity(per_sample=True), "taken per sample and then averaged"),
    (ps2.check_sensitivity, _sensitivity(after=True), "is divided by ||f(T x_i)||"),
    (ps2.check_sensitivity, _sensitivity(inverted=True), "upside down"),
    (ps2.check_sensitivity, _sensitivity(squared=True), "the norms are squared"),
    (ps2.check_sensitivity, _sensitivity(t_not_transposed=True), "X @ T instead of X @ T.T"),
    (ps2.check_sensitivity, _sensitivity(relu=False), "the ReLU is missing in the representation"),
    (ps2.check_sensitivity, _sensitivity(batch=True), "over the whole batch"),
]


@pytest.mark.parametrize("check,wrong,phrase", WRONG, ids=[f"{c.__name__}-{k}" for k, (c, _, _) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_message_naming_the_problem(check, wrong, phrase):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert phrase in str(info.value), str(info.value)


def test_hidden_edge_cases_catch_what_the_visible_cases_miss():
    def output_relu(X, V, c, W, b):  # differs only where S W^T + b < 0
        return _forward(out_relu=True)(X, V, c, W, b)

    def x_at_v(X, V, c, W, b):  # V not transposed: fails with a shape error unless d = h
        S = torch.relu(X @ V + c) if V.shape[0] == V.shape[1] else torch.relu(X @ V.T + c)
        return S @ W.T + b, S

    def other_default(Z, tau=1.0):
        return dead_unit_term(Z, tau)

    ps2.check_dead_unit_term(other_default)  # the visible cases pass tau explicitly
    for check, fn, phrase in [(ps2.check_ae_forward, x_at_v, "X @ V instead of X @ V.T"),
                              (ps2.check_dead_unit_term, other_default, "the default tau = 0.1")]:
        with pytest.raises(CheckFailed) as info:
            check(fn, seeds=(51,), edge_cases=True)
        assert phrase in str(info.value)
    with pytest.raises(CheckFailed, match="a ReLU on the output too"):
        ps2.check_ae_forward(output_relu, seeds=(51, 52), edge_cases=True)


def test_calling_the_reference_scores_zero():
    from lecture_ae.models import add_noise as ref_add_noise

    def uses_module(X, V, c, W, b):
        model = ReLUSparseAutoencoder(V.shape[1], V.shape[0], dtype=X.dtype)
        model.load_state_dict({"V": V, "c": c, "W": W, "b": b})
        return model(X), model.encode(X)

    cases = [
        (ps2.check_add_noise, lambda X, kind, level, generator: ref_add_noise(X, kind, level, generator)),
        (ps2.check_sparse_ae_loss, lambda X, X_hat, S, W, lam, eta: ae.sparse_ae_loss(X, X_hat, S, W, lam, eta)),
        (ps2.check_dead_unit_term, lambda Z, tau=0.1: ps2._dead_variant(Z, tau)),  # the checks' own helpers too
        (ps2.check_ae_forward, uses_module),
    ]
    for check, fn in cases:
        with pytest.raises(CheckFailed, match="calls the reference implementation"):
            check(fn)
    ps2.check_add_noise(add_noise)  # everything is restored afterwards


def test_sensitivity_reference_is_the_package_ratio_and_its_edge_cases_hold():
    from lecture_ae.tasks import representation as rep

    for case in ps2.check_sensitivity.make_cases(seeds=(0, 61), edge_cases=True):
        V, c, X, T = case.args
        expected = rep.sensitivity(lambda Z: torch.relu(Z @ V.T + c), X, lambda Z: Z @ T.T).ratio
        assert float(ps2._ref_sensitivity(V, c, X, T)) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert float(sensitivity(V, c, X, T)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert bool((torch.relu(X @ V.T + c).abs().sum(dim=1) > 0).all()), case.label  # every code non-zero
    edges = {case.label: case.args for case in ps2.check_sensitivity.edge_cases()}
    invariant = next(k for k in edges if "invariant" in k)
    identity = next(k for k in edges if "max(0, x) = x" in k)
    assert float(ps2._ref_sensitivity(*edges[invariant])) < 1e-12
    assert float(ps2._ref_sensitivity(*edges[identity])) == pytest.approx(1.0)


def test_a_sensitivity_calling_the_package_scores_zero():
    from lecture_ae.tasks.representation import sensitivity as ref

    def uses_package(V, c, X, T):
        return torch.tensor(ref(lambda Z: torch.relu(Z @ V.T + c), X, lambda Z: Z @ T.T).ratio)

    with pytest.raises(CheckFailed, match="calls the reference implementation"):
        ps2.check_sensitivity(uses_package)


def test_exceptions_and_wrong_types_are_reported():
    with pytest.raises(CheckFailed, match="is not implemented yet"):
        ps2.check_add_noise(lambda X, kind, level, generator: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(CheckFailed, match="should return a tuple of 2 values"):
        ps2.check_ae_forward(lambda X, V, c, W, b: torch.relu(X @ V.T + c) @ W.T + b)
    with pytest.raises(CheckFailed, match="it should return a single number"):
        ps2.check_sparse_ae_loss(lambda X, X_hat, S, W, lam, eta: ((X - X_hat) ** 2).sum(1))
    with pytest.raises(CheckFailed, match="did not finish within the time limit"):
        ps2.check_dead_unit_term(lambda Z, tau=0.1: [None for _ in iter(int, 1)], limit=0.5)
