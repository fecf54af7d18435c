"""Compression and denoising tasks: PCA codec vs scikit-learn, quantisation by hand, the sweep, digit picks, gains."""
import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from lecture_ae.data import curve, curve_tangent, load_digits_splits, noisy_curve
from lecture_ae.metrics import code_bits, mse, per_sample_mse, psnr
from lecture_ae.tasks.compression import LECTURE_DIGITS, PCACodec, bottleneck_sweep, digit_examples, quantize
from lecture_ae.tasks.denoising import denoising_benchmark, local_gains, pca_denoiser


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def test_metrics_against_skimage_and_by_hand():
    from skimage.metrics import peak_signal_noise_ratio

    gen = torch.Generator().manual_seed(0)
    X = torch.rand(6, 64, generator=gen, dtype=torch.float64)
    Y = (X + 0.1 * torch.randn(6, 64, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ref = [peak_signal_noise_ratio(X[i].numpy(), Y[i].numpy(), data_range=1.0) for i in range(6)]
    assert psnr(X, Y) == pytest.approx(np.mean(ref))
    assert psnr(X, Y, reduction="none").numpy() == pytest.approx(ref)
    # by hand: error 0.1 everywhere -> MSE 0.01 -> PSNR 20 dB
    assert psnr(torch.zeros(2, 4), torch.full((2, 4), 0.1)) == pytest.approx(20.0, rel=1e-5)
    assert mse(torch.zeros(2, 4), torch.full((2, 4), 0.1)) == pytest.approx(0.01)
    assert per_sample_mse(torch.zeros(2, 1, 2, 2), torch.ones(2, 4)).tolist() == [1.0, 1.0]
    assert code_bits(10, 8) == 80
    with pytest.raises(ValueError, match="X_hat"):
        mse(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="data_range"):
        psnr(X, Y, data_range=0)
    with pytest.raises(ValueError, match="reduction"):
        psnr(X, Y, reduction="sum")


def test_pca_codec_matches_scikit_learn(digits):
    codec = PCACodec(digits.X_train, 7)
    ref = PCA(7).fit(digits.X_train.numpy().astype(np.float64))
    R = codec.reconstruct(digits.X_test)
    R_ref = ref.inverse_transform(ref.transform(digits.X_test.numpy().astype(np.float64)))
    assert np.allclose(R.numpy(), R_ref, atol=1e-5)
    assert codec.encode(digits.X_test).shape == (len(digits.X_test), 7)
    with pytest.raises(ValueError, match="h"):
        PCACodec(digits.X_train, 65)


def test_quantize_by_hand():
    S = torch.tensor([[0.0, 0.26], [1.0, 0.74], [2.0, -5.0]])
    # 2 bits -> 4 levels on [0, 1]: 0, 1/3, 2/3, 1
    Q = quantize(S, 2, lo=0.0, hi=1.0)
    assert torch.allclose(Q, torch.tensor([[0.0, 1 / 3], [1.0, 2 / 3], [1.0, 0.0]]))
    # per-unit ranges; at most half a step of error inside the range
    lo, hi = torch.tensor([0.0, -1.0]), torch.tensor([2.0, 1.0])
    S2 = torch.rand(100, 2) * torch.tensor([2.0, 2.0]) + lo
    Q2 = quantize(S2, 4, lo, hi)
    assert bool(((Q2 - S2).abs() <= (hi - lo) / 15 / 2 + 1e-6).all())
    assert len(torch.unique(Q2[:, 0])) <= 16
    with pytest.raises(ValueError, match="bits"):
        quantize(S, 0, 0.0, 1.0)
    with pytest.raises(ValueError, match="hi"):
        quantize(S, 2, 1.0, 0.0)


def test_digit_examples(digits):
    idx = digit_examples(digits.y_test)
    assert [int(digits.y_test[i]) for i in idx] == list(LECTURE_DIGITS)
    assert all(int((digits.y_test[:i] == digits.y_test[i]).sum()) == 0 for i in idx)  # the first of each class
    with pytest.raises(ValueError, match="class 11"):
        digit_examples(digits.y_test, (11,))


def test_bottleneck_sweep_small(digits):
    table, models = bottleneck_sweep(digits, latents=(2, 16), epochs=6, value_bits=(32, 4), show_progress=False)
    assert set(models) == {2, 16} and len(table) == 2 * 2 * 2
    assert set(table.columns) >= {"method", "latents", "value_bits", "bits", "mse", "psnr"}
    assert table.loc[(table.method == "AE") & (table.latents == 16) & (table.value_bits == 4), "bits"].item() == 64
    for method in ("AE", "PCA"):
        t = table[(table.method == method) & (table.value_bits == 32)].set_index("latents")
        assert t.loc[16, "mse"] < t.loc[2, "mse"]  # a larger code reconstructs better
        q = table[(table.method == method) & (table.latents == 16)].set_index("value_bits")
        assert q.loc[4, "mse"] >= q.loc[32, "mse"] - 1e-6  # quantising never helps
    with pytest.raises(ValueError, match="data"):
        bottleneck_sweep(digits.X_train)
    with pytest.raises(ValueError, match="value_bits"):
        bottleneck_sweep(digits, value_bits=(64,))
    with pytest.raises(ValueError, match="latents"):
        bottleneck_sweep(digits, latents=(0,))


def test_denoising_benchmark_small(digits):
    table, extras = denoising_benchmark(digits, {"masking": 0.4}, latent=16, widths=(64,), epochs=8, show_progress=False)
    row = table.loc["masking 0.4"]
    assert row["DAE"] > row["noisy"] + 2 and row["PCA"] > row["noisy"]
    assert set(extras) == {"AE", "DAE", "PCA", "noisy"}
    with pytest.raises(ValueError, match="noise"):
        denoising_benchmark(digits, {"blur": 0.1})
    # PCA denoiser picks the k with the best validation PSNR among those offered
    from lecture_ae.models import add_noise

    Xn = add_noise(digits.X_val, "gaussian", 0.3, 0)
    best = pca_denoiser(digits.X_train, digits.X_val, Xn, ks=(2, 10, 40))
    scores = {k: psnr(digits.X_val, PCACodec(digits.X_train, k).reconstruct(Xn).clamp(0, 1)) for k in (2, 10, 40)}
    assert best.h == max(scores, key=scores.get)


def test_curve_and_local_gains():
    X, t = noisy_curve(50, noise=0.0, seed=0)
    assert torch.allclose(X, curve(t))
    T = curve_tangent(torch.tensor([0.0, 1 / 3]))
    assert T[1].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # cos(pi/2) = 0: horizontal
    assert float(T[0].norm()) == pytest.approx(1.0)
    # the identity map has gain 1 in every direction; a projection onto the x1 axis kills the x2 direction
    ident = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        ident.weight.copy_(torch.eye(2))
    g = local_gains(ident, curve(torch.tensor([0.0, 1 / 3])), T)
    assert g["gain along the curve"].tolist() == pytest.approx([1.0, 1.0])
    assert g["gain across the curve"].tolist() == pytest.approx([1.0, 1.0])
    with torch.no_grad():
        ident.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    g = local_gains(ident, curve(torch.tensor([1 / 3])), curve_tangent(torch.tensor([1 / 3])))
    assert g["gain along the curve"].item() == pytest.approx(1.0) and g["gain across the curve"].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="tangents"):
        local_gains(ident, torch.zeros(3, 2), torch.zeros(2, 2))
