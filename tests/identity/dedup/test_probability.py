"""The match probability: Fellegi-Sunter's posterior with the prior over all pairs,
calibrated on labelled pairs made here (not by either benchmark generator)."""

from __future__ import annotations

import random
import uuid
from typing import Any

import numpy as np
from faker import Faker

from apps.identity.dedup.blocking import block_keys, candidate_pairs
from apps.identity.dedup.compare import compare_pairs
from apps.identity.dedup.fellegi_sunter import PROBABILITY_MAX, PROBABILITY_MIN, initial_model
from apps.identity.dedup.frequency import frequencies_count
from apps.identity.dedup.records import BUILTIN_FIELDS, build_records
from apps.identity.dedup.services.scoring import estimate_model, pairs_score, with_prior


def _slip(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    return rng.choice((text[:i] + text[i + 1 :], text[:i] + text[i] + text[i:]))


def _labelled(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """People (names, birthday, address; a third with an email), a duplicate for
    a quarter of them with one or two errors each, and for one in twenty another
    person of their surname at their door."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    entity: list[int] = []
    for person in range(n):
        traits: dict[str, Any] = {
            "firstName": fake.first_name(),
            "lastName": fake.last_name(),
            "birthday": fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat(),
            "address": {"street": fake.street_address(), "city": fake.city(),
                        "postalCode": fake.postcode(), "state": fake.state_abbr()},
        }  # fmt: skip
        if rng.random() < 0.3:
            traits["email"] = f"p{person}@example.com"
        people.append(traits)
        entity.append(person)
        if rng.random() < 0.05:  # someone else at the same door, of the same surname
            other = {**traits, "firstName": fake.first_name()}
            other["birthday"] = fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat()
            people.append(other)
            entity.append(n + person)
        if rng.random() < 0.25:
            copy = {**traits, "address": dict(traits["address"])}
            for _ in range(rng.randint(1, 2)):
                error = rng.randrange(4)
                if error == 0:
                    copy["firstName"] = _slip(rng, copy["firstName"])
                elif error == 1:
                    copy["lastName"] = _slip(rng, copy["lastName"])
                elif error == 2:
                    copy.pop("birthday", None)
                else:
                    copy["address"]["street"] = fake.street_address()
            people.append(copy)
            entity.append(person)
    return people, entity


def test_probabilities_are_calibrated_on_labelled_pairs() -> None:
    # given: labelled records, matched as a full run does (blocking, comparison,
    # EM, frequencies)
    people, entity = _labelled(4000, seed=5)
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)
    left, right, stats = candidate_pairs(block_keys(records), len(records), max_block_size=200)
    comparison = compare_pairs(records, left, right)
    model = estimate_model(
        records, comparison.level, left * len(records) + right, stats, initial_model(BUILTIN_FIELDS)
    )
    frequencies = frequencies_count(records, ["first_name", "last_name"])
    scores, _ = pairs_score(
        records, left, right, comparison.level, comparison.swapped, model, frequencies
    )

    # when
    p = model.probability(scores)

    # then: far better than knowing only the share of matches (Brier score), and
    # the pairs called near-certain either way are so (binned reliability). (The
    # middle is not: people of one surname at one door get 0.5-0.99 and are all two
    # people, since the model counts surname and door as independent evidence;
    # bench/README.md gives the bins on both generators.)
    truth = (np.array(entity)[left] == np.array(entity)[right]).astype(float)
    brier = float(np.mean((p - truth) ** 2))
    baseline = float(np.mean((truth.mean() - truth) ** 2))
    assert brier < baseline / 5
    sure, unlikely = p >= 0.99, p < 0.01
    assert sure.sum() > 500 and truth[sure].mean() >= 0.97
    assert unlikely.sum() > 500 and truth[unlikely].mean() <= 0.03
    assert p.min() >= PROBABILITY_MIN and p.max() <= PROBABILITY_MAX


def test_the_prior_is_the_share_of_matches_among_all_pairs() -> None:
    # given: half of 10,000 candidate pairs among 1,000 records are matches
    model = initial_model(BUILTIN_FIELDS)
    model.lam = 0.5

    # when
    result = with_prior(model, candidates=10_000, records=1_000)

    # then: 5,000 matches among 499,500 pairs
    assert abs(result.lam - 5_000 / 499_500) < 1e-12
    assert result.em["lambda_candidates"] == 0.5
    # a score of 0 is then the prior itself, and the weights move it
    assert abs(float(result.probability(np.array([0.0]))[0]) - result.lam) < 1e-6
    high = float(result.probability(np.array([40.0]))[0])
    assert high == PROBABILITY_MAX
