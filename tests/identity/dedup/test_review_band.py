"""The review queue is a band of the calibrated probability, not of the score."""

from __future__ import annotations

import uuid

import numpy as np

from apps.identity.dedup.fellegi_sunter import Model, initial_model
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
    # given: a model whose share of matches among the candidates is 0.2 (a prior
    # of -2 bits: a score of 2 is even odds)
    model = initial_model(BUILTIN_FIELDS)
    model.em = {"lambda_candidates": 0.2}
    likely = pair(15.0, 0.01)
    unlikely = pair(1.0, 0.01)
    vetoed_high = pair(25.0, 0.7, "a veto")
    vetoed_high_unlikely = pair(25.0, 0.001, "a veto")
    vetoed_low = pair(15.0, 0.8, "a veto")
    two_vetoes = pair(25.0, 0.9, "a veto", "another")

    # when
    queued = review_select(
        [likely, unlikely, vetoed_high, vetoed_high_unlikely, vetoed_low, two_vetoes],
        20.0,
        model,
    )

    # then: the probability among the candidates decides, not the one shown; a
    # pair a veto held back from an automatic merge is queued whatever its odds
    assert REVIEW_MIN_PROBABILITY == 0.5
    assert queued == [likely, vetoed_high, vetoed_high_unlikely]


def test_pairs_just_under_the_auto_threshold_are_queued_among_a_million_profiles() -> None:
    # given: one share of matches among the candidates (0.1), for 10,000 and for
    # 1,000,000 profiles (candidates growing as n); pairs between the review
    # threshold (12) and the auto-merge one (20)
    model = initial_model(BUILTIN_FIELDS)
    model.lam = 0.1
    small = with_prior(model, candidates=10_000, records=10_000)
    large = with_prior(model, candidates=1_000_000, records=1_000_000)
    scores = [12.0, 16.0, 19.9]
    pairs = [pair(s, float(large.probability(np.array([s]))[0])) for s in scores]

    # when
    queued_small = review_select(pairs, 20.0, small)
    queued_large = review_select(pairs, 20.0, large)

    # then: the probability shown falls as 1/n (below one half at a million
    # profiles), but the queue does not depend on n: every pair is still queued
    assert max(p.probability for p in pairs) < REVIEW_MIN_PROBABILITY
    assert queued_small == queued_large == pairs


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


def test_a_saved_model_keeps_its_prior_among_millions_of_profiles() -> None:
    # given: the model of a full run over 3,000,000 profiles (a prior ~3e-7)
    model = with_prior(initial_model(BUILTIN_FIELDS), candidates=3_000_000, records=3_000_000)
    model.lam = 0.1 * 3_000_000 / (3_000_000 * 2_999_999 / 2)
    scores = np.array([22.0, 25.0])

    # when: an incremental run reloads it
    reloaded = Model.from_dict(model.as_dict(), BUILTIN_FIELDS)

    # then: one probability for one pair in both runs
    assert reloaded.lam == model.lam
    assert reloaded.probability(scores).tolist() == model.probability(scores).tolist()
    assert reloaded.candidate_probability(scores).tolist() == (
        model.candidate_probability(scores).tolist()
    )
