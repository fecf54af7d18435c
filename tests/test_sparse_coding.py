"""Sparse coding: objectives against hand-computed values, solvers against scikit-learn."""
import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode

from lecture_ae import sparse as sp
from lecture_ae.data import TOY_LAMBDAS, image_patches, toy_2d

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def tiny():
    # x1 = (1, 2), x2 = (0, -1);  W = [[1, 0, 1], [0, 1, 1]];  s1 = (1, 0, 1), s2 = (0, -2, 0)
    X = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    W = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    S = torch.tensor([[1.0, 0.0, 1.0], [0.0, -2.0, 0.0]], dtype=torch.float64)
    return X, W, S


def test_objectives_by_hand(tiny):
    X, W, S = tiny
    # W s1 = (2, 1): error (1-2)^2 + (2-1)^2 = 2;  W s2 = (0, -2): error 0 + 1 = 1
    assert sp.per_sample_error(X, W, S).tolist() == [2.0, 1.0]
    # L0: mean(2 + lam*2, 1 + lam*1) with lam = 0.5 -> mean(3, 1.5) = 2.25
    assert float(sp.l0_objective(X, W, S, 0.5)) == pytest.approx(2.25)
    # L1: ||s1||_1 = 2, ||s2||_1 = 2 -> mean(2 + 1, 1 + 1) = 2.5 with lam = 0.5
    assert float(sp.l1_objective(X, W, S, 0.5)) == pytest.approx(2.5)
    # + eta ||W||_F^2 = 0.1 * 4
    assert float(sp.l1_objective(X, W, S, 0.5, eta=0.1)) == pytest.approx(2.9)


def test_soft_and_hard_threshold():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    assert sp.soft_threshold(x, 1.0).tolist() == [-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    assert sp.hard_threshold(x, 0.75).tolist() == [-3.0, -1.0, 0.0, 0.0, 0.0, 1.0, 3.0]
    # any shape, and the prox property: argmin_s 1/2 (s - z)^2 + lam |s| on a grid
    z = torch.randn(3, 4, 5, dtype=torch.float64)
    assert sp.soft_threshold(z, 0.3).shape == z.shape
    grid = torch.linspace(-5, 5, 200001, dtype=torch.float64)
    for zi in (-2.2, -0.1, 0.7, 1.9):
        best = grid[torch.argmin(0.5 * (grid - zi) ** 2 + 0.3 * grid.abs())]
        assert float(sp.soft_threshold(torch.tensor(zi), 0.3)) == pytest.approx(float(best), abs=1e-4)


def test_dense_and_index_value_forms_agree():
    gen = torch.Generator().manual_seed(0)
    S = torch.randn(50, 30, generator=gen, dtype=torch.float64)
    S[torch.rand(50, 30, generator=gen) < 0.8] = 0
    W = torch.randn(16, 30, generator=gen, dtype=torch.float64)
    codes = sp.to_index_value(S)
    assert codes.nnz == int((S != 0).sum())
    assert torch.equal(codes.to_dense(), S)
    torch.testing.assert_close(sp.reconstruct_index_value(W, codes), sp.reconstruct(W, S))
    j, v = codes.pairs(0)[0]
    assert S[0, j] == v and all(S[0, :j] == 0)


def test_storage_bits_by_hand():
    S = torch.zeros(4, 16)
    S[0, 3] = 1.0
    S[1, [0, 15]] = 2.0
    bits = sp.storage_bits(S, value_bits=32)
    assert bits["dense"] == 4 * 16 * 32
    # 3 non-zeros * (32 + 4 index bits) + 4 counts * ceil(log2 17) = 5 bits
    assert bits["index_value"] == 3 * 36 + 4 * 5
    assert bits["nnz"] == 3


def _lasso_problem(seed=0, N=40, d=20, h=30):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, h, generator=gen, dtype=torch.float64) / math.sqrt(d)
    S_true = torch.randn(N, h, generator=gen, dtype=torch.float64) * (torch.rand(N, h, generator=gen) < 0.1)
    X = S_true @ W.T + 0.05 * torch.randn(N, d, generator=gen, dtype=torch.float64)
    return X, W


@pytest.mark.parametrize("lam", [0.01, 0.1, 0.5])
def test_fista_matches_sklearn_sparse_encode(lam):
    """Same problem: ours ||x - Ws||^2 + lam ||s||_1 equals 2 * (1/2 ||x - Ws||^2 + (lam/2) ||s||_1),
    scikit-learn's objective with alpha = lam / 2 (dictionary as rows)."""
    X, W = _lasso_problem()
    S_ours = sp.fista(X, W, lam, n_iter=5000, tol=1e-12)
    S_skl = sparse_encode(X.numpy(), W.T.numpy(), algorithm="lasso_cd", alpha=lam / 2, max_iter=100000)
    obj_ours = float(sp.l1_objective(X, W, S_ours, lam))
    obj_skl = float(sp.l1_objective(X, W, torch.as_tensor(S_skl), lam))
    assert obj_ours <= obj_skl * (1 + 1e-4)
    assert abs(obj_ours - obj_skl) <= 1e-4 * obj_skl
    # lasso_lars is exact for the lasso: the two codes agree too
    S_lars = sparse_encode(X.numpy(), W.T.numpy(), algorithm="lasso_lars", alpha=lam / 2)
    assert abs(obj_ours - float(sp.l1_objective(X, W, torch.as_tensor(S_lars), lam))) <= 1e-4 * obj_skl


def test_ista_and_iht_never_increase_their_objective():
    X, W = _lasso_problem(seed=1)
    _, h = sp.ista(X, W, 0.1, n_iter=200, history=True)
    assert all(b <= a + 1e-12 for a, b in zip(h, h[1:]))
    _, h0 = sp.iht(X, W, 0.05, n_iter=200, history=True)
    assert all(b <= a + 1e-12 for a, b in zip(h0, h0[1:]))
    assert h0[-1] == pytest.approx(float(sp.l0_objective(X, W, sp.iht(X, W, 0.05, n_iter=200), 0.05)))


def test_fista_is_faster_than_ista_and_monotone_variant_is_monotone():
    X, W = _lasso_problem(seed=2, h=60)
    best = min(sp.fista(X, W, 0.05, n_iter=5000, history=True)[1])
    _, hi = sp.ista(X, W, 0.05, n_iter=100, history=True)
    _, hf = sp.fista(X, W, 0.05, n_iter=100, history=True)
    assert hf[-1] - best < 0.1 * (hi[-1] - best)
    _, hm = sp.fista(X, W, 0.05, n_iter=2000, history=True, monotone=True)
    assert all(b <= a + 1e-12 for a, b in zip(hm, hm[1:]))
    assert hm[-1] == pytest.approx(best, rel=1e-6)


def test_history_matches_objective_and_tol_stops_early():
    X, W = _lasso_problem(seed=3)
    S, h = sp.fista(X, W, 0.1, n_iter=1000, tol=1e-8, history=True)
    assert len(h) < 1000
    assert h[-1] == pytest.approx(float(sp.l1_objective(X, W, S, 0.1)))


def test_update_dictionary_is_the_minimiser():
    X, W = _lasso_problem(seed=4)
    S = sp.fista(X, W, 0.1, n_iter=200)
    for eta in (0.0, 0.05):
        W_new = sp.update_dictionary(X, S, eta).requires_grad_(True)
        obj = sp.l1_objective(X, W_new, S, 0.1, eta)
        (grad,) = torch.autograd.grad(obj, W_new)
        used = (S != 0).any(dim=0)
        assert float(grad[:, used].abs().max()) < 1e-8
        # closed form of the lecture
        if eta > 0:
            N, h = S.shape
            expected = X.T @ S @ torch.linalg.inv(S.T @ S + N * eta * torch.eye(h, dtype=S.dtype))
            torch.testing.assert_close(W_new.detach(), expected)


def test_batch_dictionary_learning_never_increases_the_objective():
    X = image_patches("camera", n=800, seed=0, dtype=torch.float64)
    res = sp.batch_dictionary_learning(X, 32, 0.1, 0.01, n_iter=15, encoder_iter=30, seed=0, show_progress=False)
    obj = res.objective
    assert all(b <= a * (1 + 1e-12) for a, b in zip(obj, obj[1:]))
    assert obj[-1] < 0.5 * obj[0]
    assert obj[-1] == pytest.approx(float(sp.l1_objective(X, res.W, res.S, 0.1, 0.01)))
    assert res.seconds == sorted(res.seconds) and len(res.seconds) == len(obj)


def test_online_dictionary_learning_reduces_the_objective():
    X = image_patches("camera", n=1000, seed=0, dtype=torch.float64)
    res = sp.online_dictionary_learning(X, 32, 0.1, 0.01, n_steps=200, batch_size=8, eval_every=50, seed=0,
                                        show_progress=False)
    assert len(res.objective) == 5
    assert res.objective[-1] < 0.8 * res.objective[0]
    assert res.samples_seen == [0, 400, 800, 1200, 1600]
    again = sp.online_dictionary_learning(X, 32, 0.1, 0.01, n_steps=200, batch_size=8, eval_every=50, seed=0,
                                          show_progress=False)
    torch.testing.assert_close(again.W, res.W)  # seeded: repeatable


def test_online_batches_sweep_every_sample_once_per_epoch():
    from lecture_ae.sparse.dictionary import _shuffled_batches

    N, b = 10, 4
    batches = _shuffled_batches(N, b, torch.Generator().manual_seed(0), "cpu")
    drawn = [next(batches) for _ in range(5)]  # 20 samples: two whole epochs
    flat = torch.cat([idx for idx, _ in drawn]).tolist()
    assert sorted(flat[:N]) == list(range(N)) and sorted(flat[N:]) == list(range(N))
    assert flat[:N] != flat[N:]  # a new order every epoch
    # a batch belongs to the epoch of its first sample: 0-3, 4-7 | 8-11 runs over | 12-15, 16-19
    assert [epoch for _, epoch in drawn] == [0, 0, 0, 1, 1]


def test_forgetting_factor_of_mairal_capped_at_two_epochs():
    from lecture_ae.sparse.dictionary import _forgetting_factor

    b, N = 8, 1000
    assert _forgetting_factor(0, b, N) == 0.0  # nothing to remember before the first batch
    assert _forgetting_factor(1, b, N) == pytest.approx(1 / 9)  # the first batch (initial W) is all but forgotten
    assert _forgetting_factor(3, b, N) == pytest.approx((3 * b + 1 - b) / (3 * b + 1))
    assert _forgetting_factor(20, b, N) == pytest.approx((b * b + 20 - b + 1 - b) / (b * b + 20 - b + 1))
    assert _forgetting_factor(10**6, b, N) == pytest.approx((2 * N + 1 - b) / (2 * N + 1))  # memory <= 2 epochs
    factors = [_forgetting_factor(t, b, N) for t in range(5000)]
    assert factors == sorted(factors)  # forgets less and less


def test_unit_norm_step_is_block_coordinate_descent_in_the_unit_ball():
    from lecture_ae.sparse.dictionary import _unit_norm_step

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    S = torch.randn(200, 5, generator=gen, dtype=torch.float64) * (torch.rand(200, 5, generator=gen) < 0.4)
    S[:, 4] = 0  # an unused atom keeps its value
    A, B = S.T @ S, X.T @ S
    W = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    W /= torch.linalg.vector_norm(W, dim=0)
    expected = W.clone()  # the update written out, atom after atom
    for j in range(4):
        u = expected[:, j] + (B[:, j] - expected @ A[:, j]) / A[j, j]
        expected[:, j] = u / max(1.0, float(torch.linalg.vector_norm(u)))
    new = _unit_norm_step(W, A, B)
    torch.testing.assert_close(new, expected)
    assert torch.equal(new[:, 4], W[:, 4]) and not torch.equal(W, new)  # the input is not modified
    assert bool((torch.linalg.vector_norm(new, dim=0) <= 1 + 1e-12).all())

    def surrogate(V):
        return float(torch.trace(V @ A @ V.T) - 2 * torch.trace(V.T @ B))

    assert surrogate(new) <= surrogate(W)
    f32 = _unit_norm_step(W.float(), A.float(), B.float())  # the compiled loop in float32 too
    torch.testing.assert_close(f32, expected.float(), rtol=1e-4, atol=1e-5)


def test_unit_norm_step_compiled_and_numpy_loops_agree(monkeypatch):
    from lecture_ae.sparse import dictionary

    gen = torch.Generator().manual_seed(1)
    S = torch.randn(300, 40, generator=gen, dtype=torch.float64) * (torch.rand(300, 40, generator=gen) < 0.2)
    S[:, [3, 17]] = 0  # unused atoms
    X = torch.randn(300, 16, generator=gen, dtype=torch.float64)
    W = torch.randn(16, 40, generator=gen, dtype=torch.float64)
    A, B = S.T @ S, X.T @ S
    compiled = dictionary._unit_norm_step(W, A, B)
    monkeypatch.setattr(dictionary, "_bcd_unit_ball", None)
    loop = dictionary._unit_norm_step(W, A, B)
    torch.testing.assert_close(compiled, loop, rtol=0, atol=1e-12)
    assert torch.equal(compiled[:, [3, 17]], W[:, [3, 17]])


def test_online_unit_norm_keeps_atoms_in_the_ball_and_lowers_the_objective():
    # the unit-ball formulation: every atom stays in the ball and the objective falls steadily
    X = image_patches("camera", n=2000, seed=0, dtype=torch.float64)
    res = sp.online_dictionary_learning(X, 32, 0.1, 0.0, n_steps=120, batch_size=64, unit_norm=True,
                                        eval_every=40, seed=0, show_progress=False)
    assert bool((torch.linalg.vector_norm(res.W, dim=0) <= 1 + 1e-9).all())
    assert all(b < a for a, b in zip(res.objective, res.objective[1:]))



def test_more_dictionary_passes_per_step_are_repeated_bcd_and_lower_the_surrogate(monkeypatch):
    from lecture_ae.sparse import dictionary

    gen = torch.Generator().manual_seed(2)
    S = torch.randn(300, 30, generator=gen, dtype=torch.float64) * (torch.rand(300, 30, generator=gen) < 0.2)
    X = torch.randn(300, 12, generator=gen, dtype=torch.float64)
    W = torch.randn(12, 30, generator=gen, dtype=torch.float64)
    A, B = S.T @ S, X.T @ S

    def surrogate(V):
        return float(torch.trace(V @ A @ V.T) - 2 * torch.trace(V.T @ B))

    once = dictionary._unit_norm_step(W, A, B)
    three = dictionary._unit_norm_step(W, A, B, 3)
    by_hand = dictionary._unit_norm_step(dictionary._unit_norm_step(once, A, B), A, B)
    torch.testing.assert_close(three, by_hand, rtol=0, atol=1e-13)
    assert surrogate(three) < surrogate(once) < surrogate(W)
    monkeypatch.setattr(dictionary, "_bcd_unit_ball", None)  # the NumPy loop does the same passes
    torch.testing.assert_close(dictionary._unit_norm_step(W, A, B, 3), three, rtol=0, atol=1e-12)
    monkeypatch.undo()
    Xp = image_patches("camera", n=1000, seed=0, dtype=torch.float64)
    kw = dict(n_steps=20, batch_size=64, unit_norm=True, eval_every=20, seed=0, show_progress=False)
    r3 = sp.online_dictionary_learning(Xp, 24, 0.1, 0.0, dict_passes=3, **kw)
    assert bool((torch.linalg.vector_norm(r3.W, dim=0) <= 1 + 1e-9).all())
    assert not torch.equal(r3.W, sp.online_dictionary_learning(Xp, 24, 0.1, 0.0, **kw).W)
    with pytest.raises(ValueError, match="dict_passes"):
        sp.online_dictionary_learning(Xp, 24, 0.1, 0.0, dict_passes=0, **kw)
    with pytest.raises(ValueError, match="dict_passes"):  # the penalised W step is exact: passes mean nothing
        sp.online_dictionary_learning(Xp, 24, 0.1, 0.01, dict_passes=2, n_steps=2, show_progress=False)

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_online_with_exact_codes_per_batch(dtype):
    # encoder="lasso": every mini-batch coded exactly (as SPAMS' trainDL does with LARS); the same steps
    # then reach a lower objective than 5 FISTA steps per batch, and the atoms stay in the ball
    X = image_patches("camera", n=2000, seed=0, dtype=dtype)
    kw = dict(n_steps=60, batch_size=64, unit_norm=True, eval_every=30, eval_encoder_iter=300, seed=0,
              show_progress=False)
    exact = sp.online_dictionary_learning(X, 32, 0.1, 0.0, encoder="lasso", **kw)
    rough = sp.online_dictionary_learning(X, 32, 0.1, 0.0, encoder="fista", encoder_iter=5, **kw)
    assert exact.W.dtype == dtype
    assert bool((torch.linalg.vector_norm(exact.W, dim=0) <= 1 + 1e-5).all())
    assert all(b < a for a, b in zip(exact.objective, exact.objective[1:]))
    assert exact.objective[-1] < rough.objective[-1]


def test_toy_sweep_gets_sparser_with_lambda():
    X, W_true, S_true = toy_2d(300, seed=0)
    assert X.shape == (300, 2) and W_true.shape == (2, 3) and S_true.shape == (300, 3)
    assert TOY_LAMBDAS == (0.2, 0.6, 2.0, 6.0, 20.0)
    sparsities = []
    for lam in TOY_LAMBDAS:
        res = sp.batch_dictionary_learning(X, 3, lam, 0.1, n_iter=30, encoder_iter=100, seed=0, show_progress=False)
        sparsities.append(sp.sparsity(res.S))
    assert sparsities == sorted(sparsities, reverse=True)
    assert sparsities[-1] == 0.0 and sparsities[0] > 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device_and_numpy_input(device):
    X, W = _lasso_problem(seed=5)
    S = sp.fista(X.numpy(), W.numpy(), 0.1, n_iter=50, device=device)
    assert S.device.type == device and S.dtype == torch.float64
    torch.testing.assert_close(S.cpu(), sp.fista(X, W, 0.1, n_iter=50))


# ------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda X, W, S: sp.l1_objective(X, W, S, -1.0), "lam"),
        (lambda X, W, S: sp.l1_objective(X, W, S, 0.1, eta=-0.5), "eta"),
        (lambda X, W, S: sp.l1_objective(X[0], W, S, 0.1), "X"),
        (lambda X, W, S: sp.l1_objective(X, W[:1], S, 0.1), "W"),
        (lambda X, W, S: sp.l1_objective(X, W, S[:, :2], 0.1), "S"),
        (lambda X, W, S: sp.l1_objective(X, W, S[:1], 0.1), "S"),
        (lambda X, W, S: sp.fista(X * float("nan"), W, 0.1), "X"),
        (lambda X, W, S: sp.ista(X, W, float("nan")), "lam"),
        (lambda X, W, S: sp.ista(X, W, 0.1, n_iter=-1), "n_iter"),
        (lambda X, W, S: sp.ista(X, W, 0.1, step=0.0), "step"),
        (lambda X, W, S: sp.iht(X, W, 0.1, S0=S[:, :1]), "S0"),
        (lambda X, W, S: sp.update_dictionary(X, S[:1], 0.1), "S"),
        (lambda X, W, S: sp.update_dictionary(X, S, -1), "eta"),
        (lambda X, W, S: sp.soft_threshold(X, -0.1), "lam"),
        (lambda X, W, S: sp.batch_dictionary_learning(X, 0, 0.1, 0.1), "h"),
        (lambda X, W, S: sp.online_dictionary_learning(X, 3, 0.1, 0.1, batch_size=0), "batch_size"),
        (lambda X, W, S: sp.online_dictionary_learning(X, 3, 0.1, 0.1, encoder="lars"), "encoder"),
        (lambda X, W, S: sp.storage_bits(S, value_bits=0), "value_bits"),
        (lambda X, W, S: sp.fista("not an array", W, 0.1), "X"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(tiny, call, name):
    X, W, S = tiny
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(X, W, S)
