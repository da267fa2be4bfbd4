#!/usr/bin/env python
"""Deduplication benchmark: labelled person records, deduplicated through the product.

For each size (``--sizes 10000,100000``), in a fresh process:

1. Generates person records with a known answer: base identities from Faker (en_US,
   en_CA, en_GB, de_DE, fr_FR), about 10% of them with one or two duplicate
   records carrying realistic errors, each duplicate drawing 1-3 of: keyboard
   typos, OCR errors, nicknames, swapped first and last names, missing fields,
   transposed phone digits, a new address (moved house), a new email, a typo in
   the email, a typo in the birthday. Every duplicate also gets formatting noise
   (case, phone format, street abbreviations, unit numbers). Hard non-duplicates
   are mixed in: twins (same birthday, last name and address; some with
   similar first names), household members, fathers and sons with the same
   name and address (half of the sons with no birthday; the others born 22-38
   years apart, on a day of their own), and namesakes (same first and last name).
2. Drops and recreates the PostgreSQL database ``cdp_bench_dedup`` on
   postgres://postgres@127.0.0.1:5432, migrates it, and bulk-creates one Profile
   per record with the record as its traits.
3. Runs ``dedup_run(full=True)``, exactly what ``manage.py dedupe --full`` runs:
   blocking, comparison, EM, auto-merges through ``profile_merge``.
4. Scores the result pairwise over records: two records are predicted to be one
   person when they end up in the same live profile. Precision = correct
   predicted pairs / predicted pairs; recall = correct predicted pairs / true
   duplicate pairs (pairs of records of one person), so recall is over true
   duplicate pairs, not over people. Also: recall if reviewers merged every true
   pair in the review queue, recall per error kind, pairs compared against n²,
   wall time per stage, peak memory (getrusage maxrss of the process).
5. Changes 1% of the profiles and runs an incremental run, and reports it.

With ``--generators own,crm`` (the default) each size runs on this generator and
on ``bench/dedup_gen2.py``'s CRM records (names, address and birth date only). With
``--ingest batch`` (the default) step 2 posts each record as an ``identify`` event
to ``/v1/batch`` (resolved as it arrives) and the records' profiles are read back
through ``GET /api/v1/profiles``; ``--ingest direct`` bulk-creates the profiles
as described above. The report adds blocking recall, candidates against n², pairs
in review per 1,000 records and the calibration of the stored probabilities.

Run:  .venv/bin/python bench/dedup.py --sizes 10000,100000
Only the local PostgreSQL is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import string
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

LOCALES = (  # country, share, Faker locale, email domains
    ("US", 0.60, "en_US", ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com")),
    ("CA", 0.10, "en_CA", ("gmail.com", "outlook.com", "yahoo.ca", "hotmail.com")),
    ("GB", 0.12, "en_GB", ("gmail.com", "btinternet.com", "outlook.com", "yahoo.co.uk")),
    ("DE", 0.10, "de_DE", ("gmail.com", "gmx.de", "web.de", "t-online.de")),
    ("FR", 0.08, "fr_FR", ("gmail.com", "orange.fr", "free.fr", "laposte.net")),
)
# The short forms people sign up with (written for the benchmark; some are not in
# the matcher's nickname data, as in life).
NICKNAMES = {
    "Robert": ("Bob", "Rob", "Bobby"),
    "William": ("Bill", "Will", "Billy"),
    "Richard": ("Rick", "Dick", "Rich"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "Michael": ("Mike", "Mikey"),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Betty"),
    "Katherine": ("Kate", "Katie", "Kathy"),
    "Catherine": ("Cathy", "Cat", "Kate"),
    "Jennifer": ("Jen", "Jenny"),
    "Christopher": ("Chris", "Topher"),
    "Thomas": ("Tom", "Tommy"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Daniel": ("Dan", "Danny"),
    "Joseph": ("Joe", "Joey"),
    "Anthony": ("Tony",),
    "Matthew": ("Matt",),
    "Patricia": ("Pat", "Patty", "Trish"),
    "Susan": ("Sue", "Susie"),
    "Jessica": ("Jess", "Jessie"),
    "Samantha": ("Sam", "Sammy"),
    "Alexander": ("Alex", "Xander"),
    "Benjamin": ("Ben", "Benny"),
    "Nicholas": ("Nick", "Nicky"),
    "Jonathan": ("Jon", "Johnny"),
    "Stephanie": ("Steph",),
    "Rebecca": ("Becky", "Becca"),
    "Andrew": ("Andy", "Drew"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Timothy": ("Tim", "Timmy"),
    "Kenneth": ("Ken", "Kenny"),
    "Steven": ("Steve",),
    "Stephen": ("Steve",),
    "Deborah": ("Debbie", "Deb"),
    "Victoria": ("Vicky", "Tori"),
    "Charles": ("Charlie", "Chuck"),
    "David": ("Dave", "Davey"),
    "Ronald": ("Ron", "Ronnie"),
    "Donald": ("Don", "Donnie"),
    "Gregory": ("Greg",),
    "Peter": ("Pete",),
    "Frederick": ("Fred", "Freddie"),
    "Nathaniel": ("Nate", "Nathan"),
    "Zachary": ("Zach", "Zack"),
    "Abigail": ("Abby",),
    "Kimberly": ("Kim",),
    "Jacqueline": ("Jackie",),
    "Christina": ("Tina", "Chris"),
    "Alexandra": ("Sandra", "Alex", "Lexi"),
    "Johannes": ("Hannes", "Hans"),
    "Katharina": ("Kathi", "Katja"),
    "Wolfgang": ("Wolf",),
    "Friedrich": ("Fritz",),
    "Elisabeth": ("Lisa", "Elli"),
    "Jennifer ": ("Jenn",),
    "Joshua": ("Josh",),
    "Brandon": ("Bran",),
    "Kevin": ("Kev",),
    "Jeffrey": ("Jeff",),
    "Douglas": ("Doug",),
    "Raymond": ("Ray",),
    "Lawrence": ("Larry",),
    "Gerald": ("Jerry",),
    "Barbara": ("Barb", "Babs"),
    "Dorothy": ("Dot", "Dottie"),
    "Amanda": ("Mandy",),
    "Melissa": ("Missy", "Mel"),
    "Pamela": ("Pam",),
    "Cynthia": ("Cindy",),
    "Kathleen": ("Kathy", "Kath"),
    "Christine": ("Chris", "Chrissy"),
    "Sandra": ("Sandy",),
    "Ashley": ("Ash",),
    "Nicole": ("Nikki",),
    "Valerie": ("Val",),
}
NICK_TO_FORMAL = {nick: formal for formal, nicks in NICKNAMES.items() for nick in nicks}
# OCR confusions, both ways.
OCR = (("rn", "m"), ("m", "rn"), ("l", "1"), ("I", "l"), ("O", "0"), ("o", "0"), ("S", "5"))
OCR += (("B", "8"), ("cl", "d"), ("e", "c"), ("h", "b"), ("u", "v"), ("vv", "w"), ("g", "q"))
KEYBOARD = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}  # fmt: skip
STREET_SHORT = (
    ("Street", "St."), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr."), ("Court", "Ct"),
    ("Lane", "Ln"), ("Boulevard", "Blvd"), ("Place", "Pl."), ("Square", "Sq"),
    ("straße", "str."), ("Straße", "Str."), ("rue", "r."), ("avenue", "av."),
    ("boulevard", "bd"), ("Crescent", "Cres."),
)  # fmt: skip
# Similar names parents give twins; either may meet any base name.
TWIN_NAMES = (
    "Anna", "Anne", "Ella", "Emma", "Aidan", "Aiden", "Brian", "Bryan", "Jon", "John",
    "Mia", "Maya", "Lena", "Lina", "Max", "Maxim", "Liam", "Leon", "Noah", "Nora",
)  # fmt: skip
# Share of the records that are a "junior" (see Generator.relative). A smaller
# share (bench/dedup_ceiling.py --junior-share) turns the rest of that band into
# records of people of their own; the other bands stay as they are.
JUNIOR_SHARE = 0.010
ERROR_KINDS = {  # kind -> weight
    "typo": 3,
    "ocr": 1,
    "nickname": 2,
    "swapped_names": 1,
    "missing_fields": 2,
    "phone_transposed": 1,
    "moved_house": 2,
    "new_email": 2,
    "email_typo": 1,
    "birthday_typo": 1,
}


@dataclass
class Record:
    entity: int
    traits: dict[str, Any]
    role: str = "original"  # original, duplicate, twin, household, junior, namesake
    kinds: tuple[str, ...] = ()


@dataclass
class _Pools:
    country: str
    domains: tuple[str, ...]
    first_male: list[str] = field(default_factory=list)
    first_female: list[str] = field(default_factory=list)
    last: list[str] = field(default_factory=list)
    streets: list[str] = field(default_factory=list)
    cities: list[str] = field(default_factory=list)
    postcodes: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)


class Generator:
    """Person records with known duplicates. Same seed and size, same records."""

    def __init__(self, *, size: int, seed: int, junior_share: float = JUNIOR_SHARE) -> None:
        from faker import Faker

        if not 0 <= junior_share <= JUNIOR_SHARE:
            raise ValueError(f"junior_share must be within 0 and {JUNIOR_SHARE}")
        self.junior_share = junior_share

        self.rng = random.Random(seed)
        # For draws added after the benchmark's figures were first published: a
        # stream of their own keeps every other record as it was for a seed.
        self.side_rng = random.Random(seed + 1_000_003)
        self.size = size
        self.pools: list[_Pools] = []
        pool_size = max(2000, min(size // 4, 20000))
        for i, (country, _, locale, domains) in enumerate(LOCALES):
            fake = Faker(locale)
            fake.seed_instance(seed * 10 + i)
            p = _Pools(country, domains)
            p.first_male = [fake.first_name_male() for _ in range(pool_size)]
            p.first_female = [fake.first_name_female() for _ in range(pool_size)]
            p.last = [fake.last_name() for _ in range(pool_size)]
            p.streets = [fake.street_name() for _ in range(pool_size)]
            p.cities = [fake.city() for _ in range(max(500, pool_size // 10))]
            p.postcodes = [fake.postcode() for _ in range(pool_size)]
            state = {
                "US": lambda f=fake: f.state_abbr(include_territories=False),
                "CA": lambda f=fake: f.province_abbr(),
                "GB": lambda f=fake: f.county(),
                "DE": lambda f=fake: f.state(),
                "FR": lambda f=fake: f.region(),
            }[country]
            p.states = [state() for _ in range(200)]
            self.pools.append(p)
        self.weights = [share for _, share, _, _ in LOCALES]
        self.emails: set[str] = set()
        self.phones: set[str] = set()

    # --- identities -----------------------------------------------------------------

    def pool(self) -> _Pools:
        return self.rng.choices(self.pools, weights=self.weights)[0]

    def address(self, p: _Pools) -> dict[str, str]:
        rng = self.rng
        number = str(rng.choice((rng.randint(1, 99), rng.randint(1, 999), rng.randint(1, 9999))))
        street = rng.choice(p.streets)
        if p.country == "DE":
            line = f"{street} {number}"
        elif p.country == "FR":
            line = f"{number} {street}"
        else:
            line = f"{number} {street}"
        return {
            "street": line,
            "city": rng.choice(p.cities),
            "postalCode": rng.choice(p.postcodes),
            "state": rng.choice(p.states),
            "country": p.country,
        }

    def email(self, first: str, last: str, p: _Pools, *, other_than: str = "") -> str:
        rng = self.rng
        f, la = _ascii(first) or "x", _ascii(last) or "y"
        for attempt in range(100):
            local = rng.choice(
                (
                    f"{f}.{la}",
                    f"{f}{la}",
                    f"{f[0]}.{la}",
                    f"{f}_{la}",
                    f"{f}{la[0]}",
                    f"{f}.{la}{rng.randint(1, 99)}",
                    f"{la}.{f}",
                    f"{f}{rng.randint(1960, 2005)}",
                )
            )
            if attempt > 4:
                local += str(rng.randint(100, 99999))
            email = f"{local}@{rng.choice(p.domains)}"
            if email not in self.emails and email != other_than:
                self.emails.add(email)
                return email
        raise RuntimeError("no free email")

    def phone(self, country: str) -> str:
        rng = self.rng
        while True:
            if country in ("US", "CA"):
                digits = f"{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
                e164 = "+1" + digits
            elif country == "GB":
                digits = f"7{rng.randint(100000000, 999999999)}"
                e164 = "+44" + digits
            elif country == "DE":
                digits = f"1{rng.randint(50, 79)}{rng.randint(1000000, 99999999)}"
                e164 = "+49" + digits
            else:
                digits = f"{rng.choice('67')}{rng.randint(10000000, 99999999)}"
                e164 = "+33" + digits
            if e164 not in self.phones:
                self.phones.add(e164)
                return self.phone_format(e164, country)

    def phone_format(self, e164: str, country: str) -> str:
        rng = self.rng
        if country in ("US", "CA"):
            d = e164[2:]
            return rng.choice(
                (
                    e164,
                    f"({d[:3]}) {d[3:6]}-{d[6:]}",
                    f"{d[:3]}-{d[3:6]}-{d[6:]}",
                    f"{d[:3]}.{d[3:6]}.{d[6:]}",
                    f"+1 {d[:3]} {d[3:6]} {d[6:]}",
                )
            )
        code = {"GB": "+44", "DE": "+49", "FR": "+33"}[country]
        national = "0" + e164[len(code) :]
        return rng.choice((e164, national, f"{code} {e164[len(code) :]}"))

    def birthday(self) -> str:
        start = date(1940, 1, 1)
        return (start + timedelta(days=self.rng.randrange(365 * 66))).isoformat()

    def person(self, p: _Pools | None = None, *, last: str | None = None) -> dict[str, Any]:
        rng = self.rng
        p = p or self.pool()
        first = rng.choice(p.first_male if rng.random() < 0.5 else p.first_female)
        # Formal names with well-known short forms are common in life.
        if rng.random() < 0.08:
            first = rng.choice(list(NICKNAMES)).strip()
        last = last or rng.choice(p.last)
        traits: dict[str, Any] = {
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "email": self.email(first, last, p),
        }
        if rng.random() < 0.8:
            traits["phone"] = self.phone(p.country)
        if rng.random() < 0.8:
            traits["birthday"] = self.birthday()
        if rng.random() < 0.9:
            traits["address"] = self.address(p)
        return traits

    def _pool_of(self, traits: dict[str, Any]) -> _Pools:
        country = traits.get("address", {}).get("country")
        return next((p for p in self.pools if p.country == country), self.pools[0])

    # --- hard non-duplicates -----------------------------------------------------------

    def relative(self, base: dict[str, Any], role: str) -> dict[str, Any]:
        rng = self.rng
        p = self._pool_of(base)
        other = self.person(p, last=base["lastName"])
        if "address" in base:
            other["address"] = dict(base["address"])
        if role == "twin":
            if "birthday" in base:
                other["birthday"] = base["birthday"]
            if rng.random() < 0.25:  # Anna and Anne
                other["firstName"] = rng.choice(TWIN_NAMES)
            while other["firstName"] == base["firstName"]:  # no parent does that
                other["firstName"] = rng.choice(TWIN_NAMES)
        elif role == "junior":
            other["firstName"] = base["firstName"]
            if "birthday" in base:
                # Born 22 to 38 years after the base, on a day of his own; or, where
                # the base is too young to have a grown son, the base's father.
                born, gap = int(base["birthday"][:4]), rng.randint(22, 38)
                year = born + gap if born + gap <= 2010 else born - gap
                day = date(year, 1, 1) + timedelta(days=self.side_rng.randrange(365))
                other["birthday"] = day.isoformat()
            if rng.random() < 0.5:
                other.pop("birthday", None)
        other["name"] = f"{other['firstName']} {other['lastName']}"
        other["email"] = self.email(other["firstName"], other["lastName"], p)
        return other

    def namesake(self, base: dict[str, Any]) -> dict[str, Any]:
        other = self.person(self._pool_of(base), last=base["lastName"])
        other["firstName"] = base["firstName"]
        other["name"] = f"{other['firstName']} {other['lastName']}"
        other["email"] = self.email(other["firstName"], other["lastName"], self._pool_of(base))
        return other

    # --- duplicates ---------------------------------------------------------------------

    def duplicate(self, base: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        rng = self.rng
        traits = json.loads(json.dumps(base))
        count = rng.choices((1, 2, 3), weights=(55, 35, 10))[0]
        kinds: list[str] = []
        while len(kinds) < count:
            kind = rng.choices(list(ERROR_KINDS), weights=list(ERROR_KINDS.values()))[0]
            if kind not in kinds and self.apply(kind, traits, base):
                kinds.append(kind)
        self.noise(traits)
        return traits, tuple(kinds)

    def apply(self, kind: str, t: dict[str, Any], base: dict[str, Any]) -> bool:
        rng = self.rng
        p = self._pool_of(base)
        if kind == "typo":
            key = rng.choice(("firstName", "lastName"))
            t[key] = _typo(rng, t[key])
        elif kind == "ocr":
            key = rng.choice(("lastName", "firstName", "street"))
            if key == "street":
                if "address" not in t:
                    return False
                t["address"]["street"] = _ocr(rng, t["address"]["street"])
            else:
                t[key] = _ocr(rng, t[key])
        elif kind == "nickname":
            first = t["firstName"]
            if first in NICKNAMES:
                t["firstName"] = rng.choice(NICKNAMES[first])
            elif first in NICK_TO_FORMAL:
                t["firstName"] = NICK_TO_FORMAL[first].strip()
            else:
                return False
        elif kind == "swapped_names":
            t["firstName"], t["lastName"] = t["lastName"], t["firstName"]
        elif kind == "missing_fields":
            present = [k for k in ("email", "phone", "birthday", "address") if k in t]
            if len(present) < 2:
                return False
            for k in rng.sample(present, k=rng.randint(1, min(2, len(present) - 1))):
                del t[k]
        elif kind == "phone_transposed":
            if "phone" not in t:
                return False
            t["phone"] = _transpose_digits(rng, t["phone"])
        elif kind == "moved_house":
            if "address" not in t:
                return False
            t["address"] = self.address(p)
            if "phone" in t and rng.random() < 0.4:
                t["phone"] = self.phone(p.country)
        elif kind == "new_email":
            if "email" not in t:
                return False
            t["email"] = self.email(t["firstName"], t["lastName"], p, other_than=t["email"])
        elif kind == "email_typo":
            if "email" not in t:
                return False
            local, _, domain = t["email"].partition("@")
            t["email"] = f"{_typo(rng, local)}@{domain}"
        elif kind == "birthday_typo":
            if "birthday" not in t:
                return False
            t["birthday"] = _birthday_typo(rng, t["birthday"])
        t["name"] = f"{t['firstName']} {t['lastName']}"
        return True

    def noise(self, t: dict[str, Any]) -> None:
        """Formatting differences that are not errors."""
        rng = self.rng
        if rng.random() < 0.1:
            t["firstName"], t["lastName"] = t["firstName"].upper(), t["lastName"].upper()
        if rng.random() < 0.1:
            t["firstName"], t["lastName"] = t["firstName"].lower(), t["lastName"].lower()
        t["name"] = f"{t['firstName']} {t['lastName']}"
        if rng.random() < 0.05:  # only the full name
            del t["firstName"], t["lastName"]
        if "phone" in t and rng.random() < 0.5:
            digits = "".join(c for c in t["phone"] if c.isdigit())
            country = t.get("address", {}).get("country", "US")
            if country in ("US", "CA") and len(digits) >= 10:
                t["phone"] = self.phone_format("+1" + digits[-10:], "US")
        if "email" in t and rng.random() < 0.05:
            t["email"] = t["email"].capitalize()
        address = t.get("address")
        if address:
            street = address["street"]
            forms = [(a, b) for a, b in STREET_SHORT if a in street]
            if forms and rng.random() < 0.6:
                a, b = rng.choice(forms)
                street = street.replace(a, b, 1)
            elif rng.random() < 0.2:
                street = f"{street}, Apt {rng.randint(1, 40)}"
            address["street"] = street
            if rng.random() < 0.2:
                address["city"] = address["city"].upper()

    # --- the data set ---------------------------------------------------------------------

    def records(self) -> list[Record]:
        rng = self.rng
        out: list[Record] = []
        entity = 0
        originals: list[dict[str, Any]] = []
        while len(out) < self.size:
            entity += 1
            roll = rng.random()
            if originals and roll < 0.010:
                out.append(Record(entity, self.relative(rng.choice(originals), "twin"), "twin"))
                continue
            if originals and roll < 0.035:
                out.append(
                    Record(entity, self.relative(rng.choice(originals), "household"), "household")
                )
                continue
            if originals and roll < 0.045 - (JUNIOR_SHARE - self.junior_share):
                out.append(Record(entity, self.relative(rng.choice(originals), "junior"), "junior"))
                continue
            if originals and 0.045 <= roll < 0.055:
                out.append(Record(entity, self.namesake(rng.choice(originals)), "namesake"))
                continue
            traits = self.person()
            originals.append(traits)
            out.append(Record(entity, traits))
            copies = rng.choices((0, 1, 2), weights=(90, 9, 1))[0]
            for _ in range(copies):
                dup, kinds = self.duplicate(traits)
                out.append(Record(entity, dup, "duplicate", kinds))
        out = out[: self.size]
        rng.shuffle(out)
        return out


def _ascii(text: str) -> str:
    import unicodedata

    text = text.replace("ß", "ss")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _typo(rng: random.Random, text: str) -> str:
    """A keyboard slip: two neighbours swapped, a letter dropped, doubled or hit next door."""
    if len(text) < 3:
        return text + text[-1:]
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    if kind == 0 and text[i] != text[i + 1 if i + 1 < len(text) else i - 1]:
        j = i + 1 if i + 1 < len(text) else i - 1
        a, b = sorted((i, j))
        return text[:a] + text[b] + text[a] + text[b + 1 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    near = KEYBOARD.get(text[i].lower())
    if not near:
        return text[:i] + text[i + 1 :]
    return text[:i] + rng.choice(near) + text[i + 1 :]


def _ocr(rng: random.Random, text: str) -> str:
    options = [(a, b) for a, b in OCR if a in text]
    if not options:
        return _typo(rng, text)
    a, b = rng.choice(options)
    at = [i for i in range(len(text)) if text.startswith(a, i)]
    i = rng.choice(at)
    return text[:i] + b + text[i + len(a) :]


def _transpose_digits(rng: random.Random, phone: str) -> str:
    positions = [i for i, c in enumerate(phone) if c.isdigit()]
    # Not the country code: a slip in the subscriber number.
    candidates = [
        (positions[k], positions[k + 1])
        for k in range(max(2, len(positions) - 8), len(positions) - 1)
        if phone[positions[k]] != phone[positions[k + 1]]
    ]
    if not candidates:
        return phone
    i, j = rng.choice(candidates)
    chars = list(phone)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _birthday_typo(rng: random.Random, birthday: str) -> str:
    y, m, d = birthday.split("-")
    if rng.random() < 0.4 and int(d) <= 12 and d != m:
        return f"{y}-{d}-{m}"  # day and month swapped
    for _ in range(20):
        digits = list(f"{y}{m}{d}")
        i = rng.choice((2, 3, 7))
        digits[i] = rng.choice(string.digits)
        candidate = "".join(digits)
        try:
            date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
        except ValueError:
            continue
        if candidate != f"{y}{m}{d}":
            return f"{candidate[:4]}-{candidate[4:6]}-{candidate[6:]}"
    return birthday


# --- running through the product ----------------------------------------------------------

IDENTIFY_BATCH = 500  # events per /v1/batch request
ANONYMOUS_PREFIX = "bench-dedup-"


class _Api:
    """The product as a user reaches it: a write key and identify events posted to
    /v1/batch (processed as they arrive: eager tasks), a read-only API token and the
    cursor-paginated profile list (Django's test client, in this process)."""

    def __init__(self, *, reader_only: bool = False) -> None:
        import io

        from django.core.management import call_command
        from django.test import Client

        self.write_key = ""
        if not reader_only:  # a restored snapshot has its source already
            out = io.StringIO()
            call_command("create_source", "bench-dedup", stdout=out)
            self.write_key = out.getvalue().strip()
        out = io.StringIO()
        name = f"bench-dedup-reader-{time.time_ns()}" if reader_only else "bench-dedup-reader"
        call_command("create_api_token", name, "--read-only", stdout=out)
        self.token = out.getvalue().strip()
        self.client = Client()

    def post_identifies(self, records: list[Any], seed: int) -> None:
        import base64

        auth = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        start_time = datetime(2024, 1, 1, tzinfo=UTC)
        for start in range(0, len(records), IDENTIFY_BATCH):
            batch = [
                {
                    "type": "identify",
                    "anonymousId": f"{ANONYMOUS_PREFIX}{i}",
                    "traits": record.traits,
                    "messageId": f"bench-dedup-{seed}-{i}",
                    "timestamp": (start_time + timedelta(seconds=i)).isoformat(),
                }
                for i, record in enumerate(records[start : start + IDENTIFY_BATCH], start)
            ]
            response = self.client.post(
                "/v1/batch",
                data=json.dumps({"batch": batch}),
                content_type="application/json",
                HTTP_AUTHORIZATION=auth,
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"/v1/batch answered {response.status_code}: {response.content[:300]!r}"
                )

    def profiles_of_records(self, count: int) -> list[Any]:
        """The live profile of each record (by its anonymous id), read page by page
        from GET /api/v1/profiles."""
        import uuid

        owner: dict[int, Any] = {}
        url: str | None = "/api/v1/profiles?limit=500"
        while url:
            response = self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {self.token}")
            if response.status_code != 200:
                raise RuntimeError(f"/api/v1/profiles answered {response.status_code}")
            data = response.json()
            for profile in data["results"]:
                for identifier in profile["identifiers"]:
                    value = identifier["value"]
                    if identifier["type"] == "anonymous_id" and value.startswith(ANONYMOUS_PREFIX):
                        owner[int(value.removeprefix(ANONYMOUS_PREFIX))] = uuid.UUID(profile["id"])
            url = data.get("next")
        if len(owner) != count:
            raise RuntimeError(f"the profile API lists {len(owner)} of {count} records")
        return [owner[i] for i in range(count)]


def blocking_recall(records: list[Any]) -> dict[str, Any]:
    """The product's blocking (apps/identity/dedup.blocking) on the records' traits:
    the share of true pairs that become candidates, and the share whose two records
    are joined through candidate pairs of one person (what merging can reach)."""
    import uuid

    import numpy as np

    from apps.identity.dedup.blocking import block_keys, candidate_pairs
    from apps.identity.dedup.records import build_records
    from apps.identity.dedup.services.config import dedup_settings_load

    settings = dedup_settings_load()
    rows = [(uuid.UUID(int=i + 1), r.traits) for i, r in enumerate(records)]
    built = build_records(rows, settings.specs)
    n = len(built)
    left, right, stats = candidate_pairs(
        block_keys(built), n, max_block_size=settings.max_block_size
    )
    entity = np.array([r.entity for r in records])
    same = entity[left] == entity[right]
    true_pairs = pair_count(Counter(entity.tolist()))
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(left[same].tolist(), right[same].tolist(), strict=True):
        parent[find(i)] = find(j)
    reachable = pair_count(Counter((find(i), int(entity[i])) for i in range(n)))
    return {
        "candidates": len(left),
        "all_pairs": n * (n - 1) // 2,
        "true_pairs": true_pairs,
        "true_candidates": int(same.sum()),
        "recall": round(int(same.sum()) / true_pairs, 5) if true_pairs else 1.0,
        "reachable": round(reachable / true_pairs, 5) if true_pairs else 1.0,
        "per_pass": stats.per_pass,
    }


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pair_count(counter: Counter[Any]) -> int:
    return sum(c * (c - 1) // 2 for c in counter.values())


def snapshot_save(database: str, ids: list[Any]) -> None:
    """Keep the loaded database, before the run, as ``<database>_ingested`` (with each
    record's first profile in a table of its own), for ``--from-snapshot`` re-runs."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_record_profile (i integer PRIMARY KEY, profile_id uuid NOT NULL)"
        )
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            cursor.executemany(
                "INSERT INTO bench_record_profile (i, profile_id) VALUES (%s, %s)",
                list(enumerate(chunk, start)),
            )
        # Fresh planner statistics, as autovacuum leaves them after a load.
        cursor.execute("ANALYZE")
    connection.close()
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}_ingested"')
        conn.execute(f'CREATE DATABASE "{database}_ingested" TEMPLATE "{database}"')


def snapshot_restore(database: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{database}_ingested"')
    # A copy starts with no activity counters, so autovacuum would not analyze it
    # before the run: the planner statistics are made fresh here, as after a load
    # (stale ones planned a seq scan of the identifiers for every merge batch).
    with psycopg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}", autocommit=True) as conn:
        conn.execute("ANALYZE")


def snapshot_ids() -> list[Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT profile_id FROM bench_record_profile ORDER BY i")
        return [row[0] for row in cursor.fetchall()]


def child(
    size: int,
    seed: int,
    database: str,
    generator: str,
    ingest: str,
    snapshot: str = "",
    profile_to: str = "",
    incremental: bool = True,
) -> dict[str, Any]:
    """One size of one generator, in its own process (so that peak memory is this
    size's). ``snapshot``: "save" keeps the loaded database as ``<database>_ingested``;
    "restore" starts from that copy instead of loading (same records: same seed).
    ``profile_to``: cProfile of the run written there."""
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory
    os.environ["LOG_LEVEL"] = "WARNING"
    # Events are processed as they are posted (eager tasks): resolution is part of
    # what the ingest time measures, and no broker is shared with anyone.
    os.environ["CELERY_BROKER_URL"] = ""
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.local")
    sys.path.insert(0, str(ROOT))
    result: dict[str, Any] = {"size": size, "seed": seed, "generator": generator, "ingest": ingest}

    t = time.perf_counter()
    if generator == "crm":
        from dedup_gen2 import CrmGenerator

        records: list[Any] = CrmGenerator(size=size, seed=seed).records()
    else:
        records = Generator(size=size, seed=seed).records()
    result["generate_s"] = round(time.perf_counter() - t, 1)
    result["roles"] = dict(Counter(r.role for r in records))

    if snapshot == "restore":
        snapshot_restore(database)
    else:
        recreate_database(database)
    import django

    django.setup()
    from django.core.management import call_command

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    result["migrate_s"] = round(time.perf_counter() - t, 1)

    from apps.identity.dedup.models import DuplicateCandidate
    from apps.identity.dedup.services import dedup_run
    from apps.identity.models import Profile, ProfileMerge

    t = time.perf_counter()
    api: _Api | None = None
    if snapshot == "restore":
        # The records' first profiles as the profile API listed them when loaded.
        ids = snapshot_ids()
        if len(ids) != len(records):
            raise RuntimeError(f"snapshot of {database} holds {len(ids)} records, not {size}")
        if ingest == "batch":
            api = _Api(reader_only=True)
        result["load_s"] = result["read_before_s"] = 0.0
    elif ingest == "batch":
        api = _Api()
        api.post_identifies(records, seed)
        result["load_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        # Each record's profile, as the profile API lists it before any merge.
        ids = api.profiles_of_records(len(records))
        result["read_before_s"] = round(time.perf_counter() - t, 1)
    else:
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        profiles = [
            Profile(traits=r.traits, first_seen=t0 + timedelta(seconds=i), last_seen=t0)
            for i, r in enumerate(records)
        ]
        Profile.objects.bulk_create(profiles, batch_size=2000)
        ids = [p.id for p in profiles]
        result["load_s"] = round(time.perf_counter() - t, 1)
    if snapshot == "save":
        snapshot_save(database, ids)
    result["rss_before_run_mb"] = round(maxrss_mb())

    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t = time.perf_counter()
    run = dedup_run(full=True)
    assert run is not None
    result["run_s"] = round(time.perf_counter() - t, 2)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    result["rss_peak_mb"] = round(maxrss_mb())
    result["run"] = {
        "profiles_scanned": run.profiles_scanned,
        "pairs_compared": run.pairs_compared,
        "auto_merged": run.auto_merged,
        "queued": run.queued,
        "refused": run.refused,
        "timings": run.parameters.get("timings"),
        "blocking": run.parameters.get("blocking"),
        "model": run.parameters.get("model"),
        "thresholds": run.parameters.get("thresholds"),
    }
    result["merge_records_match_score"] = ProfileMerge.objects.filter(
        reason=ProfileMerge.Reason.MATCH_SCORE
    ).count()
    live_of: dict[Any, Any] | None = None
    if api is not None:
        # Data out as a user reads it: which live profile holds each record's
        # anonymous id now.
        t = time.perf_counter()
        after = api.profiles_of_records(len(records))
        result["read_after_s"] = round(time.perf_counter() - t, 1)
        live_of = dict(zip(ids, after, strict=True))
    result["quality"] = evaluate(records, ids, DuplicateCandidate, Profile, live_of)
    result["blocking_recall"] = blocking_recall(records)
    result["thresholds_table"] = threshold_table(records, ids, DuplicateCandidate, Profile)

    if not incremental:
        return result
    # Incremental: 1% of the profiles change (a trait each), then a normal run.
    rng = random.Random(seed + 1)
    live = list(Profile.objects.live().exclude(traits={}).values_list("id", flat=True))
    changed = rng.sample(live, k=max(1, len(live) // 100))
    for chunk_start in range(0, len(changed), 1000):
        chunk = changed[chunk_start : chunk_start + 1000]
        batch = list(Profile.objects.filter(id__in=chunk))
        for profile in batch:
            profile.traits = {**profile.traits, "plan": "plus"}
        Profile.objects.bulk_update(batch, ["traits", "updated_at"], batch_size=1000)
    t = time.perf_counter()
    inc = dedup_run()
    assert inc is not None
    result["incremental"] = {
        "mode": inc.mode,
        "changed": len(changed),
        "profiles_scanned": inc.profiles_scanned,
        "profiles_loaded": inc.profiles_loaded,
        "pairs_compared": inc.pairs_compared,
        "auto_merged": inc.auto_merged,
        "seconds": round(time.perf_counter() - t, 2),
        "timings": inc.parameters.get("timings"),
    }
    return result


def evaluate(
    records: list[Any],
    ids: list[Any],
    candidate_model: Any,
    profile_model: Any,
    live_of: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """Pairwise quality of the merged profiles. ``live_of``: each record's first
    profile -> the live profile that holds it now, as read through the profile API;
    without it, the merge chain is followed in the database."""
    parent = dict(profile_model.objects.values_list("id", "merged_into_id"))

    def live(pid: Any) -> Any:
        if live_of is not None:
            return live_of.get(pid, pid)
        while parent.get(pid) is not None:
            pid = parent[pid]
        return pid

    predicted = [live(pid) for pid in ids]
    entity = [r.entity for r in records]
    true_pairs = pair_count(Counter(entity))
    predicted_pairs = pair_count(Counter(predicted))
    correct = pair_count(Counter(zip(predicted, entity, strict=True)))
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    # Wrong merges by the kind of non-duplicate involved.
    wrong: Counter[str] = Counter()
    members: dict[Any, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        members[p].append(i)
    for rows in members.values():
        if len(rows) < 2:
            continue
        for x in range(len(rows)):
            for y in range(x + 1, len(rows)):
                a, b = records[rows[x]], records[rows[y]]
                if a.entity != b.entity:
                    wrong["+".join(sorted({a.role, b.role}))] += 1

    # If reviewers merged every true pair in the queue (and rejected the others).
    index = {pid: i for i, pid in enumerate(ids)}
    uf = {i: predicted[i] for i in range(len(ids))}
    groups: dict[Any, Any] = {}

    def find(x: Any) -> Any:
        while groups.get(x, x) != x:
            x = groups[x]
        return x

    queued = list(
        candidate_model.objects.filter(status="pending").values_list("profile_a_id", "profile_b_id")
    )
    queue_true = 0
    for a, b in queued:
        ia, ib = index[a], index[b]
        if entity[ia] == entity[ib]:
            queue_true += 1
            ra, rb = find(live(a)), find(live(b))
            if ra != rb:
                groups[ra] = rb
    reviewed = [find(uf[i]) for i in range(len(ids))]
    correct_reviewed = pair_count(Counter(zip(reviewed, entity, strict=True)))

    # Recall per error kind: each duplicate against the original of its person.
    original_at = {r.entity: i for i, r in enumerate(records) if r.role == "original"}
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_count: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for i, r in enumerate(records):
        if r.role != "duplicate" or r.entity not in original_at:
            continue
        found = predicted[i] == predicted[original_at[r.entity]]
        for kind in r.kinds:
            by_kind[kind][0] += found
            by_kind[kind][1] += 1
        by_count[len(r.kinds)][0] += found
        by_count[len(r.kinds)][1] += 1
    # Calibration of the probability stored with each candidate pair (the pairs at
    # or above the review threshold), against the labels.
    calibration = []
    probabilities = []
    for a, b, p in candidate_model.objects.values_list(
        "profile_a_id", "profile_b_id", "probability"
    ):
        if a in index and b in index:
            probabilities.append((p, entity[index[a]] == entity[index[b]]))
    for low, high in ((0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 0.99), (0.99, 1.01)):
        rows = [t for p, t in probabilities if low <= p < high]
        if rows:
            mean_p = sum(p for p, _ in probabilities if low <= p < high) / len(rows)
            calibration.append(
                [low, high, len(rows), round(mean_p, 3), round(sum(rows) / len(rows), 3)]
            )
    brier = base = None
    if probabilities:
        share = sum(t for _, t in probabilities) / len(probabilities)
        brier = round(sum((p - t) ** 2 for p, t in probabilities) / len(probabilities), 4)
        base = round(sum((share - t) ** 2 for _, t in probabilities) / len(probabilities), 4)
    return {
        "calibration": calibration,
        "brier": brier,
        "brier_baseline": base,
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "correct_pairs": correct,
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "f1": round(f1, 5),
        "wrong_merges_by_kind": dict(wrong),
        "queued_pairs": len(queued),
        "queued_true_pairs": queue_true,
        "recall_after_review": round(correct_reviewed / true_pairs, 5) if true_pairs else 1.0,
        "recall_by_error_kind": {
            k: f"{v[0]}/{v[1]} = {v[0] / v[1]:.3f}" for k, v in sorted(by_kind.items())
        },
        "recall_by_error_count": {
            k: f"{v[0]}/{v[1]} = {v[0] / v[1]:.3f}" for k, v in sorted(by_count.items())
        },
    }


def threshold_table(
    records: list[Record], ids: list[Any], candidate_model: Any, profile_model: Any
) -> dict[str, Any]:
    """Candidate pairs (stored ones: at or above the review threshold) by score band,
    true and false, with and without vetoes; and the highest-scoring false ones."""
    index = {pid: i for i, pid in enumerate(ids)}
    bands = [4, 8, 10, 12, 14, 16, 18, 20, 25, 30, 40]
    table: dict[str, list[int]] = {}
    veto_table: dict[str, list[int]] = {}
    false_top: list[tuple[float, str, str, list[str], str, str]] = []
    for a, b, score, evidence in candidate_model.objects.values_list(
        "profile_a_id", "profile_b_id", "score", "evidence"
    ):
        ra, rb = records[index[a]], records[index[b]]
        same = ra.entity == rb.entity
        vetoed = bool(evidence.get("vetoes"))
        band = max(x for x in bands if x <= score) if score >= bands[0] else bands[0]
        row = table.setdefault(
            str(band), [0, 0, 0, 0]
        )  # true ok, true vetoed, false ok, false vetoed
        row[(0 if same else 2) + vetoed] += 1
        if vetoed:
            combo = " + ".join(sorted(evidence["vetoes"]))
            veto_table.setdefault(combo, [0, 0])[0 if same else 1] += 1
        if not same and not vetoed:
            levels = {k: v["level"] for k, v in evidence["fields"].items()}
            false_top.append((score, ra.role, rb.role, evidence.get("vetoes", []), str(levels), ""))
    false_top.sort(reverse=True)
    # True pairs (duplicate vs its original) not merged: why.
    parent = dict(profile_model.objects.values_list("id", "merged_into_id"))

    def live(pid: Any) -> Any:
        while parent.get(pid) is not None:
            pid = parent[pid]
        return pid

    stored = {
        frozenset((a, b)): (
            round(score, 1),
            ev.get("vetoes"),
            {k: v["level"] for k, v in ev["fields"].items()},
            [ev["fields"][k]["values"] for k in ("first_name", "last_name") if k in ev["fields"]],
        )
        for a, b, score, ev in candidate_model.objects.values_list(
            "profile_a_id", "profile_b_id", "score", "evidence"
        )
    }
    original_at = {r.entity: i for i, r in enumerate(records) if r.role == "original"}
    missed = []
    for i, r in enumerate(records):
        if r.role == "duplicate" and r.entity in original_at:
            j = original_at[r.entity]
            if live(ids[i]) != live(ids[j]):
                missed.append((r.kinds, stored.get(frozenset((ids[i], ids[j])), "not a candidate")))
    return {
        "bands": table,
        "vetoes": veto_table,
        "false_top": [list(x[:5]) for x in false_top[:15]],
        "missed": [list(x) for x in missed[:40]],
    }


def report(r: dict[str, Any]) -> None:
    q, run = r["quality"], r["run"]
    n = r["size"]
    all_pairs = n * (n - 1) // 2
    b = run["blocking"]
    print(
        f"\n=== {r['generator']} generator, {n:,} records (seed {r['seed']}), "
        f"data in: {r['ingest']} ==="
    )
    print(f"records by role          {r['roles']}")
    print(f"generate / migrate / load {r['generate_s']} s / {r['migrate_s']} s / {r['load_s']} s")
    if r["ingest"] == "batch":
        print(
            f"  data in                {n:,} identify events through /v1/batch "
            f"({IDENTIFY_BATCH} a request, resolved as they arrive): {r['load_s']} s; "
            f"data out through GET /api/v1/profiles: {r['read_before_s']} s before, "
            f"{r['read_after_s']} s after the run"
        )
    scan = sum(v for k, v in run["timings"].items() if k != "merge")
    print(f"full dedup run (wall)    {r['run_s']} s   stages: {run['timings']}")
    print(
        f"  of which               scan (all but merging) {scan:.1f} s; "
        f"{run['auto_merged']:,} merges through profile_merge {run['timings']['merge']:.1f} s "
        f"({1000 * run['timings']['merge'] / max(run['auto_merged'], 1):.1f} ms each)"
    )
    print(
        f"peak memory (maxrss)     {r['rss_peak_mb']} MB "
        f"(before the run: {r['rss_before_run_mb']} MB)"
    )
    print(
        f"pairs compared           {run['pairs_compared']:,} of n(n-1)/2 = {all_pairs:,} "
        f"({run['pairs_compared'] / all_pairs:.5%})"
    )
    br = r["blocking_recall"]
    share = br["candidates"] / max(br["all_pairs"], 1)
    print(
        f"blocking recall          {br['recall']:.4f} of {br['true_pairs']:,} true pairs are "
        f"candidates; {br['reachable']:.4f} joined through true candidate pairs "
        f"({br['candidates']:,} candidates = {share:.5%} of n(n-1)/2)"
    )
    print(f"blocking passes          {b['per_pass']}")
    print(f"largest block / skipped  {b['largest_block']} / {b['oversized_blocks']} oversized")
    print(
        f"auto-merged / queued / refused  {run['auto_merged']:,} / {run['queued']:,} / "
        f"{run['refused']:,}   (ProfileMerge rows, reason match_score: "
        f"{r['merge_records_match_score']:,})"
    )
    print(f"thresholds               {run['thresholds']}")
    print(
        f"true duplicate pairs     {q['true_pairs']:,}; predicted {q['predicted_pairs']:,}; "
        f"correct {q['correct_pairs']:,}"
    )
    print(
        f"PRECISION {q['precision']:.4f}   RECALL {q['recall']:.4f}   F1 {q['f1']:.4f}   "
        "(pairwise over records, at the auto-merge threshold)"
    )
    print(f"wrong merges by kind     {q['wrong_merges_by_kind']}")
    print(
        f"review queue             {q['queued_pairs']:,} pairs, {q['queued_true_pairs']:,} true; "
        f"recall if reviewers merge the true ones: {q['recall_after_review']:.4f}"
    )
    per_1000 = 1000 * q["queued_pairs"] / n
    print(f"review workload          {per_1000:.1f} pairs in review per 1,000 records")
    print(
        f"calibration              Brier {q['brier']} (constant share: {q['brier_baseline']}); "
        "[p from, to, pairs, mean p, share true]: " + str(q["calibration"])
    )
    print(f"recall by error kind     {json.dumps(q['recall_by_error_kind'], indent=None)}")
    print(f"recall by error count    {q['recall_by_error_count']}")
    em = run["model"].get("em", {})
    print(f"EM                       lambda={run['model']['lambda']} {em}")
    for name, f in run["model"]["fields"].items():
        print(f"  {name:<12} {f['source']:<8} m={f['m']} u={f['u']} w={f['weights']}")
    t = r["thresholds_table"]
    print("score band: [true ok, true vetoed, false ok, false vetoed]")
    for band, row in sorted(t["bands"].items(), key=lambda x: float(x[0])):
        print(f"  >= {band:>4}: {row}")
    print("vetoed pairs by vetoes: [true, false]")
    for combo, row in sorted(t["vetoes"].items(), key=lambda x: -sum(x[1])):
        print(f"  {row}  {combo}")
    print("highest-scoring false pairs without veto:")
    for row in t["false_top"]:
        print(f"  {row}")
    print("true pairs not merged (error kinds, (score, vetoes, levels)):")
    for row in t["missed"]:
        print(f"  {row}")
    inc = r.get("incremental") or {}
    if inc:
        print(
            f"incremental run          {inc['mode']}: {inc['changed']:,} changed profiles, "
            f"{inc['profiles_scanned']:,} scanned, {inc['profiles_loaded']:,} read, "
            f"{inc['pairs_compared']:,} pairs, {inc['auto_merged']} merged, "
            f"{inc['seconds']} s"
        )
        print(f"incremental stages       {inc['timings']}")
    targets = [
        ("precision >= 0.995", q["precision"] >= 0.995),
        ("recall >= 0.98", q["recall"] >= 0.98),
        ("review <= 20 per 1,000", per_1000 <= 20),
        ("blocking recall >= 0.995", br["recall"] >= 0.995),
    ]
    if n >= 100_000:
        targets += [
            ("100k scan (all but merging) within 60 s", scan <= 60),
            ("100k run including merges within 60 s", r["run_s"] <= 60),
            ("peak memory under 2 GB", r["rss_peak_mb"] < 2048),
        ]
    print(
        "targets                  "
        + "; ".join(f"{t}: {'MET' if ok else 'MISSED'}" for t, ok in targets)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", default="cdp_bench_dedup", help="own generator's database")
    parser.add_argument("--database2", default="cdp_bench_dedup2", help="CRM generator's database")
    parser.add_argument(
        "--generators",
        default="own,crm",
        help="own: this file's generator; crm: bench/dedup_gen2.py's CRM records",
    )
    parser.add_argument(
        "--ingest",
        choices=("batch", "direct"),
        default="batch",
        help="batch: identify events through /v1/batch, profiles read back through the "
        "profile API; direct: profiles bulk-created, read from the database (fast)",
    )
    parser.add_argument(
        "--snapshot",
        choices=("", "save", "restore"),
        default="",
        help="save: keep each loaded database as <database>_ingested (drop it when done); "
        "restore: start from that copy instead of loading again (same --seed and size)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="write a cProfile of each run to PREFIX-<generator>-<size>.prof",
    )
    parser.add_argument(
        "--no-incremental", action="store_true", help="skip the incremental run after the full one"
    )
    parser.add_argument("--generator", default="own", help=argparse.SUPPRESS)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="Also print the raw results as JSON.")
    args = parser.parse_args()
    if args.child:
        profile_to = f"{args.profile}-{args.generator}-{args.child}.prof" if args.profile else ""
        result = child(
            args.child, args.seed, args.database, args.generator, args.ingest,
            args.snapshot, profile_to, not args.no_incremental,
        )  # fmt: skip
        print(json.dumps(result, default=str))
        return
    generators = args.generators.split(",")
    databases = {"own": args.database, "crm": args.database2}
    print(
        f"dedup benchmark: generators {generators}, sizes {args.sizes}, seed {args.seed}, "
        f"data in: {args.ingest}, databases {[databases[g] for g in generators]}"
    )
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    summary = []
    for generator in generators:
        for size in (int(s) for s in args.sizes.split(",")):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(size), "--seed", str(args.seed),
                 "--database", databases[generator], "--generator", generator,
                 "--ingest", args.ingest, "--snapshot", args.snapshot,
                 "--profile", args.profile]
                + (["--no-incremental"] if args.no_incremental else []),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )  # fmt: skip
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-5000:])
                sys.exit(f"{generator} size {size} failed")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            report(result)
            summary.append(result)
            if args.json:
                print(json.dumps(result))
    print("\n=== summary (at the auto-merge threshold; after review = reviewers merge every")
    print("    true pair in the queue) ===")
    print(
        "generator  records  precision  recall  F1      recall after review  review/1000  "
        "blocking recall  candidates/n²  run s  peak MB"
    )
    for r in summary:
        q, br = r["quality"], r["blocking_recall"]
        print(
            f"{r['generator']:<10} {r['size']:>7,}  {q['precision']:.4f}     {q['recall']:.4f}  "
            f"{q['f1']:.4f}  {q['recall_after_review']:.4f}               "
            f"{1000 * q['queued_pairs'] / r['size']:>6.1f}       {br['recall']:.4f}           "
            f"{br['candidates'] / br['all_pairs']:.5%}      {r['run_s']:>5}  {r['rss_peak_mb']}"
        )
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        for generator in generators:
            conn.execute(f'DROP DATABASE IF EXISTS "{databases[generator]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
