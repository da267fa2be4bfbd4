"""Identifier normalization and junk filtering.

A junk value ("undefined", "null", "0"...) sent as an identifier would stitch every
visitor who sent it into one profile, so such values are never identifiers.
"""

from __future__ import annotations

import re

import phonenumbers

from .models import IdentifierType

JUNK_VALUES = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "nan",
        "anonymous",
        "guest",
        "unknown",
        "-1",
        "[object object]",
        "test",
    }
)
_ZEROS_AND_DASHES = re.compile(r"^[0-]*$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_LENGTH = 255

# Lower is stronger: when an event's identifiers cannot all be linked, the
# weakest are dropped first.
PRIORITY = {
    IdentifierType.USER_ID: 0,
    IdentifierType.EMAIL: 1,
    IdentifierType.PHONE: 2,
    IdentifierType.ANONYMOUS_ID: 9,
}


def priority(identifier_type: str) -> int:
    return PRIORITY.get(identifier_type, 5)  # type: ignore[call-overload]


def is_junk(value: str) -> bool:
    folded = value.strip().casefold()
    return folded in JUNK_VALUES or bool(_ZEROS_AND_DASHES.match(folded))


BUILTIN_NORMALIZATION = {
    IdentifierType.USER_ID: "exact",
    IdentifierType.ANONYMOUS_ID: "exact",
    IdentifierType.EMAIL: "email",
    IdentifierType.PHONE: "phone",
}


def normalize(
    identifier_type: str,
    raw: object,
    *,
    phone_region: str = "US",
    normalization: str | None = None,
    extra_junk: frozenset[str] = frozenset(),
) -> str | None:
    """The canonical form of ``raw``, or None when it is not a usable identifier."""
    if raw is None or isinstance(raw, bool | dict | list):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    value = str(raw).strip()
    if not value or len(value) > MAX_LENGTH or is_junk(value):
        return None
    if extra_junk and value.casefold() in extra_junk:
        return None
    how = normalization or BUILTIN_NORMALIZATION.get(identifier_type, "exact")  # type: ignore[call-overload]
    if how == "lowercase":
        return value.casefold()
    if how == "email":
        value = value.lower()
        return value if _EMAIL.match(value) else None
    if how == "phone":
        try:
            number = phonenumbers.parse(value, phone_region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        # phonenumbers accepts some national numbers longer than E.164 allows
        # (+49 201 00000000000: 16 digits); such a string is no E.164 identifier.
        return e164 if _E164.match(e164) else None
    return value
