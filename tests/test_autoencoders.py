"""Autoencoders: the objective by hand and by gradcheck, PCA agreement, dead units, noise, shapes, training."""
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from torch.autograd import gradcheck

from lecture_ae import sparse as sp
from lecture_ae.models import (
    ConvAutoencoder,
    DenoisingAutoencoder,
    LinearAutoencoder,
    MLPAutoencoder,
    NoiseLayer,
    ReLUSparseAutoencoder,
    activation_rates,
    add_noise,
    dead_fraction,
    dead_unit_term,
    reconstruction_error,
    relu_ae_forward,
    sparse_ae_loss,
)
from lecture_ae.train import evaluate, fit

f64 = torch.float64


# ------------------------------------------------------------------------ the objective
def test_sparse_ae_loss_by_hand():
    # same numbers as the sparse-coding test: x1 = (1, 2), x2 = (0, -1), W = [[1, 0, 1], [0, 1, 1]]
    X = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=f64)
    W = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=f64)
    S = torch.tensor([[1.0, 0.0, 1.0], [0.0, -2.0, 0.0]], dtype=f64)
    X_hat = S @ W.T  # (2, 1) and (0, -2): errors 2 and 1
    assert float(sparse_ae_loss(X, X_hat, S, W)) == pytest.approx(1.5)
    # + lam * mean(||s||_1) = 0.5 * 2, + eta ||W||_F^2 = 0.1 * 4
    assert float(sparse_ae_loss(X, X_hat, S, W, lam=0.5, eta=0.1)) == pytest.approx(2.9)
    assert float(sparse_ae_loss(X, X_hat, S, W, 0.5, 0.1)) == pytest.approx(float(sp.l1_objective(X, W, S, 0.5, 0.1)))
    assert float(sparse_ae_loss(X, X_hat, S, None, lam=0.5)) == pytest.approx(2.5)
    assert float(reconstruction_error(X, X_hat)) == pytest.approx(1.5)


def test_gradcheck_sparse_ae_loss():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(5, 4, generator=gen, dtype=f64)
    X_hat = torch.randn(5, 4, generator=gen, dtype=f64, requires_grad=True)
    S = (torch.rand(5, 3, generator=gen, dtype=f64) + 0.1) * torch.tensor([1.0, -1.0, 1.0], dtype=f64)  # away from the |.| kink
    S.requires_grad_(True)
    W = torch.randn(4, 3, generator=gen, dtype=f64, requires_grad=True)
    assert gradcheck(lambda a, b, c: sparse_ae_loss(X, a, b, c, lam=0.3, eta=0.2), (X_hat, S, W))
    # and through a linear autoencoder's parameters
    ae = LinearAutoencoder(4, 3, lam=0.3, eta=0.2, dtype=f64)
    assert gradcheck(lambda V, Wd: sparse_ae_loss(X, X @ V.T @ Wd.T, X @ V.T, Wd, 0.0, 0.2),
                     (ae.V.detach().clone().requires_grad_(), ae.W.detach().clone().requires_grad_()))


def test_dead_unit_term_values_and_gradcheck():
    h = 6
    Z_equal = torch.zeros(10, h, dtype=f64)  # every unit fires at the same soft rate
    assert float(dead_unit_term(Z_equal)) == pytest.approx(0.0, abs=1e-12)
    # rates 1/2, 1/2, sigma(-2), sigma(-2) with tau = 1: by the formula -log h - mean(log q)
    Z = torch.tensor([[0.0, 0.0, -2.0, -2.0]] * 3, dtype=f64)
    p = np.array([0.5, 0.5, 1 / (1 + math.exp(2)), 1 / (1 + math.exp(2))])
    q = p / p.sum()
    assert float(dead_unit_term(Z, tau=1.0)) == pytest.approx(-math.log(4) - np.log(q).mean())
    # random pre-activations, tau = 0.5
    Z = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=f64)
    p = (1 / (1 + np.exp(-Z.numpy() / 0.5))).mean(0)
    q = p / p.sum()
    assert float(dead_unit_term(Z, tau=0.5)) == pytest.approx(-math.log(5) - float(np.log(q).mean()))
    assert float(dead_unit_term(Z, tau=0.5)) > 0
    # a completely silent unit: finite (log space), large, with a finite gradient
    Z_dead = torch.zeros(8, 4, dtype=f64)
    Z_dead[:, 0] = -1e4
    Z_dead.requires_grad_(True)
    D = dead_unit_term(Z_dead)
    D.backward()
    assert math.isfinite(float(D.detach())) and float(D.detach()) > 1e3
    assert bool(torch.isfinite(Z_dead.grad).all()) and float(Z_dead.grad[:, 0].min()) < 0  # pushes z_0 up
    assert gradcheck(lambda z: dead_unit_term(z, tau=0.5), (Z.clone().requires_grad_(),))


def test_dead_unit_term_revives_dead_units():
    X = torch.rand(32, 8, generator=torch.Generator().manual_seed(0))
    for beta, alive in ((0.0, False), (1.0, True)):
        ae = ReLUSparseAutoencoder(8, 4, beta=beta)
        with torch.no_grad():
            ae.c[0] = -100.0  # unit 0 is dead on every input
        assert ae.dead_fraction(X) == 0.25
        ae.loss(X).backward()
        assert bool(torch.isfinite(ae.V.grad).all())
        assert bool(ae.V.grad[0].abs().sum() > 0) == alive  # only the dead-unit term reaches a dead unit
        assert bool(ae.c.grad[0] < 0) == alive  # gradient descent raises the threshold of the dead unit


def test_activation_rates_and_dead_fraction():
    S = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 0.0, 1.0], [0.0, 5.0, 0.0]])
    assert activation_rates(S).tolist() == [0.0, 0.75, 0.5]
    assert dead_fraction(S) == pytest.approx(1 / 3)
    assert dead_fraction(S, tol=2.5) == pytest.approx(0.0 + 1 / 3)  # unit 1 fires once above 2.5, unit 2 once


# ---------------------------------------------------------------------------- PCA
def test_linear_autoencoder_spans_the_pca_subspace():
    """lam = eta = 0: the decoder columns span the top-h principal subspace (bound: 0.5 degree)."""
    gen = torch.Generator().manual_seed(0)
    d, h, n = 12, 3, 600
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=f64))
    X = (torch.randn(n, d, generator=gen, dtype=f64) * torch.tensor([3.0, 2.0, 1.5] + [0.3] * (d - 3), dtype=f64)) @ Q.T
    X = X - X.mean(dim=0)
    ae = LinearAutoencoder(d, h, dtype=f64)
    hist = fit(ae, X, epochs=600, batch_size=n, lr=2e-2, device="cpu", show_progress=False)
    pca = PCA(h).fit(X.numpy())
    angles = np.degrees(subspace_angles(ae.W.detach().numpy(), pca.components_.T))
    assert angles.max() < 0.5
    # and the objective reaches PCA's reconstruction error (the minimum over rank-h maps)
    Xp = pca.inverse_transform(pca.transform(X.numpy()))
    pca_err = float(((X.numpy() - Xp) ** 2).sum(axis=1).mean())
    assert hist.train_loss[-1] < 1.01 * pca_err
    final = float(ae.loss(X).detach())
    assert pca_err * (1 - 1e-9) <= final < 1.005 * pca_err  # PCA is the minimum; the AE gets within 0.5 %


def test_linear_autoencoder_objective_is_the_sparse_coding_objective():
    X = torch.randn(9, 5, generator=torch.Generator().manual_seed(2), dtype=f64)
    ae = LinearAutoencoder(5, 3, lam=0.4, eta=0.05, dtype=f64)
    S = X @ ae.V.T
    assert torch.equal(ae.encode(X), S)
    assert float(ae.loss(X).detach()) == pytest.approx(float(sp.l1_objective(X, ae.W.detach(), S.detach(), 0.4, 0.05)))


# --------------------------------------------------------------------------- noise
def test_add_noise_kinds():
    X = torch.rand(200, 50, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1  # no 0 or 1 entries
    X0 = X.clone()
    g = add_noise(X, "gaussian", 0.2, 0)
    assert (g - X).std().item() == pytest.approx(0.2, rel=0.05)
    m = add_noise(X, "masking", 0.3, 0)
    zeroed = m == 0
    assert zeroed.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert torch.equal(m[~zeroed], X[~zeroed])
    s = add_noise(X, "salt_and_pepper", 0.2, 0)
    changed = s != X
    assert changed.float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert set(s[changed].unique().tolist()) == {0.0, 1.0}
    assert (s[changed] == 1.0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(X, X0)  # X untouched
    # repeatable with a seed or a generator, different with another seed
    assert torch.equal(add_noise(X, "masking", 0.3, 0), m)
    assert torch.equal(add_noise(X, "masking", 0.3, torch.Generator().manual_seed(0)), m)
    assert not torch.equal(add_noise(X, "masking", 0.3, 1), m)
    assert torch.equal(add_noise(X, "gaussian", 0.0, 0), X)


def test_noise_layer_and_denoising_autoencoder():
    X = torch.rand(64, 16, generator=torch.Generator().manual_seed(0))
    layer = NoiseLayer("masking", 0.5)
    assert not torch.equal(layer(X), X)
    layer.eval()
    assert torch.equal(layer(X), X)  # identity in eval mode, like dropout
    dae = DenoisingAutoencoder(MLPAutoencoder(16, 4, (32,)), "gaussian", 0.2)
    dae.eval()
    assert torch.equal(dae(X), dae.ae(X))
    noisy = add_noise(X, "gaussian", 0.2, 3)
    with torch.no_grad():
        assert float(dae.loss((noisy, X))) == pytest.approx(float(reconstruction_error(X, dae.ae(noisy))))
    before = evaluate(dae, X)
    fit(dae, X, X, epochs=30, lr=1e-2, device="cpu", show_progress=False)
    assert evaluate(dae, X) < 0.8 * before
    # validation loss of a denoising model is repeatable (the corruption is re-seeded)
    assert evaluate(dae, X, seed=5) == evaluate(dae, X, seed=5)


# -------------------------------------------------------------------- shapes, training
def test_mlp_and_conv_shapes():
    X = torch.rand(3, 64)
    mlp = MLPAutoencoder(64, 10, (32, 16))
    assert mlp.encode(X).shape == (3, 10) and mlp(X).shape == (3, 64)
    assert 0 <= float(mlp(X).detach().min()) and float(mlp(X).detach().max()) <= 1  # sigmoid output
    conv = ConvAutoencoder(8, (8, 16))
    assert conv.encode(X).shape == (3, 16, 2, 2) and conv(X).shape == (3, 64)
    assert conv(X.reshape(3, 1, 8, 8)).shape == (3, 1, 8, 8)
    conv_l = ConvAutoencoder(8, (8, 16), latent=5)
    assert conv_l.encode(X).shape == (3, 5) and conv_l(X).shape == (3, 64)
    big = ConvAutoencoder(64, (4, 8, 8, 8), latent=16)  # anomaly-detection tiles
    T = torch.rand(2, 1, 64, 64)
    assert big.encode(T).shape == (2, 16) and big(T).shape == (2, 1, 64, 64)
    rect = ConvAutoencoder((32, 16), (4, 4), in_channels=3, output=None)
    assert rect(torch.rand(2, 3, 32, 16)).shape == (2, 3, 32, 16)
    # a seed fixes the initial weights
    assert torch.equal(MLPAutoencoder(64, 10, seed=4)(X), MLPAutoencoder(64, 10, seed=4)(X))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearAutoencoder(64, 8),
        lambda: ReLUSparseAutoencoder(64, 32, lam=0.05, beta=1.0),
        lambda: MLPAutoencoder(64, 8, (32,)),
        lambda: ConvAutoencoder(8, (8, 16), latent=8),
        lambda: DenoisingAutoencoder(MLPAutoencoder(64, 8, (32,)), "masking", 0.25),
    ],
)
def test_training_reduces_the_loss_on_digits(make):
    from lecture_ae.data import load_digits_splits

    D = load_digits_splits()
    X = D.X_train[:400] - (D.X_train.mean(0) if isinstance(make(), LinearAutoencoder) else 0)
    Xv = D.X_val[:100] - (D.X_train.mean(0) if isinstance(make(), LinearAutoencoder) else 0)
    model = make()
    before = evaluate(model, Xv)
    h = fit(model, X, Xv, epochs=8, lr=1e-2, device="cpu", show_progress=False)
    assert h.best_val < 0.7 * before
    assert h.train_loss[-1] < h.train_loss[0]


def test_relu_ae_forward_is_the_model_and_by_hand():
    X = torch.tensor([[1.0, -1.0]])
    V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # z = (1, -1, 0) + c
    c = torch.tensor([0.5, 0.5, 0.5])
    W = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    b = torch.tensor([0.0, 1.0])
    S, X_hat = relu_ae_forward(X, V, c, W, b)
    assert S.tolist() == [[1.5, 0.0, 0.5]]
    assert X_hat.tolist() == [[2.5, 0.5]]  # (1.5 + 1.0, -0.5 + 1)
    ae = ReLUSparseAutoencoder(8, 5, seed=3)
    with torch.no_grad():
        ae.c.normal_()
        ae.b.normal_()
    Xr = torch.randn(6, 8)
    S, X_hat = relu_ae_forward(Xr, ae.V, ae.c, ae.W, ae.b)
    assert torch.allclose(S, ae.encode(Xr)) and torch.allclose(X_hat, ae(Xr))
    with pytest.raises(ValueError, match="W"):
        relu_ae_forward(Xr, ae.V, ae.c, ae.W.T, ae.b)
    with pytest.raises(ValueError, match="c"):
        relu_ae_forward(Xr, ae.V, ae.b, ae.W, ae.b)


def test_relu_autoencoder_counts_dead_units():
    from lecture_ae.data import load_digits_splits

    X = load_digits_splits().X_train[:300]
    ae = ReLUSparseAutoencoder(64, 10)
    with torch.no_grad():
        ae.c[:3] = -1e3
    assert ae.dead_fraction(X) == pytest.approx(0.3)


# ----------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 2), torch.zeros(4, 2)), "X_hat"),
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 2), torch.zeros(4, 2)), "S"),
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 2), torch.zeros(4, 3)), "W"),
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 2), None, eta=1.0), "W"),
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 2), torch.zeros(4, 2), lam=-1), "lam"),
        (lambda: sparse_ae_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 2), torch.zeros(4, 2), eta=math.nan), "eta"),
        (lambda: sparse_ae_loss(torch.zeros(4), torch.zeros(4), torch.zeros(3, 2), torch.zeros(4, 2)), "X"),
        (lambda: dead_unit_term(torch.zeros(3, 2), tau=0.0), "tau"),
        (lambda: dead_unit_term(torch.zeros(3)), "Z"),
        (lambda: add_noise(torch.zeros(3), "speckle", 0.1), "kind"),
        (lambda: add_noise(torch.zeros(3), "masking", 1.5), "level"),
        (lambda: add_noise(torch.zeros(3), "gaussian", -0.1), "level"),
        (lambda: add_noise(torch.zeros(3), "gaussian", 0.1, "seed"), "seed"),
        (lambda: LinearAutoencoder(0, 3), "d"),
        (lambda: LinearAutoencoder(4, 3, lam=-0.1), "lam"),
        (lambda: LinearAutoencoder(4, 3).encode(torch.zeros(2, 5)), "x"),
        (lambda: ReLUSparseAutoencoder(4, 3, beta=-1.0), "beta"),
        (lambda: MLPAutoencoder(4, 2, (8, 0)), "widths"),
        (lambda: MLPAutoencoder(4, 2, activation="swish"), "activation"),
        (lambda: ConvAutoencoder(10, (4, 8)), "image_size"),
        (lambda: ConvAutoencoder(8, (4,), kernel_size=4), "kernel_size"),
        (lambda: ConvAutoencoder(8, ()), "channels"),
        (lambda: ConvAutoencoder(8, (4,))(torch.zeros(2, 1, 6, 6)), "x"),
        (lambda: NoiseLayer("blur", 0.1), "kind"),
        (lambda: DenoisingAutoencoder(torch.nn.Linear(2, 2)), "autoencoder"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
