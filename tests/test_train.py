"""The fit loop: loss goes down, runs repeat, early stopping, best weights, checkpoints, bad arguments."""
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from lecture_ae.train import History, evaluate, fit, load_checkpoint, predict, save_checkpoint


def _data(n=256, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=gen) @ torch.randn(2, d, generator=gen)  # rank-2 data
    return X


def _model(d=6, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 2), torch.nn.Linear(2, d))


def test_fit_reduces_loss_and_repeats():
    X = _data()
    h1 = fit(_model(), X[:200], X[200:], epochs=30, lr=1e-2, device="cpu", show_progress=False)
    assert isinstance(h1, History)
    assert len(h1.train_loss) == len(h1.val_loss) == 30 == h1.epochs
    assert h1.train_loss[-1] < 0.1 * h1.train_loss[0]
    assert h1.best_val == min(h1.val_loss) and h1.val_loss[h1.best_epoch] == h1.best_val
    assert h1.seconds > 0
    h2 = fit(_model(), X[:200], X[200:], epochs=30, lr=1e-2, device="cpu", show_progress=False)
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss  # same seed, same numbers
    h3 = fit(_model(), X[:200], X[200:], epochs=30, lr=1e-2, seed=1, device="cpu", show_progress=False)
    assert h3.train_loss != h1.train_loss  # another shuffling order


def test_default_loss_is_reconstruction_mse_and_validation_matches_evaluate():
    X = _data()
    model = _model()
    h = fit(model, X, X[:50], epochs=3, device="cpu", show_progress=False)
    # the best weights are restored, so the model's validation loss is best_val
    with torch.no_grad():
        expected = float(((model(X[:50]) - X[:50]) ** 2).mean())
    assert evaluate(model, X[:50], batch_size=7) == pytest.approx(expected, rel=1e-5)
    assert h.best_val == pytest.approx(expected, rel=1e-5)
    assert predict(model, X[:50], batch_size=8).shape == (50, 6)


def test_pairs_datasets_and_custom_loss():
    X = _data()
    Y = 2 * X
    model = _model()
    h = fit(model, (X, Y), epochs=5, lr=1e-2, device="cpu", show_progress=False)  # MSE of model(X) vs Y
    assert h.val_loss == [] and h.best_epoch == 4 and math.isnan(h.best_val)
    assert h.train_loss[-1] < h.train_loss[0]
    # a torch Dataset gives the same batches as a tuple of tensors
    calls = []

    def loss_fn(m, batch):
        calls.append(type(batch))
        x, y = batch
        return ((m(x) - y) ** 2).sum(dim=1).mean()

    h_ds = fit(_model(), TensorDataset(X, Y), epochs=2, loss_fn=loss_fn, device="cpu", show_progress=False)
    assert len(h_ds.train_loss) == 2 and calls


class _WithLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x)

    def loss(self, batch):
        return (self(batch) - 1.0).pow(2).mean()  # learn to output ones


def test_model_loss_method_is_used():
    X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = _WithLoss()
    before = evaluate(model, X)
    h = fit(model, X, epochs=100, lr=2e-2, device="cpu", show_progress=False)
    assert before > 0.5 and h.train_loss[-1] < 0.01 and evaluate(model, X) < 0.01


def test_early_stopping_restores_best_weights(tmp_path):
    X = _data()
    # validation data the model cannot fit: val loss rises while training improves
    V = torch.randn(40, 6, generator=torch.Generator().manual_seed(5)) * 10
    model = _model()
    h = fit(model, X, V, epochs=200, lr=5e-2, patience=3, device="cpu", show_progress=False,
            checkpoint=tmp_path / "ck" / "best.pt")
    assert h.stopped_early and h.epochs < 200
    assert h.epochs - 1 - h.best_epoch == 3  # stopped 3 epochs after the best one
    assert evaluate(model, V) == pytest.approx(h.best_val, rel=1e-5)
    fresh = _model(seed=3)
    meta = load_checkpoint(fresh, tmp_path / "ck" / "best.pt")
    assert meta["history"]["best_epoch"] == h.best_epoch
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_save_and_load_checkpoint_roundtrip(tmp_path):
    a, b = _model(seed=0), _model(seed=1)
    save_checkpoint(a, tmp_path / "a.pt", note="hello", epoch=3)
    meta = load_checkpoint(b, tmp_path / "a.pt")
    assert meta == {"note": "hello", "epoch": 3}
    x = torch.randn(4, 6)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError, match="path"):
        load_checkpoint(b, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="holds a Sequential"):
        load_checkpoint(_WithLoss(), tmp_path / "a.pt")
    with pytest.raises(ValueError, match="meta"):
        save_checkpoint(a, tmp_path / "b.pt", bad=object())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"patience": 2}, "patience"),  # without val_data
        ({"seed": -3}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"loss_fn": 3}, "loss_fn"),
        ({"show_progress": "yes"}, "show_progress"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(_model(), _data(), **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="train_data"):
        fit(_model(), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="train_data"):
        fit(_model(), (torch.zeros(5, 6), torch.zeros(4, 6)))
    with pytest.raises(ValueError, match="val_data"):
        fit(_model(), torch.zeros(5, 6), torch.zeros(0, 6))
    with pytest.raises(ValueError, match="model"):
        fit("not a model", torch.zeros(5, 6))
    with pytest.raises(ValueError, match="scalar"):
        fit(_model(), torch.zeros(5, 6), loss_fn=lambda m, b: m(b), device="cpu")
    with pytest.raises(FloatingPointError, match="lr"):
        fit(_model(), torch.full((5, 6), 1e30), lr=1.0, optimizer="sgd", device="cpu", show_progress=False, epochs=50)
