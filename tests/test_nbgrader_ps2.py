"""End to end: the real nbgrader command line grades ps2 (autoencoders) in a temporary course.

One autograde run grades every student below; the tests then read the gradebook, the
autograded notebooks, the feedback HTML and grades.csv (pipeline and assertions shared
with ps1: lecture_ae.grading.pipeline, tests/nbgrader_harness.py).
"""
from __future__ import annotations

import pytest

import hostile
from lecture_ae.grading.pipeline import chain, fill_from_source, replace_solution
from nbgrader_harness import (  # noqa: F401 (course_root, corpus, fingerprint: fixtures)
    assert_hostile_corpus,
    corpus,
    course_root,
    fingerprint,
    grade_with_corpus,
    assert_full_marks,
    assert_grades_csv,
    assert_loses_points,
    assert_reference_callers_score_zero,
    assert_release_hides,
    assert_release_matches,
    assert_release_scores_zero,
    assert_solution_full_marks,
    assert_validate,
    wrong_students,
)

A = "ps2_autoencoders"
POINTS = {"test_sparse_ae_loss": 2, "test_dead_unit_term": 3, "test_add_noise": 3, "test_ae_forward": 2,
          "test_sensitivity": 2}
SOLUTION = fill_from_source(A)
SPEC = hostile.spec(A)


def _student(**cells):
    """The solution, with the given solution cells (by grade id) replaced."""
    return chain(SOLUTION, *(replace_solution(gid, src) for gid, src in cells.items()))


_NOISE = (
    "def add_noise(X, kind, level, generator):\n"
    "    if kind == 'gaussian':\n"
    "        return {gaussian}\n"
    "    if kind == 'masking':\n"
    "{masking}\n"
    "    hit = torch.rand(X.shape, generator=generator, dtype=X.dtype) < level\n"
    "    salt = torch.rand(X.shape, generator=generator, dtype=X.dtype) < 0.5\n"
    "    return torch.where(hit, salt.to(X.dtype), X)"
)
_GAUSS = "X + level * torch.randn(X.shape, generator=generator, dtype=X.dtype)"
_MASK = ("        u = torch.rand(X.shape, generator=generator, dtype=X.dtype)\n"
         "        return torch.where(u < level, torch.zeros_like(X), X)")

# Three typical wrong implementations of every function: student wrong_k has mistake k in all four.
WRONG = {
    "sparse_ae_loss": [
        ("def sparse_ae_loss(X, X_hat, S, W, lam, eta):\n"
         "    return ((X - X_hat)**2).sum() + lam * S.abs().sum() + eta * (W**2).sum()",
         "likely mistake: the sum over the N samples is not divided by N"),
        ("def sparse_ae_loss(X, X_hat, S, W, lam, eta):\n"
         "    return (((X - S @ W.T)**2).sum(1) + lam * S.abs().sum(1)).mean() + eta * (W**2).sum()",
         "likely mistake: the reconstruction is recomputed as S W^T"),
        ("def sparse_ae_loss(X, X_hat, S, W, lam, eta):\n"
         "    return (((X - X_hat)**2).sum(1) + lam * S.sum(1)).mean() + eta * (W**2).sum()",
         "likely mistake: the absolute value is missing"),
    ],
    "dead_unit_term": [
        ("def dead_unit_term(Z, tau=0.1):\n"
         "    p = torch.sigmoid(torch.relu(Z) / tau).mean(0)\n"
         "    q = p / p.sum()\n"
         "    return -math.log(Z.shape[1]) - torch.log(q).mean()",
         "likely mistake: the rates are computed from S = max(0, Z)"),
        ("def dead_unit_term(Z, tau=0.1):\n"
         "    p = torch.sigmoid(Z / tau).mean(0)\n"
         "    q = p / p.sum()\n"
         "    return (q * torch.log(q * Z.shape[1])).sum()",
         "likely mistake: KL(q || u)"),
        ("def dead_unit_term(Z, tau=0.1):\n"
         "    p = torch.sigmoid(Z / tau).mean(0)\n"
         "    return -math.log(Z.shape[1]) - torch.log(p).mean()",
         "likely mistake: the rates p are not normalised"),
    ],
    "add_noise": [
        (_NOISE.format(gaussian=_GAUSS.replace("level *", "level**2 *"), masking=_MASK),
         "likely mistake: level is the standard deviation sigma"),
        (_NOISE.format(gaussian="X + level * torch.randn(X.shape, dtype=X.dtype)", masking=_MASK),
         "the generator you were given did not advance"),
        (_NOISE.format(gaussian=_GAUSS, masking="        X[torch.rand(X.shape, generator=generator, dtype=X.dtype)"
                       " < level] = 0\n        return X"),
         "changed its input X in place"),
    ],
    "ae_forward": [
        ("def ae_forward(X, V, c, W, b):\n    S = X @ V.T + c\n    return S @ W.T + b, S",
         "likely mistake: the ReLU is missing"),
        ("def ae_forward(X, V, c, W, b):\n    S = torch.relu(X @ V.T) + c\n    return S @ W.T + b, S",
         "likely mistake: the encoder bias c is added after the ReLU"),
        ("def ae_forward(X, V, c, W, b):\n    S = torch.relu(X @ V.T + c)\n    return S, S @ W.T + b",
         "likely mistake: the tuple is in the wrong order"),
    ],
    "sensitivity": [
        ("def sensitivity(V, c, X, T):\n"
         "    S, ST = torch.relu(X @ V.T + c), torch.relu(X @ T.T @ V.T + c)\n"
         "    return ((S - ST).norm(dim=1) / S.norm(dim=1)).mean()",
         "likely mistake: no baseline"),
        ("def sensitivity(V, c, X, T):\n"
         "    S = torch.relu(X @ V.T + c)\n"
         "    XT = X @ T.T\n"
         "    return ((S - S @ T.T).norm(dim=1) / S.norm(dim=1)).mean() / ((X - XT).norm(dim=1) / X.norm(dim=1)).mean()",
         "likely mistake: the transform is applied to the representation"),
        ("def sensitivity(V, c, X, T):\n"
         "    XT = X @ T.T\n"
         "    S, ST = torch.relu(X @ V.T + c), torch.relu(XT @ V.T + c)\n"
         "    return (S - ST).norm(dim=1).mean() / (X - XT).norm(dim=1).mean()",
         "likely mistake: the changes are not relative"),
    ],
}

# Correct noise drawn otherwise (bernoulli, salt before hit): full marks through the statistics; and a
# sensitivity written otherwise.
OTHER_DRAWS = _student(add_noise=(
    "def add_noise(X, kind, level, generator):\n"
    "    if kind == 'gaussian':\n"
    "        return X + torch.normal(0.0, level, X.shape, generator=generator, dtype=X.dtype).flip(0)\n"
    "    if kind == 'masking':\n"
    "        return X * torch.bernoulli(torch.full_like(X, 1 - level), generator=generator)\n"
    "    salt = torch.rand(X.shape, generator=generator, dtype=X.dtype) < 0.5\n"
    "    hit = torch.bernoulli(torch.full_like(X, level), generator=generator).bool()\n"
    "    return torch.where(hit, salt.to(X.dtype), X)"),
    # a correct sensitivity written otherwise (clamp for the ReLU, T applied to columns, norms by hand)
    sensitivity=(
    "def sensitivity(V, c, X, T):\n"
    "    f = lambda Z: (Z @ V.T + c).clamp(min=0)\n"
    "    rel = lambda A, B: ((A - B) ** 2).sum(1).sqrt() / (A ** 2).sum(1).sqrt()\n"
    "    XT = (T @ X.T).T\n"
    "    return rel(f(X), f(XT)).mean() / rel(X, XT).mean()"))
CHEATER = _student(
    sparse_ae_loss="from lecture_ae.models import sparse_ae_loss",
    dead_unit_term="import lecture_ae.models.autoencoders as M\n\ndef dead_unit_term(Z, tau=0.1):\n"
                   "    return M.dead_unit_term(Z, tau)",
    add_noise="def add_noise(X, kind, level, generator):\n    from lecture_ae.models import NoiseLayer\n"
              "    return NoiseLayer(kind, level, always=True)(X)",
    ae_forward="from lecture_ae.models import ReLUSparseAutoencoder\n\ndef ae_forward(X, V, c, W, b):\n"
               "    m = ReLUSparseAutoencoder(V.shape[1], V.shape[0], dtype=X.dtype)\n"
               "    m.load_state_dict({'V': V, 'c': c, 'W': W, 'b': b})\n    return m(X), m.encode(X)",
    sensitivity="from lecture_ae.tasks.representation import sensitivity as _s\n\ndef sensitivity(V, c, X, T):\n"
                "    return torch.tensor(_s(lambda Z: torch.relu(Z @ V.T + c), X, lambda Z: Z @ T.T).ratio)",
)


@pytest.fixture(scope="module")
def run(course_root, corpus, fingerprint):
    submissions = {"solution": SOLUTION, "release": None, "other_draws": OTHER_DRAWS, "cheater": CHEATER}
    submissions.update(wrong_students(_student, WRONG))
    return grade_with_corpus(A, submissions, course_root, corpus)


def test_exercises_are_what_generate_assignment_makes(run):
    assert_release_matches(run)


def test_release_hides_solutions_and_hidden_tests(run):
    assert_release_hides(run, "torch.log(q).mean()", "torch.relu(X @ V.T + c)")


def test_solution_scores_full_marks(run):
    assert sum(POINTS.values()) == 12
    assert_solution_full_marks(run, POINTS, {"plot_noise": 1, "answer_dead_units_denoising": 2})


def test_unmodified_release_scores_zero(run):
    assert_release_scores_zero(run, WRONG)


def test_validate_passes_the_source_and_invert_passes_the_release(run):
    assert_validate(run)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("function", list(WRONG))
def test_typical_mistakes_lose_points_with_a_message(run, function, k):
    _, phrase = WRONG[function][k]
    assert_loses_points(run, f"wrong_{k + 1}", f"test_{function}", phrase)


def test_noise_drawn_otherwise_scores_full_marks(run):
    assert_full_marks(run, "other_draws")


def test_calling_the_reference_scores_zero(run):
    assert_reference_callers_score_zero(run, WRONG)


def test_hostile_submissions_earn_nothing_and_see_no_hidden_test(run, corpus, fingerprint):
    assert_hostile_corpus(run, SPEC, corpus, fingerprint)


def test_grades_csv_has_every_student(run, corpus):
    assert_grades_csv(run, {**hostile.expected_scores(SPEC, corpus), **{"solution": 12, "other_draws": 12}})
