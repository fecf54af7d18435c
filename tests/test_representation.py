"""lecture_ae.tasks.representation: sensitivity, linear probe, DeepFool margins, transforms and read-outs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lecture_ae.tasks import representation as rep


def _digits_like(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 64, generator=g, dtype=torch.float64)
    X[:, :8] = 0  # a blank top row, like the digits
    return X


def _blobs(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    y = np.arange(n) % k
    X = centres[y] + rng.normal(size=(n, d))
    return torch.as_tensor(X), torch.as_tensor(y)


def global_average(X):
    return X.mean(dim=1, keepdim=True)


# ------------------------------------------------------------------ transforms
def test_integer_shift_moves_every_pixel_by_one():
    img = torch.zeros(1, 64, dtype=torch.float64)
    img[0, 3 * 8 + 3] = 1.0
    right = rep.shift(1.0, angle=0)(img).reshape(8, 8)
    up = rep.shift(1.0, angle=90)(img).reshape(8, 8)
    assert right[3, 4] == pytest.approx(1.0) and float(right.sum()) == pytest.approx(1.0)
    assert up[2, 3] == pytest.approx(1.0)
    half = rep.shift(0.5, angle=0)(img).reshape(8, 8)
    assert half[3, 3] == pytest.approx(0.5) and half[3, 4] == pytest.approx(0.5)


def test_rotation_by_zero_is_the_identity_and_rotations_compose_back():
    X = _digits_like(5)
    assert torch.allclose(rep.rotation(0.0)(X), X, atol=1e-12)
    ccw = rep.rotation(90.0, random_sign=False)(X)
    assert torch.allclose(ccw.reshape(5, 8, 8), torch.rot90(X.reshape(5, 8, 8), 1, dims=(1, 2)), atol=1e-9)


def test_linear_transforms_are_their_matrix():
    X = _digits_like(7)
    for t in (rep.shift(0.3, angle=20), rep.rotation(7.0, random_sign=False)):
        T = rep.transform_matrix(t)
        assert T.shape == (64, 64)
        assert torch.allclose(t(X), X @ T.T, atol=1e-12)
    with pytest.raises(ValueError, match="transform must be linear"):
        rep.transform_matrix(rep.shift(0.5))


def test_random_transforms_are_seeded():
    X = _digits_like(10)
    for t in (rep.shift(0.5), rep.rotation(10.0), rep.additive_noise(0.1)):
        assert torch.equal(t(X, seed=3), t(X, seed=3))
        assert not torch.equal(t(X, seed=3), t(X, seed=4))


# ------------------------------------------------------------------ sensitivity
def test_global_average_is_invariant_to_periodic_shifts():
    X = _digits_like(30)
    for pixels in (0.25, 0.5, 1.0, 1.7):
        s = rep.sensitivity(global_average, X, rep.shift(pixels, boundary="periodic"))
        assert s.representation < 1e-12
        assert s.ratio < 1e-10
        assert s.input > 0.01  # the input did change: the baseline


def test_identity_has_ratio_one_and_reports_both_changes():
    X = _digits_like(20)
    s = rep.sensitivity(lambda X: X, X, rep.additive_noise(0.1), seed=2)
    assert s.ratio == pytest.approx(1.0)
    assert s.representation == pytest.approx(s.input)
    rel = torch.linalg.vector_norm(rep.additive_noise(0.1)(X, seed=2) - X, dim=1) / torch.linalg.vector_norm(X, dim=1)
    assert s.input == pytest.approx(float(rel.mean()))
    assert s.per_sample.shape == (20, 2)


def test_sensitivity_of_a_scaled_linear_map_by_hand():
    X = _digits_like(12)
    V = 3.0 * torch.eye(64, dtype=torch.float64)  # relative change is scale-free: the ratio stays 1
    assert rep.sensitivity(rep.linear_encoder(V), X, rep.rotation(10.0)).ratio == pytest.approx(1.0)
    # a constant code: no change at all
    s = rep.sensitivity(lambda X: torch.ones(X.shape[0], 3, dtype=X.dtype), X, rep.shift(0.5))
    assert s.representation == 0 and s.ratio == 0


def test_sensitivity_is_deterministic_with_a_seed():
    X = _digits_like(15)
    f = rep.linear_encoder(torch.randn(10, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    a = rep.sensitivity(f, X, rep.shift(0.5), seed=5)
    b = rep.sensitivity(f, X, rep.shift(0.5), seed=5)
    c = rep.sensitivity(f, X, rep.shift(0.5), seed=6)
    assert a.as_dict() == b.as_dict() and a.as_dict() != c.as_dict()


# ------------------------------------------------------------------ probe
def test_probe_on_raw_pixels_matches_scikit_learn():
    X, y = _blobs(90)
    Xtr, ytr, Xte, yte = X[:60], y[:60], X[60:], y[60:]
    res = rep.linear_probe(lambda X: X, (Xtr, ytr, Xte, yte), n_seeds=1, subsample=1.0, standardize=False, C=0.5)
    direct = LogisticRegression(C=0.5, max_iter=2000).fit(Xtr.numpy(), ytr.numpy())
    assert res.table.loc["clean", "accuracy"] == pytest.approx(direct.score(Xte.numpy(), yte.numpy()))
    assert np.array_equal(res.probe.predict(Xte), direct.predict(Xte.numpy()))
    assert torch.allclose(res.probe.W, torch.as_tensor(direct.coef_))
    # standardised: the same decisions as scikit-learn on the standardised codes
    res_s = rep.linear_probe(lambda X: X, (Xtr, ytr, Xte, yte), n_seeds=1, subsample=1.0)
    mu, sd = Xtr.mean(0), ((Xtr - Xtr.mean(0)) ** 2).mean().sqrt()
    direct_s = LogisticRegression(C=1.0, max_iter=2000).fit(((Xtr - mu) / sd).numpy(), ytr.numpy())
    assert np.array_equal(res_s.probe.predict(Xte), direct_s.predict(((Xte - mu) / sd).numpy()))


def test_probe_under_transforms_and_seeds():
    X, y = _blobs(120, d=64)
    splits = (X[:80], y[:80], X[80:], y[80:])
    t = {"noise": rep.additive_noise(1.0)}
    a = rep.linear_probe(lambda X: X, splits, t, n_seeds=3, seed=1)
    b = rep.linear_probe(lambda X: X, splits, t, n_seeds=3, seed=1)
    assert a.table.equals(b.table)
    assert list(a.table.index) == ["clean", "noise"] and list(a.table.columns) == ["accuracy", "stderr"]
    assert len(a.accuracies["noise"]) == 3
    v = np.asarray(a.accuracies["clean"])
    assert a.table.loc["clean", "stderr"] == pytest.approx(v.std(ddof=1) / math.sqrt(3))


def test_binary_probe():
    X, y = _blobs(60, k=2)
    res = rep.linear_probe(lambda X: X, (X[:40], y[:40], X[40:], y[40:]), n_seeds=1, subsample=1.0)
    assert res.probe.W.shape == (2, 5)
    assert res.table.loc["clean", "accuracy"] > 0.8


# ------------------------------------------------------------------ margins
def test_identity_margin_is_the_distance_to_the_linear_boundary():
    X, y = _blobs(50, d=6, k=4, seed=3)
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    m = rep.input_margin(lambda X: X, (W, b), X)
    z = X @ W.T + b
    k0 = z.argmax(1)
    analytic = torch.full((len(X),), math.inf, dtype=torch.float64)
    for k in range(4):
        d = (z[torch.arange(len(X)), k0] - z[:, k]).abs() / torch.linalg.vector_norm(W[k0] - W[k], dim=1)
        analytic = torch.where(k0 == k, analytic, torch.minimum(analytic, d))
    assert bool(m.flipped.all())
    assert torch.allclose(m.distance, analytic, rtol=1e-9)
    assert torch.allclose(m.relative, analytic / torch.linalg.vector_norm(X, dim=1))
    assert bool((m.iterations == 1).all())
    # the perturbation with the overshoot changes the decision
    moved = (X + 1.02 * m.perturbation) @ W.T + b
    assert bool((moved.argmax(1) != k0).all())


def test_binary_margin_from_scikit_learn():
    X, y = _blobs(40, d=3, k=2, seed=5)
    lr = LogisticRegression().fit(X.numpy(), y.numpy())
    m = rep.input_margin(lambda X: X, lr, X)
    w, b = torch.as_tensor(lr.coef_[0]), float(lr.intercept_[0])
    assert torch.allclose(m.distance, (X @ w + b).abs() / torch.linalg.vector_norm(w), rtol=1e-9)


def test_margin_through_a_nonlinear_encoder_flips_and_is_deterministic():
    X, y = _blobs(60, d=4, k=3, seed=2)
    g = torch.Generator().manual_seed(0)
    V = torch.randn(8, 4, generator=g, dtype=torch.float64)

    def encode(X):
        return torch.tanh(X @ V.T / 3)

    res = rep.linear_probe(encode, (X[:40], y[:40], X[40:], y[40:]), n_seeds=1, subsample=1.0)
    a = rep.input_margin(encode, res.probe, X[40:], n=10, seed=1)
    b = rep.input_margin(encode, res.probe, X[40:], n=10, seed=1)
    assert torch.equal(a.distance, b.distance)
    assert bool(a.flipped.all()) and bool((a.distance > 0).all())
    d = a.describe()
    assert d["flipped"] == 1.0 and d["q25"] <= d["median"] <= d["q75"]


def test_sparse_code_encoder_is_the_lasso_solution_and_differentiable():
    from lecture_ae.sparse import fista, l1_objective

    g = torch.Generator().manual_seed(0)
    W = torch.randn(10, 6, generator=g, dtype=torch.float64)
    W = W / torch.linalg.vector_norm(W, dim=0)
    X = torch.randn(8, 10, generator=g, dtype=torch.float64)
    enc = rep.sparse_code_encoder(W, 0.5)
    S = enc(X)
    S_ref = fista(X, W, 0.5, 5000)
    assert float(l1_objective(X, W, S, 0.5, 0.0)) <= float(l1_objective(X, W, S_ref, 0.5, 0.0)) + 1e-10
    x = X.clone().requires_grad_(True)
    enc(x).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


# ------------------------------------------------------------------ read-outs
def test_detail_split_and_readout():
    X = _digits_like(80)
    coarse, fine = rep.detail_split(X)
    assert torch.allclose(coarse + fine, X)
    assert rep.readout_r2(X[:60], fine[:60], X[60:], fine[60:], alpha=1e-6) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(80, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert rep.readout_r2(noise[:60], fine[:60], noise[60:], fine[60:]) < 0.2


def test_corruption_loss_reconstructs_the_clean_batch():
    from lecture_ae.models import LinearAutoencoder

    model = LinearAutoencoder(64, 4, seed=0, dtype=torch.float64)
    X = _digits_like(6)
    loss = rep.corruption_loss([rep.shift(0.5), rep.rotation(5.0)], seed=0)
    a = loss(model, X)
    again = rep.corruption_loss([rep.shift(0.5), rep.rotation(5.0)], seed=0)(model, X)
    assert a.dim() == 0 and float(a.detach()) == pytest.approx(float(again.detach()))


# ------------------------------------------------------------------ argument errors
@pytest.mark.parametrize("call,match", [
    (lambda: rep.sensitivity(3, torch.zeros(2, 4), rep.additive_noise(0.1)), "encode"),
    (lambda: rep.sensitivity(global_average, torch.zeros(4), rep.additive_noise(0.1)), "X must be a 2-D"),
    (lambda: rep.sensitivity(global_average, torch.zeros(2, 4), "shift"), "transform"),
    (lambda: rep.sensitivity(global_average, torch.zeros(2, 4), rep.additive_noise(0.1), seed=-1), "seed"),
    (lambda: rep.sensitivity(global_average, torch.zeros(2, 4), rep.additive_noise(0.1), eps=0), "eps"),
    (lambda: rep.sensitivity(lambda X: X[0], torch.zeros(2, 4), rep.additive_noise(0.1)), r"encode\(X\)"),
    (lambda: rep.sensitivity(global_average, torch.zeros(2, 4), rep.shift(0.5)), "X must have H\\*W = 64"),
    (lambda: rep.shift(-1.0), "pixels"),
    (lambda: rep.shift(0.5, (8,)), "image_shape"),
    (lambda: rep.shift(0.5, boundary="wrap"), "boundary"),
    (lambda: rep.rotation(200.0), "degrees"),
    (lambda: rep.rotation(5.0, random_sign=1), "random_sign"),
    (lambda: rep.additive_noise(float("nan")), "sigma"),
    (lambda: rep.linear_probe(global_average, (1, 2)), "splits"),
    (lambda: rep.linear_probe(global_average, (torch.zeros(4, 3), [0, 1, 0, 1], torch.zeros(2, 3), [0])), "y_test"),
    (lambda: rep.linear_probe(global_average, (torch.zeros(4, 3), [0, 1, 0, 1], torch.zeros(2, 3), [0, 1]),
                              n_seeds=0), "n_seeds"),
    (lambda: rep.linear_probe(global_average, (torch.zeros(4, 3), [0, 1, 0, 1], torch.zeros(2, 3), [0, 1]),
                              subsample=1.5), "subsample"),
    (lambda: rep.linear_probe(global_average, (torch.zeros(4, 3), [0, 1, 0, 1], torch.zeros(2, 3), [0, 1]),
                              {"a": 1}), r"transforms\['a'\]"),
    (lambda: rep.linear_probe(global_average, (torch.zeros(4, 3), [0, 1, 0, 1], torch.zeros(2, 3), [0, 1]), C=0),
     "C must"),
    (lambda: rep.input_margin(global_average, "probe", torch.zeros(2, 3)), "probe must"),
    (lambda: rep.input_margin(global_average, (torch.zeros(2, 1), torch.zeros(3)), torch.zeros(2, 3)), "probe"),
    (lambda: rep.input_margin(global_average, (torch.zeros(2, 2), torch.zeros(2)), torch.zeros(2, 3)), "h = 2"),
    (lambda: rep.input_margin(global_average, (torch.zeros(2, 1), torch.zeros(2)), torch.zeros(2, 3), max_iter=0),
     "max_iter"),
    (lambda: rep.input_margin(global_average, (torch.zeros(2, 1), torch.zeros(2)), torch.zeros(2, 3), overshoot=-1),
     "overshoot"),
    (lambda: rep.input_margin(global_average, (torch.zeros(2, 1), torch.zeros(2)), torch.zeros(2, 3), n=5), "n must"),
    (lambda: rep.linear_encoder(torch.zeros(3, 4), torch.zeros(2)), "c must"),
    (lambda: rep.pca_encoder(torch.zeros(5, 4), 6), "h must"),
    (lambda: rep.sparse_code_encoder(torch.zeros(4, 3), 0.0), "lam"),
    (lambda: rep.corruption_loss([]), "transforms"),
    (lambda: rep.detail_split(torch.zeros(2, 10)), "X must have H\\*W"),
    (lambda: rep.readout_r2(torch.zeros(3, 2), torch.zeros(2, 1), torch.zeros(2, 2), torch.zeros(2, 1)), "F_train and"),
    (lambda: rep.readout_r2(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(2, 2), torch.zeros(2, 1), alpha=0),
     "alpha"),
])
def test_bad_arguments_raise_a_value_error_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()
