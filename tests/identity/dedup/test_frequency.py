"""Term-frequency adjustments: rare names weigh more than common ones."""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
import pytest

from apps.identity.dedup.compare import ADDRESS_SAME, compare_pairs
from apps.identity.dedup.fellegi_sunter import initial_model
from apps.identity.dedup.frequency import (
    MIN_PROFILES,
    ValueFrequencies,
    frequencies_count,
    frequency_adjustments,
)
from apps.identity.dedup.models import DedupRun, DedupValueFrequency, DuplicateCandidate
from apps.identity.dedup.records import BUILTIN_FIELDS, build_records
from apps.identity.dedup.services import dedup_run
from apps.identity.dedup.services.scoring import pairs_score
from apps.identity.models import Profile


def word(i: int) -> str:
    """A name of its own for each i (letters only: digits in names read as letters)."""
    letters = ""
    for _ in range(3):
        i, r = divmod(i, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[r]
    return letters


# 1,200 profiles: 300 John Smiths, then one Severin Ullrich and one more, and 898
# people with names of their own.
PEOPLE = (
    [("John", "Smith")] * 300
    + [("Severin", "Ullrich"), ("Severin", "Ullrich")]
    + [(f"Fi{word(i)}", f"La{word(i)}") for i in range(898)]
)


def traits(first: str, last: str, i: int) -> dict[str, Any]:
    return {"firstName": first, "lastName": last, "email": f"p{i}@example.com"}


def records_of(people: list[tuple[str, str]]) -> Any:
    rows = [(uuid.UUID(int=i + 1), traits(f, la, i)) for i, (f, la) in enumerate(people)]
    return build_records(rows, BUILTIN_FIELDS)


def test_rare_names_weigh_more_and_common_ones_less() -> None:
    # given: two John Smiths, the two Severin Ullrichs, and two people of other names
    records = records_of(PEOPLE)
    left, right = np.array([0, 300, 302]), np.array([1, 301, 303])
    level = compare_pairs(records, left, right).level
    model = initial_model(BUILTIN_FIELDS)
    frequencies = frequencies_count(records, ["first_name", "last_name"])

    # when
    adjustments = frequency_adjustments(
        records, left, right, level, np.zeros(3, dtype=bool), model, frequencies
    )

    # then: log2(u_exact / share of the value), for exact agreement only
    u_first, u_last = model.fields[0].u[-1], model.fields[1].u[-1]
    assert adjustments[0, :2] == pytest.approx(
        [math.log2(u_first / (300 / 1200)), math.log2(u_last / (300 / 1200))]
    )
    assert adjustments[1, :2] == pytest.approx(
        [math.log2(u_first / (2 / 1200)), math.log2(u_last / (2 / 1200))]
    )
    assert adjustments[0, :2].sum() < 0 < adjustments[1, :2].sum()
    assert adjustments[2].tolist() == [0.0] * 6  # two people of names of their own
    assert adjustments[:, 2:].tolist() == [[0.0] * 4] * 3  # not adjusted fields


def test_no_adjustment_for_crossed_names_few_profiles_or_manual_weights() -> None:
    # given
    records = records_of(PEOPLE)
    left, right = np.array([300]), np.array([301])
    level = compare_pairs(records, left, right).level
    model = initial_model(BUILTIN_FIELDS)
    frequencies = frequencies_count(records, ["first_name", "last_name"])
    few = {name: ValueFrequencies(MIN_PROFILES - 1, t.counts) for name, t in frequencies.items()}
    fixed = initial_model(BUILTIN_FIELDS)
    fixed.fields[0].source = "weights"

    def adjust(**changes: Any) -> list[float]:
        arguments: dict[str, Any] = {"swapped": np.zeros(1, dtype=bool), "model": model}
        arguments["frequencies"] = frequencies
        arguments.update(changes)
        result = frequency_adjustments(records, left, right, level, **arguments)
        return [round(float(x), 6) for x in result[0, :2]]

    # then
    assert all(x > 0 for x in adjust())
    assert adjust(swapped=np.ones(1, dtype=bool)) == [0.0, 0.0]
    assert adjust(frequencies=few) == [0.0, 0.0]
    assert adjust(model=fixed)[0] == 0.0 and adjust(model=fixed)[1] > 0


def test_value_shares_never_go_below_two_profiles() -> None:
    table = ValueFrequencies(profiles=1000, counts={"john": 50, "ann": 1})
    shares = table.shares(np.array(["john", "ann", "unknown"], dtype=object))
    assert shares.tolist() == [0.05, 0.002, 0.002]


@pytest.mark.django_db
def test_full_runs_keep_the_frequencies_and_incremental_runs_use_them() -> None:
    # given
    Profile.objects.bulk_create(
        [Profile(traits=traits(f, la, i)) for i, (f, la) in enumerate(PEOPLE)]
    )

    # when
    full = dedup_run(full=True)

    # then: the counts of values held by three profiles or more are kept
    assert full is not None
    assert sorted(DedupValueFrequency.objects.values_list("field", "value", "count")) == [
        ("first_name", "john", 300),
        ("last_name", "smith", 300),
    ]
    summary = full.parameters["model"]["frequencies"]
    assert summary["first_name"] == {"profiles": 1200, "most_common": [["john", 300],
        ["severin", 2], ["fiaaa", 1], ["fiaab", 1], ["fiaba", 1]]}  # fmt: skip
    severins = DuplicateCandidate.objects.get()  # John Smiths: one block too big to compare
    weight = severins.evidence["fields"]["first_name"]["weight"]
    unadjusted = full.parameters["model"]["fields"]["first_name"]["weights"][-1]
    assert weight > unadjusted

    # when: a third Severin Ullrich arrives (without an email: with one of its own,
    # the pairs would be vetoed below the auto-merge threshold, which are not queued)
    third = Profile.objects.create(traits={"firstName": "Severin", "lastName": "Ullrich"})
    incremental = dedup_run()

    # then: the incremental run weighs the name as the full run counted it
    assert incremental is not None and incremental.mode == DedupRun.Mode.INCREMENTAL
    assert incremental.parameters["model"]["frequencies"] == summary
    new = DuplicateCandidate.objects.filter(run=incremental)
    assert new.count() == 2
    assert {c.profile_a_id == third.id or c.profile_b_id == third.id for c in new} == {True}
    assert {c.evidence["fields"]["first_name"]["weight"] for c in new} == {weight}


def test_a_surname_shared_at_one_door_weighs_as_it_does_among_people_at_one_door() -> None:
    # given: two pairs sharing a rare surname, one at one door and one not; EM found
    # that 5 % of two people at one door share their surname exactly
    door = {"street": "5 Pacocha Terrace", "postalCode": "5263", "city": "Opmans Downs"}
    elsewhere = {"street": "9 Other Road", "postalCode": "3000", "city": "Melbourne"}
    people = [
        {"firstName": "Ilse", "lastName": "Dzienniak", "address": door},
        {"firstName": "Marek", "lastName": "Dzienniak", "address": door},
        {"firstName": "Ilse", "lastName": "Dzienniak", "address": door},
        {"firstName": "Marek", "lastName": "Dzienniak", "address": elsewhere},
    ]
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)
    left, right = np.array([0, 2]), np.array([1, 3])
    comparison = compare_pairs(records, left, right)
    model = initial_model(BUILTIN_FIELDS)
    last = [f.name for f in model.fields].index("last_name")
    model.fields[last].source = "em"
    model.em = {"sessions": {"address": {"u": {"last_name": [0.9, 0.03, 0.02, 0.05]}}}}
    frequencies = {"last_name": ValueFrequencies(MIN_PROFILES * 2, {"dzienniak": 2})}

    # when
    _, adjustments = pairs_score(
        records, left, right, comparison.level, comparison.swapped, model, frequencies
    )

    # then: at the door, log2(m / 0.05) in place of the usual weight and no rarity
    # bonus; elsewhere the usual weight and the bonus for a rare name
    parameters = model.fields[last]
    usual = float(parameters.weights()[-1])
    at_door = math.log2(float(parameters.m[-1]) / 0.05)
    assert comparison.level[0, [f.name for f in model.fields].index("address")] == ADDRESS_SAME
    assert adjustments[0, last] == pytest.approx(at_door - usual)
    assert adjustments[1, last] > 0


def test_one_street_and_number_in_another_town_is_not_one_door() -> None:
    # given: a pair sharing a rare surname at "12 Main Street" in two towns of two
    # states (a "similar" address: the street agrees, the area does not)
    people = [
        {"firstName": "Ilse", "lastName": "Dzienniak",
         "address": {"street": "12 Main Street", "city": "Springfield", "region": "IL"}},
        {"firstName": "Marek", "lastName": "Dzienniak",
         "address": {"street": "12 Main Street", "city": "Shelbyville", "region": "WA"}},
    ]  # fmt: skip
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)
    left, right = np.array([0]), np.array([1])
    comparison = compare_pairs(records, left, right)
    model = initial_model(BUILTIN_FIELDS)
    names = [f.name for f in model.fields]
    last, address = names.index("last_name"), names.index("address")
    model.fields[last].source = "em"
    model.em = {"sessions": {"address": {"u": {"last_name": [0.9, 0.03, 0.02, 0.05]}}}}
    frequencies = {"last_name": ValueFrequencies(MIN_PROFILES * 2, {"dzienniak": 2})}

    # when
    _, adjustments = pairs_score(
        records, left, right, comparison.level, comparison.swapped, model, frequencies
    )

    # then: not weighed as one door: the rare surname keeps its rarity bonus
    assert comparison.level[0, address] == ADDRESS_SAME - 1
    assert adjustments[0, last] > 0
