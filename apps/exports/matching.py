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
import unicodedata
from functools import lru_cache
from typing import Any

import phonenumbers

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
    # script and digits stay.
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


def google_row(traits: dict[str, Any], email: Any, phone: Any, *, region: str) -> list[str]:
    """A row under ``GOOGLE_HEADER``."""
    address = _address(traits)
    country = country_code(address.get("country"))
    return [
        _hashed(email_normalized(email)),
        _hashed(phone_e164(phone, region=country or region)),
        _common(" ".join(_text(traits.get("firstName")).lower().split())),
        _common(" ".join(_text(traits.get("lastName")).lower().split())),
        country,
        _text(address.get("postalCode")),
    ]


def meta_zip(value: Any, country: str) -> str:
    text = _text(value).lower().replace(" ", "").replace("-", "")
    if country == "US":
        return text[:5]
    return text


def meta_row(traits: dict[str, Any], email: Any, phone: Any, *, region: str) -> list[str]:
    """A row under ``META_HEADER``."""
    address = _address(traits)
    country = country_code(address.get("country"))
    e164 = phone_e164(phone, region=country or region)
    state = _letters(_text(address.get("state")), keep_spaces=False)
    if country == "US":
        state = state[:2]
    return [
        _hashed(email_normalized(email)),
        _hashed(e164.lstrip("+")),
        _common(_letters(_text(traits.get("firstName")), keep_spaces=False)),
        _common(_letters(_text(traits.get("lastName")), keep_spaces=False)),
        _common(meta_zip(address.get("postalCode"), country)),
        _common(_letters(_text(address.get("city")), keep_spaces=False)),
        _common(state),
        _common(country.lower()),
    ]
