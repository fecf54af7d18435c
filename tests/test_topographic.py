"""Topographic sparse coding: neighbourhoods and penalty by hand, hand gradient (gradcheck), solver, learning."""
import math

import pytest
import torch

from lecture_ae.data import image_patches
from lecture_ae.sparse import topographic as T

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_neighbourhood_matrix_by_hand():
    M = T.neighbourhood_matrix((4, 4), 3, dtype=torch.float64)
    assert M.shape == (16, 16)
    assert torch.all(M.sum(dim=1) == 9) and torch.all(M.sum(dim=0) == 9)
    assert torch.equal(M, M.T)
    # window centred at cell (0, 0) wraps around: rows {3, 0, 1}, columns {3, 0, 1}
    members = sorted(torch.nonzero(M[0]).flatten().tolist())
    assert members == sorted(r * 4 + c for r in (3, 0, 1) for c in (3, 0, 1))
    # on a 3x3 grid every 3x3 window covers the whole grid
    assert torch.all(T.neighbourhood_matrix((3, 3), 3) == 1)


def test_penalty_by_hand():
    S = torch.zeros(2, 16, dtype=torch.float64)
    S[0, 0] = 2.0  # one active source lies in 9 windows: 9 * sqrt(4) = 18
    S[1, 0], S[1, 1] = 3.0, 4.0  # neighbours (0, 0) and (0, 1)
    # windows holding both: centre rows {3, 0, 1} x centre columns {0, 1} = 6 windows of norm 5;
    # only s_0: 9 - 6 = 3 windows of norm 3; only s_1: 3 windows of norm 4  -> 30 + 9 + 12 = 51
    P = T.topographic_penalty(S, (4, 4))
    assert P.tolist() == pytest.approx([18.0, 51.0])
    # with eps: every one of the 16 windows pays sqrt(eps + ...)
    P_eps = T.topographic_penalty(S[:1], (4, 4), eps=0.25)
    assert float(P_eps) == pytest.approx(9 * math.sqrt(4.25) + 7 * math.sqrt(0.25))
    # same total L1 norm, spread far apart on the grid, costs more than grouped (the topographic pull)
    # on a 6x6 torus: (0, 0) and (0, 1) share 6 windows as above (51); (0, 0) and (3, 3) share none
    near, far = torch.zeros(2, 36, dtype=torch.float64), torch.zeros(2, 36, dtype=torch.float64)
    near[0, 0], near[0, 1] = 3.0, 4.0
    far[0, 0], far[0, 21] = 3.0, 4.0
    assert float(T.topographic_penalty(near, (6, 6))[0]) == pytest.approx(51.0)
    assert float(T.topographic_penalty(far, (6, 6))[0]) == pytest.approx(9 * 3 + 9 * 4)


def test_objective_by_hand():
    X = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    W = torch.zeros(2, 9, dtype=torch.float64)
    W[0, 0] = W[1, 1] = 1.0
    S = torch.zeros(1, 9, dtype=torch.float64)
    S[0, 0] = 1.0  # W s = (1, 0): error 4; 3x3 grid, every window holds s_0: 9 * 1
    assert float(T.topographic_objective(X, W, S, 0.5, (3, 3))) == pytest.approx(4 + 0.5 * 9)


class _Penalty(torch.autograd.Function):
    """The penalty with the hand-written gradient as its backward (for gradcheck)."""

    @staticmethod
    def forward(ctx, S, grid, eps):
        ctx.save_for_backward(S)
        ctx.grid, ctx.eps = grid, eps
        return T.topographic_penalty(S.detach(), grid, eps=eps).sum()

    @staticmethod
    def backward(ctx, g):
        (S,) = ctx.saved_tensors
        return g * T.topographic_penalty_grad(S.detach(), ctx.grid, eps=ctx.eps), None, None


def test_hand_gradient_gradcheck_and_autograd():
    gen = torch.Generator().manual_seed(0)
    S = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    S[S.abs() < 0.5] = 0.0  # exact zeros: smooth with eps > 0
    S.requires_grad_()
    assert torch.autograd.gradcheck(lambda s: _Penalty.apply(s, (4, 5), 1e-3), (S,))
    (auto,) = torch.autograd.grad(T.topographic_penalty(S, (4, 5), eps=1e-3).sum(), S)
    torch.testing.assert_close(T.topographic_penalty_grad(S.detach(), (4, 5), eps=1e-3), auto, rtol=1e-12, atol=1e-12)
    # eps = 0: an all-zero neighbourhood contributes 0 (a subgradient), no NaN
    Z = torch.zeros(1, 16, dtype=torch.float64)
    assert torch.equal(T.topographic_penalty_grad(Z, (4, 4), eps=0.0), Z)


@pytest.fixture(scope="module")
def patches():
    return image_patches("camera", patch_size=6, n=400, seed=0, dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_fista_monotone_and_reaches_stationary_point(patches, device):
    W = patches[:16].T / torch.linalg.vector_norm(patches[:16].T, dim=0)
    X = patches[:60]
    S, hist = T.topographic_fista(X, W, 0.2, (4, 4), 1500, eps=1e-2, history=True, device=device)
    assert S.device.type == device
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(hist, hist[1:]))
    # the smoothed objective is convex and differentiable: its gradient vanishes at the minimum
    S = S.detach().cpu().requires_grad_()
    obj = T.topographic_objective(X, W, S, 0.2, (4, 4), eps=1e-2)
    (g,) = torch.autograd.grad(obj, S)
    assert float(g.abs().max()) < 1e-5


def test_learning_monotone_unit_norm_and_topographic(patches):
    res = T.learn_topographic_dictionary(patches, (5, 5), 0.3, eps=1e-2, n_iter=8, encoder_iter=30, seed=0)
    assert res.W.shape == (36, 25)
    assert all(b <= a + 1e-9 * abs(a) for a, b in zip(res.objective, res.objective[1:]))
    assert float(torch.linalg.vector_norm(res.W, dim=0).max()) <= 1 + 1e-9


def test_neighbour_similarity_by_hand():
    W = torch.zeros(2, 16, dtype=torch.float64)
    W[0, :] = 1.0  # all atoms equal -> |cos| = 1 everywhere
    s = T.neighbour_similarity(W, (4, 4))
    assert s["neighbours"] == pytest.approx(1.0) and s["others"] == pytest.approx(1.0)
    # left half of the grid (columns 0, 1) along e1, right half (columns 2, 3) along e2.  On the
    # 4x4 torus a cell in column 0 has neighbours in columns {3, 0, 1}: 5 in its own half, 3 not
    W = torch.zeros(2, 16, dtype=torch.float64)
    for j in range(16):
        W[0 if j % 4 < 2 else 1, j] = 1.0
    s = T.neighbour_similarity(W, (4, 4))
    assert s["neighbours"] == pytest.approx(5 / 8)
    # its 15 - 8 = 7 non-neighbours: row r + 2 in columns {3, 0, 1} (2 in its half) and all of
    # column 2 (4, other half): 2 of 7 alike
    assert s["others"] == pytest.approx(2 / 7)
    assert s["ratio"] == pytest.approx((5 / 8) / (2 / 7))


def test_bad_arguments(patches):
    W = torch.randn(36, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="grid"):
        T.topographic_penalty(torch.randn(2, 16), (3, 3))
    with pytest.raises(ValueError, match="size"):
        T.neighbourhood_matrix((4, 4), 2)
    with pytest.raises(ValueError, match="size"):
        T.neighbourhood_matrix((4, 4), 5)
    with pytest.raises(ValueError, match="eps"):
        T.topographic_fista(patches, W, 0.1, (4, 4), eps=0.0)
    with pytest.raises(ValueError, match="lam"):
        T.topographic_fista(patches, W, -0.1, (4, 4))
    with pytest.raises(ValueError, match="W"):
        T.topographic_fista(patches, torch.randn(35, 16), 0.1, (4, 4))
    with pytest.raises(ValueError, match="W0"):
        T.learn_topographic_dictionary(patches, (4, 4), 0.1, W0=torch.randn(36, 9))


def test_grid_distances_match_the_windows_and_similarity_by_distance_by_hand():
    for grid, size in (((8, 8), 3), ((6, 9), 5), ((4, 4), 3)):
        D = T.grid_distances(grid)
        assert torch.equal(T.neighbourhood_matrix(grid, size) > 0, D <= size // 2)
    D = T.grid_distances((4, 4))
    assert int(D[0, 3]) == 1 and int(D[0, 10]) == 2 and int(D[5, 5]) == 0  # wrap-around; (0,0)-(2,2)
    W = torch.zeros(2, 16, dtype=torch.float64)  # left half along e1, right half along e2
    for j in range(16):
        W[0 if j % 4 < 2 else 1, j] = 1.0
    r = T.similarity_by_distance(W, (4, 4))
    assert r["distance"] == [1, 2] and sum(r["pairs"]) == 16 * 15 // 2
    # distance 1 = the 3x3 window: 5 of 8 alike; distance 2 = the other 7 cells: 2 of 7 alike
    assert r["similarity"] == pytest.approx([5 / 8, 2 / 7])
    assert r["similarity"][0] == pytest.approx(T.neighbour_similarity(W, (4, 4))["neighbours"])
