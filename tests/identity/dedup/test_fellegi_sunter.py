"""EM estimates of m and u, without labels."""

from __future__ import annotations

import numpy as np

from apps.identity.dedup.compare import Comparator
from apps.identity.dedup.fellegi_sunter import estimate, estimate_sessions, initial_model
from apps.identity.dedup.records import FieldSpec

SPECS = (
    FieldSpec("first_name", "firstName", Comparator.NAME),
    FieldSpec("last_name", "lastName", Comparator.NAME),
    FieldSpec("email", "email", Comparator.EMAIL),
    FieldSpec("birthday", "birthday", Comparator.DATE),
    FieldSpec("state", "address.state", Comparator.EXACT),
)
TRUE_M = [
    [0.05, 0.05, 0.15, 0.75],
    [0.03, 0.07, 0.10, 0.80],
    [0.30, 0.10, 0.10, 0.50],
    [0.05, 0.10, 0.85],
    [0.10, 0.90],
]
TRUE_U = [
    [0.80, 0.10, 0.06, 0.04],
    [0.85, 0.08, 0.04, 0.03],
    [0.97, 0.02, 0.007, 0.003],
    [0.90, 0.07, 0.03],
    [0.60, 0.40],
]


def _synthetic(n: int, lam: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_match = rng.random(n) < lam
    level = np.empty((n, len(SPECS)), dtype=np.int8)
    for f in range(len(SPECS)):
        m, u = TRUE_M[f], TRUE_U[f]
        level[is_match, f] = rng.choice(len(m), size=is_match.sum(), p=m)
        level[~is_match, f] = rng.choice(len(u), size=(~is_match).sum(), p=u)
    missing = rng.random(level.shape) < 0.1
    level[missing] = -1
    return level, is_match


def test_em_recovers_m_and_u_and_the_share_of_matches() -> None:
    # given: pairs drawn from known m and u, 8% matches, 10% of values missing
    level, _ = _synthetic(40_000, 0.08)

    # when
    model = estimate(level, initial_model(SPECS))

    # then
    assert model.em["converged"]
    assert abs(model.lam - 0.08) < 0.01
    for f, field in enumerate(model.fields):
        assert field.source == "em"
        assert np.abs(field.m - TRUE_M[f]).max() < 0.04, field.name
        assert np.abs(field.u - TRUE_U[f]).max() < 0.02, field.name
        assert field.m[-1] > field.u[-1]  # exact agreement is evidence for a match
        assert field.weights()[-1] > 0 > field.weights()[0]


def test_scores_separate_matches_from_non_matches() -> None:
    # given
    level, is_match = _synthetic(20_000, 0.1, seed=1)
    model = estimate(level, initial_model(SPECS))

    # when
    score = model.score(level)

    # then: the usual threshold region cleanly splits the two
    assert np.median(score[is_match]) > 5 > np.median(score[~is_match])
    assert ((score > 5) == is_match).mean() > 0.95


def test_sessions_mask_the_blocked_field() -> None:
    # given: pairs from a birthday block all agree on the birthday
    level, _ = _synthetic(20_000, 0.2, seed=2)
    level[:, 3] = 2

    # when
    model = estimate_sessions([("birthday", level, [3])], initial_model(SPECS))

    # then: the birthday keeps its default, the others are estimated
    assert model.fields[3].source == "default"
    assert [f.source for f in model.fields[:3]] == ["em", "em", "em"]
    assert np.abs(model.fields[1].m - TRUE_M[1]).max() < 0.05
    assert model.em["sessions"]["birthday"]["pairs"] == 20_000


def test_manual_parameters_stay_fixed() -> None:
    # given
    specs = (
        *SPECS[:4],
        FieldSpec("state", "address.state", Comparator.EXACT, m=(0.5, 0.5), u=(0.5, 0.5)),
    )
    level, _ = _synthetic(10_000, 0.1)

    # when
    model = estimate(level, initial_model(specs))

    # then
    assert model.fields[4].source == "manual"
    assert list(model.fields[4].m) == [0.5, 0.5]
    assert list(model.fields[4].weights()) == [0.0, 0.0]
