#!/usr/bin/env python
"""A second, independent generator of labelled person records: CRM imports.

Written apart from ``bench/dedup.py``'s generator (other name lists and
frequencies, other error code, no shared functions) from the published way
FEBRL- and GeCo-style benchmarks are made (Christen's data set generator; Tran,
Vatsalan and Christen's GeCo):

1. **Originals.** Given name and surname drawn from frequency tables (a Zipf-like
   law over name lists of other locales than the first generator's), street
   number, street (address_1), an optional second line (address_2: unit, level,
   building), suburb with its postcode and state (a fixed table of suburbs, so that
   suburb, postcode and state agree as in life), date of birth. No email or phone:
   a CRM import seldom has them.
2. **Duplicates.** 40 % of the originals get duplicates, 1 to 5 of them (fewer more
   often). Each duplicate modifies 1 to 4 fields (each at most twice), fields
   chosen with per-field probabilities, and each modification drawn from per-field
   error probabilities: keyboard typos (a neighbouring key), OCR confusions (rn/m,
   0/o, 1/l, 5/s, cl/d, ...), phonetic respellings (ph/f, c/k, ie/y, ...), a letter
   inserted, dropped or two swapped, a lost or extra space, a missing value, a
   value replaced by another of its table; dates with a digit off, day and month
   swapped or a year off by one. Whole-record errors: given name and surname
   swapped (4 %).
3. **Households** (3 % of the records): another person with the surname and the
   address of an original, a given name and birth date of their own: the hard
   negatives every CRM has.

Records map to Segment traits as an import would write them: firstName, lastName,
birthday (ISO), address {street: "<number> <address_1>[, <address_2>]", city:
suburb, postalCode, state, country "AU"}.

Seeded and deterministic: the same size and seed give the same records.

Run on its own to print a few:  .venv/bin/python bench/dedup_gen2.py --size 20
"""

from __future__ import annotations

import argparse
import itertools
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# Name lists come from locales the first generator does not use; their order is
# shuffled with the seed, and ranks get Zipf-like weights 1 / (rank + offset).
GIVEN_LOCALES = ("en_AU", "en_IE", "en_NZ", "it_IT", "es_ES", "nl_NL")
SURNAME_LOCALES = ("en_AU", "en_IE", "it_IT", "nl_NL", "pl_PL", "es_ES")
GIVEN_OFFSET = 5  # the commonest given name: about 3 % of people
SURNAME_OFFSET = 20  # the commonest surname: about 1 %

STATES = (  # abbreviation, share, first postcode, last postcode
    ("NSW", 0.32, 2000, 2999),
    ("VIC", 0.26, 3000, 3999),
    ("QLD", 0.20, 4000, 4999),
    ("WA", 0.10, 6000, 6797),
    ("SA", 0.07, 5000, 5799),
    ("TAS", 0.02, 7000, 7799),
    ("ACT", 0.02, 2600, 2618),
    ("NT", 0.01, 800, 899),
)
SUBURB_PREFIXES = ("", "", "", "", "North ", "South ", "East ", "West ", "Mount ", "Glen ", "Port ")
SUBURB_SUFFIXES = (
    "", "", "vale", "field", "ton", "wood", "dale", " Hill", " Park", " Heights",
    " Creek", " Beach", " Downs", "ville", " Bay",
)  # fmt: skip
STREET_TYPES = (
    "Street", "Road", "Avenue", "Drive", "Court", "Place", "Crescent", "Parade",
    "Close", "Way", "Lane", "Terrace", "Circuit", "Grove", "Highway",
)  # fmt: skip
SECOND_LINES = ("Unit {n}", "Flat {n}", "Level {n}", "Suite {n}", "{name} Village", "{name} House")

# Per-field probability that a modification hits the field.
FIELD_PROBABILITIES = {
    "given_name": 0.18,
    "surname": 0.18,
    "street_number": 0.08,
    "address_1": 0.14,
    "address_2": 0.05,
    "suburb": 0.10,
    "postcode": 0.10,
    "state": 0.05,
    "date_of_birth": 0.12,
}
# Per kind of field: error -> probability.
TEXT_ERRORS = {
    "keyboard": 0.22,
    "ocr": 0.10,
    "phonetic": 0.16,
    "insert": 0.06,
    "delete": 0.08,
    "transpose": 0.07,
    "space": 0.06,
    "missing": 0.13,
    "replace": 0.12,
}
NUMBER_ERRORS = {"keyboard": 0.35, "transpose": 0.2, "insert": 0.05, "missing": 0.2, "replace": 0.2}
DATE_ERRORS = {"digit": 0.35, "day_month": 0.2, "year": 0.15, "missing": 0.15, "replace": 0.15}
STATE_ERRORS = {"missing": 0.6, "replace": 0.4}
MODIFICATIONS_PER_RECORD = ((1, 2, 3, 4), (35, 35, 20, 10))
DUPLICATES_PER_ORIGINAL = ((1, 2, 3, 4, 5), (55, 22, 12, 7, 4))
SHARE_WITH_DUPLICATES = 0.40
SHARE_HOUSEHOLD = 0.03
SWAP_NAMES = 0.04
SECOND_MODIFICATION = 0.2

# QWERTY rows, each shifted by a quarter key from the one above: a key's neighbours
# are those next to it in its row and the two under or over it.
KEY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
# What OCR reads for what (both ways).
OCR_CONFUSIONS = (
    ("m", "rn"), ("o", "0"), ("l", "1"), ("s", "5"), ("b", "8"), ("d", "cl"),
    ("w", "vv"), ("i", "l"), ("e", "c"), ("u", "v"), ("z", "2"), ("g", "9"),
)  # fmt: skip
# Spellings that sound alike (both ways).
PHONETIC = (
    ("ph", "f"), ("ck", "k"), ("c", "k"), ("ie", "y"), ("ey", "y"), ("ee", "ea"),
    ("ou", "ow"), ("ai", "ay"), ("z", "s"), ("x", "ks"), ("qu", "kw"), ("th", "t"),
    ("gh", ""), ("wr", "r"), ("kn", "n"), ("ll", "l"), ("tt", "t"), ("ss", "s"),
    ("son", "sen"), ("ann", "an"), ("ine", "ene"), ("er", "a"), ("y", "i"), ("v", "w"),
)  # fmt: skip


@dataclass
class CrmRecord:
    entity: int
    traits: dict[str, Any]
    role: str = "original"  # original, duplicate, household
    kinds: tuple[str, ...] = ()


def _neighbours() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(KEY_ROWS):
        for c, key in enumerate(row):
            near = [row[x] for x in (c - 1, c + 1) if 0 <= x < len(row)]
            for other in (r - 1, r + 1):
                if 0 <= other < len(KEY_ROWS):
                    shift = 0 if other > r else 1  # the row above sits a little left
                    for x in (c - shift, c + 1 - shift):
                        if 0 <= x < len(KEY_ROWS[other]):
                            near.append(KEY_ROWS[other][x])
            out[key] = "".join(near)
    return out


NEIGHBOURS = _neighbours()


def _zipf(count: int, offset: int) -> list[float]:
    """Cumulative weights 1 / (rank + offset), for ``random.choices(cum_weights=)``."""
    return list(itertools.accumulate(1.0 / (rank + offset) for rank in range(count)))


class CrmGenerator:
    """CRM records with known duplicates. Same size and seed, same records."""

    def __init__(self, *, size: int, seed: int) -> None:
        from faker import Faker

        self.size = size
        self.rng = random.Random(seed * 7919 + 17)
        given: set[str] = set()
        surnames: set[str] = set()
        for i, locale in enumerate(sorted(set(GIVEN_LOCALES) | set(SURNAME_LOCALES))):
            fake = Faker(locale)
            fake.seed_instance(seed * 31 + i)
            if locale in GIVEN_LOCALES:
                given.update(_plain(fake.first_name()) for _ in range(1500))
            if locale in SURNAME_LOCALES:
                surnames.update(_plain(fake.last_name()) for _ in range(2500))
        self.given = sorted(g for g in given if len(g) >= 2 and " " not in g)
        self.surnames = sorted(s for s in surnames if len(s) >= 2)
        self.rng.shuffle(self.given)
        self.rng.shuffle(self.surnames)
        self.given_w = _zipf(len(self.given), GIVEN_OFFSET)
        self.surname_w = _zipf(len(self.surnames), SURNAME_OFFSET)
        words = sorted(surnames | given)
        self.street_names = [
            f"{self.rng.choice(words).title()} {self.rng.choice(STREET_TYPES)}" for _ in range(6000)
        ]
        self.suburbs = self._suburbs(words, count=max(600, min(size // 20, 4000)))

    def _suburbs(self, words: list[str], count: int) -> list[tuple[str, str, str]]:
        rng = self.rng
        out: list[tuple[str, str, str]] = []
        names: set[str] = set()
        while len(out) < count:
            state, _, low, high = rng.choices(STATES, weights=[s[1] for s in STATES])[0]
            stem = rng.choice(words).title()
            name = f"{rng.choice(SUBURB_PREFIXES)}{stem}{rng.choice(SUBURB_SUFFIXES)}"
            if name in names:
                continue
            names.add(name)
            out.append((name, f"{rng.randint(low, high):04d}", state))
        return out

    # --- originals ----------------------------------------------------------------------

    def _birth_date(self) -> str:
        return (date(1930, 1, 1) + timedelta(days=self.rng.randrange(365 * 76))).isoformat()

    def _address(self) -> dict[str, str]:
        rng = self.rng
        suburb, postcode, state = rng.choice(self.suburbs)
        number = str(int(rng.paretovariate(1.2) * 3))
        second = ""
        if rng.random() < 0.15:
            pattern = rng.choice(SECOND_LINES)
            second = pattern.format(n=rng.randint(1, 30), name=rng.choice(self.surnames))
        return {
            "street_number": number,
            "address_1": rng.choice(self.street_names),
            "address_2": second,
            "suburb": suburb,
            "postcode": postcode,
            "state": state,
        }

    def original(self) -> dict[str, str]:
        rng = self.rng
        row = {
            "given_name": rng.choices(self.given, cum_weights=self.given_w)[0],
            "surname": rng.choices(self.surnames, cum_weights=self.surname_w)[0],
            **self._address(),
            "date_of_birth": self._birth_date() if rng.random() < 0.97 else "",
        }
        return row

    def household(self, base: dict[str, str]) -> dict[str, str]:
        rng = self.rng
        row = dict(base)
        while row["given_name"] == base["given_name"]:
            row["given_name"] = rng.choices(self.given, cum_weights=self.given_w)[0]
        row["date_of_birth"] = self._birth_date()
        return row

    # --- duplicates ---------------------------------------------------------------------

    def duplicate(self, base: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
        rng = self.rng
        row = dict(base)
        kinds: list[str] = []
        if rng.random() < SWAP_NAMES:
            row["given_name"], row["surname"] = row["surname"], row["given_name"]
            kinds.append("swap_names")
        count = rng.choices(*MODIFICATIONS_PER_RECORD)[0]
        fields = list(FIELD_PROBABILITIES)
        weights = list(FIELD_PROBABILITIES.values())
        touched: set[str] = set()
        while len(touched) < count:
            name = rng.choices(fields, weights=weights)[0]
            if name in touched:
                continue
            touched.add(name)
            for _ in range(2 if rng.random() < SECOND_MODIFICATION else 1):
                error = self._modify(row, name)
                if error:
                    kinds.append(f"{name}:{error}")
        return row, tuple(kinds)

    def _modify(self, row: dict[str, str], name: str) -> str:
        rng = self.rng
        value = row[name]
        if name == "date_of_birth":
            table = DATE_ERRORS
        elif name in ("street_number", "postcode"):
            table = NUMBER_ERRORS
        elif name == "state":
            table = STATE_ERRORS
        else:
            table = TEXT_ERRORS
        error = rng.choices(list(table), weights=list(table.values()))[0]
        if error == "missing":
            row[name] = ""
            return error if value else ""
        if error == "replace":
            row[name] = self._replacement(name, value)
            return error
        if not value:
            return ""
        if name == "date_of_birth":
            new = _date_error(rng, value, error)
        elif error == "keyboard":
            new = _keyboard(rng, value)
        elif error == "ocr":
            new = _swap_pattern(rng, value, OCR_CONFUSIONS) or _keyboard(rng, value)
        elif error == "phonetic":
            new = _swap_pattern(rng, value, PHONETIC) or _keyboard(rng, value)
        elif error == "insert":
            pool = "0123456789" if value.isdigit() else "abcdefghijklmnopqrstuvwxyz"
            i = rng.randrange(len(value) + 1)
            new = value[:i] + rng.choice(pool) + value[i:]
        elif error == "delete":
            i = rng.randrange(len(value))
            new = value[:i] + value[i + 1 :] if len(value) > 1 else value
        elif error == "transpose":
            if len(value) < 2:
                return ""
            i = rng.randrange(len(value) - 1)
            new = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
        else:  # space: lost between words, or put inside one
            if " " in value:
                spaces = [i for i, c in enumerate(value) if c == " "]
                i = rng.choice(spaces)
                new = value[:i] + value[i + 1 :]
            elif len(value) >= 4:
                i = rng.randrange(2, len(value) - 1)
                new = value[:i] + " " + value[i:]
            else:
                return ""
        if new == value:
            return ""
        row[name] = new
        return error

    def _replacement(self, name: str, value: str) -> str:
        rng = self.rng
        for _ in range(20):
            if name == "given_name":
                new = rng.choices(self.given, cum_weights=self.given_w)[0]
            elif name == "surname":
                new = rng.choices(self.surnames, cum_weights=self.surname_w)[0]
            elif name == "street_number":
                new = str(int(rng.paretovariate(1.2) * 3))
            elif name == "address_1":
                new = rng.choice(self.street_names)
            elif name == "address_2":
                new = rng.choice(SECOND_LINES).format(
                    n=rng.randint(1, 30), name=rng.choice(self.surnames)
                )
            elif name == "suburb":
                new = rng.choice(self.suburbs)[0]
            elif name == "postcode":
                new = rng.choice(self.suburbs)[1]
            elif name == "state":
                new = rng.choice(STATES)[0]
            else:
                new = self._birth_date()
            if new != value:
                return new
        return value

    # --- the data set -------------------------------------------------------------------

    def rows(self) -> list[tuple[int, str, dict[str, str], tuple[str, ...]]]:
        """(entity, role, CRM row, errors) for every record, shuffled."""
        rng = self.rng
        out: list[tuple[int, str, dict[str, str], tuple[str, ...]]] = []
        originals: list[dict[str, str]] = []
        entity = 0
        while len(out) < self.size:
            entity += 1
            if originals and rng.random() < SHARE_HOUSEHOLD:
                out.append((entity, "household", self.household(rng.choice(originals)), ()))
                continue
            row = self.original()
            originals.append(row)
            out.append((entity, "original", row, ()))
            if rng.random() < SHARE_WITH_DUPLICATES:
                for _ in range(rng.choices(*DUPLICATES_PER_ORIGINAL)[0]):
                    duplicate, kinds = self.duplicate(row)
                    out.append((entity, "duplicate", duplicate, kinds))
        out = out[: self.size]
        rng.shuffle(out)
        return out

    def records(self) -> list[CrmRecord]:
        return [
            CrmRecord(entity, crm_traits(row, rng_case=self.rng), role, kinds)
            for entity, role, row, kinds in self.rows()
        ]


def crm_traits(row: dict[str, str], *, rng_case: random.Random | None = None) -> dict[str, Any]:
    """A CRM row as the Segment traits an import writes (``identify`` traits)."""
    given, surname = row["given_name"], row["surname"]
    if rng_case is not None:
        # Imports differ in case: as typed, capitalized or all capitals.
        style = rng_case.random()
        if style < 0.6:
            given, surname = given.title(), surname.title()
        elif style < 0.7:
            given, surname = given.upper(), surname.upper()
    street = " ".join(p for p in (row["street_number"], row["address_1"]) if p)
    if row["address_2"]:
        street = f"{street}, {row['address_2']}" if street else row["address_2"]
    traits: dict[str, Any] = {}
    if given:
        traits["firstName"] = given
    if surname:
        traits["lastName"] = surname
    if row["date_of_birth"]:
        traits["birthday"] = row["date_of_birth"]
    address = {
        "street": street,
        "city": row["suburb"],
        "postalCode": row["postcode"],
        "state": row["state"],
        "country": "AU",
    }
    traits["address"] = {k: v for k, v in address.items() if v}
    return traits


def _plain(text: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalpha() or c in " -'").strip()


def _keyboard(rng: random.Random, value: str) -> str:
    """A neighbouring key; a digit's neighbours are the digits beside it (numbers are
    typed on the number row or keypad, not among the letters)."""
    spots = [i for i, c in enumerate(value) if c.lower() in NEIGHBOURS]
    if not spots:
        return value
    i = rng.choice(spots)
    near = NEIGHBOURS[value[i].lower()]
    if value[i].isdigit():
        near = "".join(c for c in near if c.isdigit())
    return value[:i] + rng.choice(near) + value[i + 1 :]


def _swap_pattern(rng: random.Random, value: str, table: tuple[tuple[str, str], ...]) -> str:
    """One occurrence of a pattern of ``table`` (either way round) replaced."""
    lower = value.lower()
    options = [(a, b) for a, b in table if a in lower] + [
        (b, a) for a, b in table if b and b in lower
    ]
    if not options:
        return ""
    a, b = rng.choice(options)
    spots = [i for i in range(len(lower)) if lower.startswith(a, i)]
    i = rng.choice(spots)
    return value[:i] + b + value[i + len(a) :]


def _date_error(rng: random.Random, value: str, error: str) -> str:
    y, m, d = (int(x) for x in value.split("-"))
    for _ in range(20):
        if error == "day_month":
            if d > 12 or d == m:
                error = "digit"
                continue
            y2, m2, d2 = y, d, m
        elif error == "year":
            y2, m2, d2 = y + rng.choice((-1, 1)), m, d
        else:
            digits = list(f"{y:04d}{m:02d}{d:02d}")
            i = rng.choice((2, 3, 4, 5, 6, 7))
            digits[i] = rng.choice("0123456789")
            text = "".join(digits)
            y2, m2, d2 = int(text[:4]), int(text[4:6]), int(text[6:])
        try:
            new = date(y2, m2, d2).isoformat()
        except ValueError:
            continue
        if new != value:
            return new
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for record in sorted(
        CrmGenerator(size=args.size, seed=args.seed).records(), key=lambda r: r.entity
    ):
        print(record.entity, record.role, record.kinds, record.traits)


if __name__ == "__main__":
    main()
