"""The ad platforms' rows made by PostgreSQL (matching_sql) against the same
rows made by Python (matching): for widely varying contact data, PostgreSQL
either gives exactly Python's CSV line (or "" where Python skips the row) or
hands the row back to Python; and it takes every row of plain ASCII text and
E.164 phones itself. Then a whole export of varied people writes, on either
database, the file Python's rows make."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.db import connection
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.exports import matching, matching_sql
from apps.exports.services import _json as traits_read

from .conftest import files_of, members_set, run_now

KINDS = {
    "google_customer_match": matching.google_row,
    "meta_custom_audience": matching.meta_row,
}
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=14)
# Accents (composed and combining), other scripts, symbols, odd spaces and
# controls, and letters whose lowercase differs between libraries (İ, ẞ, Σ).
UNICODE = st.text(
    st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
        st.sampled_from("éÉèçñÑöÖßẞİıΣσςøÅ\u0301\u00a0\u2003\u200b\t\n\r-.',\"&/ "),
    ),
    max_size=14,
)
WORDS = st.sampled_from(
    [
        "Anne-Marie",
        "  O'Neil ",
        "José",
        "Zoë",
        "Łódź",
        "北京",
        "Νίκος",
        "Straße",
        "St. Louis",
        "a,b",
        'say "hi"',
        "",
    ]
)
TEXT = st.one_of(PRINTABLE, UNICODE, WORDS)
JSON_VALUE = st.one_of(
    TEXT,
    TEXT,
    TEXT,
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(-99, 99), max_size=2),
    # keys without NUL or lone surrogates too: jsonb cannot hold them (traits never do)
    st.dictionaries(
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=3),
        st.integers(-99, 99),
        max_size=2,
    ),
)
COUNTRY = st.one_of(
    st.sampled_from(["US", "us", " de ", "FR", "GB", "X", "USA", "1A", "É1", ""]), JSON_VALUE
)
ZIP = st.one_of(
    st.sampled_from(["94103-1234", "sw1a 1aa", "10115", " 75 001 ", 'a"b,c', ""]), JSON_VALUE
)
PHONE = st.one_of(
    st.sampled_from(
        [
            "+16502000001",
            " +4915112345678 ",
            "(650) 253-0000",
            "030 1234567",
            "+1 650 253 0000",
            "00441632960961",
            "+0123",
            "12",
            "phone",
            "",
        ]
    ),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    TEXT,
)
EMAIL = st.one_of(
    st.sampled_from([" Ada@Example.COM ", "no-at-sign", "ÉLODIE@exemple.fr", "a@b", ""]),
    st.builds(lambda a, b: f"{a}@{b}", PRINTABLE, PRINTABLE),
    TEXT,
)
ADDRESS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "postalCode": ZIP,
            "city": JSON_VALUE,
            "state": st.one_of(st.sampled_from(["CA", "ny", "N.Y.", "Île-de-France"]), JSON_VALUE),
            "country": COUNTRY,
        },
    ),
    JSON_VALUE,
)
TRAITS = st.fixed_dictionaries(
    {}, optional={"firstName": JSON_VALUE, "lastName": JSON_VALUE, "address": ADDRESS}
)


def _python_line(kind: str, traits: dict[str, Any], email: Any, phone: Any) -> str:
    row = KINDS[kind](traits, email, phone, region=settings.CDP["PHONE_DEFAULT_REGION"])
    if not row[0] and not row[1]:
        return ""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()[:-1]


def _sure(traits: dict[str, Any], email: str | None, phone: str | None) -> bool:
    """The rows PostgreSQL must take itself: printable ASCII strings (or
    nothing) everywhere, and a phone that is empty or E.164."""
    address = traits.get("address")
    values = [traits.get("firstName"), traits.get("lastName")]
    if isinstance(address, dict):
        values += [address.get(k) for k in ("postalCode", "city", "state", "country")]
    texts = [v for v in [*values, email, phone] if v is not None]
    ascii_ok = all(isinstance(v, str) and v.isascii() and v.isprintable() for v in texts)
    phone_ok = (
        not (phone or "").strip(" ") or matching._E164.fullmatch(phone.strip(" ")) is not None
    )
    return ascii_ok and phone_ok


def _sql_row(
    kind: str, traits: dict[str, Any], email: str | None, phone: str | None
) -> tuple[Any, ...]:
    inner = "SELECT %s::uuid, %s::jsonb, %s::text, %s::text"
    sql = matching_sql.rows_sql(kind, inner, ["pk", "traits", "email", "phone"])
    with connection.cursor() as cursor:
        cursor.execute(sql, [str(uuid.uuid4()), orjson.dumps(traits).decode(), email, phone])
        return cursor.fetchone()


needs_postgresql = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="the SQL implementation runs on PostgreSQL (SQLite keeps the Python one)",
)


@needs_postgresql
@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(KINDS))
@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traits=TRAITS, email=st.one_of(st.none(), EMAIL), phone=st.one_of(st.none(), PHONE))
@example(
    traits={
        "firstName": " Mary Ann ",
        "lastName": "O'Neil-Smith",
        "address": {
            "postalCode": "94103-1234",
            "city": "San Francisco",
            "state": "C.A.",
            "country": " us ",
        },
    },
    email=" Mary@Example.COM ",
    phone="+16502530000",
)
@example(traits={"address": {"postalCode": 'a"b,c', "country": "DE"}}, email="a@b", phone=None)
@example(traits={"firstName": "İsmail", "lastName": "Straße"}, email="x@y", phone="(650) 253-0000")
@example(traits={"firstName": 5, "address": {"country": None}}, email=None, phone=None)
def test_postgresql_rows_equal_pythons_or_are_left_to_python(
    kind: str, traits: dict[str, Any], email: str | None, phone: str | None
) -> None:
    _pk, line, raw_traits, raw_email, raw_phone = _sql_row(kind, traits, email, phone)
    # What the database keeps of the traits (jsonb writes 4.9e+16 as an
    # integer), read as the export reads it, is what either implementation has.
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb::text", [orjson.dumps(traits).decode()])
        traits = traits_read(cursor.fetchone()[0])
    event("made by PostgreSQL" if line is not None else "left to Python")
    if _sure(traits, email, phone):
        assert line is not None, "plain ASCII and E.164 rows are PostgreSQL's to make"
    if line is None:
        # handed back whole, for Python to make
        assert traits_read(raw_traits) == traits
        assert (raw_email, raw_phone) == (email, phone)
    else:
        assert line == _python_line(kind, traits, email, phone)
        assert (raw_traits, raw_email, raw_phone) == (None, None, None)


PEOPLE = [
    (
        "ada",
        "Ada@Example.com",
        "+16502000001",
        {
            "firstName": "Ada",
            "lastName": "Lovelace",
            "address": {"country": "GB", "postalCode": "SW1A 1AA", "city": "London"},
        },
    ),
    (
        "jose",
        "josé@example.es",
        None,
        {"firstName": "José", "lastName": "Núñez", "address": {"country": "ES", "city": "Málaga"}},
    ),
    (
        "li",
        None,
        "+8613812345678",
        {"firstName": "李", "lastName": "小龙", "address": {"country": "CN"}},
    ),
    (
        "bob",
        "bob@example.com",
        None,
        {"firstName": 7, "lastName": None, "address": {"postalCode": 94103, "country": "US"}},
    ),
    (
        "zoe",
        "zoe@example.fr",
        None,
        {"firstName": "Zoë", "address": {"postalCode": '75"001,', "country": "FR", "state": "IDF"}},
    ),
    (
        "us",
        "us@example.com",
        "+16502000002",
        {
            "firstName": " Mary  Ann ",
            "lastName": "O'Neil",
            "address": {
                "postalCode": "94103-1234",
                "state": "Calif.",
                "city": "San Francisco",
                "country": "us",
            },
        },
    ),
    ("nobody", None, None, {"firstName": "Nobody"}),
    # no email or phone identifier: the traits' are used
    ("traits", None, None, {"email": " Trait@Example.com", "phone": "+16502000003"}),
]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_export_of_varied_people_writes_pythons_rows_on_either_database(
    kind: str, person: Any, audience: Any, destination: Any
) -> None:
    # given people whose rows PostgreSQL makes and people whose rows it leaves
    # to Python (accents, other scripts, numbers where text should be)
    people = [
        person(user_id, email=email, phone=phone, traits=traits)
        for user_id, email, phone, traits in PEOPLE
    ]
    shoes = audience("shoes", people)
    target, _ = destination(kind, [shoes])

    # when it is exported
    run = run_now(target)

    # then the file holds, in profile order, exactly the rows Python makes
    # (the same file on PostgreSQL and SQLite), and the one without email or
    # phone is counted, not sent
    expected_lines = []
    for profile in sorted(people, key=lambda p: p.pk):
        profile.refresh_from_db()
        email = profile.identifiers.filter(type="email").values_list("value", flat=True).first()
        phone = profile.identifiers.filter(type="phone").values_list("value", flat=True).first()
        email = email or profile.traits.get("email")
        phone = phone or profile.traits.get("phone")
        line = _python_line(kind, profile.traits, email, phone)
        if line:
            expected_lines.append(line)
    header = ",".join(
        matching.GOOGLE_HEADER if kind == "google_customer_match" else matching.META_HEADER
    )
    name = f"{kind}_shoes.csv"
    assert files_of(run)[name].decode("utf-8") == "".join(
        f"{x}\n" for x in [header, *expected_lines]
    )
    assert (run.rows, run.skipped_no_identifier, run.profiles) == (len(PEOPLE) - 1, 1, len(PEOPLE))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_incremental_runs_write_additions_and_removals_as_python_makes_them(
    kind: str, person: Any, audience: Any, destination: Any
) -> None:
    # given a full run of ada (a row PostgreSQL makes) and josé (one it leaves
    # to Python)
    ada = person("ada", email="ada@example.com", traits={"firstName": "Ada"})
    jose = person("jose", email="josé@example.es", traits={"firstName": "José"})
    li = person("li", phone="+8613812345678", traits={"firstName": "李"})
    us = person("us", email="us@example.com", traits={"address": {"country": "US"}})
    shoes = audience("shoes", [ada, jose])
    target, _ = destination(kind, [shoes])
    run_now(target)

    # when ada and josé leave, li and us join, and an incremental run follows
    members_set(shoes, [li, us])
    run = run_now(target, "incremental")

    # then the additions and the removals hold Python's rows, in profile order
    def lines(people: list[Any]) -> list[str]:
        out = []
        for p in sorted(people, key=lambda p: p.pk):
            email = p.identifiers.filter(type="email").values_list("value", flat=True).first()
            phone = p.identifiers.filter(type="phone").values_list("value", flat=True).first()
            out.append(_python_line(kind, p.traits, email, phone))
        return out

    files = files_of(run)
    assert files[f"{kind}_shoes_add.csv"].decode().splitlines()[1:] == lines([li, us])
    assert files[f"{kind}_shoes_remove.csv"].decode().splitlines()[1:] == lines([ada, jose])
    assert run.rows == 4
