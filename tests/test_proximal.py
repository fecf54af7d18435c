"""The one proximal-gradient loop, the duality-gap certificate and the exact codes (sparse.lasso)."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode

from lecture_ae import sparse as sp
from lecture_ae.data import image_patches
from lecture_ae.sparse import proximal
from test_sparse_coding import _lasso_problem as _random_problem  # tests/test_sparse_coding.py


@pytest.fixture(scope="module")
def patches():
    X = image_patches("camera", n=300, seed=1, dtype=torch.float64)
    return X, sp.init_dictionary(X, 64, seed=0)


def _lars(X, W, lam):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.as_tensor(sparse_encode(X.numpy(), W.T.numpy(), algorithm="lasso_lars", alpha=lam / 2))


def test_ista_is_plain_ista_bit_for_bit():
    # the ps1 autograder compares students' ISTA with the reference: n_iter plain steps from S = 0
    X, W = _random_problem(seed=1)
    G, B = W.T @ W, X @ W
    t = 1.0 / sp.lipschitz_constant(W)
    S = torch.zeros(X.shape[0], W.shape[1], dtype=torch.float64)
    for _ in range(37):
        S = sp.soft_threshold(S - t * 2.0 * (S @ G - B), 0.1 * t)
    assert torch.equal(sp.ista(X, W, 0.1, 37), S)


def test_fista_is_the_classical_loop_without_tol():
    X, W = _random_problem(seed=2)
    G, B = W.T @ W, X @ W
    t = 1.0 / sp.lipschitz_constant(W)
    S = torch.zeros(X.shape[0], W.shape[1], dtype=torch.float64)
    Y, tk = S.clone(), 1.0
    for _ in range(50):
        Z = sp.soft_threshold(Y - t * 2.0 * (Y @ G - B), 0.1 * t)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        Y, S, tk = Z + (tk - 1.0) / t_next * (Z - S), Z, t_next
    torch.testing.assert_close(sp.fista(X, W, 0.1, 50), S, rtol=1e-12, atol=1e-12)


def test_restart_and_gap_stopping_per_sample():
    X, W = _random_problem(seed=3)
    S, hist, gap = sp.fista(X, W, 0.1, n_iter=3000, tol=1e-9, history=True, return_gap=True)
    assert float(gap.max()) <= 1e-9 and len(hist) < 3000  # every sample certified, early
    assert hist[-1] == pytest.approx(float(sp.l1_objective(X, W, S, 0.1)), rel=1e-12)
    torch.testing.assert_close(gap, sp.l1_duality_gap(X, W, S, 0.1))
    # restart needs far fewer iterations than the classical FISTA to the same certificate
    _, plain = sp.fista(X, W, 0.1, n_iter=300, restart=False, history=True)
    _, restarted = sp.fista(X, W, 0.1, n_iter=300, restart=True, history=True)
    best = hist[-1]
    assert restarted[-1] - best < 1e-3 * (plain[-1] - best) + 1e-15
    # n_iter stays the upper bound; the gap then says how far we are
    S5, g5 = sp.fista(X, W, 0.1, n_iter=5, tol=1e-12, return_gap=True)
    assert float(g5.max()) > 1e-12
    assert float(sp.l1_objective(X, W, S5, 0.1)) - best <= float((g5 * sp.l1_objective(X, W, S5, 0.1)).max()) + 1e-12


def test_duality_gap_bounds_the_suboptimality():
    X, W = _random_problem(seed=4)
    lam = 0.2
    best = sp.lasso(X, W, lam).S
    S = sp.ista(X, W, lam, 20)
    P = sp.per_sample_error(X, W, S) + lam * S.abs().sum(1)
    P_star = sp.per_sample_error(X, W, best) + lam * best.abs().sum(1)
    gap = sp.l1_duality_gap(X, W, S, lam, relative=False)
    assert bool((P - P_star <= gap + 1e-12).all()) and float(gap.min()) >= 0
    assert float(sp.l1_duality_gap(X, W, best, lam).max()) <= 1e-10


@pytest.mark.parametrize("lam", [0.05, 0.5])
def test_lasso_exact_on_random_problems(lam):
    X, W = _random_problem(seed=5)
    res = sp.lasso(X, W, lam)
    assert bool(res.converged.all()) and float(res.gap.max()) <= 1e-10
    S_lars = _lars(X, W, lam)
    torch.testing.assert_close(res.S, S_lars, rtol=0, atol=1e-8)
    assert torch.equal(res.S != 0, S_lars.abs() > 1e-12)
    assert float(sp.l1_objective(X, W, res.S, lam)) <= float(sp.l1_objective(X, W, S_lars, lam)) + 1e-13


@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_lasso_exact_on_patches(patches, lam):
    X, W = patches
    res = sp.lasso(X, W, lam)
    assert float(res.gap.max()) <= 1e-10
    S_lars = _lars(X, W, lam)
    # where LARS certifies itself to 1e-10, the codes agree to 1e-8; our objective is never worse
    exact = sp.l1_duality_gap(X, W, S_lars, lam) <= 1e-10
    assert float(exact.double().mean()) > 0.9
    torch.testing.assert_close(res.S[exact], S_lars[exact], rtol=0, atol=1e-8)
    assert float(sp.l1_objective(X, W, res.S, lam)) <= float(sp.l1_objective(X, W, S_lars, lam)) + 1e-13


def test_lasso_against_spams_when_installed(patches):
    import spams  # test extra
    import numpy as np

    X, W = patches
    A = spams.lasso(np.asfortranarray(X.numpy().T), D=np.asfortranarray(W.numpy()), lambda1=0.05, mode=2, lambda2=0.0)
    S_spams = torch.as_tensor(A.toarray().T)
    res = sp.lasso(X, W, 0.1)
    exact = sp.l1_duality_gap(X, W, S_spams, 0.1) <= 1e-10
    torch.testing.assert_close(res.S[exact], S_spams[exact], rtol=0, atol=1e-8)
    assert float(sp.l1_objective(X, W, res.S, 0.1)) <= float(sp.l1_objective(X, W, S_spams, 0.1)) + 1e-13


@pytest.mark.parametrize("kind", ["duplicate", "opposite", "zero", "collinear"])
def test_degenerate_dictionaries_stay_certified(patches, kind):
    X, W = patches
    X = X[:150]
    W = W.clone()
    if kind == "duplicate":
        W[:, 1] = W[:, 0]
    elif kind == "opposite":
        W[:, 1] = -W[:, 0]
    elif kind == "zero":
        W[:, 1] = 0.0
    else:  # nearly collinear: cosine 1 - 5e-7
        W[:, 1] = W[:, 0] + 1e-3 * torch.randn(W.shape[0], generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64)
        W[:, 1] /= torch.linalg.vector_norm(W[:, 1])
    for lam in (0.1, 0.5):
        res = sp.lasso(X, W, lam)
        assert bool(res.converged.all()) and float(res.gap.max()) <= 1e-10
        assert torch.isfinite(res.S).all()
        assert float(sp.l1_objective(X, W, res.S, lam)) <= float(sp.l1_objective(X, W, _lars(X, W, lam), lam)) + 1e-13
        _, g = sp.fista(X, W, lam, n_iter=4000, tol=1e-8, return_gap=True)  # FISTA's certificate holds there too
        assert float(g.max()) <= 1e-8


def test_init_dictionary_draws_distinct_rows():
    X = torch.arange(40, dtype=torch.float64).reshape(20, 2) + 1.0
    W = sp.init_dictionary(X, 20, seed=3)
    cos = (W.T @ W).fill_diagonal_(0)
    assert float(cos.max()) < 1 - 1e-9  # no atom twice
    assert torch.equal(W, sp.init_dictionary(X, 20, seed=3))  # seeded
    W30 = sp.init_dictionary(X, 30, seed=3)  # more atoms than rows: the rest are random unit vectors
    torch.testing.assert_close(torch.linalg.vector_norm(W30, dim=0), torch.ones(30, dtype=torch.float64))


def test_engine_options_on_a_tiny_problem():
    # minimise ||s - c||^2 over the unit ball (per row) by projected gradient: the answer is c / max(|c|, 1)
    c = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)
    smooth = proximal.Smooth(lambda Y: 2.0 * (Y - c), lambda Y: ((Y - c) ** 2).sum(1))
    for kw in ({}, {"restart": True}, {"monotone": True}, {"momentum": False}):
        res = proximal.accelerated_proximal_gradient(smooth, proximal.ball_prox(1), torch.zeros_like(c), 0.25, 200,
                                                     history=True, **kw)
        torch.testing.assert_close(res.S, c / torch.linalg.vector_norm(c, dim=1, keepdim=True).clamp_min(1.0))
        if kw.get("monotone") or kw.get("momentum") is False:
            assert all(b <= a + 1e-15 for a, b in zip(res.history, res.history[1:]))
    with pytest.raises(ValueError, match="backtrack"):
        proximal.accelerated_proximal_gradient(smooth, proximal.ball_prox(1), c, 0.25, 5, backtrack=True)


def test_csc_fista_stops_on_the_duality_gap():
    from lecture_ae.sparse import convolutional as C

    X = C.image_crops(("camera",), size=20, per_image=2, dtype=torch.float64)
    W = C.init_filters(X, 4, 5, seed=0)
    for adaptive in (False, True):
        S = C.csc_fista(X, W, 0.3, 3000, tol=1e-6, adaptive_step=adaptive, boundary="circular")
        R = C.conv_synthesis(W, S, "circular") - X
        P, gap = C.coding._csc_gap_terms(X, S, R, lambda V: C.conv_adjoint(W, V, "circular"), 0.3)
        assert float((gap / P).max()) <= 1e-6


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda X, W: sp.lasso(X, W, -0.1), "lam"),
        (lambda X, W: sp.lasso(X, W, 0.1, tol=-1.0), "tol"),
        (lambda X, W: sp.lasso(X, W, 0.1, max_iter=-1), "max_iter"),
        (lambda X, W: sp.lasso(X[:, :3], W, 0.1), "W"),
        (lambda X, W: sp.lasso(X, W, 0.1, S0=torch.zeros(2, 2)), "S0"),
        (lambda X, W: sp.l1_duality_gap(X, W, torch.zeros(3, 3), 0.1), "S"),
        (lambda X, W: sp.fista(X, W, 0.1, tol=float("nan")), "tol"),
    ],
)
def test_bad_arguments_name_them(call, name):
    X, W = _random_problem(N=4, d=6, h=5)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(X, W)


def test_homotopy_and_proximal_gradient_paths_agree():
    # on the CPU lasso() runs the compiled homotopy; the GPU's proximal-gradient path gives the same optimum
    from lecture_ae.sparse import _homotopy, exact

    assert _homotopy.available()  # numba is a dependency
    X = image_patches("coins", n=400, seed=3, dtype=torch.float64)
    W = sp.init_dictionary(image_patches("coins", n=400, seed=4, dtype=torch.float64), 96, seed=1)  # overcomplete
    for lam in (0.05, 0.3):
        res = sp.lasso(X, W, lam)
        assert bool(res.converged.all()) and float(res.gap.max()) <= 1e-10
        assert int(res.n_iter.max()) == 0  # certified without a FISTA step
        pg = exact._lasso_pg(X, W, lam, 1e-12, 20000, torch.zeros(X.shape[0], 96, dtype=torch.float64), 5)
        assert float(pg.gap.max()) <= 1e-12
        torch.testing.assert_close(res.S, pg.S, rtol=0, atol=1e-8)
        assert torch.equal(res.S != 0, pg.S.abs() > 1e-9)


def test_homotopy_certifies_exact_ties():
    """Atoms whose correlations are tied (at the start or on the way) enter together, with a zero step:
    the compiled homotopy itself certifies those samples, without the proximal-gradient fallback."""
    from lecture_ae.sparse import _homotopy

    d, h = 8, 6
    W = torch.eye(d, dtype=torch.float64)[:, :h].clone()
    W[:, 4] = (W[:, 0] + W[:, 2]) / 2 ** 0.5
    X = torch.zeros(5, d, dtype=torch.float64)
    X[0, :2] = 1.0  # atoms 0 and 1 tied from the start
    X[1, :3] = 1.0  # atom 4 first, then 0 and 2 tied with 1
    X[2, :2] = torch.tensor([2.0, -2.0])  # a tie of opposite signs
    X[3] = torch.randn(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X[4, :4] = 0.5  # four tied atoms and their mixture
    for lam in (0.1, 0.5, 1.5):
        S, steps, P, gap = _homotopy.homotopy((W.T @ W).numpy(), (X @ W).numpy(), (X * X).sum(1).numpy(), lam / 2)
        assert float((torch.from_numpy(gap) / torch.from_numpy(P).clamp_min(1e-300)).max()) <= 1e-12, (lam, gap, P)
        res = sp.lasso(X, W, lam)
        assert int(res.n_iter.max()) == 0 and float(res.gap.max()) <= 1e-12
        torch.testing.assert_close(res.S, torch.from_numpy(S), rtol=0, atol=0)
        assert float(sp.l1_objective(X, W, res.S, lam)) <= float(sp.l1_objective(X, W, _lars(X, W, lam), lam)) + 1e-13


def test_homotopy_handles_empty_and_all_zero_codes():
    X, W = _random_problem(N=6, d=8, h=5)
    lam_max = 2.0 * float((X @ W).abs().max())  # above it every code is 0
    res = sp.lasso(X, W, lam_max * 1.01)
    assert torch.equal(res.S, torch.zeros_like(res.S)) and bool(res.converged.all())
    assert sp.lasso(X[:0], W, 0.1).S.shape == (0, 5)
    r32 = sp.lasso(X.float(), W.float(), 0.1, tol=1e-5)  # float32: certified to what float32 can say
    assert r32.S.dtype == torch.float32 and bool(r32.converged.all())
    torch.testing.assert_close(r32.S.double(), sp.lasso(X, W, 0.1).S, rtol=0, atol=1e-5)


def test_lasso_codes_do_not_depend_on_the_chunks_or_the_output_buffer(monkeypatch):
    """B = XW is computed in chunks of rows into a reused buffer, and the kernel overwrites every row of
    the array it is given: chunk boundaries change nothing but the BLAS's last bits, a buffer left over
    from a larger call and garbage in S change nothing at all."""
    from lecture_ae.sparse import _homotopy, exact

    X, W = _random_problem(N=203, d=12, h=30)
    whole = sp.lasso(X, W, 0.2)
    monkeypatch.setattr(exact, "_WORK_ELEMENTS", 7 * 30 + 11)  # 7 rows per chunk, the last one short
    chunked = sp.lasso(X, W, 0.2)
    # the BLAS may round a 7-row product differently from a 203-row one (last bits of B): the same supports
    # and signs, the codes to rounding, and every sample still certified
    assert torch.equal(torch.sign(chunked.S), torch.sign(whole.S))
    torch.testing.assert_close(chunked.S, whole.S, rtol=1e-10, atol=1e-12)
    assert bool(chunked.converged.all()) and bool(whole.converged.all())
    small = sp.lasso(X[:5], W[:, :9], 0.2)  # a smaller problem in the same (larger) buffer
    torch.testing.assert_close(small.S, sp.lasso(X[:5].clone(), W[:, :9].clone(), 0.2).S, rtol=0, atol=0)
    G, B, xx = (W.T @ W).numpy(), (X @ W).numpy(), (X * X).sum(1).numpy()
    out = np.full((203, 30), np.nan)
    S, _, _, _ = _homotopy.homotopy(G, B, xx, 0.1, S=out)
    assert S is out and np.array_equal(out, whole.S.numpy())
    with pytest.raises(ValueError, match="S must be"):
        _homotopy.homotopy(G, B, xx, 0.1, S=np.zeros((203, 29)))


def test_lasso_leaves_torch_thread_count_alone():
    # numba's OpenMP layer shares torch's runtime: restoring numba's thread count used to set torch's too
    # (torch.set_num_threads(1), one sparse.lasso call, and torch ran on every core from then on)
    X, W = _random_problem(N=40, d=8, h=12)
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            X @ W  # torch's OpenMP pool in use
            sp.lasso(X, W, 0.1)
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_float32_codes_are_certified_where_their_own_residual_cannot_certify_them():
    """Large codes against lam, samples reconstructed almost exactly: the rounded float32 codes' own scaled
    residual gives a gap above 1e-5 (and a float32 evaluation of P - D cancels), though they are within 1e-11
    of the optimum.  Their certificate is P (in float64) against the dual value of the float64 codes, and no
    sample goes to the proximal-gradient path."""
    g = torch.Generator().manual_seed(3)
    d, h, N = 16, 40, 300
    W = torch.randn(d, h, generator=g, dtype=torch.float64)
    W /= torch.linalg.vector_norm(W, dim=0)
    S_true = torch.randn(N, h, generator=g, dtype=torch.float64) * (torch.rand(N, h, generator=g) < 0.2)
    X = 30.0 * (S_true @ W.T) + 1e-3 * torch.randn(N, d, generator=g, dtype=torch.float64)
    lam = 0.05
    r32 = sp.lasso(X.float(), W.float(), lam, tol=1e-5)
    assert r32.S.dtype == r32.gap.dtype == torch.float32
    assert bool(r32.converged.all()) and int(r32.n_iter.max()) == 0  # the homotopy's codes, no fallback
    assert float(r32.gap.max()) <= 1e-9
    assert float(sp.l1_duality_gap(X.float(), W.float(), r32.S, lam).max()) > 1e-5  # the weak bound

    def primal(S):
        R = X - S @ W.T
        return (R * R).sum(dim=1) + lam * S.abs().sum(dim=1)

    P_opt = primal(sp.lasso(X, W, lam).S)
    # a valid certificate: the rounded codes' suboptimality is below it (to float64's evaluation of P)
    assert bool(((primal(r32.S.double()) - P_opt) / P_opt <= r32.gap.double() + 1e-10).all())


def test_float32_proximal_gradient_path_certifies_through_a_float64_polish(monkeypatch):
    """The GPU path (and the CPU fallback) in float32: iterates certify themselves only to about 1e-5, so the
    polish on a settled support is solved in float64 and its rounded codes certified against that solution's
    dual value; every sample then reaches even tol 1e-8 within a few hundred iterations."""
    from lecture_ae.sparse import _homotopy

    monkeypatch.setattr(_homotopy, "available", lambda: False)  # the proximal-gradient path on the CPU
    X = image_patches("camera", n=400, seed=0, dtype=torch.float64)
    W = sp.init_dictionary(image_patches("camera", n=2000, seed=1, dtype=torch.float64), 60, seed=0)
    ref = sp.lasso(X, W, 0.1)
    assert bool(ref.converged.all())
    r32 = sp.lasso(X.float(), W.float(), 0.1, tol=1e-8, max_iter=2000)
    assert r32.S.dtype == torch.float32 and bool(r32.converged.all()) and int(r32.n_iter.max()) < 2000
    assert int(r32.n_iter.max()) > 0  # it did run the proximal-gradient path
    assert torch.equal(r32.S != 0, ref.S != 0)
    torch.testing.assert_close(r32.S.double(), ref.S, rtol=1e-4, atol=1e-5)

    def primal(S):
        R = X - S @ W.T
        return (R * R).sum(dim=1) + 0.1 * S.abs().sum(dim=1)

    P_opt = primal(ref.S)
    assert bool(((primal(r32.S.double()) - P_opt) / P_opt <= r32.gap.double() + 1e-10).all())
