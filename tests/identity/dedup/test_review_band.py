"""The review queue is a band of the calibrated probability, not of the score."""

from __future__ import annotations

import uuid

import numpy as np

from apps.identity.dedup.fellegi_sunter import initial_model
from apps.identity.dedup.models import DuplicateCandidate
from apps.identity.dedup.records import BUILTIN_FIELDS
from apps.identity.dedup.services.decisions import REVIEW_MIN_PROBABILITY, review_select
from apps.identity.dedup.services.scoring import with_prior

A, B, C, D = (uuid.UUID(int=i) for i in range(1, 5))


def pair(score: float, probability: float, *vetoes: str) -> DuplicateCandidate:
    return DuplicateCandidate(
        profile_a_id=A, profile_b_id=B, score=score, probability=probability,
        evidence={"fields": {}, "vetoes": list(vetoes)},
    )  # fmt: skip


def test_only_pairs_at_least_as_likely_one_person_as_two_are_queued() -> None:
    # given
    likely = pair(15.0, 0.62)
    unlikely = pair(15.0, 0.31)
    vetoed_high = pair(25.0, 0.7, "a veto")
    vetoed_high_unlikely = pair(25.0, 0.2, "a veto")
    vetoed_low = pair(15.0, 0.8, "a veto")
    two_vetoes = pair(25.0, 0.9, "a veto", "another")

    # when
    queued = review_select(
        [likely, unlikely, vetoed_high, vetoed_high_unlikely, vetoed_low, two_vetoes], 20.0
    )

    # then
    assert REVIEW_MIN_PROBABILITY == 0.5
    assert queued == [likely, vetoed_high]


def test_one_score_is_less_probable_among_more_profiles() -> None:
    # given: one model and the same share of matches among the candidates, for
    # 10,000 and for 100,000 profiles (ten times the candidates)
    model = initial_model(BUILTIN_FIELDS)
    model.lam = 0.1
    small = with_prior(model, candidates=10_000, records=10_000)
    large = with_prior(model, candidates=100_000, records=100_000)
    scores = np.array([10.0, 15.0, 20.0])

    # when
    p_small, p_large = small.probability(scores), large.probability(scores)

    # then: the same score is a smaller probability among more profiles (more
    # chance meetings), so a band of the probability does not widen with n
    assert (p_large < p_small).all()
    assert p_small[2] >= REVIEW_MIN_PROBABILITY > p_large[1]
