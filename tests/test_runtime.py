"""Device choice, seeding, the full-size switch and the argument checks."""
import numpy as np
import pytest
import torch

from lecture_ae import runtime
from lecture_ae._checks import as_tensor, check_int, check_scalar


def test_get_device():
    assert runtime.get_device("cpu") == torch.device("cpu")
    assert runtime.get_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        runtime.get_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            runtime.get_device("cuda")


def test_seeding_makes_draws_repeatable():
    runtime.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    runtime.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    g1, g2 = runtime.make_generator(5), runtime.make_generator(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)
    with pytest.raises(ValueError, match="seed"):
        runtime.make_generator("abc")


def test_switches(monkeypatch):
    monkeypatch.setenv("LECTURE_AE_FULL", "1")
    assert runtime.full_size()
    monkeypatch.setenv("LECTURE_AE_FULL", "0")
    assert not runtime.full_size()
    monkeypatch.setenv("LECTURE_AE_PROGRESS", "0")
    assert runtime.progress(range(3)).disable
    monkeypatch.setenv("LECTURE_AE_PROGRESS", "1")
    assert not runtime.progress(range(3)).disable
    assert list(runtime.progress(range(3), show=False)) == [0, 1, 2]


def test_checks_name_the_argument():
    assert as_tensor(np.arange(3), "x").dtype == torch.get_default_dtype()
    assert as_tensor(np.zeros(2, dtype=np.float64), "x").dtype == torch.float64
    with pytest.raises(ValueError, match=r"Q must be a 2-D array of shape \(N, d\); got shape \(3,\)"):
        as_tensor([1.0, 2.0, 3.0], "Q", ndim=2, shape="(N, d)")
    with pytest.raises(ValueError, match="Q contains NaN"):
        as_tensor([1.0, float("nan")], "Q")
    with pytest.raises(ValueError, match="Q contains inf"):
        as_tensor([1.0, float("inf")], "Q")
    with pytest.raises(ValueError, match="Q must hold real numbers"):
        as_tensor(np.array([True, False]), "Q")
    with pytest.raises(ValueError, match="Q must be a torch.Tensor"):
        as_tensor({"a": 1}, "Q")
    assert check_scalar(0, "lam") == 0.0
    with pytest.raises(ValueError, match="lam must be >= 0"):
        check_scalar(-0.1, "lam")
    with pytest.raises(ValueError, match="lam must be a real number"):
        check_scalar("1", "lam")
    with pytest.raises(ValueError, match="lam must be finite"):
        check_scalar(float("inf"), "lam")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        check_int(2.5, "n")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        check_int(True, "n")
