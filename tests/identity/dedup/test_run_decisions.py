"""A full dedup run through the database decides what the model decides in memory:
the plumbing around the model (loading traits, marking profiles that absorbed
others, the blocking index, candidate rows, the bulk merges) changes no decision.
And building the records normalizes each value as its normalizer does, also when
values repeat (the records memoize them)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.events.models import Event
from apps.identity.dedup.blocking import block_keys, candidate_pairs
from apps.identity.dedup.compare import LEVELS, compare_pairs
from apps.identity.dedup.fellegi_sunter import initial_model
from apps.identity.dedup.frequency import frequencies_count
from apps.identity.dedup.models import DedupBlockKey, DedupConfig, DuplicateCandidate
from apps.identity.dedup.records import BUILTIN_FIELDS, build_records, normalizer
from apps.identity.dedup.services import dedup_run
from apps.identity.dedup.services.candidates import (
    _Evidence,
    candidates_build,
    probability_set,
)
from apps.identity.dedup.services.decisions import automatic_select, review_select
from apps.identity.dedup.services.run import _profiles_with_traits, _traits_rows
from apps.identity.dedup.services.scoring import (
    EM_MIN_PAIRS,
    compare_all,
    estimate_model,
    pairs_score,
    review_order,
    vetoes,
)
from apps.identity.models import Identifier, Profile
from apps.segments.models import ProfileFeatures

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _slip(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    return rng.choice((text[:i] + text[i + 1 :], text[:i] + text[i] + text[i:]))


def _people(n: int, seed: int) -> list[dict[str, Any]]:
    """People with names, birthday, address (some with an email); a third with a
    duplicate carrying one or two errors; some with a housemate of their surname."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
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
        if rng.random() < 0.08:
            people.append({**traits, "firstName": fake.first_name(), "email": None})
        if rng.random() < 0.35:
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
                    copy["address"]["city"] = fake.city()
            people.append(copy)
    return [{k: v for k, v in p.items() if v is not None} for p in people]


Pair = tuple[uuid.UUID, uuid.UUID]


def _in_memory(
    rows: list[tuple[uuid.UUID, dict[str, Any]]], merged: set[uuid.UUID]
) -> tuple[list[Pair], set[Pair], dict[Pair, tuple[float, dict[str, Any]]]]:
    """The model's decisions without the database (as bench/dedup_ceiling.py takes
    them): the pairs merged automatically, the pairs queued for review, and each
    candidate's score and evidence."""

    def default(name: str) -> Any:
        return DedupConfig._meta.get_field(name).default

    records = build_records(rows, BUILTIN_FIELDS)
    records.merged = np.array([pid in merged for pid in records.ids])
    keys = block_keys(records)
    left, right, stats = candidate_pairs(
        keys, len(records), max_block_size=default("max_block_size")
    )
    level, swapped = compare_all(records, left, right, lambda *_: None)
    model = initial_model(BUILTIN_FIELDS)
    assert len(level) >= EM_MIN_PAIRS  # the run estimates the weights too
    model = estimate_model(records, level, left * len(records) + right, stats, model)
    adjusted = [s.name for s in BUILTIN_FIELDS if s.frequency_adjusted]
    frequencies = frequencies_count(records, adjusted)
    scores, adjustments = pairs_score(records, left, right, level, swapped, model, frequencies)
    auto_probability = default("auto_merge_probability")
    review_probability = default("review_probability")
    order = review_order(scores, model.score_at(review_probability))
    candidates = candidates_build(
        None, records, left[order], right[order], scores[order], model, adjustments[order],
        pending={},
    )  # fmt: skip
    auto = automatic_select(candidates, auto_probability)
    automatic = {id(c) for c in auto}
    probability_set(model, candidates)
    queue = review_select(
        candidates, model, auto_probability=auto_probability, review_probability=review_probability
    )
    return (
        [(c.profile_a_id, c.profile_b_id) for c in auto],
        {(c.profile_a_id, c.profile_b_id) for c in queue if id(c) not in automatic},
        {(c.profile_a_id, c.profile_b_id): (c.score, c.evidence) for c in candidates},
    )


def _partition(ids: list[uuid.UUID], joins: list[tuple[uuid.UUID, uuid.UUID]]) -> set[frozenset]:
    parent = {pid: pid for pid in ids}

    def find(x: uuid.UUID) -> uuid.UUID:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in joins:
        parent[find(a)] = find(b)
    groups: dict[uuid.UUID, set[uuid.UUID]] = {}
    for pid in ids:
        groups.setdefault(find(pid), set()).add(pid)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@pytest.mark.django_db
def test_a_full_run_decides_what_the_model_decides_in_memory() -> None:
    # given profiles of generated people, and a few that absorbed another profile
    # before the run (their traits mix two records: the model reads that)
    people = _people(2700, seed=11)
    profiles = [
        Profile(traits=traits, first_seen=T0 + timedelta(seconds=i), last_seen=T0)
        for i, traits in enumerate(people)
    ]
    Profile.objects.bulk_create(profiles, batch_size=1000)
    absorbed = [Profile(traits={"firstName": "Old"}, merged_into=p) for p in profiles[::97]]
    Profile.objects.bulk_create(absorbed)
    # The records in the order the run reads them: EM draws its random pairs (for
    # u) by row, so the order is part of the model's input.
    rows = list(_traits_rows(_profiles_with_traits()))
    assert dict(rows) == {p.id: p.traits for p in profiles}
    auto, queued, scored = _in_memory(rows, {p.id for p in profiles[::97]})
    assert len(auto) > 50 and queued  # the run has real work to do

    # when the run decides through the database
    run = dedup_run(full=True)

    # then the same profiles end up together
    assert run is not None and run.status == "succeeded"
    ids = [p.id for p in profiles]
    live = dict(Profile.objects.values_list("id", "merged_into_id"))

    def root(pid: uuid.UUID) -> uuid.UUID:
        while live[pid] is not None:
            pid = live[pid]
        return pid

    together = _partition(ids, [(pid, root(pid)) for pid in ids if root(pid) in set(ids)])
    assert together == _partition(ids, auto)
    # and the queue holds the model's queued pairs whose two profiles are still live
    pending = set(
        DuplicateCandidate.objects.filter(status="pending").values_list(
            "profile_a_id", "profile_b_id"
        )
    )
    still_live = {(a, b) for a, b in queued if live[a] is None and live[b] is None}
    assert pending == still_live
    # and every stored pair, merged or queued, has the model's score and evidence
    stored = DuplicateCandidate.objects.values_list(
        "profile_a_id", "profile_b_id", "score", "evidence"
    )
    assert len(stored) > len(pending)
    for a, b, score, evidence in stored:
        assert (score, evidence) == scored[(a, b)]


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.sampled_from(["Ann", "ann ", "ANN", "Zoë", "1", "1.0", "True", "", "+1 201 555 0147"]),
    st.text(max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([s.trait for s in BUILTIN_FIELDS]), values)))
def test_records_normalize_each_value_as_its_normalizer_does(traits: list[dict[str, Any]]) -> None:
    # given trait rows whose values repeat, also as equal values of other types
    # (1, 1.0 and True)
    rows = [(uuid.UUID(int=i), t) for i, t in enumerate(traits * 2)]

    # when the records are built
    records = build_records(rows, BUILTIN_FIELDS)

    # then every column holds what the normalizer gives for that row alone
    def value(t: dict[str, Any], trait: str) -> Any:
        if trait in ("firstName", "lastName") and not (t.get("firstName") or t.get("lastName")):
            return None  # then the names come from "name", which these rows lack
        return t.get(trait)

    for spec in BUILTIN_FIELDS:
        if spec.comparator == "address":
            continue  # taken apart into parts, not memoized
        expected = [normalizer(spec)(value(t, spec.trait)) for _, t in rows]
        assert records.columns[spec.name].tolist() == expected, spec.name


@pytest.mark.django_db
def test_a_full_run_rebuilds_the_blocking_index_with_its_primary_key() -> None:
    # given two runs' worth of profiles (the second run rebuilds a full index)
    people = _people(40, seed=3)
    Profile.objects.bulk_create(Profile(traits=t) for t in people)
    dedup_run(full=True)

    # when a full run rebuilds the index
    dedup_run(full=True)

    # then it holds each live profile's keys once, under the primary key it had
    rows = list(DedupBlockKey.objects.values_list("key", "profile_id"))
    assert rows and len(rows) == len(set(rows))
    assert {pid for _, pid in rows} <= set(Profile.objects.live().values_list("id", flat=True))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'p'",
                [DedupBlockKey._meta.db_table],
            )
            assert cursor.fetchall() == [
                ("identity_dedupblockkey_pkey", "PRIMARY KEY (key, profile_id)")
            ]


@pytest.mark.django_db
def test_a_full_run_merges_as_the_application_role(
    post_events: Any, as_application_role: str
) -> None:
    # given people who came in twice through /v1/batch, with events, as the
    # application's role (it owns no table: every write must be one it may make)
    people = _people(30, seed=5)
    batch = [
        {"type": "identify", "messageId": f"m{i}-{copy}", "anonymousId": f"a{i}-{copy}",
         "traits": traits, "timestamp": (T0 + timedelta(minutes=i)).isoformat()}
        for i, traits in enumerate(people)
        for copy in range(2)
    ]  # fmt: skip
    assert post_events("/v1/batch", {"batch": batch}).status_code == 200

    # when a full run merges them
    run = dedup_run(full=True)

    # then each person is one profile, with both records' events and features
    assert run is not None and run.auto_merged >= len(people)
    for i in range(len(people)):
        first, second = (
            Identifier.objects.get(type="anonymous_id", value=f"a{i}-{copy}").profile_id
            for copy in range(2)
        )
        assert first == second
        assert Event.objects.filter(profile_id=first).count() >= 2
        assert ProfileFeatures.objects.filter(profile_id=first).exists()


def _evidence_one_by_one(
    records: Any, comparison: Any, weights: np.ndarray, k: int, i: int, j: int
) -> dict[str, Any]:
    """The evidence as it was built before, reading the arrays one value at a time
    (the reference for the list-based build)."""
    fields: dict[str, Any] = {}
    for f, spec in enumerate(records.specs):
        level = int(comparison.level[k, f])
        labels = LEVELS[spec.comparator]
        fields[spec.name] = {
            "values": [records.raw[spec.name][i], records.raw[spec.name][j]],
            "similarity": round(float(comparison.similarity[k, f]), 3),
            "level": level,
            "label": labels[level] if level >= 0 else "missing",
            "weight": round(float(weights[k, f]), 3),
        }
    swapped = bool(comparison.swapped[k])
    if swapped:
        first, last = records.raw["first_name"], records.raw["last_name"]
        fields["first_name"]["values"] = [first[i], last[j]]
        fields["last_name"]["values"] = [last[i], first[j]]
    levels = {name: item["level"] for name, item in fields.items()}
    flags = {
        "first_name_slip": bool(comparison.first_name_slip[k]),
        "last_name_slip": bool(comparison.last_name_slip[k]),
        "first_name_nickname": bool(comparison.first_name_nickname[k]),
        "first_name_nickname_typo": bool(comparison.first_name_nickname_typo[k]),
        "email_mirrors_names": bool(comparison.email_mirrors_names[k]),
        "merged_profile": records.merged is not None
        and bool(records.merged[i] or records.merged[j]),
    }
    return {"fields": fields, "swapped_names": swapped, **flags, "vetoes": vetoes(levels, **flags)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_candidate_evidence_is_what_reading_each_value_gives(seed: int) -> None:
    # given the candidate pairs of generated people (some profiles merged before,
    # some names swapped), compared with details, and adjusted weights
    rng = np.random.default_rng(seed)
    people = _people(1500, seed=seed)
    for p in people[::7]:
        p["firstName"], p["lastName"] = p["lastName"], p["firstName"]
    records = build_records([(uuid.UUID(int=i), t) for i, t in enumerate(people)], BUILTIN_FIELDS)
    records.merged = rng.random(len(records)) < 0.1
    left, right, _ = candidate_pairs(block_keys(records), len(records), max_block_size=500)
    comparison = compare_pairs(records, left, right, details=True)
    weights = initial_model(BUILTIN_FIELDS).field_weights(comparison.level)
    weights = weights + rng.normal(0, 1, weights.shape)
    assert comparison.swapped.any() and len(left) > 700

    # when the evidence is built for all pairs at once, then it is the same
    built = _Evidence(records, comparison, weights)
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        assert built(k, i, j) == _evidence_one_by_one(records, comparison, weights, k, i, j)
