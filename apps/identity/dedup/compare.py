"""Field comparators: how alike two profiles are on one field, as a discrete level.

Each comparator turns a pair of normalized values into an agreement level, from 0
("different") up to its last level ("exact"); -1 means a value is missing on one
side, which is no evidence either way. Comparisons run on whole arrays of pairs
(rapidfuzz ``process.cpdist`` in C, on both cores), never one pair at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from django.db import models
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from .names import related_names

if TYPE_CHECKING:
    from .records import Records

MISSING = -1
ADDRESS_PARTS = ("street", "city", "postal", "region")


class Comparator(models.TextChoices):
    NAME = "name", "Person name (Jaro-Winkler, nicknames, initials, swapped names)"
    EMAIL = "email", "Email (typos, same mailbox name at another provider)"
    PHONE = "phone", "Phone (last 10 digits; one digit off or two swapped)"
    DATE = "date", "Date (one digit off, day and month swapped)"
    ADDRESS = "address", "Postal address object (street, city, postal code, state, country)"
    STREET = "street", "Street line (abbreviations, unit numbers, house number)"
    POSTAL_CODE = "postal_code", "Postal code (one character off)"
    JARO_WINKLER = "jaro_winkler", "Text, Jaro-Winkler similarity"
    LEVENSHTEIN = "levenshtein", "Text, Levenshtein similarity"
    EXACT = "exact", "Exact (case- and accent-insensitive)"


# Level names, from "different" (0) to "exact" (last).
LEVELS: dict[str, tuple[str, ...]] = {
    Comparator.NAME: ("different", "similar or initial", "very similar or nickname", "exact"),
    Comparator.EMAIL: ("different", "same mailbox name", "typo", "exact"),
    Comparator.PHONE: ("different", "one digit off or transposed", "exact"),
    Comparator.DATE: ("different", "one digit or year off, or day/month swapped", "exact"),
    Comparator.ADDRESS: (
        "different",
        "same city or postal code",
        "same street there, another house number",
        "similar address",
        "same address",
    ),
    Comparator.STREET: ("different", "similar", "very similar", "exact"),
    Comparator.POSTAL_CODE: ("different", "one character off", "exact"),
    Comparator.JARO_WINKLER: ("different", "similar", "very similar", "exact"),
    Comparator.LEVENSHTEIN: ("different", "similar", "very similar", "exact"),
    Comparator.EXACT: ("different", "exact"),
}

# The top address level: one door.
ADDRESS_SAME = len(LEVELS[Comparator.ADDRESS]) - 1

# Starting points (and the values used when weights are not estimated): P(level)
# among pairs of one person (m) and among pairs of two random people (u).
DEFAULT_M: dict[str, tuple[float, ...]] = {
    Comparator.NAME: (0.02, 0.04, 0.09, 0.85),
    Comparator.EMAIL: (0.25, 0.10, 0.15, 0.50),
    Comparator.PHONE: (0.35, 0.05, 0.60),
    Comparator.DATE: (0.03, 0.05, 0.92),
    Comparator.ADDRESS: (0.25, 0.04, 0.03, 0.08, 0.60),
    Comparator.STREET: (0.30, 0.05, 0.10, 0.55),
    Comparator.POSTAL_CODE: (0.30, 0.05, 0.65),
    Comparator.JARO_WINKLER: (0.25, 0.05, 0.05, 0.65),
    Comparator.LEVENSHTEIN: (0.25, 0.05, 0.05, 0.65),
    Comparator.EXACT: (0.15, 0.85),
}
DEFAULT_U: dict[str, tuple[float, ...]] = {
    Comparator.NAME: (0.93, 0.045, 0.02, 0.005),
    Comparator.EMAIL: (0.998, 0.0015, 0.0004, 0.0001),
    Comparator.PHONE: (0.999, 0.0009, 0.0001),
    Comparator.DATE: (0.9995, 0.00045, 0.00005),
    Comparator.ADDRESS: (0.975, 0.0235, 0.0008, 0.0004, 0.0003),
    Comparator.STREET: (0.999, 0.0006, 0.0003, 0.0001),
    Comparator.POSTAL_CODE: (0.995, 0.004, 0.001),
    Comparator.JARO_WINKLER: (0.95, 0.02, 0.01, 0.02),
    Comparator.LEVENSHTEIN: (0.95, 0.02, 0.01, 0.02),
    Comparator.EXACT: (0.85, 0.15),
}

ObjectArray = npt.NDArray[np.object_]
FloatArray = npt.NDArray[np.float32]
LevelArray = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.int64]

# Similarities at or above these reach the level (Jaro-Winkler 0..1, fuzz 0..100).
NAME_VERY_SIMILAR = 0.92
NAME_SIMILAR = 0.84
JW_VERY_SIMILAR = 0.94
JW_SIMILAR = 0.88
LEV_VERY_SIMILAR = 0.9
LEV_SIMILAR = 0.8
STREET_VERY_SIMILAR = 90.0
STREET_SIMILAR = 80.0
# Swapped first and last names: both crossed names alike (one of them exactly), and
# clearly better than the names compared straight.
SWAP_MARGIN = 0.2


def _cpdist(a: ObjectArray, b: ObjectArray, scorer: Callable[..., Any]) -> npt.NDArray[Any]:
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    return process.cpdist(a, b, scorer=scorer, workers=-1)


def _letters(email: str) -> str:
    """Letters only: john.smith42@ and john_smith@ are other mailboxes, not typos."""
    return "".join(c for c in email if c.isalpha() or c == "@")


def _name_ids(values: ObjectArray) -> npt.NDArray[np.int64]:
    index: dict[str, int] = {}
    return np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )


def _derive(kind: str, values: ObjectArray) -> npt.NDArray[Any]:
    from .records import email_local, street_name, street_name_digits, street_numbers

    if kind == "len":
        return np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    if kind == "id":
        return _name_ids(values)
    if kind.endswith("_len"):
        return _lengths(_derive(kind.removesuffix("_len"), values))
    functions: dict[str, Callable[[str], str]] = {
        "local": lambda v: v.partition("@")[0],
        "domain": lambda v: v.partition("@")[2],
        "mailbox": email_local,
        "letters": _letters,
        "day_month_swapped": lambda v: v[:4] + v[6:8] + v[4:6],
        "year": lambda v: v[:4],
        "month_day": lambda v: v[4:],
        "house_number": street_numbers,
        "street_name": street_name,
        "street_name_digits": street_name_digits,
        "ocr": ocr_read_back,
    }
    function = functions[kind]
    return np.array([function(v) for v in values], dtype=object)


class Column:
    """One side of a batch of pairs on one field: ``values[index]``.

    Derived values (lengths, email parts, house numbers...) are computed once per
    record and shared by every pair and chunk through ``cache``; comparisons then
    only index arrays instead of looping over pairs in Python.
    """

    def __init__(
        self,
        values: ObjectArray,
        index: IndexArray | None = None,
        cache: dict[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        self.base = values
        self.index = index
        self.cache = cache if cache is not None else {}

    @property
    def values(self) -> ObjectArray:
        return self.base if self.index is None else self.base[self.index]

    def derived(self, kind: str) -> npt.NDArray[Any]:
        column = self.cache.get(kind)
        if column is None:
            column = self.cache[kind] = _derive(kind, self.base)
        return column if self.index is None else column[self.index]

    def derived_all(self, kind: str) -> npt.NDArray[Any]:
        """The derived values of every record (not just this side's)."""
        self.derived(kind)
        return self.cache[kind]

    def __len__(self) -> int:
        return len(self.base) if self.index is None else len(self.index)


def as_column(values: Column | ObjectArray | list[str]) -> Column:
    if isinstance(values, Column):
        return values
    return Column(np.asarray(values, dtype=object))


@dataclass
class FieldComparison:
    level: LevelArray
    similarity: FloatArray
    # Names only: the two differ by one slip of the keyboard or of OCR (see ``slip``),
    # are nicknames two letters or more apart (Jeff, Jeffrey; Jimmy, James), or a
    # nickname with a slip (Dna, Daniel).
    slip: BoolArray | None = None
    nickname: BoolArray | None = None
    nickname_typo: BoolArray | None = None


def _base(a: ObjectArray, b: ObjectArray) -> tuple[BoolArray, BoolArray, FloatArray]:
    present = (a != "") & (b != "")
    exact = present & (a == b)
    similarity = np.zeros(len(a), dtype=np.float32)
    similarity[exact] = 1.0
    return present, exact, similarity


def _levels(present: BoolArray, *conditions: BoolArray) -> LevelArray:
    """Level = the highest condition met (conditions from level 1 upward)."""
    level = np.zeros(len(present), dtype=np.int8)
    for value, condition in enumerate(conditions, start=1):
        level[condition] = value
    level[~present] = MISSING
    return level


def compare_name(
    a_col: Any, b_col: Any, *, nicknames: bool = False, details: bool = False
) -> FieldComparison:
    ca, cb = as_column(a_col), as_column(b_col)
    a, b = ca.values, cb.values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], JaroWinkler.normalized_similarity)
    nick = np.zeros(len(a), dtype=bool)
    if nicknames and fuzzy.any():
        if ca.cache is cb.cache and ca.base is cb.base:
            # One column of records: nickname pairs are looked up per distinct name.
            ids_a, ids_b = ca.derived("id")[fuzzy], cb.derived("id")[fuzzy]
            known = ca.cache.get("nickname_codes")
            if known is None:
                known = ca.cache["nickname_codes"] = _nickname_codes(ca.base, ca.derived_all("id"))
            size = len(ca.base) + 1
            nick[fuzzy] = np.isin(ids_a * size + ids_b, known)
        else:
            nick[fuzzy] = nickname_pairs(a[fuzzy], b[fuzzy])
    initial = np.zeros(len(a), dtype=bool)
    len_a, len_b = ca.derived("len"), cb.derived("len")
    short = fuzzy & ((len_a == 1) | (len_b == 1))
    if short.any():
        initial[short] = [x[0] == y[0] for x, y in zip(a[short], b[short], strict=True)]
    # Jaro-Winkler is harsh on short names (Amy / Ay): one edit counts as similar.
    one_edit = np.zeros(len(a), dtype=bool)
    edit = fuzzy & ~short & (similarity < NAME_SIMILAR)
    one_edit[edit] = _cpdist(a[edit], b[edit], OSA.distance) <= 1
    # OCR reads m as rn (Arnanda, Warrner): Jaro-Winkler and edit distance see two
    # changes; with the letter groups read back, one slip is left at most.
    read_back = np.zeros(len(a), dtype=bool)
    unlike = fuzzy & ~short & ~nick & (similarity < NAME_VERY_SIMILAR)
    if unlike.any():
        back_a, back_b = ca.derived("ocr")[unlike], cb.derived("ocr")[unlike]
        near = _cpdist(back_a, back_b, OSA.distance) <= 1
        rows = np.flatnonzero(unlike)[near]
        read_back[rows] = [
            x == y or slip(x, y) for x, y in zip(back_a[near], back_b[near], strict=True)
        ]
    level = _levels(
        present,
        (similarity >= NAME_SIMILAR) | initial | one_edit | read_back,
        (similarity >= NAME_VERY_SIMILAR) | nick,
        exact,
    )
    slips = read_back.copy()
    alike = ((level == 1) | (level == 2)) & ~read_back
    if alike.any():
        slips[alike] = [slip(x, y) for x, y in zip(a[alike], b[alike], strict=True)]
    # One slip is very similar, however Jaro-Winkler rates it (Judy, Jusy).
    level[slips & (level == 1)] = 2
    # Nicknames proper (Jeff, Jeffrey; Bob, Robert; Jimmy, James), not one name
    # spelt with a letter more or another (Anna, Anne; Jon, John; Brian, Bryan):
    # the nickname data lists those too, and twins and siblings are named so.
    nickname = np.zeros(len(a), dtype=bool)
    if nick.any():
        nickname[nick] = _cpdist(a[nick], b[nick], OSA.distance) >= 2
    # A nickname with a slip (Dna for Dan, Daniel): asked only where it can decide
    # (``details``), since it is looked up name by name.
    nick_typo = np.zeros(len(a), dtype=bool)
    if nicknames and details:
        unknown = fuzzy & ~nick & ~slips & (level < 2)
        if unknown.any():
            nick_typo[unknown] = _pairwise(a[unknown], b[unknown], nickname_typo)
    return FieldComparison(level, similarity, slips, nickname, nick_typo)


def _pairwise(a: ObjectArray, b: ObjectArray, function: Callable[[str, str], bool]) -> BoolArray:
    """function(a[k], b[k]) for every k, called once per distinct pair of values."""
    seen: dict[tuple[str, str], bool] = {}
    out = np.zeros(len(a), dtype=bool)
    for k, pair in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        value = seen.get(pair)
        if value is None:
            value = seen[pair] = function(*pair)
        out[k] = value
    return out


def ocr_read_back(name: str) -> str:
    """The letters OCR splits or joins read back: rn -> m, vv -> w, cl -> d."""
    for group, letter in _OCR_GROUPS:
        name = name.replace(group, letter)
    return name


def nickname_typo(a: str, b: str) -> bool:
    """Whether one name is one slip away from a nickname of the other (or from the
    formal name it is short for): Dna and Daniel (Dan), Pwte and Peter (Pete)."""
    for x, y in ((a, b), (b, a)):
        for other in related_names(y):
            if other not in (x, y) and (slip(x, other) or ocr_read_back(x) == other):
                return True
    return False


# Keys next to each other (QWERTY; the German and French layouts move few letters),
# and letters OCR reads for one another (after digits were read as letters).
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR: dict[str, set[str]] = {}
for _r, _row in enumerate(_KEYBOARD_ROWS):
    for _c, _key in enumerate(_row):
        near = _NEAR.setdefault(_key, set())
        for _dr, _dc in ((0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)):
            rr, cc = _r + _dr, _c + _dc
            if 0 <= rr < len(_KEYBOARD_ROWS) and 0 <= cc < len(_KEYBOARD_ROWS[rr]):
                near.add(_KEYBOARD_ROWS[rr][cc])
_OCR_LETTERS = frozenset({("e", "c"), ("h", "b"), ("u", "v"), ("g", "q"), ("l", "i"), ("i", "l")})
_OCR_GROUPS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def slip(a: str, b: str) -> bool:
    """Whether two different names are one slip apart: two neighbouring letters
    swapped (Cnidy), a letter doubled (Maary), a neighbouring key hit (Jwson), a
    letter misread (Matthcw, Wiiliam), or a letter left out inside a name of five or
    more (Howrd). Other spellings of a name are not slips: another vowel (Aidan,
    Aiden; Anne, Anna), a letter more or less at either end (Daniel, Daniela) or in
    a short name (Jon, John) -- twins and families are named that way."""
    if a == b or not a or not b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            x, y = a[diff[0]], b[diff[0]]
            return y in _NEAR.get(x, ()) or (x, y) in _OCR_LETTERS or (y, x) in _OCR_LETTERS
        if len(diff) == 2 and diff[1] == diff[0] + 1:
            i = diff[0]
            return a[i] == b[i + 1] and a[i + 1] == b[i]
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    if len(long) - len(short) != 1:
        return False
    for group, letter in _OCR_GROUPS:
        if group in long and long.replace(group, letter, 1) == short:
            return True
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    if long[:i] + long[i + 1 :] != short or i == 0:
        return False
    if i == len(long) - 1:  # Scott, Scot; but Daniel, Daniela are two names
        return long[i] == long[i - 1]
    doubled = long[i] == long[i - 1] or long[i] == long[i + 1]
    return doubled or len(long) >= 5


def _nickname_codes(values: ObjectArray, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """id_a * (n + 1) + id_b for every pair of names in ``values`` that are nicknames
    of one another (ids as given by ``_name_ids``)."""
    id_of: dict[str, int] = {}
    for value, i in zip(values.tolist(), ids.tolist(), strict=True):
        id_of.setdefault(value, i)
    size = len(values) + 1
    codes = [
        i * size + j
        for name, i in id_of.items()
        if name
        for other in related_names(name)
        if (j := id_of.get(other)) is not None and j != i
    ]
    return np.array(sorted(codes), dtype=np.int64)


def nickname_pairs(a: ObjectArray, b: ObjectArray) -> BoolArray:
    """For each pair, whether one name is a nickname of the other."""
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    index: dict[str, int] = {}
    ia = np.fromiter((index.setdefault(x, len(index)) for x in a), dtype=np.int64, count=len(a))
    ib = np.fromiter((index.setdefault(x, len(index)) for x in b), dtype=np.int64, count=len(b))
    size = len(index)
    known: list[int] = []
    for name, i in index.items():
        for other in related_names(name):
            j = index.get(other)
            if j is not None and j != i:
                known.append(i * size + j)
    if not known:
        return np.zeros(len(a), dtype=bool)
    return np.isin(ia * size + ib, np.array(known, dtype=np.int64))


def compare_email(a_col: Any, b_col: Any) -> FieldComparison:
    ca, cb = as_column(a_col), as_column(b_col)
    a, b = ca.values, cb.values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], Levenshtein.normalized_similarity)
    local_a, local_b = ca.derived("local"), cb.derived("local")
    domain_a, domain_b = ca.derived("domain"), cb.derived("domain")
    same_domain = fuzzy & (domain_a == domain_b)
    same_local = fuzzy & (local_a == local_b)
    # A typo: one slip in the mailbox name (two in a long one), or in the domain.
    local_distance = np.full(len(a), 99, dtype=np.int64)
    local_distance[same_domain] = _cpdist(local_a[same_domain], local_b[same_domain], OSA.distance)
    long_local = np.minimum(ca.derived("local_len"), cb.derived("local_len")) >= 10
    typo = same_domain & ((local_distance <= 1) | (long_local & (local_distance <= 2)))
    domain_typo = np.zeros(len(a), dtype=bool)
    domain_typo[same_local] = _cpdist(domain_a[same_local], domain_b[same_local], OSA.distance) <= 1
    # john.smith@, john_smith@ and john.smith42@ are mailboxes of their own (often
    # of two people of one name), not a typo: no more than level 1.
    other_mailbox = typo & (ca.derived("letters") == cb.derived("letters"))
    mailbox_a, mailbox_b = ca.derived("mailbox"), cb.derived("mailbox")
    # Only the very same mailbox name counts: mailbox names are made of personal
    # names, so "alike" ones say again what the names already said.
    same_mailbox = fuzzy & (mailbox_a == mailbox_b) & (ca.derived("mailbox_len") >= 3)
    level = _levels(
        present,
        same_mailbox | other_mailbox,
        (typo & ~other_mailbox) | domain_typo,
        exact,
    )
    return FieldComparison(level, similarity)


def _lengths(values: ObjectArray) -> npt.NDArray[np.int64]:
    return np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))


def compare_edit(a_col: Any, b_col: Any, *, max_distance: int = 1) -> FieldComparison:
    """Phone numbers and postal codes: one edit (or two neighbours swapped) away."""
    a, b = as_column(a_col).values, as_column(b_col).values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    distance = np.full(len(a), 99, dtype=np.int64)
    distance[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], OSA.distance)
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], Levenshtein.normalized_similarity)
    return FieldComparison(_levels(present, fuzzy & (distance <= max_distance), exact), similarity)


def compare_date(a_col: Any, b_col: Any) -> FieldComparison:
    """YYYYMMDD strings: one digit off, two digits swapped, or day and month swapped."""
    ca, cb = as_column(a_col), as_column(b_col)
    a, b = ca.values, cb.values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    distance = np.full(len(a), 99, dtype=np.int64)
    distance[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], OSA.distance)
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], Levenshtein.normalized_similarity)
    swapped = fuzzy & (ca.derived("day_month_swapped") == b)
    # The year one off, day and month the same (1989-10-22, 1990-10-22): a year
    # misremembered or mistyped across a decade.
    year_a, year_b = ca.derived("year"), cb.derived("year")
    next_year = np.zeros(len(a), dtype=bool)
    same_day = fuzzy & (ca.derived("month_day") == cb.derived("month_day"))
    if same_day.any():
        next_year[same_day] = [
            x.isdigit() and y.isdigit() and abs(int(x) - int(y)) == 1
            for x, y in zip(year_a[same_day], year_b[same_day], strict=True)
        ]
    level = _levels(present, fuzzy & ((distance <= 1) | swapped | next_year), exact)
    return FieldComparison(level, similarity)


def compare_street(a_col: Any, b_col: Any) -> FieldComparison:
    """Normalized streets; a different house number is a different address."""
    ca, cb = as_column(a_col), as_column(b_col)
    a, b = ca.values, cb.values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], fuzz.token_sort_ratio) / 100.0
    num_a, num_b = ca.derived("house_number"), cb.derived("house_number")
    dig_a, dig_b = ca.derived("street_name_digits"), cb.derived("street_name_digits")
    # Another number in the name ("2nd" and "3rd street", "po box 123" and "456",
    # "route 9" and "66") is another street, as another house number is.
    same_number = ((num_a == num_b) | (num_a == "") | (num_b == "")) & (
        (dig_a == dig_b) | (dig_a == "") | (dig_b == "")
    )
    level = _levels(
        present,
        fuzzy & same_number & (similarity >= STREET_SIMILAR / 100),
        fuzzy & same_number & (similarity >= STREET_VERY_SIMILAR / 100),
        exact,
    )
    return FieldComparison(level, similarity)


def compare_address(
    street: tuple[Any, Any],
    city: tuple[Any, Any],
    postal: tuple[Any, Any],
    region: tuple[Any, Any],
) -> FieldComparison:
    """One comparison for the whole address: its parts move together (a new street
    comes with a new city and postal code), so scoring them as independent fields
    would count one fact five times."""
    street_result = compare_street(*street)
    city_result = compare_similar(
        *city,
        scorer=JaroWinkler.normalized_similarity,
        similar=JW_SIMILAR,
        very_similar=JW_VERY_SIMILAR,
    )
    postal_result = compare_edit(*postal)
    region_a, region_b = (as_column(c).values for c in region)
    # "country:state": another region only where both give a country and the two
    # differ, or both give a state and the two differ; a part left out (a state
    # missing) is not another region. Whole values: "va" and "wv" differ, as do
    # Virginia and West Virginia, which normalize to them.
    other_region = (region_a != "") & (region_b != "") & (region_a != region_b)
    if other_region.any():
        other_region[other_region] = [
            _regions_differ(x, y)
            for x, y in zip(region_a[other_region], region_b[other_region], strict=True)
        ]
    area = ((city_result.level >= 2) | (postal_result.level == 2)) & ~other_region
    present = (street_result.level >= 0) | (city_result.level >= 0) | (postal_result.level >= 0)
    s_level = street_result.level.copy()
    street_a, street_b = (as_column(c) for c in street)
    name_a, name_b = street_a.derived("street_name"), street_b.derived("street_name")
    # A street that is only a house number ("4") names no street: as if missing.
    no_name_a = np.fromiter((not any(c.isalpha() for c in x) for x in name_a), bool, len(name_a))
    no_name_b = np.fromiter((not any(c.isalpha() for c in x) for x in name_b), bool, len(name_b))
    s_level[(s_level >= 0) & (no_name_a | no_name_b)] = MISSING
    # One street in one area, another house number on each side (a digit mistyped,
    # or a move down the street): a level of its own between the area and the
    # address, with its own m and u (EM), rather than "same area" or "different".
    digits_a = street_a.derived("street_name_digits")
    digits_b = street_b.derived("street_name_digits")
    same_street = (
        area & (s_level == 0) & (name_a != "") & (name_b != "") & (digits_a == digits_b)
        & (street_a.derived("house_number") != "") & (street_b.derived("house_number") != "")
    )  # fmt: skip
    if same_street.any():
        same_street[same_street] = (
            _cpdist(name_a[same_street], name_b[same_street], fuzz.token_sort_ratio)
            >= STREET_VERY_SIMILAR
        )
    level = _levels(
        present,
        area,
        same_street,
        (s_level >= 2) | ((s_level == 1) & area),
        (s_level >= 2) & (area | ((city_result.level < 0) & (postal_result.level < 0))),
    )
    similarity = street_result.similarity.copy()
    no_street = s_level < 0
    similarity[no_street] = np.maximum(city_result.similarity, postal_result.similarity)[no_street]
    return FieldComparison(level, similarity)


def _regions_differ(a: str, b: str) -> bool:
    from .records import region_parts

    (country_a, state_a), (country_b, state_b) = region_parts(a), region_parts(b)
    return bool(country_a and country_b and country_a != country_b) or bool(
        state_a and state_b and state_a != state_b
    )


def compare_similar(
    a_col: Any, b_col: Any, *, scorer: Any, similar: float, very_similar: float
) -> FieldComparison:
    a, b = as_column(a_col).values, as_column(b_col).values
    present, exact, similarity = _base(a, b)
    fuzzy = present & ~exact
    similarity[fuzzy] = _cpdist(a[fuzzy], b[fuzzy], scorer)
    level = _levels(
        present,
        fuzzy & (similarity >= similar),
        fuzzy & (similarity >= very_similar),
        exact,
    )
    return FieldComparison(level, similarity)


def compare_exact(a_col: Any, b_col: Any) -> FieldComparison:
    a, b = as_column(a_col).values, as_column(b_col).values
    present, exact, similarity = _base(a, b)
    return FieldComparison(_levels(present, exact), similarity)


def compare_field(comparator: str, a: Any, b: Any, *, nicknames: bool = False) -> FieldComparison:
    """Compare two equally long arrays (or Columns) of normalized values."""
    if comparator == Comparator.NAME:
        return compare_name(a, b, nicknames=nicknames)
    if comparator == Comparator.EMAIL:
        return compare_email(a, b)
    if comparator in (Comparator.PHONE, Comparator.POSTAL_CODE):
        return compare_edit(a, b)
    if comparator == Comparator.DATE:
        return compare_date(a, b)
    if comparator == Comparator.STREET:
        return compare_street(a, b)
    if comparator == Comparator.JARO_WINKLER:
        return compare_similar(
            a,
            b,
            scorer=JaroWinkler.normalized_similarity,
            similar=JW_SIMILAR,
            very_similar=JW_VERY_SIMILAR,
        )
    if comparator == Comparator.LEVENSHTEIN:
        return compare_similar(
            a,
            b,
            scorer=Levenshtein.normalized_similarity,
            similar=LEV_SIMILAR,
            very_similar=LEV_VERY_SIMILAR,
        )
    return compare_exact(a, b)


@dataclass
class Comparison:
    """Levels (pairs x fields, int8, -1 = missing), similarities, swapped names, and
    how alike names are beyond their level (the vetoes ask)."""

    fields: list[str]
    level: LevelArray
    similarity: FloatArray
    swapped: BoolArray
    # First (last) names one slip apart (see ``slip``).
    first_name_slip: BoolArray
    last_name_slip: BoolArray
    # First names: nicknames two letters or more apart (Jeff, Jeffrey; Jimmy, James).
    first_name_nickname: BoolArray
    # First names: a nickname with a slip (Dna, Daniel); only with ``details``.
    first_name_nickname_typo: BoolArray
    # Emails a typo apart that differ just as the first names do (phillip.brown@,
    # philip.brown@): made of the names, not evidence of their own. Only with
    # ``details``.
    email_mirrors_names: BoolArray


def compare_pairs(
    records: Records, left: IndexArray, right: IndexArray, *, details: bool = False
) -> Comparison:
    """Compare rows ``left[k]`` and ``right[k]`` of ``records`` on every field.

    ``details`` also looks up what only the vetoes need (nicknames with a typo)."""
    specs = records.specs
    n = len(left)
    level = np.empty((n, len(specs)), dtype=np.int8)
    similarity = np.empty((n, len(specs)), dtype=np.float32)
    flags = {name: np.zeros(n, dtype=bool) for name in _NAME_FLAGS}

    def sides(name: str) -> tuple[Column, Column]:
        values, cache = records.columns[name], records.cache(name)
        return Column(values, left, cache), Column(values, right, cache)

    for k, spec in enumerate(specs):
        if spec.comparator == Comparator.ADDRESS:
            street, city, postal, region = (sides(f"{spec.name}:{part}") for part in ADDRESS_PARTS)
            result = compare_address(street, city, postal, region)
        elif spec.comparator == Comparator.NAME:
            a, b = sides(spec.name)
            first = spec.name == "first_name"
            result = compare_name(a, b, nicknames=first, details=details and first)
            if spec.name in ("first_name", "last_name"):
                _keep_flags(flags, spec.name, result, np.ones(n, dtype=bool))
        else:
            a, b = sides(spec.name)
            result = compare_field(spec.comparator, a, b)
        level[:, k] = result.level
        similarity[:, k] = result.similarity
    swapped = _swap_names(records, left, right, level, similarity, flags, details=details)
    mirrors = np.zeros(n, dtype=bool)
    if details:
        mirrors = _email_mirrors_names(records, left, right, level, swapped)
    return Comparison(
        [s.name for s in specs],
        level,
        similarity,
        swapped,
        first_name_slip=flags["first_name_slip"],
        last_name_slip=flags["last_name_slip"],
        first_name_nickname=flags["first_name_nickname"],
        first_name_nickname_typo=flags["first_name_nickname_typo"],
        email_mirrors_names=mirrors,
    )


def _email_mirrors_names(
    records: Records, left: IndexArray, right: IndexArray, level: LevelArray, swapped: BoolArray
) -> BoolArray:
    """For pairs whose emails are a typo apart and whose first names differ: whether
    the mailbox names differ just as the first names do."""
    names = [s.name for s in records.specs]
    out = np.zeros(len(left), dtype=bool)
    if not {"email", "first_name"} <= set(names):
        return out
    e, f = names.index("email"), names.index("first_name")
    if records.specs[e].comparator != Comparator.EMAIL:
        return out
    la = names.index("last_name") if "last_name" in names else f
    rows = np.flatnonzero((level[:, e] == 2) & ((level[:, f] < 3) | (level[:, la] < 3)))
    email, first = records.columns["email"], records.columns["first_name"]
    last = records.columns.get("last_name", first)
    for k in rows.tolist():
        i, j = left[k], right[k]
        first_j, last_j = (last[j], first[j]) if swapped[k] else (first[j], last[j])
        # The first names, or the last ones (smith@, smyth@), written into the mailbox.
        out[k] = email_mirrors_names(email[i], email[j], first[i], first_j) or (
            bool(last[i]) and email_mirrors_names(email[i], email[j], last[i], last_j)
        )
    return out


def email_mirrors_names(email_a: str, email_b: str, first_a: str, first_b: str) -> bool:
    """Whether two mailbox names differ only as the first names do: phillip.brown@
    and philip.brown@, r.jones@ and b.jones@ (letters only: john_jones@ and
    johnnyjones@ too)."""
    a, b = (_letters(v.partition("@")[0]).replace("@", "") for v in (email_a, email_b))
    if not (first_a and first_b and a and b):
        return False
    for x, y, name_x, name_y in ((a, b, first_a, first_b), (b, a, first_b, first_a)):
        if name_x in x and x.replace(name_x, name_y, 1) == y:
            return True
    return a[0] == first_a[0] and b[0] == first_b[0] and a[1:] == b[1:]


_NAME_FLAGS = (
    "first_name_slip",
    "last_name_slip",
    "first_name_nickname",
    "first_name_nickname_typo",
)


def _keep_flags(
    flags: dict[str, BoolArray], field: str, result: FieldComparison, rows: Any
) -> None:
    """Copy a name comparison's flags into ``flags`` at ``rows`` (a mask or indices)."""
    values = {
        "slip": result.slip,
        "nickname": result.nickname,
        "nickname_typo": result.nickname_typo,
    }
    for kind, value in values.items():
        key = f"{field}_{kind}"
        if key in flags and value is not None:
            flags[key][rows] = value


def _swap_names(
    records: Records,
    left: IndexArray,
    right: IndexArray,
    level: LevelArray,
    similarity: FloatArray,
    flags: dict[str, BoolArray],
    *,
    details: bool,
) -> BoolArray:
    """Where first and last names were swapped on one side, score the names crossed
    (``flags`` then describe the crossed names)."""
    names = [s.name for s in records.specs]
    swapped = np.zeros(len(left), dtype=bool)
    if "first_name" not in names or "last_name" not in names:
        return swapped
    f, la = names.index("first_name"), names.index("last_name")
    if not (
        records.specs[f].comparator == Comparator.NAME
        and records.specs[la].comparator == Comparator.NAME
    ):
        return swapped
    candidates = (level[:, f] >= 0) & (level[:, la] >= 0) & ((level[:, f] < 3) | (level[:, la] < 3))
    if not candidates.any():
        return swapped
    first, last = records.columns["first_name"], records.columns["last_name"]
    first_cache, last_cache = records.cache("first_name"), records.cache("last_name")
    lc, rc = left[candidates], right[candidates]
    # The first name of one against the last name of the other, and the other way
    # round. Either may be the first names (whichever side was swapped), so both are
    # compared as first names (Sheppard Abby, Abigail Sheppard).
    cross_1 = compare_name(
        Column(first, lc, first_cache),
        Column(last, rc, last_cache),
        nicknames=True,
        details=details,
    )
    cross_2 = compare_name(
        Column(last, lc, last_cache),
        Column(first, rc, first_cache),
        nicknames=True,
        details=details,
    )
    straight = similarity[candidates, f] + similarity[candidates, la]
    crossed = cross_1.similarity + cross_2.similarity
    # Both crossed names alike and one of them exact, or both very similar (a
    # swap and a typo on one record: Humphries Ashley, Humphies Ash1ey).
    alike = (
        (cross_1.level >= 1)
        & (cross_2.level >= 1)
        & (np.maximum(cross_1.level, cross_2.level) == 3)
    ) | ((cross_1.level >= 2) & (cross_2.level >= 2))
    better = alike & (crossed >= straight + SWAP_MARGIN)
    rows = np.flatnonzero(candidates)[better]
    swapped[rows] = True
    # The crossed pair that are nicknames (Tom, Thomas) is the first names.
    first_like_1, first_like_2 = (_first_name_like(c)[better] for c in (cross_1, cross_2))
    second = first_like_2 & ~first_like_1
    picks = [_take(cross_1, cross_2, better, second), _take(cross_2, cross_1, better, second)]
    for column, field, chosen in ((f, "first_name", picks[0]), (la, "last_name", picks[1])):
        level[rows, column] = chosen.level
        similarity[rows, column] = chosen.similarity
        _keep_flags(flags, field, chosen, rows)
    return swapped


def _first_name_like(result: FieldComparison) -> BoolArray:
    """Pairs alike as first names are, not as surnames: nicknames, with or without
    a slip."""
    out = np.zeros(len(result.level), dtype=bool)
    for flag in (result.nickname, result.nickname_typo):
        if flag is not None:
            out |= flag
    return out


def _take(
    usual: FieldComparison, other: FieldComparison, rows: BoolArray, use_other: BoolArray
) -> FieldComparison:
    """``usual`` at ``rows``, with ``other`` where ``use_other`` (over the rows)."""

    def pick(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        return np.where(use_other, b[rows], a[rows])

    return FieldComparison(
        pick(usual.level, other.level),
        pick(usual.similarity, other.similarity),
        pick(usual.slip, other.slip),
        pick(usual.nickname, other.nickname),
        pick(usual.nickname_typo, other.nickname_typo),
    )
