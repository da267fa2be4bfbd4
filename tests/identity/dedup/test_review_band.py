"""Both decisions are bars on one calibrated probability: the automatic merges at
the auto-merge probability, the review queue between it and the review one."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from apps.identity.dedup.fellegi_sunter import Model, initial_model
from apps.identity.dedup.models import DedupConfig, DuplicateCandidate
from apps.identity.dedup.records import BUILTIN_FIELDS
from apps.identity.dedup.services.candidates import probability_set
from apps.identity.dedup.services.decisions import automatic_select, review_select
from apps.identity.dedup.services.scoring import with_prior

AUTO, REVIEW = 0.99, 0.5


def pair(score: float, *vetoes: str, n: int = 0) -> DuplicateCandidate:
    return DuplicateCandidate(
        profile_a_id=uuid.UUID(int=2 * n + 1), profile_b_id=uuid.UUID(int=2 * n + 2),
        score=score, evidence={"fields": {}, "vetoes": list(vetoes)},
    )  # fmt: skip


def model_of(records: int, *, share: float = 0.1, candidates_per_record: int = 10) -> Model:
    """A model whose EM found ``share`` of the candidates to be matches."""
    model = initial_model(BUILTIN_FIELDS)
    model.lam = share
    return with_prior(model, candidates=records * candidates_per_record, records=records)


def test_the_defaults_are_probabilities_with_a_meaning() -> None:
    assert DedupConfig._meta.get_field("auto_merge_probability").default == AUTO
    assert DedupConfig._meta.get_field("review_probability").default == REVIEW


@pytest.mark.parametrize("records", [10_000, 100_000, 1_000_000, 10_000_000])
def test_each_bar_is_the_probability_whatever_the_number_of_profiles(records: int) -> None:
    # given: pairs scoring around both bars' scores for this many profiles
    model = model_of(records)
    auto_score, review_score = model.score_at(AUTO), model.score_at(REVIEW)
    scores = [review_score - 0.5, review_score + 0.01, auto_score - 0.01, auto_score + 0.01]
    pairs = [pair(s, n=k) for k, s in enumerate(scores)]
    probability_set(model, pairs)

    # when
    auto = automatic_select(list(pairs), AUTO)
    queued = [c for c in review_select(pairs, model, auto_probability=AUTO,
                                       review_probability=REVIEW) if c not in auto]  # fmt: skip

    # then: what merges is at least 0.99 likely one person, what waits at least
    # 0.5 and less than 0.99, at any n: no pair merges on a score whose probability
    # fell with n, and none the review bar admits is left out
    assert auto == [pairs[3]]
    assert queued == [pairs[1], pairs[2]]
    assert pairs[3].probability >= AUTO > pairs[2].probability >= REVIEW > pairs[0].probability


def test_one_score_is_less_probable_among_more_profiles() -> None:
    # given: one share of matches among the candidates, 10,000 and 1,000,000 profiles
    small, large = model_of(10_000), model_of(1_000_000)

    # when
    p_small = small.probability(np.array([20.0]))[0]
    p_large = large.probability(np.array([20.0]))[0]

    # then: chance agreements grow as n², duplicates as n: one score says less, and
    # the bars ask for more (log2 of 100 more bits)
    assert p_large < p_small
    assert large.score_at(AUTO) - small.score_at(AUTO) == pytest.approx(np.log2(100), abs=0.01)


def test_score_at_inverts_the_probability() -> None:
    model = model_of(100_000)
    for p in (0.01, 0.5, 0.9, 0.99):
        assert model.probability(np.array([model.score_at(p)]))[0] == pytest.approx(p)


def test_a_veto_held_back_from_an_automatic_merge_is_queued_whatever_its_probability() -> None:
    # given: vetoed pairs above and below the auto-merge bar's score, one with two
    # vetoes
    model = model_of(100_000)
    model.em["veto_weight"] = -30.0
    auto_score = model.score_at(AUTO)
    held = pair(auto_score + 5, "a veto", n=0)
    not_held = pair(auto_score - 1, "a veto", n=1)
    two = pair(auto_score + 5, "a veto", "another", n=2)
    probability_set(model, [held, not_held, two])

    # when
    queued = review_select(
        [held, not_held, two], model, auto_probability=AUTO, review_probability=REVIEW
    )

    # then: the veto weight takes its probability under the review bar, yet a
    # human decides what a veto held back; what it did not hold back is not queued
    assert held.probability < REVIEW
    assert queued == [held]
    assert automatic_select([held, not_held, two], AUTO) == []


def test_a_saved_model_keeps_its_prior_among_millions_of_profiles() -> None:
    # given: the model of a full run over 3,000,000 profiles (a prior ~3e-7)
    model = model_of(3_000_000, share=0.1, candidates_per_record=1)
    scores = np.array([22.0, 25.0])

    # when: an incremental run reloads it
    reloaded = Model.from_dict(model.as_dict(), BUILTIN_FIELDS)

    # then: one probability for one pair, and one bar, in both runs
    assert reloaded.lam == model.lam
    assert reloaded.probability(scores).tolist() == model.probability(scores).tolist()
    assert reloaded.score_at(AUTO) == model.score_at(AUTO)


@pytest.mark.parametrize(
    ("auto", "review", "field"),
    [
        (0.9995, 0.5, "auto_merge_probability"),  # above what the model states
        (0.001, 0.001, "auto_merge_probability"),
        (0.99, 0.995, "review_probability"),  # above the auto-merge bar
        (0.99, 0.0, "review_probability"),
    ],
)
def test_bars_outside_what_the_probability_can_say_are_refused(
    auto: float, review: float, field: str
) -> None:
    config = DedupConfig(auto_merge_probability=auto, review_probability=review)
    with pytest.raises(ValidationError) as error:
        config.clean()
    assert list(error.value.message_dict) == [field]


def test_the_default_bars_are_valid() -> None:
    DedupConfig().clean()
