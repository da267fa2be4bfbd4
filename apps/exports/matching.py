"""Normalizing and hashing a person's contact data as each ad platform asks,
so that their SHA-256 matches the platform's own hash of its users' data.

Google Customer Match (support.google.com/google-ads/answer/7659867, "Format
your customer data"): email trimmed and lowercased; phone in E.164 with its
"+"; first and last name trimmed and lowercased; each of those SHA-256 hex.
Country (ISO 3166-1 alpha-2) and zip are sent in the clear.

Meta custom audiences (developers.facebook.com/docs/marketing-api/audiences/
guides/custom-audiences, "Hashing and normalization"): EMAIL trimmed and
lowercased; PHONE digits only with the country code (no "+", no leading
zeros); FN, LN lowercased without punctuation (letters of any script kept);
CT lowercased, letters only, no spaces; ST the two-letter code, lowercased, for
the US, otherwise like CT; ZIP lowercased without spaces or dashes, the first
five digits in the US; COUNTRY lowercased ISO 3166-1 alpha-2. Meta wants every
one of them hashed, COUNTRY included.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from functools import lru_cache
from typing import Any

import phonenumbers

_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ASCII_PUNCTUATION_AND_SPACE = str.maketrans("", "", string.punctuation + string.whitespace)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
GOOGLE_HEADER = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
META_HEADER = ("EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _hashed(value: str) -> str:
    return sha256_hex(value) if value else ""


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def email_normalized(value: Any) -> str:
    text = _text(value).lower()
    return text if "@" in text else ""


def phone_e164(value: Any, *, region: str) -> str:
    text = _text(value)
    if not text:
        return ""
    if _E164.match(text):
        # Already E.164 (as identity stores phone identifiers): parsing a million
        # of them again would cost more than the rest of the export.
        return text
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def _common(value: str) -> str:
    # Names, towns, states, zips and countries repeat: hash each once.
    return sha256_hex(value) if value else ""


@lru_cache(maxsize=65536)
def _letters(value: str, *, keep_spaces: bool) -> str:
    # Punctuation and symbols go (Unicode categories P* and S*); letters of any
    # script and digits stay. ASCII text (most of it) takes the C-speed path:
    # string.punctuation is exactly ASCII's P* and S* characters.
    if value.isascii():
        low = value.lower()
        if keep_spaces:
            return " ".join(low.translate(_ASCII_PUNCTUATION).split())
        return low.translate(_ASCII_PUNCTUATION_AND_SPACE)
    out = []
    for ch in unicodedata.normalize("NFC", value.lower()):
        category = unicodedata.category(ch)
        if category[0] in "PS":
            continue
        if ch.isspace():
            if keep_spaces:
                out.append(" ")
            continue
        out.append(ch)
    return " ".join("".join(out).split()) if keep_spaces else "".join(out)


def _address(traits: dict[str, Any]) -> dict[str, Any]:
    address = traits.get("address")
    return address if isinstance(address, dict) else {}


def country_code(value: Any) -> str:
    text = _text(value)
    return text.upper() if len(text) == 2 and text.isalpha() and text.isascii() else ""


def _key(value: Any) -> str:
    # A hashable, cacheable form of a trait (traits are JSON: any type).
    return value if isinstance(value, str) else _text(value)


@lru_cache(maxsize=65536)
def _google_name(value: str) -> str:
    return _common(" ".join(value.strip().lower().split()))


def google_row(traits: dict[str, Any], email: Any, phone: Any, *, region: str) -> list[str]:
    """A row under ``GOOGLE_HEADER``."""
    address = _address(traits)
    country = country_code(address.get("country"))
    return [
        _hashed(email_normalized(email)),
        _hashed(phone_e164(phone, region=country or region)),
        _google_name(_key(traits.get("firstName"))),
        _google_name(_key(traits.get("lastName"))),
        country,
        _text(address.get("postalCode")),
    ]


def meta_zip(value: Any, country: str) -> str:
    text = _text(value).lower().replace(" ", "").replace("-", "")
    if country == "US":
        return text[:5]
    return text


@lru_cache(maxsize=65536)
def _meta_name(value: str) -> str:
    return _common(_letters(value.strip(), keep_spaces=False))


@lru_cache(maxsize=65536)
def _meta_place(postal_code: str, city: str, state: str, raw_country: str) -> tuple[str, ...]:
    # Zip, town, state and country repeat across people: normalized and hashed
    # once per combination (the row's cost at a million rows was in these calls).
    country = country_code(raw_country)
    state_letters = _letters(state.strip(), keep_spaces=False)
    if country == "US":
        state_letters = state_letters[:2]
    return (
        _common(meta_zip(postal_code, country)),
        _common(_letters(city.strip(), keep_spaces=False)),
        _common(state_letters),
        _common(country.lower()),
        country,
    )


def meta_row(traits: dict[str, Any], email: Any, phone: Any, *, region: str) -> list[str]:
    """A row under ``META_HEADER``."""
    address = _address(traits)
    zip_, city, state, country_hash, country = _meta_place(
        _key(address.get("postalCode")),
        _key(address.get("city")),
        _key(address.get("state")),
        _key(address.get("country")),
    )
    e164 = phone_e164(phone, region=country or region)
    return [
        _hashed(email_normalized(email)),
        _hashed(e164.lstrip("+")),
        _meta_name(_key(traits.get("firstName"))),
        _meta_name(_key(traits.get("lastName"))),
        zip_,
        city,
        state,
        country_hash,
    ]
