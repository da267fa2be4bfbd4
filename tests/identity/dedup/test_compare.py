"""Comparators and normalization: levels for the errors people make."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.identity.dedup.compare import (
    LEVELS,
    Comparator,
    FieldComparison,
    compare_field,
    compare_name,
    compare_pairs,
    email_mirrors_names,
    nickname_typo,
    slip,
)
from apps.identity.dedup.records import (
    BUILTIN_FIELDS,
    build_records,
    normalize_date,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_region,
    normalize_street,
    street_numbers,
)


def level(comparator: str, a: str, b: str, *, nicknames: bool = False) -> int:
    result = compare_field(
        comparator, np.array([a], dtype=object), np.array([b], dtype=object), nicknames=nicknames
    )
    return int(result.level[0])


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("robert", "robert", 3),
        ("robert", "robret", 2),  # transposition
        ("kowalski", "kovvalski", 2),  # OCR: w read as vv (one slip)
        ("amy", "ay", 1),  # one edit in a short name
        ("j", "john", 1),  # an initial
        ("bob", "robert", 2),  # nickname
        ("bill", "william", 2),
        ("hannes", "johannes", 2),
        ("mary", "robert", 0),
        ("", "robert", -1),
    ],
)
def test_name_levels(a: str, b: str, expected: int) -> None:
    assert level(Comparator.NAME, a, b, nicknames=True) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("john.smith@gmail.com", "john.smith@gmail.com", 3),
        ("john.smith@gmail.com", "jonh.smith@gmail.com", 2),  # typo
        ("john.smith@gmail.com", "john.smith@gmial.com", 2),  # typo in the domain
        ("john.smith@gmail.com", "john.smith42@gmail.com", 1),  # another mailbox
        ("john.smith@gmail.com", "john_smith@gmail.com", 1),
        ("john.smith@gmail.com", "johnsmith@yahoo.com", 1),  # same name elsewhere
        ("john.smith@gmail.com", "mary.jones@gmail.com", 0),
    ],
)
def test_email_levels(a: str, b: str, expected: int) -> None:
    assert level(Comparator.EMAIL, normalize_email(a), normalize_email(b)) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("+1 201-555-0147", "(201) 555-0147", 2),
        ("+1 201-555-0147", "201.555.0174", 1),  # two digits swapped
        ("+1 201-555-0147", "201-555-0148", 1),  # one digit off
        ("+1 201-555-0147", "+1 415-555-0199", 0),
        ("+44 20 7946 0123", "020 7946 0123", 2),  # international and national forms
    ],
)
def test_phone_levels(a: str, b: str, expected: int) -> None:
    assert level(Comparator.PHONE, normalize_phone(a), normalize_phone(b)) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1984-07-12", "1984-07-12T00:00:00Z", 2),
        ("1984-07-12", "1984-12-07", 1),  # day and month swapped
        ("1984-07-12", "1948-07-12", 1),  # two digits swapped
        ("1984-07-12", "1985-07-12", 1),
        ("1989-10-22", "1990-10-22", 1),  # the year one off across a decade
        ("1989-10-22", "1991-10-22", 0),
        ("1989-10-22", "1990-10-23", 0),
        ("1984-07-12", "1990-02-01", 0),
    ],
)
def test_date_levels(a: str, b: str, expected: int) -> None:
    assert level(Comparator.DATE, normalize_date(a), normalize_date(b)) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("42 Maple Street", "42 maple st.", 3),
        ("42 Maple Street", "42 Maple Street, Apt 5", 3),  # the unit is left out
        ("Hauptstraße 12", "Hauptstr. 12", 3),
        ("42 Maple Street", "42 Mapel Street", 2),
        ("42 Maple Street", "44 Maple Street", 0),  # another house
    ],
)
def test_street_levels(a: str, b: str, expected: int) -> None:
    assert level(Comparator.STREET, normalize_street(a), normalize_street(b)) == expected


def test_normalization_folds_case_accents_and_punctuation() -> None:
    assert normalize_name("  José-María ") == "josemaria"
    assert normalize_name("null") == ""
    assert normalize_email("John.Smith+shop@GMAIL.com") == "john.smith@gmail.com"
    assert normalize_email("not an email") == ""
    assert normalize_phone("0000000000") == ""
    assert normalize_date("12/31/1999") == "19991231"
    assert normalize_date("31.12.1999") == "19991231"
    assert normalize_date("yesterday") == ""


text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789@.", max_size=20)


@settings(max_examples=200, deadline=None)
@given(a=text, b=text, comparator=st.sampled_from(list(Comparator)))
def test_comparators_are_symmetric_and_in_range(a: str, b: str, comparator: str) -> None:
    if comparator == Comparator.ADDRESS:
        return  # compared through its parts (see compare_address)
    forward, backward = level(comparator, a, b), level(comparator, b, a)
    assert forward == backward
    top = len(LEVELS[comparator]) - 1
    assert -1 <= forward <= top
    if not a or not b:
        assert forward == -1
    elif a == b:
        assert forward == top


@settings(max_examples=100, deadline=None)
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=12), data=st.data())
def test_one_typo_in_a_name_is_still_similar(name: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=1, max_value=len(name) - 2))
    typo = name[:i] + name[i + 1] + name[i] + name[i + 2 :]  # two neighbours swapped
    assert level(Comparator.NAME, name, typo) >= 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("cindy", "cnidy"),  # two letters swapped
        ("mary", "maary"),  # a letter doubled
        ("jason", "jwson"),  # the key next door
        ("howard", "howrd"),  # a letter left out of a long name
        ("matthew", "matthcw"),  # OCR: e read as c
        ("amy", "arny"),  # OCR: m read as rn
        ("ashley", "ashiey"),  # OCR: l read as 1 (then i)
    ],
)
def test_slips_of_keyboard_or_ocr_are_recognized(a: str, b: str) -> None:
    assert slip(a, b) and slip(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("aidan", "aiden"),  # another vowel: another spelling
        ("anna", "anne"),
        ("brian", "bryan"),
        ("jon", "john"),  # a letter more in a short name
        ("daniel", "daniela"),  # a letter more at the end
        ("emma", "ella"),
        ("robert", "robert"),
        ("", "robert"),
    ],
)
def test_other_spellings_are_not_slips(a: str, b: str) -> None:
    assert not slip(a, b) and not slip(b, a)


def test_swapped_names_with_a_slip_on_one_side_are_compared_crossed() -> None:
    # given: Ashley Humphries, and Humphies Ash1ey
    records = build_records(
        [
            (uuid.UUID(int=1), {"firstName": "Ashley", "lastName": "Humphries"}),
            (uuid.UUID(int=2), {"firstName": "Humphies", "lastName": "Ash1ey"}),
        ],
        BUILTIN_FIELDS,
    )

    # when
    result = compare_pairs(records, np.array([0]), np.array([1]))

    # then
    assert result.swapped.tolist() == [True]
    assert result.level[0, :2].tolist() == [2, 2]
    assert result.first_name_slip.tolist() == [True]


def first_names(a: str, b: str) -> FieldComparison:
    return compare_name(
        np.array([a], dtype=object), np.array([b], dtype=object), nicknames=True, details=True
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("amanda", "arnanda", 2),  # OCR: m read as rn (two edits, one slip)
        ("edmund", "edrnund", 2),
        ("warmer", "warrneer", 2),  # rn read back as m, then one letter doubled
        ("scott", "scot", 2),  # a doubled last letter written once
    ],
)
def test_ocr_letter_groups_read_back_leave_one_slip(a: str, b: str, expected: int) -> None:
    result = first_names(a, b)
    assert result.level.tolist() == [expected]
    assert result.slip is not None and result.slip.tolist() == [True]


@pytest.mark.parametrize(
    ("a", "b", "nickname"),
    [
        ("jeff", "jeffrey", True),
        ("bob", "robert", True),
        ("ted", "edward", True),
        ("jimmy", "james", True),
        ("anna", "anne", False),  # one name spelt with another letter
        ("jon", "john", False),  # ... or with one more
        ("brian", "bryan", False),
    ],
)
def test_nicknames_are_told_from_other_spellings(a: str, b: str, nickname: bool) -> None:
    result = first_names(a, b)
    assert result.level.tolist() == [2]  # the nickname data knows them all
    assert result.nickname is not None and result.nickname.tolist() == [nickname]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("dna", "daniel", True),  # Dan, with two letters swapped
        ("pwte", "peter", True),  # Pete, a key next door
        ("ahley", "ash", True),  # Ashley with a letter left out, and its nickname
        ("jinmy", "james", True),  # Jimmy
        ("mary", "robert", False),
        ("ann", "daniel", False),
    ],
)
def test_nicknames_with_a_slip(a: str, b: str, expected: bool) -> None:
    assert nickname_typo(a, b) is expected
    assert nickname_typo(b, a) is expected


def test_nickname_typos_are_looked_up_only_for_details() -> None:
    # given
    a, b = np.array(["dna"], dtype=object), np.array(["daniel"], dtype=object)

    # when
    plain = compare_name(a, b, nicknames=True)
    detailed = compare_name(a, b, nicknames=True, details=True)

    # then: the level is the same (the weights do not depend on details)
    assert plain.level.tolist() == detailed.level.tolist() == [0]
    assert plain.nickname_typo is not None and plain.nickname_typo.tolist() == [False]
    assert detailed.nickname_typo is not None and detailed.nickname_typo.tolist() == [True]


def test_swapped_names_with_a_nickname_are_compared_crossed() -> None:
    # given: Tom Higgins, and Higgkns Thomas (swapped, formal name, a typo)
    records = build_records(
        [
            (uuid.UUID(int=1), {"firstName": "Tom", "lastName": "Higgins"}),
            (uuid.UUID(int=2), {"firstName": "Higgkns", "lastName": "Thomas"}),
        ],
        BUILTIN_FIELDS,
    )

    # when
    result = compare_pairs(records, np.array([0]), np.array([1]), details=True)

    # then: the nicknames are taken for the first names, whichever side they are on
    assert result.swapped.tolist() == [True]
    assert result.level[0, :2].tolist() == [2, 2]
    assert result.first_name_nickname.tolist() == [True]
    assert result.first_name_slip.tolist() == [False]
    assert result.last_name_slip.tolist() == [True]


@pytest.mark.parametrize(
    ("email_a", "email_b", "first_a", "first_b", "expected"),
    [
        ("phillip.brown@yahoo.com", "philip.brown@yahoo.com", "phillip", "philip", True),
        ("r.jones@yahoo.com", "b.jones@yahoo.com", "robert", "bill", True),  # initials
        ("johnnyjohnson@aol.com", "john_johnson@aol.com", "johnny", "john", True),
        ("joshuas@icloud.com", "josuhas@icloud.com", "joshua", "jooshua", False),  # typos
        ("smith.mary@aol.com", "smith.marie@aol.com", "mary", "marie", True),
        ("smith.mary@aol.com", "smith.mary@aol.com", "", "marie", False),
    ],
)
def test_emails_that_differ_as_the_first_names_do(
    email_a: str, email_b: str, first_a: str, first_b: str, expected: bool
) -> None:
    assert email_mirrors_names(email_a, email_b, first_a, first_b) is expected
    assert email_mirrors_names(email_b, email_a, first_b, first_a) is expected


def address_level(a: dict[str, str], b: dict[str, str]) -> int:
    records = build_records(
        [(uuid.UUID(int=1), {"address": a}), (uuid.UUID(int=2), {"address": b})], BUILTIN_FIELDS
    )
    result = compare_pairs(records, np.array([0]), np.array([1]))
    return int(result.level[0, [s.name for s in BUILTIN_FIELDS].index("address")])


WAWRZYNEK = {"street": "6 Wawrzynek Street", "city": "Mount Ward", "postalCode": "2045"}


@pytest.mark.parametrize(
    ("b", "expected"),
    [
        ({**WAWRZYNEK, "state": "NSW", "country": "AU"}, "same address"),
        # A state left out is not another state.
        ({**WAWRZYNEK, "country": "AU"}, "same address"),
        ({**WAWRZYNEK, "street": "6 Wawrzynek Stret"}, "same address"),
        ({**WAWRZYNEK, "state": "VIC", "country": "AU"}, "similar address"),
        # The street of one town with another house number: a level of its own.
        ({**WAWRZYNEK, "street": "3 Wawrzynek Street"}, "same street there, another house number"),
        ({**WAWRZYNEK, "street": "3 Wawrzynek Street", "city": "Elsewhere", "postalCode": "3000"},
         "different"),
        ({**WAWRZYNEK, "street": "8 Rossana Street"}, "same city or postal code"),
        # A street of only a house number names no street.
        ({**WAWRZYNEK, "street": "6"}, "same city or postal code"),
    ],
)  # fmt: skip
def test_address_levels(b: dict[str, str], expected: str) -> None:
    a = {**WAWRZYNEK, "state": "NSW", "country": "AU"}
    assert LEVELS[Comparator.ADDRESS][address_level(a, b)] == expected
    assert address_level(b, a) == address_level(a, b)


@pytest.mark.parametrize(
    ("street_a", "street_b"),
    [
        # An ordinal names the street, it is not a house number.
        ("2nd Street", "3rd Street"),
        ("12 2nd Street", "14 3rd Street"),
        # A box or road number is not a house number either.
        ("PO Box 123", "PO Box 456"),
        ("Route 9", "Route 66"),
        ("Highway 101", "Highway 102"),
        ("12 Highway 101", "14 Highway 102"),
    ],
)
def test_numbers_in_a_street_name_are_not_house_numbers(street_a: str, street_b: str) -> None:
    a = {**WAWRZYNEK, "street": street_a}
    b = {**WAWRZYNEK, "street": street_b}
    found = LEVELS[Comparator.ADDRESS][address_level(a, b)]
    assert found not in ("same street there, another house number", "similar address")
    assert found == "same city or postal code"


@pytest.mark.parametrize(
    ("street", "number"),
    [
        ("12 main street 5", "12"),
        ("2nd street", ""),
        ("12 2nd street", "12"),
        ("po box 123", ""),
        ("route 66", ""),
        ("12 route 66", "12"),
        ("4", "4"),
        ("12b main street", "12b"),
        ("hauptstrasse 12", "12"),
        ("2nd 5", "5"),
    ],
)
def test_house_numbers(street: str, number: str) -> None:
    assert street_numbers(street) == number


def test_one_house_number_on_one_numbered_road_is_another_house_there() -> None:
    a = {**WAWRZYNEK, "street": "12 Route 9"}
    b = {**WAWRZYNEK, "street": "14 Route 9"}
    found = LEVELS[Comparator.ADDRESS][address_level(a, b)]
    assert found == "same street there, another house number"


def test_streets_of_only_a_house_number_in_two_towns_are_different_addresses() -> None:
    a = {"street": "4", "city": "Port Mastandreaton", "postalCode": "2050", "state": "NSW"}
    b = {"street": "4", "city": "Port Abbie Bay", "postalCode": "6320", "state": "WA"}
    assert LEVELS[Comparator.ADDRESS][address_level(a, b)] == "different"


MAIN_STREET = {"street": "12 Main Street", "city": "Bluefield", "postalCode": "24701"}


@pytest.mark.parametrize(
    ("state_a", "state_b", "expected"),
    [
        # One region however written: case, punctuation, the name or its abbreviation.
        ("VA", "va.", "same address"),
        ("Virginia", "VA", "same address"),
        ("new south wales", "NSW", "same address"),
        ("Québec", "QC", "same address"),
        # Whole values: West Virginia is not Virginia (the words of one are not a
        # region of the other), whether written out or abbreviated.
        ("Virginia", "West Virginia", "similar address"),
        ("VA", "West Virginia", "similar address"),
        ("Nordrhein-Westfalen", "Nordrhein", "similar address"),
        # A state left out is not another state.
        ("West Virginia", "", "same address"),
    ],
)
def test_regions_are_compared_as_whole_normalized_values(
    state_a: str, state_b: str, expected: str
) -> None:
    a = {**MAIN_STREET, "state": state_a, "country": "US"}
    b = {**MAIN_STREET, "state": state_b, "country": "USA"}
    assert LEVELS[Comparator.ADDRESS][address_level(a, b)] == expected
    assert address_level(b, a) == address_level(a, b)


@pytest.mark.parametrize(
    ("country", "state", "region"),
    [
        ("US", "Virginia", "us:va"),
        ("United States", "W. Virginia", "us:w virginia"),
        ("USA", "West Virginia", "us:wv"),
        ("AU", "New South Wales", "au:nsw"),
        ("Australia", "NSW", "au:nsw"),
        ("Österreich", "Wien", "at:wien"),
        ("", "NSW", ":nsw"),
        ("Germany", "Nordrhein-Westfalen", "de:nordrhein westfalen"),
        ("CA", None, "ca:"),
        (None, None, ""),
    ],
)
def test_regions_normalize_to_country_and_state(
    country: str | None, state: str | None, region: str
) -> None:
    assert normalize_region(country, state) == region


def test_another_country_is_another_region_whatever_the_state() -> None:
    a = {**MAIN_STREET, "state": "WA", "country": "US"}
    b = {**MAIN_STREET, "state": "WA", "country": "AU"}
    assert LEVELS[Comparator.ADDRESS][address_level(a, b)] == "similar address"
