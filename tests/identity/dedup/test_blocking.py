"""Blocking keeps the pairs to compare far below n² and still finds duplicates."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.identity.dedup.blocking import (
    STREET_REGION_MAX_BLOCK,
    block_keys,
    block_limit,
    candidate_pairs,
    sound_key,
)
from apps.identity.dedup.records import BUILTIN_FIELDS, build_records


def _people(
    n: int, duplicates: int, seed: int = 3
) -> tuple[list[dict[str, Any]], set[tuple[int, int]]]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    for i in range(n):
        first, last = fake.first_name(), fake.last_name()
        people.append(
            {
                "firstName": first,
                "lastName": last,
                "email": f"{first}.{last}{i}@example.com".lower(),
                "phone": f"+1 201 {rng.randint(200, 999)} {rng.randint(1000, 9999)}",
                "birthday": fake.date_of_birth().isoformat(),
                "address": {"street": fake.street_address(), "postalCode": fake.postcode()},
            }
        )
    truth = set()
    for j in rng.sample(range(n), duplicates):
        copy: dict[str, Any] = {**people[j], "address": dict(people[j]["address"])}
        kind = rng.randrange(3)
        if kind == 0:  # typo in the last name, new email
            last = copy["lastName"]
            copy["lastName"] = last[:1] + last[2:] if len(last) > 3 else last + "e"
            copy["email"] = f"new{j}@example.org"
        elif kind == 1:  # moved house, new phone
            copy["address"] = {"street": "1 Elsewhere Road", "postalCode": "99999"}
            copy["phone"] = "+1 415 555 0000"
        else:  # swapped names, no birthday
            copy["firstName"], copy["lastName"] = copy["lastName"], copy["firstName"]
            del copy["birthday"]
        truth.add((j, len(people)))
        people.append(copy)
    return people, truth


def test_blocking_compares_a_tiny_share_of_all_pairs_and_finds_every_duplicate() -> None:
    # given
    people, truth = _people(3000, 150)
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)
    n = len(records)

    # when
    left, right, stats = candidate_pairs(block_keys(records), n, max_block_size=200)

    # then
    assert stats.pairs == len(left) < 0.005 * n * (n - 1) / 2
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    assert truth <= found
    assert all(a < b for a, b in found)


def test_oversized_blocks_are_skipped() -> None:
    # given: 50 different people who all typed the same junk birthday
    abc = "abcdefghijklmnopqrstuvwxyz"
    people = [
        {"firstName": f"Ann{abc[i % 26]}", "lastName": f"Lee{abc[i // 26]}{abc[i % 26]}",
         "birthday": "1970-01-01"}
        for i in range(50)
    ]  # fmt: skip
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)

    # when
    left, _, stats = candidate_pairs(block_keys(records), len(records), max_block_size=20)

    # then
    # (three passes put them all in one block: the birthday, and two letters of
    # each name with the year or with the day of birth; the names' sounds pair a
    # few of them, in blocks of their own)
    for name in ("birthday", "initials_year", "initials_day"):
        assert stats.per_pass[name] == 0
    assert len(left) == stats.per_pass["name_sounds"]
    assert stats.oversized_blocks == 3
    assert stats.largest_block == 50


def test_incremental_pairs_involve_a_changed_profile() -> None:
    # given
    people, _ = _people(500, 40)
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)
    changed = [False] * len(records)
    changed[-1] = True
    import numpy as np

    # when
    left, right, _ = candidate_pairs(
        block_keys(records), len(records), max_block_size=200, changed=np.array(changed)
    )

    # then
    assert len(left) >= 1
    assert all(len(records) - 1 in (a, b) for a, b in zip(left, right, strict=True))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_sound_key_of_a_name_is_short_and_kept_by_doubled_letters_and_alike_sounds(
    name: str,
) -> None:
    # given: a name, the same name with its last letter doubled, and spelt by sound
    key = sound_key(name)
    doubled = name + name[-1]

    # then: at most four characters, never empty, and the same for such spellings
    assert 1 <= len(key) <= 4
    assert sound_key(doubled) == key
    assert sound_key(name.replace("f", "ph")) == sound_key(name)
    assert sound_key(name.replace("k", "ck")) == sound_key(name)


@pytest.mark.parametrize(
    ("a", "b"),
    [("phillips", "filips"), ("cathryn", "kathrin"), ("smyth", "smith"), ("hennelly", "henelly")],
)
def test_names_spelt_by_sound_share_a_key(a: str, b: str) -> None:
    assert sound_key(a) == sound_key(b)


def test_crm_duplicates_with_errors_in_every_old_key_become_candidates() -> None:
    # given: a CRM record and a duplicate whose birthday, names and house number
    # each carry an error (no email or phone: nothing the old passes keyed on
    # agrees), among others
    people, _ = _people(300, 0)
    original = {
        "firstName": "Aristides", "lastName": "Jovinelli", "birthday": "1944-03-05",
        "address": {"street": "5 Pacocha Terrace", "city": "East Opmans Downs",
                    "postalCode": "5263", "state": "SA", "country": "AU"},
    }  # fmt: skip
    duplicate = {
        "firstName": "Aristidec", "lastName": "Jovinlli", "birthday": "1944-05-03",
        "address": {"street": "6 Pacocha Terrace", "city": "East Opmans Downs",
                    "postalCode": "5263", "state": "SA", "country": "AU"},
    }  # fmt: skip
    rows = [{k: v for k, v in p.items() if k not in ("email", "phone")} for p in people]
    rows += [original, duplicate]
    records = build_records([(uuid.uuid4(), p) for p in rows], BUILTIN_FIELDS)
    n = len(records)

    # when
    left, right, stats = candidate_pairs(block_keys(records), n, max_block_size=200)

    # then: the pair is a candidate (same postal code and surname sound, street at
    # one postal code), and the pairs stay a small share of all
    old_passes = ("birthday", "name_pair", "last_first2", "nickname", "address")
    pair = (n - 2) * n + (n - 1)
    assert pair in set((left * n + right).tolist())
    assert all(pair not in set(stats.pass_codes[p].tolist()) for p in old_passes)
    assert pair in set(stats.pass_codes["postal_last_sound"].tolist())
    assert len(left) < n * (n - 1) // 2 // 100


@pytest.mark.parametrize(
    ("a", "b", "found_by"),
    [
        # Town and postal code both mistyped, the street's end mistyped.
        (
            {"street": "30 Paillet Parade", "city": "Smohczykfield", "postalCode": "3259",
             "state": "VIC"},
            {"street": "30 Pailet Parade", "city": "Smoczykfield", "postalCode": "3529",
             "state": "VIC"},
            "number_street",
        ),
        # The house number changed too: one street name in one state.
        (
            {"street": "15 Missoni Way", "city": "Mari Beach", "postalCode": "2979",
             "state": "NSW"},
            {"street": "16 Missoni Way", "city": "West Broeshartfield", "postalCode": "2997",
             "state": "NSW"},
            "street_region",
        ),
    ],
)  # fmt: skip
def test_crm_duplicates_whose_town_and_postal_code_both_changed_become_candidates(
    a: dict[str, str], b: dict[str, str], found_by: str
) -> None:
    # given: two records of one person whose names each carry an error of their own
    # (no name key agrees), among others
    people, _ = _people(300, 0)
    rows = [{k: v for k, v in p.items() if k not in ("email", "phone")} for p in people]
    rows += [
        {"firstName": "Caolain", "lastName": "Der Kijnder", "address": {**a, "country": "AU"}},
        {"firstName": "Kaolain", "lastName": "Janoszka", "address": {**b, "country": "AU"}},
    ]
    records = build_records([(uuid.uuid4(), p) for p in rows], BUILTIN_FIELDS)
    n = len(records)

    # when
    left, _, stats = candidate_pairs(block_keys(records), n, max_block_size=200)

    # then
    pair = (n - 2) * n + (n - 1)
    assert pair in set(stats.pass_codes[found_by].tolist())
    assert len(left) < n * (n - 1) // 2 // 100


def test_a_first_name_and_a_house_number_with_the_street_initial_are_a_key() -> None:
    # given: the last name, the rest of the street, the town and postal code changed
    records = build_records(
        [
            (uuid.UUID(int=1), {"firstName": "Juanita", "lastName": "Barreda",
                                "address": {"street": "6 Misty Close", "postalCode": "6084"}}),
            (uuid.UUID(int=2), {"firstName": "Juanita", "lastName": "Olivetti",
                                "address": {"street": "6 Msty Close", "postalCode": "5084"}}),
            (uuid.UUID(int=3), {"firstName": "Juanita", "lastName": "Olivetti",
                                "address": {"street": "7 Msty Close", "postalCode": "5084"}}),
        ],
        BUILTIN_FIELDS,
    )  # fmt: skip

    # when
    _, _, stats = candidate_pairs(block_keys(records), 3, max_block_size=200)

    # then: the first two share the key, the third (another door) does not
    assert stats.pass_codes["first_number"].tolist() == [0 * 3 + 1]


def test_no_house_number_and_street_key_without_a_region() -> None:
    # given: one house number and street, once with a state and once without a region
    people = [
        {"firstName": "Ann", "address": {"street": "30 Paillet Parade", "state": "VIC"}},
        {"firstName": "Bob", "address": {"street": "30 Paillet Parade", "city": "Mari Beach"}},
    ]
    records = build_records([(uuid.uuid4(), p) for p in people], BUILTIN_FIELDS)

    # when
    keys = block_keys(records)

    # then: only the record with a region has the key
    number_street = keys.pass_names.index("number_street")
    rows = keys.rows[keys.passes == number_street].tolist()
    assert rows == [0]


def test_state_keys_use_the_normalized_state() -> None:
    # given: one street in Virginia written three ways, and in West Virginia
    street = {"street": "30 Paillet Parade"}
    people = [
        {"firstName": "Ann", "address": {**street, "state": "VA", "country": "US"}},
        {"firstName": "Bob", "address": {**street, "state": "Virginia", "country": "USA"}},
        {"firstName": "Cem", "address": {**street, "state": "va."}},
        {"firstName": "Dan", "address": {**street, "state": "West Virginia", "country": "US"}},
    ]
    rows = [(uuid.UUID(int=i + 1), p) for i, p in enumerate(people)]
    records = build_records(rows, BUILTIN_FIELDS)

    # when
    _, _, stats = candidate_pairs(block_keys(records), 4, max_block_size=200)

    # then: the three Virginians share the state keys (a lost country too), West
    # Virginia is another state
    expected = [0 * 4 + 1, 0 * 4 + 2, 1 * 4 + 2]
    assert sorted(stats.pass_codes["street_region"].tolist()) == expected
    assert sorted(stats.pass_codes["number_street"].tolist()) == expected


def test_addresses_without_states_block_by_country() -> None:
    # given: one German address written twice (no state, as most European data),
    # and the same street in Austria
    people = [
        {"firstName": "Ann", "address": {"street": "Hauptstrasse 12", "country": "DE"}},
        {"firstName": "Anna", "address": {"street": "Hauptstrasse 12", "country": "de"}},
        {"firstName": "Ana", "address": {"street": "Hauptstrasse 12", "country": "AT"}},
    ]
    rows = [(uuid.UUID(int=i + 1), p) for i, p in enumerate(people)]
    records = build_records(rows, BUILTIN_FIELDS)

    # when
    _, _, stats = candidate_pairs(block_keys(records), 3, max_block_size=200)

    # then: the country stands in for the state, so the two German ones share the
    # state keys and the Austrian one does not
    assert stats.pass_codes["street_region"].tolist() == [0 * 3 + 1]
    assert stats.pass_codes["number_street"].tolist() == [0 * 3 + 1]


@pytest.mark.parametrize(("holders", "paired"), [(STREET_REGION_MAX_BLOCK, True),
                                                 (STREET_REGION_MAX_BLOCK + 1, False)])  # fmt: skip
def test_one_street_in_one_state_has_a_bound_of_its_own(holders: int, paired: bool) -> None:
    # given: one street name in one state, each record at another house number,
    # town and postal code
    people = [
        {"firstName": f"P{i}", "address": {"street": f"{i + 1} Church Road", "state": "VIC",
                                           "city": f"Town {i}", "postalCode": f"{3000 + i}"}}
        for i in range(holders)
    ]  # fmt: skip
    rows = [(uuid.UUID(int=i + 1), p) for i, p in enumerate(people)]
    records = build_records(rows, BUILTIN_FIELDS)

    # when: blocks of up to 200 profiles are allowed elsewhere
    _, _, stats = candidate_pairs(block_keys(records), holders, max_block_size=200)

    # then: this pass's block stops at its own bound (the others at 200)
    assert block_limit("street_region", 200) == STREET_REGION_MAX_BLOCK
    assert block_limit("street_region", 20) == 20
    assert block_limit("birthday", 200) == 200
    expected = holders * (holders - 1) // 2 if paired else 0
    assert stats.per_pass["street_region"] == expected
