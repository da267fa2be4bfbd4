"""Scoring candidate pairs: field comparison, Fellegi-Sunter weights by EM, vetoes."""

from __future__ import annotations

import numpy as np

from ..blocking import BlockingStats
from ..compare import ADDRESS_SAME, Comparator, IndexArray, compare_pairs
from ..fellegi_sunter import EPS, Model, estimate_lambda, estimate_sessions, estimate_u
from ..frequency import ValueFrequencies, frequency_adjustments
from ..records import Records
from .config import Progress

COMPARE_CHUNK = 200_000
EM_SAMPLE = 400_000
U_SAMPLE = 60_000
# Below this many candidate pairs EM has too little to go on: defaults are used.
EM_MIN_PAIRS = 2_000


# The vetoes that earned their place (measured by ``bench/dedup_ceiling.py`` on
# both generators; see the test of each in tests/identity/dedup/test_vetoes.py).
FIRST_NAMES_AND_CONTACT_DIFFER = (
    "first names differ or are only alike, and so does an email or phone"
)
CONTACT_DIFFERS = "an email or phone differs, and no email, phone or birthday in common"


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
    of the keyboard or OCR apart (``compare.slip``); nicknames two letters or more
    apart (Jeff, Jeffrey); a nickname with a slip (Dna, Daniel); emails a typo
    apart that differ as the first names do; either profile absorbed others.

    Both vetoes need an email or phone present on both sides *and different*: the
    one thing the model scores as independent of the names and the door although it
    is not (a twin, a son of his father's name, a household member each have their
    own mailbox and number while sharing the surname, the address and sometimes the
    birthday). Records without contact fields (a CRM import) never meet them, and
    there the model's own weights decide. The statistical vetoes there used to be
    (first names only alike, last names differ, birthdays differ, no contact in
    common whether or not any was there) were dropped: on the second generator they
    blocked hundreds of true pairs for every wrong one they prevented (figures in
    bench/README.md).
    """

    def at(name: str) -> int:
        return level.get(name, -1)

    reasons: list[str] = []
    # An email a typo apart is contact, unless a profile was merged from others: it
    # may hold a duplicate's mistyped email, and emails are made of names, so a
    # relative's may be a typo away from it.
    email_typo = at("email") == 2 and not merged_profile and not email_mirrors_names
    contact = at("email") == 3 or email_typo or at("phone") >= 1
    same_contact = at("email") == 3 or at("phone") >= 1
    # Another mailbox (level 1 is the same mailbox name at another provider: made
    # of the names, so it says again what they said; an email "typo" that differs
    # just as the names do, jon.smith@ and john.smith@, is two people's) or another
    # number.
    contradicted = (
        at("email") in (0, 1) or (at("email") == 2 and email_mirrors_names) or at("phone") == 0
    )
    if not contradicted:
        return reasons
    written_other = not (first_name_slip or first_name_nickname or first_name_nickname_typo)
    if 0 <= at("first_name") < 3 and written_other and not (same_contact and at("birthday") == 2):
        # A twin or a household member: a first name (Aidan, Aiden: parents name
        # twins so) and a mailbox or number of their own (a household may share the
        # other: one landline). Not a slip of the keyboard or OCR, nor a nickname;
        # nor where the birthday agrees with a shared email or phone.
        reasons.append(FIRST_NAMES_AND_CONTACT_DIFFER)
    # One name, and a slip in either name, at one door: copying one person's record
    # makes slips, a son named after his father is spelt as his father is (unless a
    # profile was merged from others: its name may be a duplicate's typo). A
    # birthday one slip apart with one name: fathers and sons are not born on one day.
    first_written_so = at("first_name") == 3 or first_name_slip or first_name_nickname
    one_name = first_written_so and (at("last_name") == 3 or last_name_slip)
    slipped = first_name_slip or (last_name_slip and at("first_name") == 3)
    typo_at_door = (
        slipped
        and one_name
        and at("address") == ADDRESS_SAME
        and at("phone") != 0
        and not merged_profile
    )
    near_birthday = (
        one_name
        and at("birthday") == 1
        and at("phone") != 0
        and (at("email") in (-1, 3) or at("address") == ADDRESS_SAME)
    )
    if not (contact or at("birthday") == 2 or near_birthday or typo_at_door):
        # A son of his father's name at his father's door, with a mailbox and a
        # number of his own.
        reasons.append(CONTACT_DIFFERS)
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
    see ``frequency``) and the adjustments, field by field.

    A surname shared at one door is weighed as it is among people at one door:
    families share their surname there, so the random pairs' u (and the frequency
    adjustment, which says how unlikely two random people are to share a rare
    name) overstate it. Its u there is EM's estimate in the blocking pass of one
    postal code and house number (``estimate_sessions``); the weight only ever
    goes down. Without this, household members outscored the auto-merge threshold
    on first name and birthday both different (bench/dedup.py's CRM generator,
    100,000 records: 742 wrong pairs above the threshold, 660 of them such
    households)."""
    adjustments = frequency_adjustments(records, left, right, level, swapped, model, frequencies)
    names = [f.name for f in model.fields]
    door = [
        k
        for k, spec in enumerate(records.specs)
        if spec.comparator == Comparator.ADDRESS and spec.name in names
    ]
    if "last_name" in names and door:
        at_door = np.zeros(len(left), dtype=bool)
        for k in door:
            # One door: the same address. Not "similar" (ADDRESS_SAME - 1): that
            # is also one street and number in another town (12 Main Street in
            # Springfield and in Shelbyville), where the surname says what it
            # says anywhere.
            at_door |= level[:, k] == ADDRESS_SAME
        last = names.index("last_name")
        adjustments[at_door, last] = 0.0
        parameters = model.fields[last]
        door_u = model.em.get("sessions", {}).get("address", {}).get("u", {}).get("last_name")
        if door_u and len(door_u) == parameters.levels and parameters.source == "em":
            top = parameters.levels - 1
            usual = float(parameters.weights()[top])
            at_door_weight = float(np.log2(max(parameters.m[top], EPS) / max(door_u[top], EPS)))
            exact = at_door & (level[:, last] == top)
            adjustments[exact, last] = min(0.0, at_door_weight - usual)
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
    fitted = estimate_lambda(sample, with_u)
    return with_prior(fitted, candidates=len(level), records=n)


# The prior over all pairs for a run that estimates none: EM is off (manual or
# default weights) or has too few candidate pairs to fit (EM_MIN_PAIRS: a small
# tenant). The share of matches cannot be told from the data then, and a prior
# made from the candidates themselves would make two profiles that share only a
# name (about 15 bits) near-certain among a handful of profiles. This one makes
# the default auto-merge probability (0.99) mean a score of 20, the score-based
# model's default auto-merge threshold before identity 0008, and the default
# review probability (0.5) a score of 13.4 (the old review threshold was 12).
UNESTIMATED_LAMBDA = 99 / (99 + 2**20)


def without_estimate(model: Model) -> Model:
    """``model`` with the fixed prior of a run that estimated none (above)."""
    return Model(model.fields, lam=UNESTIMATED_LAMBDA, em={**model.em, "prior": "unestimated"})


def with_prior(model: Model, *, candidates: int, records: int) -> Model:
    """The model with its prior over *all* pairs of records, for the probability.

    ``estimate_lambda`` gives the share of matches among the candidate pairs, but
    the weights compare m with u of random pairs (``estimate_u``): the posterior
    P(match | levels) = lambda m / (lambda m + (1 - lambda) u) is only right with
    the lambda of the population u describes, all pairs. Blocking keeps nearly every
    match, so that lambda is the matches among the candidates over n(n-1)/2."""
    all_pairs = records * (records - 1) / 2
    if all_pairs <= 0 or candidates <= 0:
        return model
    lam = min(model.lam * candidates / all_pairs, model.lam)
    return Model(
        model.fields,
        lam=lam,
        em={**model.em, "lambda_candidates": float(model.lam), "candidates": candidates},
    )
