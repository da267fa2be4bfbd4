"""Merging two profiles, and splitting a merged one back out.

Every merge, automatic or not, goes through ``merge_rows``: it records both
profiles as they were (so a split can restore them), moves identifiers and events
to the survivor and combines traits by the configured strategy.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Q, UUIDField, Value, When
from django.utils import timezone

from apps.common.bulk import bulk_insert, bulk_set
from apps.common.exceptions import ApplicationError
from apps.identity.models import (
    Identifier,
    IdentifierType,
    Profile,
    ProfileMerge,
    TraitStrategy,
)

from ..hooks import ProfileSplit, profile_split_notify, profiles_merged_notify
from ..selectors import profile_tree_ids
from .rules import IdentityRules, identity_rules_load
from .separate import (
    SEPARATED,
    separation_record,
    separations_after_merge,
    separations_among,
    separations_end,
)

logger = logging.getLogger(__name__)


class MergeRefused(ApplicationError):
    """The merge would break a safety rule (or there is nothing to merge)."""


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _parse(at: str | None) -> datetime | None:
    return datetime.fromisoformat(at) if at else None


def _snapshot(profile: Profile) -> dict[str, Any]:
    return {
        "traits": dict(profile.traits),
        "trait_timestamps": dict(profile.trait_timestamps),
        "first_seen": _iso(profile.first_seen),
        "last_seen": _iso(profile.last_seen),
    }


def _merge_record(
    *,
    survivor: Profile,
    absorbed: Profile,
    identifiers: list[list[str]],
    reason: str,
    details: dict[str, Any],
    actor: Any = None,
    forced: bool = False,
) -> ProfileMerge:
    """A merge's audit record (not saved yet), with both profiles as they were,
    so that ``profile_split`` can restore them."""
    return ProfileMerge(
        survivor=survivor,
        absorbed=absorbed,
        reason=reason,
        details=details,
        absorbed_snapshot={**_snapshot(absorbed), "identifiers": identifiers},
        survivor_snapshot=_snapshot(survivor),
        actor=actor,
        forced=forced,
    )


def survivor_of(
    a: Profile, b: Profile, held: Mapping[uuid.UUID, Counter[str]]
) -> tuple[Profile, Profile]:
    """(survivor, absorbed): the richer, older identity survives.

    ``held`` counts each profile's identifiers by type. A profile with a user id
    beats one without (the account is the identity others point at), then the
    one with more identifiers, then more traits, then the older one (first seen,
    then created); the id settles a tie, so the choice never depends on the order
    the two are given in."""

    def rank(p: Profile) -> tuple[Any, ...]:
        kinds = held.get(p.id) or Counter()
        return (
            0 if kinds[IdentifierType.USER_ID] else 1,
            -sum(kinds.values()),
            -len(p.traits),
            p.first_seen or p.created_at,
            p.created_at,
            str(p.id),
        )

    return (a, b) if rank(a) <= rank(b) else (b, a)


def _kinds(keys: Sequence[tuple[str, str]]) -> Counter[str]:
    return Counter(kind for kind, _ in keys)


def combine_traits(survivor: Profile, absorbed: Profile, rules: IdentityRules) -> None:
    for name, value in absorbed.traits.items():
        theirs = absorbed.trait_timestamps.get(name, "")
        ours = survivor.trait_timestamps.get(name)
        if ours is None:
            take = True
        elif rules.strategy(name) == TraitStrategy.FIRST_SEEN:
            take = bool(theirs) and theirs < ours
        else:
            take = theirs > ours
        if take:
            survivor.traits[name] = value
            survivor.trait_timestamps[name] = theirs


def merge_rows(
    *,
    survivor: Profile,
    absorbed: Profile,
    reason: str,
    details: dict[str, Any],
    rules: IdentityRules,
    actor: Any = None,
    forced: bool = False,
    pending_identifiers: list[tuple[str, str]] | None = None,
) -> ProfileMerge:
    """Merge two live profiles whose rows the caller has locked."""
    keys = [
        list(k) for k in Identifier.objects.filter(profile=absorbed).values_list("type", "value")
    ]
    keys += [list(k) for k in pending_identifiers or []]
    record = _merge_record(
        survivor=survivor,
        absorbed=absorbed,
        identifiers=keys,
        reason=reason,
        details=details,
        actor=actor,
        forced=forced,
    )
    record.save()
    Identifier.objects.filter(profile=absorbed).update(profile=survivor)
    _absorb(survivor, absorbed, rules)
    survivor.save(
        update_fields=["traits", "trait_timestamps", "first_seen", "last_seen", "updated_at"]
    )
    absorbed.save(update_fields=["merged_into", "updated_at"])
    # Events, consent records (both logs are kept)... follow to the survivor.
    profiles_merged_notify(mapping={absorbed.id: survivor.id})
    logger.info("merged profile %s into %s (%s)", absorbed.id, survivor.id, reason)
    return record


def _lock_live(
    profile_ids: Iterable[uuid.UUID], *, missing_ok: bool = False
) -> dict[uuid.UUID, Profile]:
    """Lock the given profiles and those they were merged into (FOR UPDATE, id
    order, round by round). An id that does not exist raises MergeRefused, or is
    left out with ``missing_ok``."""
    locked: dict[uuid.UUID, Profile] = {}
    todo = set(profile_ids)
    while todo:
        qs = Profile.objects.filter(id__in=todo).order_by("id")
        if connection.features.has_select_for_update:
            qs = qs.select_for_update()
        found = list(qs)
        if len(found) != len(todo) and not missing_ok:
            raise MergeRefused("Profile not found.")
        locked.update({p.id: p for p in found})
        todo = {p.merged_into_id for p in found if p.merged_into_id} - locked.keys()  # type: ignore[misc]
    return locked


def _lock_links(profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID | None]:
    """Lock as ``_lock_live(missing_ok=True)`` does (the same rows, rounds and
    order), but return only each locked profile's ``merged_into`` id."""
    links: dict[uuid.UUID, uuid.UUID | None] = {}
    todo = set(profile_ids)
    while todo:
        qs = Profile.objects.filter(id__in=todo).order_by("id")
        if connection.features.has_select_for_update:
            qs = qs.select_for_update()
        found = dict(qs.values_list("id", "merged_into_id"))
        links.update(found)
        todo = {into for into in found.values() if into is not None} - links.keys()
    return links


def _live(locked: dict[uuid.UUID, Profile], profile_id: uuid.UUID) -> Profile:
    profile = locked[profile_id]
    while profile.merged_into_id is not None:
        profile = locked[profile.merged_into_id]
    return profile


def _held(a: Profile, b: Profile) -> dict[uuid.UUID, list[tuple[str, str]]]:
    """The (type, value) identifiers each of two profiles holds."""
    held: dict[uuid.UUID, list[tuple[str, str]]] = {a.id: [], b.id: []}
    for pid, kind, value in Identifier.objects.filter(profile__in=[a, b]).values_list(
        "profile_id", "type", "value"
    ):
        held[pid].append((kind, value))
    return held


def merge_blockers(a: Profile, b: Profile, rules: IdentityRules) -> list[str]:
    """Why two live profiles may not be merged automatically (empty: they may)."""
    held = _held(a, b)
    separated = frozenset((a.id, b.id)) in separations_among([a.id, b.id])
    return _blockers(held[a.id], held[b.id], rules, separated=separated)


def _blockers(
    a_keys: list[tuple[str, str]],
    b_keys: list[tuple[str, str]],
    rules: IdentityRules,
    *,
    separated: bool = False,
) -> list[str]:
    """The safety rules, on the (type, value) identifiers each profile holds and
    whether an admin split them apart."""
    reasons = [SEPARATED] if separated else []
    a_uid = {v for k, v in a_keys if k == IdentifierType.USER_ID}
    b_uid = {v for k, v in b_keys if k == IdentifierType.USER_ID}
    if a_uid and b_uid and a_uid != b_uid:
        reasons.append("the profiles have different user ids")
    counts = Counter(k for k, _ in a_keys) + Counter(k for k, _ in b_keys)
    for kind in sorted(set(counts) - {IdentifierType.USER_ID}):
        cap = rules.cap(kind)
        if cap is not None and counts[kind] > cap:
            reasons.append(
                f"together they would hold {counts[kind]} {kind} identifiers (limit {cap})"
            )
    return reasons


@transaction.atomic
def profile_merge(
    *,
    profile_ids: tuple[uuid.UUID, uuid.UUID],
    reason: str,
    details: dict[str, Any] | None = None,
    actor: Any = None,
    force: bool = False,
) -> ProfileMerge:
    """Merge two profiles (the richer, older one survives: ``survivor_of``).

    Raises MergeRefused when a safety rule forbids it, unless ``force`` (an admin's
    explicit, audited decision)."""
    locked = _lock_live(list(profile_ids))
    a, b = (_live(locked, pid) for pid in profile_ids)
    if a.id == b.id:
        raise MergeRefused("These are already one profile.")
    rules = identity_rules_load()
    held = _held(a, b)
    separations = separations_among([a.id, b.id]).get(frozenset((a.id, b.id)), [])
    blockers = _blockers(held[a.id], held[b.id], rules, separated=bool(separations))
    if blockers and not force:
        raise MergeRefused("Not merged: " + "; ".join(blockers) + ".", {"blockers": blockers})
    survivor, absorbed = survivor_of(a, b, {pid: _kinds(keys) for pid, keys in held.items()})
    overridden: dict[str, Any] = {"overridden": blockers} if blockers else {}
    if separations:
        overridden["separations"] = separations
    record = merge_rows(
        survivor=survivor,
        absorbed=absorbed,
        reason=reason,
        details={**(details or {}), **overridden},
        rules=rules,
        actor=actor,
        forced=bool(blockers),
    )
    if separations:
        # The admin joined them anyway: they are no longer kept apart.
        separations_end(ids=separations, merge=record, actor=actor)
    return record


@dataclass(frozen=True)
class MergeRequest:
    """One pair for ``profile_merge_bulk``, with what its merge record should say."""

    profile_ids: tuple[uuid.UUID, uuid.UUID]
    details: dict[str, Any]


@dataclass(frozen=True)
class MergeOutcome:
    """What became of one MergeRequest: merged (``merge`` is its record), already
    one profile, or refused (``refused`` says which rule)."""

    merge: ProfileMerge | None = None
    already_one: bool = False
    refused: str = ""


@transaction.atomic
def profile_merge_bulk(
    *,
    requests: Sequence[MergeRequest],
    reason: str,
    rules: IdentityRules | None = None,
    actor: Any = None,
) -> list[MergeOutcome]:
    """Merge many pairs, in order, with the rules of ``profile_merge`` and its
    records (snapshots included, so that ``profile_split`` undoes any of them), but
    with a few set-based queries instead of a dozen per pair.

    Each pair is decided on the profiles as the earlier pairs left them: A+B then
    B+C merges C into A's survivor, and is refused if together they would break a
    rule. Nothing is forced. Returns one outcome per request.
    """
    rules = rules or identity_rules_load()
    wanted = {pid for r in requests for pid in r.profile_ids}
    # Locked as _lock_live locks them, but only the live profiles are read whole:
    # the others are links to follow (at 100,000 CRM profiles, building a model
    # with its traits for every profile of every batch was a fifth of merging).
    links = _lock_links(wanted)
    profiles = {
        p.id: p
        for p in Profile.objects.filter(
            id__in=[k for k, v in links.items() if v is None]
        ).order_by()
    }
    held: dict[uuid.UUID, list[tuple[str, str]]] = {pid: [] for pid in links}
    for pid, kind, value in (
        Identifier.objects.filter(profile_id__in=list(profiles))
        .order_by("id")
        .values_list("profile_id", "type", "value")
    ):
        held[pid].append((kind, value))

    def live(pid: uuid.UUID) -> Profile:
        while (into := links[pid]) is not None:
            pid = into
        return profiles[pid]

    apart = separations_among({live(pid).id for pid in links})
    outcomes: list[MergeOutcome] = []
    records: list[ProfileMerge] = []
    at: list[int] = []  # index in outcomes of each record
    touched: dict[uuid.UUID, Profile] = {}
    for request in requests:
        if not all(pid in links for pid in request.profile_ids):
            outcomes.append(MergeOutcome(refused="Profile not found."))
            continue
        a, b = (live(pid) for pid in request.profile_ids)
        if a.id == b.id:
            outcomes.append(MergeOutcome(already_one=True))
            continue
        separated = frozenset((a.id, b.id)) in apart
        blockers = _blockers(held[a.id], held[b.id], rules, separated=separated)
        if blockers:
            outcomes.append(MergeOutcome(refused="Not merged: " + "; ".join(blockers) + "."))
            continue
        survivor, absorbed = survivor_of(a, b, {p.id: _kinds(held[p.id]) for p in (a, b)})
        records.append(
            _merge_record(
                survivor=survivor,
                absorbed=absorbed,
                identifiers=[list(k) for k in held[absorbed.id]],
                reason=reason,
                details=request.details,
                actor=actor,
            )
        )
        at.append(len(outcomes))
        outcomes.append(MergeOutcome())
        held[survivor.id] += held.pop(absorbed.id)
        held[absorbed.id] = []
        _absorb(survivor, absorbed, rules)
        links[absorbed.id] = survivor.id
        separations_after_merge(apart, survivor=survivor.id, absorbed=absorbed.id)
        touched[survivor.id] = survivor
        touched[absorbed.id] = absorbed
        logger.info("merged profile %s into %s (%s)", absorbed.id, survivor.id, reason)
    if not records:
        return outcomes

    bulk_insert(records)
    for i, record in zip(at, records, strict=True):
        outcomes[i] = MergeOutcome(merge=record)
    # Identifiers and events of every absorbed profile go to its live survivor.
    moved = {pid: live(pid).id for pid, p in touched.items() if p.merged_into_id is not None}
    _identifiers_move(moved)
    _profiles_write(list(touched.values()))
    # Events, consent records (both logs are kept)... follow to the survivors.
    profiles_merged_notify(mapping=moved)
    return outcomes


def _absorb(survivor: Profile, absorbed: Profile, rules: IdentityRules) -> None:
    """The survivor's traits and time span take in the absorbed profile's (in memory)."""
    combine_traits(survivor, absorbed, rules)
    for at in (absorbed.first_seen, absorbed.last_seen):
        if at is not None:
            if survivor.first_seen is None or at < survivor.first_seen:
                survivor.first_seen = at
            if survivor.last_seen is None or at > survivor.last_seen:
                survivor.last_seen = at
    absorbed.merged_into = survivor


_PROFILE_FIELDS = ["traits", "trait_timestamps", "first_seen", "last_seen", "merged_into"]


def _identifiers_move(moved: dict[uuid.UUID, uuid.UUID]) -> None:
    """Identifiers of each profile in ``moved`` go to the profile it maps to."""
    if not moved:
        return
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Identifier._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS i SET profile_id = m.new "
                "FROM unnest(%s::uuid[], %s::uuid[]) AS m(old, new) WHERE i.profile_id = m.old",
                [list(moved), list(moved.values())],
            )
        return
    Identifier.objects.filter(profile_id__in=list(moved)).update(
        profile_id=Case(
            *(When(profile_id=old, then=Value(new)) for old, new in moved.items()),
            output_field=UUIDField(),
        )
    )


def _profiles_write(profiles: list[Profile]) -> None:
    now = timezone.now()
    for profile in profiles:
        profile.updated_at = now
    bulk_set(profiles, [*_PROFILE_FIELDS, "updated_at"])


def profiles_lock_live(*, profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Lock these profiles and those they were merged into, as merges and
    resolution do (FOR UPDATE, id order), for a writer of another app that must
    not interleave with a merge; each id -> its live profile's id. Ids that do not
    exist are left out."""
    ids = list(profile_ids)
    # The survivors first, read without locks, so that the whole set is locked in
    # one id order (round by round, an absorbed id above its survivor would be
    # locked before it, against the order a split or a bulk merge takes).
    closure = set(ids)
    todo = set(ids)
    while todo:
        todo = {
            into
            for into in Profile.objects.filter(id__in=todo, merged_into__isnull=False).values_list(
                "merged_into_id", flat=True
            )
            if into not in closure
        }
        closure |= todo
    locked = _lock_live(closure, missing_ok=True)
    return {pid: _live(locked, pid).id for pid in ids if pid in locked}


def profile_seen_extend(
    *, profile_id: uuid.UUID, first: datetime | None, last: datetime | None
) -> None:
    """Widen a profile's first and last seen to take in ``first`` and ``last``
    (for a split's handlers: the events that stay with the profile left)."""
    profile = Profile.objects.get(id=profile_id)
    changed = False
    if first is not None and (profile.first_seen is None or first < profile.first_seen):
        profile.first_seen = first
        changed = True
    if last is not None and (profile.last_seen is None or last > profile.last_seen):
        profile.last_seen = last
        changed = True
    if changed:
        profile.save(update_fields=["first_seen", "last_seen", "updated_at"])


@transaction.atomic
def profile_split(*, profile_id: uuid.UUID, actor: Any = None, note: str = "") -> Profile:
    """Undo the merge that absorbed ``profile_id``: its identifiers, the events they
    carry and its traits return to it, and it is a live profile again.

    The two are kept apart from then on (``ProfileSeparation``, with ``note`` as
    the why): a later event naming both does not merge them again."""
    record = (
        ProfileMerge.objects.filter(absorbed_id=profile_id, undone_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if record is None:
        raise MergeRefused("This profile was not merged into another one.")
    locked = _lock_live([profile_id, record.survivor_id])
    absorbed = locked[profile_id]
    live = _live(locked, record.survivor_id)
    if absorbed.merged_into_id != record.survivor_id:
        raise MergeRefused("This profile's merge record does not match its current state.")

    keys = [tuple(k) for k in record.absorbed_snapshot.get("identifiers", [])]
    if keys:
        match = Q()
        for kind, value in keys:
            match |= Q(type=kind, value=value)
        Identifier.objects.filter(match, profile=live).update(profile=absorbed)

    rules = identity_rules_load()
    mine = frozenset(keys)
    theirs = frozenset(
        Identifier.objects.filter(profile=live, type=IdentifierType.USER_ID).values_list(
            "type", "value"
        )
    )
    tree_ids = tuple(profile_tree_ids(profile_id=absorbed.id))

    snap = record.absorbed_snapshot
    absorbed.traits = dict(snap.get("traits", {}))
    absorbed.trait_timestamps = dict(snap.get("trait_timestamps", {}))
    absorbed.first_seen = _parse(snap.get("first_seen"))
    absorbed.last_seen = _parse(snap.get("last_seen"))
    absorbed.merged_into = None
    absorbed.save()

    # The survivor gives back what came from the absorbed profile and keeps what
    # it learnt since.
    before = record.survivor_snapshot
    for name in list(live.traits):
        # A trait without a time (imported profiles) was taken with time "".
        came_from_absorbed = (
            name in absorbed.traits
            and live.traits[name] == absorbed.traits[name]
            and live.trait_timestamps.get(name, "") == absorbed.trait_timestamps.get(name, "")
        )
        if not came_from_absorbed:
            continue
        if name in before.get("traits", {}):
            live.traits[name] = before["traits"][name]
            if name in before.get("trait_timestamps", {}):
                live.trait_timestamps[name] = before["trait_timestamps"][name]
            else:
                live.trait_timestamps.pop(name, None)
        else:
            del live.traits[name]
            live.trait_timestamps.pop(name, None)
    recompute_seen = live.id == record.survivor_id
    if recompute_seen:
        # As it was before the merge; the events that stay with it widen this
        # (the events' split handler, profile_seen_extend).
        live.first_seen = _parse(before.get("first_seen"))
        live.last_seen = _parse(before.get("last_seen"))
    live.save()

    # Events go back when the strongest id they carry is now the absorbed
    # profile's; consent statements made for it (or for profiles it had absorbed)
    # return too.
    profile_split_notify(
        ProfileSplit(
            profile_id=absorbed.id,
            from_profile_id=live.id,
            tree_ids=tree_ids,
            identifiers=mine,
            kept_user_ids=theirs,
            normalize=rules.normalize,
            recompute_seen=recompute_seen,
        )
    )

    record.undone_at = timezone.now()
    record.undone_by = actor
    record.save(update_fields=["undone_at", "undone_by"])
    separation_record(
        profile_ids=(absorbed.id, record.survivor_id), split_merge=record, actor=actor, note=note
    )
    logger.info("split profile %s out of %s", absorbed.id, live.id)
    return absorbed


__all__ = [
    "MergeOutcome",
    "MergeRefused",
    "MergeRequest",
    "merge_blockers",
    "merge_rows",
    "profile_merge",
    "profile_merge_bulk",
    "profile_seen_extend",
    "profile_split",
    "survivor_of",
]
