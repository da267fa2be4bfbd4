"""What an event keeps when it is stored without personal data (the anonymize
storage policy of a purpose the person has not got).

Removed always: user, anonymous, previous and group ids, traits, every context key
but library, locale, timezone and channel, and every top-level key the client
added (``extra``: integrations, custom fields...). Event and page names stay: they
say what happened, not who did it.

Properties:

* With an allow-list on the purpose (``anonymized_properties``), only those
  top-level properties are kept. Several anonymizing purposes refused: only what
  every one of their lists allows.
* Without one, every property is kept except those whose name says it is personal
  data (email, phone, name, address, ip, ids, birthday...), at any depth.
* Either way, URLs lose their query string and fragment (``?email=...`` is a common
  leak) and values that look like email addresses are dropped.

This is a best effort for properties the operator did not describe: configure an
allow-list for a guarantee.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SAFE_CONTEXT_KEYS = ("library", "locale", "timezone", "channel")

# Property names (lowercased, without separators) that hold personal data.
PERSONAL_KEYS = frozenset(
    {
        "name",
        "firstname",
        "lastname",
        "fullname",
        "givenname",
        "familyname",
        "surname",
        "middlename",
        "username",
        "nickname",
        "mail",
        "ip",
        "ipaddress",
        "userid",
        "anonymousid",
        "previousid",
        "customerid",
        "accountid",
        "externalid",
        "deviceid",
        "advertisingid",
        "idfa",
        "gaid",
        "street",
        "city",
        "zip",
        "zipcode",
        "postcode",
        "postalcode",
        "birthday",
        "birthdate",
        "dateofbirth",
        "dob",
        "ssn",
        "taxid",
        "passport",
        "iban",
        "cardnumber",
        "creditcard",
        "password",
        "token",
        "lat",
        "latitude",
        "lng",
        "lon",
        "longitude",
        "location",
        "search",  # page properties: the query string
    }
)
# ...and names that contain one of these (billing_first_name, customerName...).
PERSONAL_PARTS = (
    "email",
    "phone",
    "mobile",
    "address",
    "street",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "username",
    "customername",
    "contactname",
    "recipient",
    "birth",
)

_EMAIL = re.compile(r"[^@\s/]+@[^@\s/]+\.[^@\s/]+")
_SEPARATORS = re.compile(r"[^a-z0-9]")


def is_personal_key(name: str) -> bool:
    folded = _SEPARATORS.sub("", str(name).lower())
    return folded in PERSONAL_KEYS or any(part in folded for part in PERSONAL_PARTS)


def _clean_value(value: Any, *, by_name: bool) -> tuple[bool, Any]:
    """(keep?, cleaned value)."""
    if isinstance(value, str):
        if "://" in value:
            try:
                parts = urlsplit(value)
            except ValueError:
                return False, None
            value = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return (False, None) if _EMAIL.search(value) else (True, value)
    if isinstance(value, dict):
        return True, _clean_object(value, by_name=by_name)
    if isinstance(value, list):
        kept = [_clean_value(v, by_name=by_name) for v in value]
        return True, [v for keep, v in kept if keep]
    return True, value


def _clean_object(obj: dict[str, Any], *, by_name: bool) -> dict[str, Any]:
    out = {}
    for key, value in obj.items():
        if by_name and is_personal_key(key):
            continue
        keep, cleaned = _clean_value(value, by_name=by_name)
        if keep:
            out[key] = cleaned
    return out


def properties_anonymize(
    properties: dict[str, Any], allow_lists: Iterable[tuple[str, ...]]
) -> dict[str, Any]:
    lists = [set(a) for a in allow_lists if a]
    if not lists:
        return _clean_object(properties, by_name=True)
    allowed = set.intersection(*lists)
    return _clean_object({k: v for k, v in properties.items() if k in allowed}, by_name=False)


def event_anonymize(row: dict[str, Any], allow_lists: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of the event row without the person (the row itself is left alone:
    ingestion may have to gate the same rows again)."""
    ctx = row["context"]
    properties = row["properties"] if isinstance(row["properties"], dict) else {}
    return {
        **row,
        **dict(
            user_id="",
            anonymous_id="",
            previous_id="",
            group_id="",
            traits={},
            context={k: ctx[k] for k in SAFE_CONTEXT_KEYS if k in ctx},
            properties=properties_anonymize(properties, allow_lists),
            extra={},
        ),
    }
