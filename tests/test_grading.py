"""The checking framework (lecture_ae.grading) and the ps1 checks, without nbgrader."""
from __future__ import annotations

import signal
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from lecture_ae.grading import (
    Case,
    CheckFailed,
    Mistake,
    ReferenceGuard,
    ReferenceUsedError,
    call_student,
    check_function,
    compare_scalars,
    compare_tensors,
    describe,
    tensor_close,
    time_limit,
)
from lecture_ae.grading import ps1
from lecture_ae.sparse import coding
from lecture_ae.sparse import ista as ref_ista_alias


# ------------------------------------------------------------- right implementations
def soft_threshold(x, lam):
    return torch.sign(x) * torch.clamp(x.abs() - lam, min=0)


def l1_objective(X, W, S, lam, eta):
    return (((X - S @ W.T) ** 2).sum(dim=1) + lam * S.abs().sum(dim=1)).mean() + eta * (W**2).sum()


def ista(X, W, lam, n_iter, step=None):
    t = 1.0 / (2 * torch.linalg.matrix_norm(W, ord=2) ** 2) if step is None else step
    S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)
    for _ in range(n_iter):
        S = soft_threshold(S - t * 2 * (S @ W.T - X) @ W, t * lam)
    return S


def update_dictionary(X, S, eta):
    N, h = S.shape
    return torch.linalg.solve(S.T @ S + N * eta * torch.eye(h, dtype=X.dtype), S.T @ X).T


def _ista_with(step_rule=None, threshold=None, grad=2.0, extra=0):
    def f(X, W, lam, n_iter, step=None):
        spec = float(torch.linalg.matrix_norm(W, ord=2)) ** 2
        t = (1.0 / (step_rule(W) if step_rule else 2 * spec)) if step is None else step
        S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)
        for _ in range(n_iter + extra):
            Z = S - t * grad * (S @ W.T - X) @ W
            tau = threshold(t, lam) if threshold else t * lam
            S = torch.sign(Z) * torch.clamp(Z.abs() - tau, min=0)
        return S

    return f


# --------------------------------------------------------------------- the ps1 checks
RIGHT = {
    ps1.check_soft_threshold: soft_threshold,
    ps1.check_l1_objective: l1_objective,
    ps1.check_ista: ista,
    ps1.check_update_dictionary: update_dictionary,
}


@pytest.mark.parametrize("check", list(RIGHT), ids=lambda c: c.__name__)
def test_right_implementations_pass_visible_and_hidden_checks(check, capsys):
    assert check(RIGHT[check]) is None  # a value shown by an autograder cell would be partial credit
    check(RIGHT[check], seeds=(5, 6), edge_cases=True)
    out = capsys.readouterr()
    assert "visible checks passed" in out.out and "hidden checks passed" in out.out
    assert out.err == ""  # nbgrader gives zero points to a test cell that writes to stderr


WRONG = [
    # (check, wrong implementation, phrase the message must contain)
    (ps1.check_soft_threshold, lambda x, lam: torch.clamp(x.abs() - lam, min=0), "the sign is lost"),
    (ps1.check_soft_threshold, lambda x, lam: torch.clamp(x - lam, min=0), "negative entries become 0"),
    (ps1.check_soft_threshold, lambda x, lam: torch.where(x.abs() > lam, x, 0 * x), "hard thresholding"),
    (ps1.check_soft_threshold, lambda x, lam: x - lam * torch.sign(x), "shrinks them past zero"),
    (ps1.check_soft_threshold, lambda x, lam: soft_threshold(x, lam / 2), "lam / 2"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: l1_objective(X, W, S, lam, eta) * X.shape[0]
     - (X.shape[0] - 1) * eta * (W**2).sum(), "not divided by N"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: (torch.linalg.norm(X - S @ W.T, dim=1)
     + lam * S.abs().sum(1)).mean() + eta * (W**2).sum(), "not squared"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: ((X - S @ W.T) ** 2).mean()
     + lam * S.abs().sum(1).mean() + eta * (W**2).sum(), "averaged over the d coordinates"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: l1_objective(X, W, S, lam, 0.0)
     + eta * (W**2).sum() / X.shape[0], "is divided by N;"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: l1_objective(X, W, S, lam, 0.0), "the eta term is missing"),
    (ps1.check_l1_objective, lambda X, W, S, lam, eta: ((X - S @ W.T) ** 2).sum(1) + lam * S.abs().sum(1),
     "should return a single number"),
    (ps1.check_ista, _ista_with(step_rule=lambda W: float((W**2).sum()) * 2), "Frobenius"),
    (ps1.check_ista, _ista_with(step_rule=lambda W: float(torch.linalg.matrix_norm(W, ord=2)) ** 2), "L = ||W||_2^2"),
    (ps1.check_ista, _ista_with(threshold=lambda t, lam: lam), "the threshold is lam;"),
    (ps1.check_ista, _ista_with(grad=1.0), "misses the factor 2"),
    (ps1.check_ista, _ista_with(extra=1), "one iteration too many"),
    (ps1.check_ista, _ista_with(extra=-1), "one iteration too few"),
    (ps1.check_update_dictionary, lambda X, S, eta: torch.linalg.solve(
        S.T @ S + eta * torch.eye(S.shape[1], dtype=X.dtype), S.T @ X).T, "the ridge term is eta I"),
    (ps1.check_update_dictionary, lambda X, S, eta: update_dictionary(X, S, eta).T, "you returned W^T"),
    (ps1.check_update_dictionary, lambda X, S, eta: torch.linalg.lstsq(S, X).solution.T, "eta is ignored"),
    (ps1.check_update_dictionary, lambda X, S, eta: (lambda W: W / W.norm(dim=0))(update_dictionary(X, S, eta)),
     "scaled to unit norm"),
]


@pytest.mark.parametrize("check, wrong, phrase", WRONG, ids=[f"{c.__name__}-{p[:24]}" for c, _, p in WRONG])
def test_typical_mistakes_fail_with_the_likely_mistake(check, wrong, phrase):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    msg = str(info.value)
    assert phrase in msg, msg
    assert "input:" in msg and "expected:" in msg and "got:" in msg


def test_an_ignored_step_argument_fails_the_visible_checks():
    def ignores_step(X, W, lam, n_iter, step=None):
        return ista(X, W, lam, n_iter)

    with pytest.raises(CheckFailed, match="the step argument is ignored"):
        ps1.check_ista(ignores_step)


def test_hidden_edge_cases_catch_what_the_visible_cases_miss():
    def unit_columns_only(X, W, lam, n_iter, step=None):  # L = 2 h, true only for orthonormal atoms
        t = 1.0 / (2 * W.shape[0]) if step is None else step
        S = torch.zeros(X.shape[0], W.shape[1], dtype=X.dtype)
        for _ in range(n_iter):
            S = soft_threshold(S - t * 2 * (S @ W.T - X) @ W, t * lam)
        return S

    with pytest.raises(CheckFailed):
        ps1.check_ista(unit_columns_only, seeds=(31,), edge_cases=True)


# --------------------------------------------------------------- robustness of a check
def test_reference_calls_score_zero_even_through_aliases_and_except():
    def alias(X, W, lam, n_iter, step=None):
        return ref_ista_alias(X, W, lam, n_iter=n_iter, step=step)  # bound at import time

    def swallowed(X, W, lam, n_iter, step=None):
        try:
            return coding.fista(X, W, lam, n_iter=n_iter, step=step)
        except Exception:
            return ista(X, W, lam, n_iter, step)

    def helper_of_the_checks(X, S, eta):
        return ps1._closed_form(X, S, X.shape[0] * eta)

    for check, fn in [(ps1.check_ista, alias), (ps1.check_ista, swallowed),
                      (ps1.check_update_dictionary, helper_of_the_checks)]:
        with pytest.raises(CheckFailed, match="calls the reference implementation") as info:
            check(fn)
        assert "lecture_ae." in str(info.value)
    # the reference works again afterwards
    X, W = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(ref_ista_alias(X, W, 0.1, n_iter=5), ista(X, W, 0.1, 5))


def test_guard_blocks_and_restores():
    x = torch.tensor([1.0, -2.0])
    with ReferenceGuard() as guard:
        with pytest.raises(ReferenceUsedError):
            coding.soft_threshold(x, 0.5)
        assert soft_threshold(x, 0.5).tolist() == [0.5, -1.5]  # the student's own code runs
        from lecture_ae.runtime import get_device  # allowed utilities keep working
        assert get_device("cpu").type == "cpu"
    assert guard.calls == ["lecture_ae.sparse.coding.soft_threshold"]
    assert coding.soft_threshold(x, 0.5).tolist() == [0.5, -1.5]


def test_infinite_loop_is_stopped_by_the_time_limit():
    def forever(x, lam):
        while True:
            try:
                pass
            except Exception:  # a CheckTimeout is not an Exception: this cannot swallow it
                pass

    t0 = time.perf_counter()
    with pytest.raises(CheckFailed, match="did not finish within the time limit of 0.3 s"):
        check_function(forever, coding.soft_threshold, [Case((torch.ones(3), 0.1))], limit=0.3)
    assert time.perf_counter() - t0 < 5


def test_time_limit_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGALRM)
    with time_limit(5):
        pass
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_exceptions_mutation_wrong_types_and_nan_are_reported():
    ref = coding.soft_threshold
    case = [Case((torch.tensor([1.0, -2.0, 0.1], dtype=torch.float64), 0.5))]

    def raises(x, lam):
        return x + undefined  # noqa: F821

    def not_implemented(x, lam):
        raise NotImplementedError()

    def mutates(x, lam):
        x.mul_(2)
        return soft_threshold(x / 2, lam)

    def nan(x, lam):
        return soft_threshold(x, lam) / (x - x)

    expectations = [
        (raises, "raised NameError"),
        (not_implemented, "is not implemented yet"),
        (mutates, "changed its input x in place"),
        (lambda x, lam: None, "is the `return` statement missing"),
        (lambda x, lam: soft_threshold(x, lam).tolist(), "returned a list"),
        (lambda x, lam: soft_threshold(x, lam)[None], "shape (1, 3) instead of (3,)"),
        (nan, "NaN"),
        (lambda x, lam: -soft_threshold(x, lam), "opposite sign"),
        (lambda x, lam: 3 * soft_threshold(x, lam), "times 3"),
        ("not a function", "is not a function"),
    ]
    for fn, phrase in expectations:
        with pytest.raises(CheckFailed) as info:
            check_function(fn, ref, case, name="soft_threshold")
        assert phrase in str(info.value), (phrase, str(info.value))
    assert case[0].args[0].tolist() == [1.0, -2.0, 0.1]  # the check's own inputs were not altered


def test_numpy_results_are_accepted_and_output_is_captured(capsys):
    def chatty(x, lam):
        print("debugging output")
        print("to stderr", file=sys.stderr)
        warnings.warn("a warning from the student's code")
        return soft_threshold(x, lam).numpy()

    check_function(chatty, coding.soft_threshold, [Case((torch.randn(4, dtype=torch.float64), 0.3))])
    out = capsys.readouterr()
    assert "debugging output" not in out.out and out.err == ""
    assert "all 1 checks passed" in out.out


def test_call_student_outcome():
    out = call_student(lambda a, b: a + b, (torch.ones(2), torch.ones(2)), names=["a", "b"])
    assert out.error is None and out.value.tolist() == [2.0, 2.0] and out.mutated == []
    out = call_student(lambda a: a.add_(1), (torch.ones(2),), names=["a"], may_mutate=("a",))
    assert out.mutated == []
    out = call_student(lambda a: a.add_(1), (torch.ones(2),), names=["a"])
    assert out.mutated == ["a"]


def test_compare_helpers():
    e = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    assert compare_tensors(e.clone(), e) is None
    assert compare_tensors(np.arange(6.0).reshape(2, 3), e) is None
    assert "(the transpose?)" in compare_tensors(e.T, e)
    assert "a sum or mean over one axis too many" in compare_tensors(e.sum(0), e)
    bad = e.clone()
    bad[1, 2] = 7.5
    msg = compare_tensors(bad, e)
    assert "1 of 6 entries differ" in msg and "[1, 2]" in msg and "expected 5" in msg and "got 7.5" in msg
    assert compare_scalars(torch.tensor(2.0), 2.0) is None
    assert compare_scalars(np.float64(2.0), 2.0) is None
    assert "ratio got/expected = 2" in compare_scalars(4.0, 2.0)
    assert "single number" in compare_scalars(torch.ones(3), 2.0)
    assert "tensor of shape (2, 3), float64" in describe(e)
    assert describe(0.5) == "0.5"


def test_mistakes_that_fail_or_return_none_are_skipped():
    mistakes = [Mistake("broken", lambda x, lam: 1 / 0), Mistake("not applicable", lambda x, lam: None),
                Mistake("doubled", lambda x, lam: 2 * coding.soft_threshold(x, lam))]
    with pytest.raises(CheckFailed, match="likely mistake: doubled"):
        check_function(lambda x, lam: 2 * soft_threshold(x, lam), coding.soft_threshold,
                       [Case((torch.tensor([3.0, -1.0]), 0.5))], mistakes=mistakes, compare=tensor_close())


def test_guard_covers_decorated_functions_methods_and_aliases(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_reference"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "impl.py").write_text(
        "import functools, torch\n"
        "def plain(x):\n    return x + 1\n"
        "@torch.no_grad()\ndef decorated(x):\n    return x + 2\n"
        "class Model:\n"
        "    def forward(self, x):\n        return x + 3\n"
        "    @staticmethod\n    def helper(x):\n        return x + 4\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from fake_reference import impl
    from fake_reference.impl import decorated as alias

    model = impl.Model()
    with ReferenceGuard(packages=("fake_reference",), allow=()) as guard:
        for call in (lambda: impl.plain(1), lambda: alias(torch.ones(1)), lambda: model.forward(1),
                     lambda: impl.Model.helper(1)):
            with pytest.raises(ReferenceUsedError):
                call()
    assert guard.calls == ["fake_reference.impl.plain", "fake_reference.impl.decorated",
                           "fake_reference.impl.Model.forward", "fake_reference.impl.Model.helper"]
    assert impl.plain(1) == 2 and float(alias(torch.ones(1))) == 3.0 and model.forward(1) == 4
    assert impl.Model.helper(1) == 5 and impl.decorated is alias
    with ReferenceGuard(packages=("fake_reference",), allow=("fake_reference.impl.Model",)):
        assert model.forward(1) == 4  # an allowed class stays usable


def test_tuple_comparator_names_the_element_that_differs():
    from lecture_ae.grading import tuple_close

    def ref(x):
        return x * 2, float(x.sum())

    case = [Case((torch.tensor([1.0, 2.0], dtype=torch.float64),))]
    check_function(lambda x: (2 * x, float(x.sum())), ref, case, compare=tuple_close("doubled", "total"))
    with pytest.raises(CheckFailed, match=r"total \(element 2 of the tuple\): expected 3, got 4"):
        check_function(lambda x: (2 * x, float(x.sum()) + 1), ref, case, compare=tuple_close("doubled", "total"))
    with pytest.raises(CheckFailed, match="it should return a tuple of 2 values"):
        check_function(lambda x: 2 * x, ref, case, compare=tuple_close("doubled", "total"))


def test_warnings_of_the_reference_do_not_reach_stderr(capsys):
    def noisy_reference(x, lam):
        warnings.warn("reference warning")
        print("reference chatter", file=sys.stderr)
        return coding.soft_threshold(x, lam)

    check_function(soft_threshold, noisy_reference, [Case((torch.randn(5, dtype=torch.float64), 0.2))],
                   mistakes=[Mistake("noisy", noisy_reference)])
    assert capsys.readouterr().err == ""
