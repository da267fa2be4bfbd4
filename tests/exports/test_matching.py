"""Normalization for the ad platforms, over inputs as messy as CRMs hold."""

from __future__ import annotations

import hashlib
import string
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from apps.exports.matching import (
    email_normalized,
    google_row,
    meta_row,
    meta_zip,
    phone_e164,
)

HEX64 = set(string.hexdigits.lower())
texts = st.text(max_size=40)


def _is_hash_or_empty(value: str) -> bool:
    return value == "" or (len(value) == 64 and set(value) <= HEX64)


@given(first=texts, last=texts, city=texts, state=texts, zip_=texts, country=texts, email=texts)
def test_meta_rows_are_eight_hashes_whatever_the_input(
    first: str, last: str, city: str, state: str, zip_: str, country: str, email: str
) -> None:
    traits = {
        "firstName": first,
        "lastName": last,
        "address": {"city": city, "state": state, "postalCode": zip_, "country": country},
    }
    row = meta_row(traits, email, None, region="US")
    assert len(row) == 8
    assert all(_is_hash_or_empty(v) for v in row)


@given(name=st.text(min_size=1, max_size=30))
def test_meta_names_are_hashed_lowercase_without_punctuation(name: str) -> None:
    row = meta_row({"firstName": name}, None, None, region="US")
    kept = "".join(
        ch
        for ch in unicodedata.normalize("NFC", name.lower())
        if unicodedata.category(ch)[0] not in "PS" and not ch.isspace()
    )
    assert row[2] == (hashlib.sha256(kept.encode()).hexdigest() if kept else "")


@given(
    local=st.text(alphabet=string.ascii_letters + string.digits + "._", min_size=1, max_size=20),
    pad=st.text(alphabet=" \t", max_size=3),
)
def test_emails_are_trimmed_and_lowercased_and_google_leaves_country_and_zip_clear(
    local: str, pad: str
) -> None:
    email = f"{pad}{local}@Example.COM{pad}"
    assert email_normalized(email) == f"{local.lower()}@example.com"
    row = google_row(
        {"address": {"country": "de", "postalCode": "10115"}}, email, None, region="US"
    )
    assert row[0] == hashlib.sha256(f"{local.lower()}@example.com".encode()).hexdigest()
    assert row[4:] == ["DE", "10115"]


def test_phones_become_e164_for_google_and_digits_for_meta() -> None:
    assert phone_e164("(650) 253-0000", region="US") == "+16502530000"
    assert phone_e164("030 901820", region="DE") == "+4930901820"
    assert phone_e164("not a phone", region="US") == ""
    meta = meta_row({}, None, "+16502530000", region="US")
    assert meta[1] == hashlib.sha256(b"16502530000").hexdigest()


def test_meta_zip_keeps_five_digits_in_the_us_only() -> None:
    assert meta_zip("94043-1351", "US") == "94043"
    assert meta_zip("SW1A 1AA", "GB") == "sw1a1aa"
