"""From Profile.traits to columns of normalized values, one column per field.

Everything downstream (blocking, comparison) works on these columns: numpy object
arrays of str, with "" for a missing value, so that comparisons can be vectorized.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from .compare import ADDRESS_PARTS, Comparator


@dataclass(frozen=True)
class FieldSpec:
    """One compared field, as configured (see DedupField)."""

    name: str
    trait: str
    comparator: str
    blocking: bool = False
    m: tuple[float, ...] | None = None
    u: tuple[float, ...] | None = None
    weights: tuple[float, ...] | None = None
    # Exact agreement on a rare value weighs more (see ``frequency``).
    frequency_adjusted: bool = False


# The Segment reserved traits, in the order they are shown.
BUILTIN_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("first_name", "firstName", Comparator.NAME, frequency_adjusted=True),
    FieldSpec("last_name", "lastName", Comparator.NAME, frequency_adjusted=True),
    FieldSpec("email", "email", Comparator.EMAIL),
    FieldSpec("phone", "phone", Comparator.PHONE),
    FieldSpec("birthday", "birthday", Comparator.DATE),
    # street, city, postalCode, state and country, compared as one address.
    FieldSpec("address", "address", Comparator.ADDRESS),
)

_JUNK = frozenset(
    {"", "null", "none", "nil", "undefined", "nan", "n a", "na", "unknown", "test", "x", "-"}
)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_NON_ALPHA = re.compile(r"[^a-z]+")
_NON_DIGIT = re.compile(r"\D+")
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "þ": "th"})

# Street words as people abbreviate them, written out (after folding).
_STREET_WORDS = {
    "st": "street",
    "str": "strasse",
    "ave": "avenue",
    "av": "avenue",
    "rd": "road",
    "dr": "drive",
    "ct": "court",
    "ln": "lane",
    "blvd": "boulevard",
    "bd": "boulevard",
    "pl": "place",
    "sq": "square",
    "cres": "crescent",
    "hwy": "highway",
    "pkwy": "parkway",
    "ter": "terrace",
    "cir": "circle",
    "mt": "mount",
    "ch": "chemin",
    "r": "rue",
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
}
# Words that introduce a unit within a building: the unit is dropped, people leave
# it out as often as they write it.
_UNIT_WORDS = frozenset({"apt", "apartment", "suite", "ste", "unit", "flat", "no", "nr", "room"})
_COUNTRIES = {
    "united states": "us",
    "united states of america": "us",
    "usa": "us",
    "u s a": "us",
    "u s": "us",
    "america": "us",
    "canada": "ca",
    "united kingdom": "gb",
    "uk": "gb",
    "great britain": "gb",
    "england": "gb",
    "germany": "de",
    "deutschland": "de",
    "france": "fr",
    "australia": "au",
    "commonwealth of australia": "au",
    "new zealand": "nz",
    "ireland": "ie",
    "spain": "es",
    "espana": "es",
    "italy": "it",
    "italia": "it",
    "netherlands": "nl",
    "the netherlands": "nl",
    "nederland": "nl",
    "austria": "at",
    "osterreich": "at",
    "switzerland": "ch",
    "schweiz": "ch",
    "suisse": "ch",
    "mexico": "mx",
    "brazil": "br",
    "brasil": "br",
    "india": "in",
}


# States and provinces written out, as their postal abbreviations (after folding):
# "Virginia" and "VA" are one state, "West Virginia" ("WV") another. The countries
# whose records abbreviate them (US, Canada, Australia); other regions (a German
# Land, an English county) are compared as written.
_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar",
    "california": "ca", "colorado": "co", "connecticut": "ct", "delaware": "de",
    "district of columbia": "dc", "washington dc": "dc", "washington d c": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi",
    "minnesota": "mn", "mississippi": "ms", "missouri": "mo", "montana": "mt",
    "nebraska": "ne", "nevada": "nv", "new hampshire": "nh", "new jersey": "nj",
    "new mexico": "nm", "new york": "ny", "north carolina": "nc", "north dakota": "nd",
    "ohio": "oh", "oklahoma": "ok", "oregon": "or", "pennsylvania": "pa",
    "rhode island": "ri", "south carolina": "sc", "south dakota": "sd", "tennessee": "tn",
    "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va", "washington": "wa",
    "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
    "alberta": "ab", "british columbia": "bc", "manitoba": "mb", "new brunswick": "nb",
    "newfoundland and labrador": "nl", "newfoundland": "nl", "nova scotia": "ns",
    "northwest territories": "nt", "nunavut": "nu", "ontario": "on",
    "prince edward island": "pe", "quebec": "qc", "saskatchewan": "sk", "yukon": "yt",
    "new south wales": "nsw", "victoria": "vic", "queensland": "qld",
    "western australia": "wa", "south australia": "sa", "tasmania": "tas",
    "australian capital territory": "act", "northern territory": "nt",
}  # fmt: skip
# Separates country and state in the region column ("us:va"; ":va" without a country).
REGION_SEPARATOR = ":"


@lru_cache(maxsize=200_000)
def fold(text: str) -> str:
    """Lowercase ASCII with accents removed and runs of punctuation as one space."""
    text = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    text = text.encode("ascii", "ignore").decode()
    text = _NON_ALNUM.sub(" ", text).strip()
    return "" if text in _JUNK else text


def _str(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


# Digits in a name are OCR misreadings of the letters they look like.
_OCR_DIGITS = str.maketrans("0123456789", "oizeasgtbg")


def normalize_name(value: Any) -> str:
    return _NON_ALPHA.sub("", fold(_str(value)).translate(_OCR_DIGITS))


def normalize_email(value: Any) -> str:
    text = _str(value).lower()
    if "@" not in text or len(text) < 5:
        return ""
    local, _, domain = text.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}@{domain}" if local and "." in domain else ""


def email_local(email: str) -> str:
    """Local part without dots: john.smith@x and johnsmith@y share it."""
    local = email.partition("@")[0]
    return local.replace(".", "").replace("_", "").replace("-", "")


def normalize_phone(value: Any) -> str:
    """The last ten digits: +1 (201) 555-0123, 201.555.0123 and 0201 5550123 agree."""
    digits = _NON_DIGIT.sub("", _str(value))
    if digits.startswith("00"):
        digits = digits[2:]
    digits = digits[-10:].lstrip("0")
    return digits if len(digits) >= 6 and len(set(digits)) > 1 else ""


_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_EU_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


def normalize_date(value: Any) -> str:
    """YYYYMMDD from ISO-8601 (what Segment sends), M/D/YYYY or D.M.YYYY."""
    text = _str(value)
    if match := _ISO_DATE.match(text):
        y, m, d = match.groups()
    elif match := _US_DATE.match(text):
        m, d, y = match.groups()
    elif match := _EU_DATE.match(text):
        d, m, y = match.groups()
    else:
        return ""
    if not (1 <= int(m) <= 12 and 1 <= int(d) <= 31 and 1850 < int(y) < 2100):
        return ""
    return f"{y}{int(m):02d}{int(d):02d}"


@lru_cache(maxsize=200_000)
def normalize_street(value: str) -> str:
    words = fold(value).split()
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            if any(c.isdigit() for c in word) or len(word) == 1:
                continue
        if word in _UNIT_WORDS:
            skip = True
            continue
        # "Hauptstr" and "Hauptstraße" -> "hauptstrasse".
        if word.endswith("str") and len(word) > 5:
            word = word + "asse"
        out.append(_STREET_WORDS.get(word, word))
    return " ".join(out)


# Words after which a number names the road or box, not a house: "po box 123",
# "route 66", "highway 101".
NUMBERED_ROADS = frozenset(
    {"box", "pobox", "route", "rte", "rt", "highway", "hwy", "rr", "interstate", "sr", "cr"}
)
_ORDINAL = re.compile(r"^[0-9]+(st|nd|rd|th)$")


def street_numbers(street: str) -> str:
    """The house number of a normalized street: "12 main street 5" -> "12" (the
    first number; a unit number written without "Apt" comes after it; "hauptstrasse
    12" -> "12"; "4", a street whose name was left out, -> "4"). A number is not
    a house number if it is an ordinal ("2nd street") or the number of a box or
    road ("po box 123", "route 9"): those are part of the street's name."""
    words = street.split()
    for k, w in enumerate(words):
        if not w[:1].isdigit() or _ORDINAL.match(w):
            continue
        if k > 0 and words[k - 1] in NUMBERED_ROADS:
            continue
        return w
    return ""


def street_name(street: str) -> str:
    """A normalized street without its house number: "12 main street 5" -> "main
    street 5"."""
    number = street_numbers(street)
    if not number:
        return street
    words = street.split()
    words.remove(number)
    return " ".join(words)


def street_name_digits(street: str) -> str:
    """The words of a street's name (without its house number) that hold digits:
    "12 2nd street" -> "2nd", "po box 123" -> "123", "route 66" -> "66"."""
    return " ".join(w for w in street_name(street).split() if any(c.isdigit() for c in w))


def normalize_postal_code(value: Any) -> str:
    return fold(_str(value)).replace(" ", "").upper()


def normalize_country(value: Any) -> str:
    text = fold(_str(value))
    return _COUNTRIES.get(text, text)


def normalize_text(value: Any) -> str:
    return fold(_str(value))


def normalize_state(value: Any) -> str:
    """A state or province, folded, written-out names as their abbreviations."""
    text = fold(_str(value))
    return _STATES.get(text, text)


def normalize_region(country: Any, state: Any) -> str:
    """ "country:state" ("us:va", "au:nsw"; "us:" without a state, ":va" without a
    country, "" with neither): two whole values, compared each as a whole (see
    ``region_parts``), never as words ("Virginia" is not part of "West Virginia")."""
    country_code, state_code = normalize_country(country), normalize_state(state)
    if not (country_code or state_code):
        return ""
    return f"{country_code}{REGION_SEPARATOR}{state_code}"


def region_parts(region: str) -> tuple[str, str]:
    """(country, state) of a normalized region; "" for a part left out."""
    country, _, state = region.partition(REGION_SEPARATOR)
    return country, state


def normalize_address(value: Any) -> tuple[str, str, str, str]:
    """(street, city, postal code, "country:state") of a Segment address object
    (``normalize_region``)."""
    if not isinstance(value, dict):
        return "", "", "", ""
    region = normalize_region(value.get("country"), value.get("state"))
    return (
        normalize_street(_str(value.get("street"))),
        fold(_str(value.get("city"))),
        normalize_postal_code(value.get("postalCode")),
        region,
    )


def address_text(value: Any) -> str | None:
    """An address object as one line, for the evidence shown to reviewers."""
    if not isinstance(value, dict):
        return None
    parts = [value.get(k) for k in ("street", "postalCode", "city", "state", "country")]
    return ", ".join(str(p) for p in parts if p not in (None, "")) or None


def normalizer(spec: FieldSpec) -> Any:
    if spec.comparator == Comparator.NAME:
        return normalize_name
    if spec.comparator == Comparator.EMAIL:
        return normalize_email
    if spec.comparator == Comparator.PHONE:
        return normalize_phone
    if spec.comparator == Comparator.DATE:
        return normalize_date
    if spec.comparator == Comparator.STREET:
        return lambda v: normalize_street(_str(v))
    if spec.comparator == Comparator.POSTAL_CODE:
        return normalize_postal_code
    if spec.name == "country":
        return normalize_country
    return normalize_text


def trait_value(traits: dict[str, Any], path: str) -> Any:
    value: Any = traits
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _split_name(traits: dict[str, Any]) -> tuple[Any, Any]:
    """firstName and lastName, or the first and last words of ``name``."""
    first, last = traits.get("firstName"), traits.get("lastName")
    if first or last:
        return first, last
    name = traits.get("name")
    if not isinstance(name, str):
        return None, None
    words = name.split()
    if len(words) < 2:
        return (words[0] if words else None), None
    return words[0], words[-1]


ObjectArray = npt.NDArray[np.object_]


def _normalized(
    function: Callable[[Any], str], seen: dict[tuple[type, Any], str], value: Any
) -> str:
    """``function(value)``, once per distinct value of a column: normalizers are
    pure, and names, towns and countries repeat (at 100,000 CRM profiles, a third
    of building the records was normalizing values seen before). Keyed by type
    too: 1, 1.0 and True are equal as keys but not as traits."""
    if not isinstance(value, str | int | float | None):
        return function(value)
    key = (type(value), value)
    result = seen.get(key)
    if result is None:
        result = seen[key] = function(value)
    return result


@dataclass
class Records:
    """Normalized columns for ``ids`` (row i is profile ids[i])."""

    ids: list[uuid.UUID]
    specs: tuple[FieldSpec, ...]
    columns: dict[str, ObjectArray] = field(default_factory=dict)
    raw: dict[str, list[Any]] = field(default_factory=dict)
    # Per column: values derived from each record (lengths, email parts...),
    # computed once, used by every comparison.
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Row i's profile has absorbed others (its traits mix several records'); None
    # when not looked up.
    merged: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self, column: str) -> dict[str, Any]:
        return self.caches.setdefault(column, {})

    def column(self, name: str) -> ObjectArray | None:
        return self.columns.get(name)


def build_records(
    rows: Iterable[tuple[uuid.UUID, dict[str, Any]]], specs: tuple[FieldSpec, ...]
) -> Records:
    """Columns for (profile id, traits) rows. Raw values are kept for the evidence."""
    ids: list[uuid.UUID] = []
    raw: dict[str, list[Any]] = {s.name: [] for s in specs}
    norm: dict[str, list[str]] = {s.name: [] for s in specs}
    addresses = [s for s in specs if s.comparator == Comparator.ADDRESS]
    for spec in addresses:
        for part in ADDRESS_PARTS:
            norm[f"{spec.name}:{part}"] = []
    functions: list[tuple[str, str, Any, dict[tuple[type, Any], str]]] = [
        (s.name, s.trait, normalizer(s), {}) for s in specs if s not in addresses
    ]
    for profile_id, traits in rows:
        ids.append(profile_id)
        traits = traits if isinstance(traits, dict) else {}
        first, last = _split_name(traits)
        for name, path, function, seen in functions:
            if name == "first_name" and path == "firstName":
                value = first
            elif name == "last_name" and path == "lastName":
                value = last
            else:
                value = trait_value(traits, path)
            raw[name].append(value if isinstance(value, str | int | float) else None)
            norm[name].append(_normalized(function, seen, value))
        for spec in addresses:
            value = trait_value(traits, spec.trait)
            raw[spec.name].append(address_text(value))
            parts = normalize_address(value)
            norm[spec.name].append("|".join(parts) if any(parts) else "")
            for part, normalized in zip(ADDRESS_PARTS, parts, strict=True):
                norm[f"{spec.name}:{part}"].append(normalized)
    columns = {name: np.array(values, dtype=object) for name, values in norm.items()}
    for name, column in columns.items():
        if len(column) == 0:
            columns[name] = np.empty(0, dtype=object)
    return Records(ids=ids, specs=specs, columns=columns, raw=raw)
