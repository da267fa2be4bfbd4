"""Scoring candidate pairs: field comparison, Fellegi-Sunter weights by EM, vetoes."""

from __future__ import annotations

import numpy as np

from ..blocking import BlockingStats
from ..compare import IndexArray, compare_pairs
from ..fellegi_sunter import Model, estimate_lambda, estimate_sessions, estimate_u
from ..frequency import ValueFrequencies, frequency_adjustments
from ..records import Records
from .config import Progress

COMPARE_CHUNK = 200_000
EM_SAMPLE = 400_000
U_SAMPLE = 60_000
# Below this many candidate pairs EM has too little to go on: defaults are used.
EM_MIN_PAIRS = 2_000


def vetoes(
    level: dict[str, int],
    *,
    first_name_slip: bool = False,
    last_name_slip: bool = False,
    first_name_nickname: bool = False,
    first_name_nickname_typo: bool = False,
    email_mirrors_names: bool = False,
    merged_profile: bool = False,
) -> list[str]:
    """Why a pair must not merge automatically whatever its score (it goes to review).

    ``level`` maps field name -> agreement level (-1 missing, 0 different, ...);
    fields that are not configured are simply absent. The flags say more about the
    names than their level (see ``compare.Comparison``): first (last) names one slip
    of the keyboard or OCR apart (``compare.slip``), a typo rather than another
    name; nicknames two letters or more apart (Jeff, Jeffrey; Jimmy, James); a
    nickname with a slip (Dna, Daniel); emails a typo apart that differ as the first
    names do (phillip.brown@, philip.brown@); either profile absorbed others
    (its traits mix several records').
    """

    def at(name: str) -> int:
        return level.get(name, -1)

    reasons = []
    # An email a typo apart is contact, unless a profile was merged from others: it
    # may hold a duplicate's mistyped email, and emails are made of names, so a
    # relative's may be a typo away from it.
    email_typo = at("email") == 2 and not merged_profile
    contact = at("email") == 3 or email_typo or at("phone") >= 1
    # An email that differs as the first names do (jon.smith@, john.smith@) is no
    # independent evidence that the names are one person's.
    same_contact = at("email") == 3 or at("phone") >= 1
    # One person's name written another way: nobody names twins or siblings so.
    first_written_so = at("first_name") == 3 or first_name_slip or first_name_nickname
    one_name = first_written_so and (at("last_name") == 3 or last_name_slip)
    if at("first_name") == 0 and not first_name_nickname_typo:
        if not (same_contact and at("birthday") == 2):
            # Unless email or phone and the birthday agree: a nickname we do not know.
            reasons.append("first names differ")
    elif (
        at("first_name") < 3
        and not same_contact
        and not (
            (first_name_slip or first_name_nickname)
            and (
                at("birthday") == 2
                or at("address") == 3
                or (at("email") == 2 and not email_mirrors_names)
            )
        )
    ):
        # Aidan and Aiden, same birthday and address: twins as often as a typo.
        # Howard and Howrd, or Jeff and Jeffrey, with one birthday, door or email
        # (give or take a typo) are one person: nobody is named so. (An email that
        # differs as the names do says nothing: jon.smith@, john.smith@.) A
        # nickname with a typo (Ana: Anna, Anne) is as often another spelling: only
        # a shared email or phone tells.
        reasons.append("first names only alike, and no shared email or phone")
    # A new married name: the first name (give or take a slip) with the email or
    # phone and the birthday; or the very first name with both the email and the
    # phone, and no birthday that says otherwise (two people of one first name
    # sharing a mailbox and a number are rarer than a name changed at marriage).
    married = (first_written_so and same_contact and at("birthday") == 2) or (
        at("first_name") == 3 and at("email") == 3 and at("phone") == 2 and at("birthday") != 0
    )
    if at("last_name") == 0 and not married:
        reasons.append("last names differ")
    if at("birthday") == 0:
        reasons.append("birthdays differ")
    # Same name, and the same door or a birthday one slip apart, and no email or
    # phone that contradicts it (one side simply has none): one person. With two
    # different emails, one name at one door is as likely a father and son; but
    # they do not share their birthday give or take a slip, so one name, one door
    # and such a birthday are one person whatever the emails.
    uncontradicted = one_name and at("email") in (-1, 3) and at("phone") != 0
    same_door = uncontradicted and at("address") == 3
    # A slip in either name at one door, whatever the emails: a son named after his
    # father is spelt as his father is, a slip comes from copying one person's
    # record. (A nickname is no slip: a son often goes by one.) Not for a merged
    # profile: its name may be a duplicate's typo it took in, the son's father
    # being the record it was merged with.
    slipped = first_name_slip or (last_name_slip and at("first_name") == 3)
    typo_at_door = (
        slipped and one_name and at("address") == 3 and at("phone") != 0 and not merged_profile
    )
    near_birthday = (
        one_name
        and at("birthday") == 1
        and at("phone") != 0
        and (at("email") in (-1, 3) or at("address") == 3)
    )
    if not (contact or at("birthday") == 2 or same_door or near_birthday or typo_at_door):
        reasons.append("no email, phone or birthday in common")
    return reasons


def compare_all(
    records: Records, left: IndexArray, right: IndexArray, progress: Progress
) -> tuple[np.ndarray, np.ndarray]:
    n = len(left)
    level = np.empty((n, len(records.specs)), dtype=np.int8)
    swapped = np.zeros(n, dtype=bool)
    for start in range(0, n, COMPARE_CHUNK):
        stop = min(start + COMPARE_CHUNK, n)
        result = compare_pairs(records, left[start:stop], right[start:stop])
        level[start:stop] = result.level
        swapped[start:stop] = result.swapped
        progress("compare", stop, n)
    if n == 0:
        progress("compare", 0, 0)
    return level, swapped


def pairs_score(
    records: Records,
    left: IndexArray,
    right: IndexArray,
    level: np.ndarray,
    swapped: np.ndarray,
    model: Model,
    frequencies: dict[str, ValueFrequencies],
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's score (the model's field weights plus the frequency adjustments,
    see ``frequency``) and the adjustments, field by field."""
    adjustments = frequency_adjustments(records, left, right, level, swapped, model, frequencies)
    return model.score(level) + adjustments.sum(axis=1), adjustments


def review_order(scores: np.ndarray, threshold: float) -> IndexArray:
    """The pairs scoring at least ``threshold``, best first."""
    selected = np.flatnonzero(scores >= threshold)
    return selected[np.argsort(-scores[selected], kind="stable")]


# Blocking passes whose pairs EM learns m from, and the fields each one masks.
EM_SESSIONS = {
    "birthday": ("birthday",),
    "email": ("email",),
    "phone": ("phone",),
    "name_pair": ("first_name", "last_name"),
    "address": ("address",),
}


def estimate_model(
    records: Records,
    level: np.ndarray,
    codes: IndexArray,
    stats: BlockingStats,
    model: Model,
) -> Model:
    """m by EM on the pairs of a few blocking passes (``estimate_sessions``); u
    from random pairs, nearly all of which are two different people (EM's own u
    describes blocked pairs, which agree on the blocking fields by construction);
    then the share of matches among all candidates."""
    rng = np.random.default_rng(0)
    names = [s.name for s in records.specs]
    sessions = []
    for pass_name, fields in EM_SESSIONS.items():
        pass_codes = stats.pass_codes.get(pass_name)
        if pass_codes is None or len(pass_codes) == 0:
            continue
        at = np.searchsorted(codes, pass_codes)
        at = at[(at < len(codes)) & (codes[np.minimum(at, len(codes) - 1)] == pass_codes)]
        if len(at) > EM_SAMPLE // 4:
            at = rng.choice(at, EM_SAMPLE // 4, replace=False)
        masked = [names.index(f) for f in fields if f in names]
        sessions.append((pass_name, level[at], masked))
    fitted = estimate_sessions(sessions, model)
    n = len(records)
    size = min(U_SAMPLE, n * (n - 1) // 2)
    rl, rr = rng.integers(0, n, size), rng.integers(0, n, size)
    distinct = rl != rr
    random_levels = compare_pairs(records, rl[distinct], rr[distinct]).level
    with_u = estimate_u(random_levels, fitted)
    for i, f in enumerate(with_u.fields):
        if f.source != "em":  # EM could not fit it: default m and u together
            with_u.fields[i] = fitted.fields[i]
    sample = level if len(level) <= EM_SAMPLE else level[rng.choice(len(level), EM_SAMPLE)]
    return estimate_lambda(sample, with_u)
