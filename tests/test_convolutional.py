"""Convolutional sparse coding: operator and adjoint, step size, FISTA, SPORCO, filter learning, replicas."""
import numpy as np
import pytest
import torch

from lecture_ae.sparse import convolutional as C

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _explicit_synthesis(W, S, boundary):
    """sum_j W_j * s_j by placing a scaled copy of the filter at every code position (loops)."""
    N, h, Hc, Wc = S.shape
    k1, k2 = W.shape[1:]
    H, Wd = (Hc + k1 - 1, Wc + k2 - 1) if boundary == "valid" else (Hc, Wc)
    X = np.zeros((N, H, Wd))
    for n in range(N):
        for j in range(h):
            for p in range(Hc):
                for q in range(Wc):
                    for a in range(k1):
                        for b in range(k2):
                            X[n, (p + a) % H, (q + b) % Wd] += S[n, j, p, q] * W[j, a, b]
    return X


def test_synthesis_by_hand():
    # one 2x2 filter, one spike of height 2 at (1, 0) in a 2x2 code map
    W = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    S = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    S[0, 0, 1, 0] = 2.0
    valid = C.conv_synthesis(W, S, "valid")[0]
    assert valid.tolist() == [[0, 0, 0], [2, 4, 0], [6, 8, 0]]
    # circular (2x2 image): the filter's second row wraps around onto row 0
    circ = C.conv_synthesis(W, S, "circular")[0]
    assert circ.tolist() == [[6, 8], [2, 4]]


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_synthesis_matches_explicit_loops(boundary):
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(3, 3, 2, generator=gen, dtype=torch.float64)
    S = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    ref = _explicit_synthesis(W.numpy(), S.numpy(), boundary)
    np.testing.assert_allclose(C.conv_synthesis(W, S, boundary).numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_adjoint_identity_float64(boundary, device):
    gen = torch.Generator().manual_seed(2)
    W = torch.randn(5, 4, 4, generator=gen, dtype=torch.float64).to(device)
    X_shape = (3, 17, 20)
    cs = C.code_shape(X_shape, W.shape, boundary)
    S = torch.randn(3, 5, *cs, generator=gen, dtype=torch.float64).to(device)
    R = torch.randn(*X_shape, generator=gen, dtype=torch.float64).to(device)
    lhs = float((C.conv_synthesis(W, S, boundary) * R).sum())
    rhs = float((S * C.conv_adjoint(W, R, boundary)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0) * 10


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_fft_operator_matches_convolutions(boundary):
    gen = torch.Generator().manual_seed(7)
    W = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    X = torch.randn(2, 13, 16, generator=gen, dtype=torch.float64)
    cs = C.code_shape(X.shape, W.shape, boundary)
    S = torch.randn(2, 4, *cs, generator=gen, dtype=torch.float64)
    synth, adj = C._operators(W, X, boundary, "fft", cs)
    torch.testing.assert_close(synth(S), C.conv_synthesis(W, S, boundary), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(adj(X), C.conv_adjoint(W, X, boundary), rtol=1e-10, atol=1e-10)


def _dense_operator(W, image_shape, boundary):
    cs = C.code_shape(image_shape, W.shape, boundary)
    n = W.shape[0] * cs[0] * cs[1]
    E = torch.eye(n, dtype=torch.float64).reshape(n, W.shape[0], *cs)
    return C.conv_synthesis(W, E, boundary).reshape(n, -1).T  # (H*Wd, h*H'*Wd')


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_lipschitz_constant_against_dense_matrix(boundary):
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(3, 3, 3, generator=gen, dtype=torch.float64)
    A = _dense_operator(W, (9, 10), boundary)
    exact = 2.0 * float(torch.linalg.matrix_norm(A, ord=2)) ** 2
    fft = C.csc_lipschitz(W, (9, 10), boundary)
    power = C.csc_lipschitz(W, (9, 10), boundary, method="power", n_iter=200)
    # power iteration approaches the norm from below (slowly when the top eigenvalues are close)
    assert exact * (1 - 1e-2) <= power <= exact * (1 + 1e-12)
    if boundary == "circular":
        assert fft == pytest.approx(exact, rel=1e-10)
    else:
        assert fft >= exact * (1 - 1e-12)  # a safe (upper) bound


@pytest.fixture(scope="module")
def crops():
    return C.image_crops(("camera", "brick"), size=24, per_image=2, dtype=torch.float64)


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_monotone_fista_never_increases_and_plain_fista_agrees(crops, boundary):
    W = C.init_filters(crops, 6, 5, seed=0)
    _, hist = C.csc_fista(crops, W, 0.3, 300, boundary=boundary, monotone=True, history=True)
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(hist, hist[1:]))
    _, plain = C.csc_fista(crops, W, 0.3, 300, boundary=boundary, history=True)
    # both reach the same minimum of the convex problem
    assert hist[-1] == pytest.approx(min(plain), rel=2e-3)


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_one_proximal_step_with_computed_step_never_increases(crops, boundary):
    # the guarantee behind FISTA: with t = 1/L a proximal-gradient step from ANY point
    # minimises a majoriser, so the objective cannot rise (n_iter=1, S0 = random point)
    W = C.init_filters(crops, 4, 6, seed=1)
    gen = torch.Generator().manual_seed(4)
    cs = C.code_shape(crops.shape, W.shape, boundary)
    for _ in range(5):
        S0 = 0.3 * torch.randn(crops.shape[0], 4, *cs, generator=gen, dtype=torch.float64)
        before = float(C.csc_objective(crops, W, S0, 0.5, boundary))
        S1 = C.csc_fista(crops, W, 0.5, 1, boundary=boundary, S0=S0)
        assert float(C.csc_objective(crops, W, S1, 0.5, boundary)) <= before


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_fft_backend_is_the_same_operator(crops, boundary):
    W = C.init_filters(crops, 5, 6, seed=2)
    a = C.csc_fista(crops, W, 0.3, 30, boundary=boundary)
    b = C.csc_fista(crops, W, 0.3, 30, boundary=boundary, backend="fft")
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("boundary", C.BOUNDARIES)
def test_adaptive_step_same_minimum_fewer_iterations(crops, boundary):
    W = C.init_filters(crops, 6, 5, seed=3)
    lam = 0.3
    _, ref = C.csc_fista(crops, W, lam, 600, boundary=boundary, monotone=True, history=True)
    S, hist = C.csc_fista(crops, W, lam, 600, boundary=boundary, adaptive_step=True, history=True)
    # the history is the objective of the iterates, and it reaches the same minimum of the convex problem
    assert hist[-1] == pytest.approx(float(C.csc_objective(crops, W, S, lam, boundary)), rel=1e-12)
    assert hist[-1] == pytest.approx(ref[-1], rel=1e-5)
    # ... in fewer iterations than the fixed step 1/L
    _, fixed = C.csc_fista(crops, W, lam, 600, boundary=boundary, history=True)
    best = min(ref[-1], hist[-1], fixed[-1])
    assert hist[99] < fixed[99]
    k_fixed = next(i for i, v in enumerate(fixed) if v <= best * (1 + 1e-3))
    k_adaptive = next(i for i, v in enumerate(hist) if v <= best * (1 + 1e-3))
    assert k_adaptive < 0.8 * k_fixed


def test_adaptive_step_backtracking_and_backends(crops):
    W = C.init_filters(crops, 5, 6, seed=2)
    for boundary in C.BOUNDARIES:
        a = C.csc_fista(crops, W, 0.3, 40, boundary=boundary, adaptive_step=True)
        b = C.csc_fista(crops, W, 0.3, 40, boundary=boundary, adaptive_step=True, backend="fft")
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
    # a huge starting step is cut back by the backtracking test: still the right minimum, no blow-up
    L = C.csc_lipschitz(W, crops.shape[-2:], "circular")
    _, hist = C.csc_fista(crops, W, 0.3, 300, boundary="circular", adaptive_step=True, step=1000.0 / L, history=True)
    _, ref = C.csc_fista(crops, W, 0.3, 300, boundary="circular", adaptive_step=True, history=True)
    assert max(hist) <= hist[0] * 10 and hist[-1] == pytest.approx(ref[-1], rel=1e-5)
    with pytest.raises(ValueError, match="monotone"):
        C.csc_fista(crops, W, 0.3, 5, adaptive_step=True, monotone=True)


def test_objective_by_hand():
    W = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    S = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    S[0, 0, 1, 0] = 2.0  # image 0: reconstruction as in test_synthesis_by_hand
    X = torch.zeros(2, 3, 3, dtype=torch.float64)
    X[1] = 1.0  # image 1: codes zero, error 9
    # image 0: ||0 - xhat||^2 = 4+16+36+64 = 120, + lam*2;  image 1: 9 + 0
    assert float(C.csc_objective(X, W, S, 0.5)) == pytest.approx((121 + 9) / 2)


def test_agrees_with_sporco_convbpdn():
    from sporco.admm import cbpdn  # test extra (pyproject: sporco)

    rng = np.random.default_rng(0)
    D = rng.standard_normal((4, 4, 3))
    D /= np.linalg.norm(D, axis=(0, 1))
    img = rng.standard_normal((16, 16))
    lam = 0.4
    # SPORCO minimises 1/2 ||sum_m d_m * x_m - s||^2 + lmbda sum_m ||x_m||_1 (periodic boundary):
    # ours with lam is twice SPORCO's with lmbda = lam / 2
    # fixed penalty parameter: SPORCO's automatic rho oscillates on this tiny problem
    opt = cbpdn.ConvBPDN.Options(
        {"Verbose": False, "MaxMainIter": 1000, "RelStopTol": 1e-9, "AutoRho": {"Enabled": False}}
    )
    solver = cbpdn.ConvBPDN(D, img, lam / 2, opt)
    Xs = solver.solve()
    sporco_obj = 2.0 * solver.getitstat().ObjFun[-1]
    W = torch.tensor(D).permute(2, 0, 1)
    S_sporco = torch.tensor(Xs[:, :, 0, 0, :]).permute(2, 0, 1)[None]
    ours_at_theirs = float(C.csc_objective(torch.tensor(img), W, S_sporco, lam, "circular"))
    # SPORCO's ObjFun is evaluated at its primal variable X, its returned codes are the split Y
    assert ours_at_theirs == pytest.approx(sporco_obj, rel=1e-5)
    # both solve the same convex problem: same minimum
    _, hist = C.csc_fista(torch.tensor(img), W, lam, 800, boundary="circular", monotone=True, history=True)
    assert hist[-1] == pytest.approx(ours_at_theirs, rel=1e-4)
    assert hist[-1] <= ours_at_theirs * (1 + 1e-7)
    _, hist = C.csc_fista(torch.tensor(img), W, lam, 400, boundary="circular", adaptive_step=True, history=True)
    assert hist[-1] == pytest.approx(ours_at_theirs, rel=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("boundary", "backend", "adaptive"),
                         [("valid", "conv", False), ("circular", "fft", True), ("valid", "fft", True)])
def test_filter_learning_monotone_unit_norm(crops, device, boundary, backend, adaptive):
    res = C.learn_conv_filters(crops, 6, 5, 0.3, n_iter=6, encoder_iter=10, filter_iter=5, boundary=boundary,
                               backend=backend, adaptive_step=adaptive, device=device)
    assert res.W.shape == (6, 5, 5) and res.W.device.type == device
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(res.objective, res.objective[1:]))
    assert res.objective[-1] < 0.7 * res.objective[0]
    assert float(torch.linalg.vector_norm(res.W, dim=(1, 2)).max()) <= 1 + 1e-9
    assert len(res.seconds) == len(res.objective) == 7
    # the recorded objective is the objective of the returned filters and codes
    assert res.objective[-1] == pytest.approx(float(C.csc_objective(crops.to(device), res.W, res.S, 0.3, boundary)),
                                              rel=1e-9)


# h = 3: per-frequency h x h Gram matrices; h = 8 >= 2N: the low-rank path (N x N matrices; N = 1: no eigenproblem)
@pytest.mark.parametrize(("h", "n_images"), [(3, 4), (8, 4), (8, 1)])
def test_filter_step_gradient_against_autograd(crops, h, n_images):
    # the Fourier-domain filter step is projected FISTA with the exact gradient and step 1/L:
    # its first step equals the projection of W - g / L, g the autograd gradient
    crops = crops[:n_images]
    gen = torch.Generator().manual_seed(5)
    W = 0.3 * torch.randn(h, 4, 4, generator=gen, dtype=torch.float64)
    for boundary in C.BOUNDARIES:
        cs = C.code_shape(crops.shape, W.shape, boundary)
        S = torch.randn(crops.shape[0], h, *cs, generator=gen, dtype=torch.float64)
        Wr = W.clone().requires_grad_()
        f = ((crops - C.conv_synthesis(Wr, S, boundary)) ** 2).sum(dim=(1, 2)).mean()
        (g,) = torch.autograd.grad(f, Wr)
        Sf = torch.fft.rfft2(S, s=crops.shape[-2:])
        Lmax = 2.0 / S.shape[0] * float(torch.linalg.eigvalsh(torch.einsum("njab,nkab->abjk", Sf.conj(), Sf)).max())
        W1, _ = C._filter_step(W, crops, S, 1)
        expected = W - g / Lmax
        expected = expected / torch.linalg.vector_norm(expected, dim=(1, 2), keepdim=True).clamp_min(1.0)
        torch.testing.assert_close(W1, expected, rtol=1e-9, atol=1e-9)
        # the reconstruction errors it returns (by Parseval) are those of the new filters
        W5, errors = C._filter_step(W, crops, S, 5)
        direct = ((crops - C.conv_synthesis(W5, S, boundary)) ** 2).sum(dim=(1, 2))
        torch.testing.assert_close(errors, direct, rtol=1e-10, atol=1e-10)


def test_replica_score_detects_shifted_copies():
    gen = torch.Generator().manual_seed(6)
    a = torch.zeros(8, 8, dtype=torch.float64)
    a[2:5, 2:5] = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    shifted = torch.roll(a, shifts=(2, -1), dims=(0, 1))  # stays inside the patch
    other = torch.zeros(8, 8, dtype=torch.float64)
    other[::2, ::2] = 1.0
    other -= other.mean()
    W = torch.stack([a, -shifted, other])
    R = C.replica_scores(W)
    assert R.shape == (3, 3) and torch.all(R.diagonal() == 0) and torch.allclose(R, R.T)
    assert float(R[0, 1]) == pytest.approx(1.0, abs=1e-12)  # shifted copy with flipped sign
    assert float(R[0, 2]) < 0.9
    # no shift allowed: the copy is no longer recognised
    assert float(C.replica_scores(W, max_shift=0)[0, 1]) < 0.9
    # (d, h) dictionary layout gives the same numbers
    D = W.reshape(3, -1).T
    torch.testing.assert_close(C.replica_scores(D, (8, 8)), R)
    summary = C.replica_score(W)
    assert summary["frac_replicated"] == pytest.approx(2 / 3)
    # shift_correlation: centre is shift 0 (plain cosine)
    c = C.shift_correlation(a, a)
    assert float(c[7, 7]) == pytest.approx(1.0) and float(c.abs().max()) == pytest.approx(1.0)


def test_bad_arguments():
    W = torch.randn(2, 3, 3)
    S = torch.randn(1, 2, 4, 4)
    X = torch.randn(1, 6, 6)
    with pytest.raises(ValueError, match="boundary"):
        C.conv_synthesis(W, S, "reflect")
    with pytest.raises(ValueError, match="W"):
        C.conv_synthesis(torch.randn(2, 3), S)
    with pytest.raises(ValueError, match="S"):
        C.conv_synthesis(W, torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="S"):
        C.csc_objective(X, W, torch.randn(1, 2, 5, 5), 0.1)
    with pytest.raises(ValueError, match="lam"):
        C.csc_fista(X, W, -1.0)
    with pytest.raises(ValueError, match="X"):
        C.csc_fista(torch.randn(2, 2, 6, 6), W, 0.1)
    with pytest.raises(ValueError, match="backend"):
        C.csc_fista(X, W, 0.1, backend="cuda")
    with pytest.raises(ValueError, match="method"):
        C.csc_lipschitz(W, (6, 6), method="svd")
    with pytest.raises(ValueError, match="kernel_size"):
        C.init_filters(X, 2, 9)
    with pytest.raises(ValueError, match="W0"):
        C.learn_conv_filters(X, 2, 3, 0.1, W0=torch.randn(3, 3, 3))
    with pytest.raises(ValueError, match="patch_shape"):
        C.replica_scores(torch.randn(10, 4))
    with pytest.raises(ValueError, match="sigma"):
        C.highpass(np.ones((8, 8)), sigma=0)
