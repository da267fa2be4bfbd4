"""Blocking: which pairs of profiles are worth comparing at all.

Comparing every pair of n profiles is n²/2 comparisons; instead each profile gets a
few blocking keys (one per pass: the same birthday, the same names in either order,
the same phone digits in any order, ...) and only profiles that share a key are
compared. Each pass catches duplicates that another one misses (a typo in the
email, a new phone, a nickname), so together they find nearly every duplicate
while the pairs stay a tiny fraction of n².

Keys are stored as 64-bit hashes (``DedupBlockKey``), the blocking index that lets
an incremental run find the neighbours of changed profiles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .compare import IndexArray
from .names import canonical_names
from .records import Records, email_local, region_parts, street_name, street_numbers

KeyFunction = Callable[[dict[str, str]], Iterable[str]]


def _one(value: str) -> list[str]:
    return [value] if value else []


def _email(v: dict[str, str]) -> list[str]:
    return _one(v.get("email", ""))


def _email_local(v: dict[str, str]) -> list[str]:
    local = email_local(v.get("email", ""))
    return [local] if len(local) >= 4 else []


def _phone(v: dict[str, str]) -> list[str]:
    return _one(v.get("phone", ""))


def _birthday(v: dict[str, str]) -> list[str]:
    return _one(v.get("birthday", ""))


def _names(v: dict[str, str]) -> tuple[str, str]:
    return v.get("first_name", ""), v.get("last_name", "")


def _name_pair(v: dict[str, str]) -> list[str]:
    # Either order: catches first and last names swapped.
    first, last = _names(v)
    return ["|".join(sorted((first, last)))] if first and last else []


def _last_first2(v: dict[str, str]) -> list[str]:
    # A typo or a short form of the first name, past its first two letters.
    first, last = _names(v)
    return [f"{last}|{first[:2]}"] if first and last else []


def _nickname(v: dict[str, str]) -> list[str]:
    # Bob, Rob and Robert Smith share the key "robert|smith".
    first, last = _names(v)
    if not (first and last):
        return []
    return [f"{name}|{last}" for name in canonical_names(first)]


def _address(v: dict[str, str]) -> list[str]:
    # Same postal code and house number: the same door, whatever the names.
    postal = v.get("address:postal", "")
    number = street_numbers(v.get("address:street", ""))
    return [f"{postal}|{number}"] if postal and number else []


# Letters that sound alike or that typists and OCR confuse, as one: c/k/q, s/z,
# v/w/f (ph is f), i/y, m/n, d/t, b/p.
_SOUNDS = str.maketrans("ckqszvwfyimndtbpg", "kkkssfffiimmttppk")
_SOFT = frozenset("aeiouhy")


@lru_cache(maxsize=200_000)
def sound_key(name: str) -> str:
    """A rough phonetic key of a normalized name, for blocking only: the first
    letter, then the consonants with alike ones merged and repeats collapsed, four
    characters at most (Philips, Phillipps and Filips share "fflp"... "flp").
    Two spellings of one name share it far more often than they share their letters,
    and unrelated names seldom do."""
    text = name.replace("ph", "f").replace("ck", "k").replace("rn", "m").translate(_SOUNDS)
    if not text:
        return ""
    out = [text[0]]
    for char in text[1:]:
        if char in _SOFT or char == out[-1]:
            continue
        out.append(char)
    return "".join(out)[:4]


def _sounds(v: dict[str, str]) -> tuple[str, str]:
    first, last = _names(v)
    return sound_key(first), sound_key(last)


def _postal_last_sound(v: dict[str, str]) -> list[str]:
    # A surname spelt or read another way, at one postal code (whatever the street).
    postal, (_, last) = v.get("address:postal", ""), _sounds(v)
    return [f"{postal}|{last}"] if postal and last else []


def _postal_first_sound(v: dict[str, str]) -> list[str]:
    # The same, for a surname that changed or went missing.
    postal, (first, _) = v.get("address:postal", ""), _sounds(v)
    return [f"{postal}|{first}"] if postal and first else []


def _name_sounds(v: dict[str, str]) -> list[str]:
    # Both names spelt another way, in either order, anywhere.
    first, last = _sounds(v)
    return ["|".join(sorted((first, last)))] if first and last else []


def _initials_year(v: dict[str, str]) -> list[str]:
    # Two letters of each name (in either order) and the year of birth: the names'
    # ends mistyped, the address and the rest of the birthday changed.
    first, last = _names(v)
    year = v.get("birthday", "")[:4]
    if not (first and last and year):
        return []
    return [f"{'|'.join(sorted((first[:2], last[:2])))}|{year}"]


def _city_number(v: dict[str, str]) -> list[str]:
    # One house number in one town or suburb: a postal code mistyped or missing.
    city = v.get("address:city", "").replace(" ", "")
    number = street_numbers(v.get("address:street", ""))
    return [f"{city}|{number}"] if city and number else []


def _street_postal(v: dict[str, str]) -> list[str]:
    # One street at one postal code, the house number mistyped or missing.
    postal = v.get("address:postal", "")
    words = "".join(w for w in v.get("address:street", "").split() if not w[:1].isdigit())
    return [f"{postal}|{words[:10]}"] if postal and len(words) >= 4 else []


def _city_sounds(v: dict[str, str]) -> list[str]:
    # Either name's sound in one town or suburb: the postal code mistyped or missing.
    city = v.get("address:city", "").replace(" ", "")
    if not city:
        return []
    return [f"{city}|{sound}" for sound in dict.fromkeys(_sounds(v)) if sound]


def _initials_day(v: dict[str, str]) -> list[str]:
    # Two letters of each name (in either order) and the day and month of birth:
    # the year mistyped, the address changed.
    first, last = _names(v)
    birthday = v.get("birthday", "")
    if not (first and last and birthday):
        return []
    return [f"{'|'.join(sorted((first[:2], last[:2])))}|{birthday[4:]}"]


def _postal_year(v: dict[str, str]) -> list[str]:
    # One postal code and year of birth: both names mistyped.
    postal, year = v.get("address:postal", ""), v.get("birthday", "")[:4]
    return [f"{postal}|{year}"] if postal and year else []


def _state(v: dict[str, str]) -> str:
    # The normalized state alone (``records.normalize_region``: "Virginia" and "VA"
    # are one key): a duplicate that lost its country keeps the key; two states of
    # one abbreviation in two countries (WA) only share blocks. Where addresses
    # have no states (most of Europe) the country stands in: its blocks are larger,
    # and bounded like every block (max_block_size, STREET_REGION_MAX_BLOCK).
    country, state = region_parts(v.get("address:region", ""))
    if state:
        return state
    return f"country:{country}" if country else ""


def _number_street(v: dict[str, str]) -> list[str]:
    # One house number and the first letters of one street name in one state: the town
    # and the postal code both mistyped, missing or changed, the street name's end
    # mistyped.
    street = v.get("address:street", "")
    number = street_numbers(street)
    name = street_name(street).replace(" ", "")
    state = _state(v)
    # Without a state or a country the key would span every address: none.
    return [f"{number}|{name[:3]}|{state}"] if number and len(name) >= 3 and state else []


# One street name in a whole state is the coarsest key there is: a common street
# name (Main Street, Church Road) fills a block of max_block_size (200 profiles,
# 19,900 pairs) in one state, where the other passes' blocks hold a few profiles.
# Bounded on its own, at a size measured to keep blocking recall (bench/README.md).
STREET_REGION_MAX_BLOCK = 50


def _street_region(v: dict[str, str]) -> list[str]:
    # One street name in one state, whatever the house number, town and postal code.
    name = street_name(v.get("address:street", "")).replace(" ", "")
    state = _state(v)
    return [f"{name}|{state}"] if len(name) >= 4 and state else []


def _first_number(v: dict[str, str]) -> list[str]:
    # One first name, house number and street initial: the last name, the rest of
    # the street, the town and the postal code changed or mistyped.
    first = v.get("first_name", "")
    street = v.get("address:street", "")
    number, name = street_numbers(street), street_name(street)
    return [f"{first}|{number}|{name[:1]}"] if first and number and name else []


@dataclass(frozen=True)
class BlockingPass:
    name: str
    needs: tuple[str, ...]  # field names that must be configured
    keys: KeyFunction
    # Profiles per block at most, below the configuration's ``max_block_size``
    # (``block_limit``), for a pass whose keys are coarse by design.
    max_block: int | None = None


BUILTIN_PASSES: tuple[BlockingPass, ...] = (
    BlockingPass("email", ("email",), _email),
    BlockingPass("email_local", ("email",), _email_local),
    BlockingPass("phone", ("phone",), _phone),
    BlockingPass("birthday", ("birthday",), _birthday),
    BlockingPass("name_pair", ("first_name", "last_name"), _name_pair),
    BlockingPass("last_first2", ("first_name", "last_name"), _last_first2),
    BlockingPass("nickname", ("first_name", "last_name"), _nickname),
    BlockingPass("address", ("address",), _address),
    BlockingPass("postal_last_sound", ("address", "last_name"), _postal_last_sound),
    BlockingPass("postal_first_sound", ("address", "first_name"), _postal_first_sound),
    BlockingPass("name_sounds", ("first_name", "last_name"), _name_sounds),
    BlockingPass("initials_year", ("first_name", "last_name", "birthday"), _initials_year),
    BlockingPass("city_number", ("address",), _city_number),
    BlockingPass("street_postal", ("address",), _street_postal),
    BlockingPass("city_sounds", ("address", "first_name", "last_name"), _city_sounds),
    BlockingPass("initials_day", ("first_name", "last_name", "birthday"), _initials_day),
    BlockingPass("postal_year", ("address", "birthday"), _postal_year),
    BlockingPass("number_street", ("address",), _number_street),
    BlockingPass("street_region", ("address",), _street_region, max_block=STREET_REGION_MAX_BLOCK),
    BlockingPass("first_number", ("address", "first_name"), _first_number),
)


def block_limit(pass_name: str, max_block_size: int) -> int:
    """The most profiles a block of this pass may hold: the configuration's
    ``max_block_size``, or the pass's own bound where it is lower."""
    own = _LIMITS.get(pass_name)
    return max_block_size if own is None else min(own, max_block_size)


_LIMITS = {p.name: p.max_block for p in BUILTIN_PASSES if p.max_block is not None}


def passes_for(records: Records) -> list[BlockingPass]:
    names = {s.name for s in records.specs}
    passes = [p for p in BUILTIN_PASSES if set(p.needs) <= names]
    for spec in records.specs:
        if spec.blocking:

            def custom(v: dict[str, str], name: str = spec.name) -> list[str]:
                return _one(v.get(name, ""))

            passes.append(BlockingPass(f"field:{spec.name}", (spec.name,), custom))
    return passes


def key_hash(pass_name: str, key: str) -> int:
    digest = hashlib.blake2b(f"{pass_name}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class BlockKeys:
    """(row, key hash, pass number) for every blocking key of every record."""

    rows: IndexArray
    keys: IndexArray
    passes: IndexArray
    pass_names: list[str]


def block_keys(records: Records, rows: Iterable[int] | None = None) -> BlockKeys:
    passes = passes_for(records)
    names = list(records.columns)
    columns = [records.columns[name].tolist() for name in names]
    out_rows: list[int] = []
    out_keys: list[int] = []
    out_passes: list[int] = []
    hashes: dict[tuple[int, str], int] = {}  # many records share a key: hash each once
    for i in range(len(records)) if rows is None else rows:
        values = {name: column[i] for name, column in zip(names, columns, strict=True)}
        for p, blocking_pass in enumerate(passes):
            for key in blocking_pass.keys(values):
                value = hashes.get((p, key))
                if value is None:
                    value = hashes[(p, key)] = key_hash(blocking_pass.name, key)
                out_rows.append(i)
                out_keys.append(value)
                out_passes.append(p)
    return BlockKeys(
        rows=np.array(out_rows, dtype=np.int64),
        keys=np.array(out_keys, dtype=np.int64),
        passes=np.array(out_passes, dtype=np.int64),
        pass_names=[p.name for p in passes],
    )


@dataclass
class BlockingStats:
    pairs: int = 0
    per_pass: dict[str, int] = field(default_factory=dict)
    oversized_blocks: int = 0
    largest_block: int = 0
    # Pass name -> codes (left * n + right) of the pairs it found.
    pass_codes: dict[str, IndexArray] = field(default_factory=dict)


def candidate_pairs(
    keys: BlockKeys,
    n: int,
    *,
    max_block_size: int,
    changed: np.ndarray | None = None,
) -> tuple[IndexArray, IndexArray, BlockingStats]:
    """Unique (left < right) row pairs sharing a key; with ``changed``, only pairs
    where at least one side changed. Blocks above ``max_block_size`` (or their
    pass's lower ``block_limit``) are skipped."""
    stats = BlockingStats()
    codes: list[IndexArray] = []
    for p, name in enumerate(keys.pass_names):
        mask = keys.passes == p
        pass_codes = _pairs_in_blocks(
            keys.rows[mask], keys.keys[mask], n, block_limit(name, max_block_size), changed, stats
        )
        stats.per_pass[name] = len(pass_codes)
        stats.pass_codes[name] = pass_codes
        codes.append(pass_codes)
    allcodes = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)
    stats.pairs = len(allcodes)
    return allcodes // max(n, 1), allcodes % max(n, 1), stats


def _pairs_in_blocks(
    rows: IndexArray,
    keys: IndexArray,
    n: int,
    max_block_size: int,
    changed: np.ndarray | None,
    stats: BlockingStats,
) -> IndexArray:
    if len(rows) < 2:
        return np.zeros(0, dtype=np.int64)
    # One entry per (row, key); grouped by key.
    order = np.lexsort((rows, keys))
    keys, rows = keys[order], rows[order]
    first = np.r_[True, (keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1])]
    keys, rows = keys[first], rows[first]
    sizes = np.unique(keys, return_counts=True)[1]
    stats.largest_block = max(stats.largest_block, int(sizes.max()))
    oversized = sizes > max_block_size
    stats.oversized_blocks += int(oversized.sum())
    keep_group = (sizes >= 2) & ~oversized
    if not keep_group.any():
        return np.zeros(0, dtype=np.int64)
    keep = np.repeat(keep_group, sizes)
    keys, rows = keys[keep], rows[keep]
    if changed is not None:
        # Blocks without a changed row cannot give a wanted pair.
        group_ids = np.cumsum(np.r_[True, keys[1:] != keys[:-1]]) - 1
        has_changed = np.bincount(group_ids, weights=changed[rows]) > 0
        keep = has_changed[group_ids]
        keys, rows = keys[keep], rows[keep]
    found: list[IndexArray] = []
    biggest = int(sizes[keep_group].max())
    for d in range(1, biggest):
        same = keys[:-d] == keys[d:]
        if not same.any():
            break
        left, right = rows[:-d][same], rows[d:][same]
        if changed is not None:
            wanted = changed[left] | changed[right]
            left, right = left[wanted], right[wanted]
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        found.append(lo * n + hi)
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found))
