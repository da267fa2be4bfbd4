"""The veto weight is fitted once, by the full run, and reused by incremental ones."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from apps.identity.dedup.fellegi_sunter import Model, initial_model
from apps.identity.dedup.records import BUILTIN_FIELDS, build_records
from apps.identity.dedup.services.candidates import (
    VETO_DEFAULT_WEIGHT,
    candidates_build,
    probability_set,
)
from apps.identity.dedup.services.decisions import FATHER_AND_SON, review_select
from apps.identity.dedup.services.scoring import with_prior

DOOR = {"street": "5 Pacocha Terrace", "postalCode": "5263", "city": "Opmans Downs"}


def twins() -> tuple[object, np.ndarray, np.ndarray]:
    # Two people of one surname and door, with first names, emails and phones of
    # their own: a veto holds the pair.
    people = [
        {"firstName": "Aidan", "lastName": "Dzienniak", "email": "aidan@example.com",
         "phone": "+15550100001", "birthday": "1990-01-02", "address": DOOR},
        {"firstName": "Maria", "lastName": "Dzienniak", "email": "maria@example.com",
         "phone": "+14155559876", "birthday": "1987-06-21", "address": DOOR},
    ]  # fmt: skip
    records = build_records(
        [(uuid.UUID(int=i + 1), p) for i, p in enumerate(people)], BUILTIN_FIELDS
    )
    return records, np.array([0]), np.array([1])


def test_an_incremental_run_reads_the_veto_weight_the_full_run_saved() -> None:
    # given: a full run's model, fitted on few pairs (the default veto weight)
    records, left, right = twins()
    model = with_prior(initial_model(BUILTIN_FIELDS), candidates=10_000, records=10_000)
    scores = np.array([25.0])
    full = candidates_build(None, records, left, right, scores, model, pending={})
    assert full[0].evidence["vetoes"]
    assert model.em["veto_weight"] == VETO_DEFAULT_WEIGHT
    saved = model.as_dict()
    saved["em"]["veto_weight"] = -3.5  # as if EM had fitted it on the full run

    # when: an incremental run reloads the model and scores the pair again
    reloaded = Model.from_dict(saved, BUILTIN_FIELDS)
    again = candidates_build(None, records, left, right, scores, reloaded, pending={})

    # then: the saved weight is used, not fitted again on the few pairs at hand
    assert reloaded.em["veto_weight"] == -3.5
    assert again[0].probability == pytest.approx(float(reloaded.probability(scores - 3.5)[0]))


def test_a_pair_automatic_select_holds_back_gets_the_veto_in_its_probability_and_is_queued() -> (
    None
):
    # given: a pair scored without a veto, then held back by automatic_select
    records, left, right = twins()
    model = with_prior(initial_model(BUILTIN_FIELDS), candidates=1_000_000, records=1_000_000)
    model.em["veto_weight"] = -20.0
    [candidate] = candidates_build(None, records, left, right, np.array([40.0]), model, pending={})
    candidate.evidence["vetoes"] = [FATHER_AND_SON]

    # when
    probability_set(model, [candidate])

    # then: its probability counts the veto, and however low it is queued (the veto
    # held back a pair above the auto-merge bar's score)
    assert candidate.probability == pytest.approx(float(model.probability(np.array([20.0]))[0]))
    assert candidate.probability < 0.5
    assert model.score_at(0.99) <= 40.0
    queued = review_select([candidate], model, auto_probability=0.99, review_probability=0.5)
    assert queued == [candidate]
