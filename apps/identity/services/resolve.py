"""Deterministic identity resolution: which profile does each event belong to?

``profiles_resolve`` takes the identity claims of a batch of events and, in one
transaction, finds or creates each claim's profile, links new identifiers, merges
profiles that turn out to be one person (unless a safety rule forbids it, in which
case the weakest identifier is dropped and a conflict recorded) and applies traits.

Safety rules (``rules.IdentityRules``, admin-editable): junk values are never
identifiers; a profile holds at most one user id and at most the configured number
of each other type; profiles with different user ids never merge automatically.
Identifiers are considered strongest first (by type priority), so it is always the
weakest identifier of an event that is dropped.

Concurrency (PostgreSQL): every identifier of the batch is locked with a
transaction-level advisory lock, in one global order, before anything is read, so
two workers never create a profile for the same identifier and never interleave on
one. Profiles are then locked FOR UPDATE in id order; a merge that reaches a
profile outside that set is rare, and a deadlock it causes is retried by the task.
SQLite serializes writers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q

from apps.identity.models import (
    Identifier,
    IdentifierType,
    IdentityConflict,
    Profile,
    ProfileMerge,
    ProfileSeparation,
    TraitStrategy,
)

from .merge import merge_rows, survivor_of
from .rules import IdentityRules, identity_rules_load
from .separate import separations_among

Key = tuple[str, str]  # (identifier type, normalized value)


@dataclass
class IdentityClaim:
    """What one event says about who sent it."""

    identifiers: list[tuple[str, Any]]  # (type, raw value), in any order
    timestamp: datetime
    traits: dict[str, Any] | None = None
    event_id: int | None = None
    # Segment's context.externalIds: [{"id": ..., "type": ...}, ...]
    external_ids: list[Any] | None = None


@dataclass
class _Claim:
    keys: list[Key]
    raw: dict[Key, str]
    source: IdentityClaim


@dataclass
class _State:
    """Everything the batch has read or is about to write, so each identifier and
    profile is fetched once per batch however many events mention it."""

    rules: IdentityRules
    owner: dict[Key, uuid.UUID] = field(default_factory=dict)
    profiles: dict[uuid.UUID, Profile] = field(default_factory=dict)
    user_id: dict[uuid.UUID, str | None] = field(default_factory=dict)
    counts: dict[uuid.UUID, Counter[str]] = field(default_factory=dict)
    new_identifiers: dict[Key, tuple[uuid.UUID, str]] = field(default_factory=dict)
    dirty: set[uuid.UUID] = field(default_factory=set)
    any_separation: bool | None = None  # are any profiles kept apart? (read once)


def claim_keys(claim: IdentityClaim, rules: IdentityRules) -> tuple[list[Key], dict[Key, str]]:
    """The claim's usable identifiers, normalized, strongest first."""
    keys: list[Key] = []
    raw: dict[Key, str] = {}
    candidates = list(claim.identifiers)
    if claim.traits:
        for trait, kind in rules.trait_types():
            if claim.traits.get(trait) is not None:
                candidates.append((kind, claim.traits[trait]))
    for item in claim.external_ids or ():
        if isinstance(item, dict) and isinstance(item.get("type"), str):
            candidates.append((item["type"], item.get("id")))
    for kind, value in candidates:
        normalized = rules.normalize(str(kind), value)
        if normalized is None:
            continue
        key = (str(kind), normalized)
        if key not in raw:
            keys.append(key)
            raw[key] = str(value)[:255]
    keys.sort(key=lambda k: rules.priority(k[0]))
    return keys, raw


def _lock_key(key: Key) -> int:
    digest = hashlib.blake2b(f"{key[0]}\x00{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _advisory_lock(keys: Iterable[Key]) -> None:
    if connection.vendor != "postgresql":
        return
    ordered = sorted({_lock_key(k) for k in keys})
    if ordered:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k",
                [ordered],
            )


def _load(state: _State, keys: set[Key]) -> None:
    by_type: dict[str, list[str]] = {}
    for kind, value in keys:
        by_type.setdefault(kind, []).append(value)
    if not by_type:
        return
    query = Q()
    for kind, values in by_type.items():
        query |= Q(type=kind, value__in=values)

    def owners() -> dict[Key, uuid.UUID]:
        rows = Identifier.objects.filter(query).values_list("type", "value", "profile_id")
        return {(kind, value): profile_id for kind, value, profile_id in rows}

    # The owners were read before their rows were locked. A merge leaves a
    # forwarding pointer (merged_into), but a split moves identifiers back with
    # none: read again once locked, until what we hold is what owns our keys.
    state.owner = owners()
    while True:
        _load_profiles(state, set(state.owner.values()))
        fresh = owners()
        if fresh == state.owner:
            break
        state.owner = fresh


def _load_profiles(state: _State, ids: set[uuid.UUID]) -> None:
    missing = ids - state.profiles.keys()
    while missing:
        qs = Profile.objects.filter(id__in=missing).order_by("id")
        if connection.features.has_select_for_update:
            qs = qs.select_for_update()
        found = list(qs)
        found_ids = [p.id for p in found]
        for profile in found:
            state.profiles[profile.id] = profile
            state.user_id.setdefault(profile.id, None)
            state.counts.setdefault(profile.id, Counter())
        for profile_id, value in Identifier.objects.filter(
            profile_id__in=found_ids, type=IdentifierType.USER_ID
        ).values_list("profile_id", "value"):
            state.user_id[profile_id] = value
        for row in (
            Identifier.objects.filter(profile_id__in=found_ids)
            .values("profile_id", "type")
            .annotate(n=Count("id"))
        ):
            state.counts[row["profile_id"]][row["type"]] = row["n"]
        # Follow absorbed profiles to their survivors.
        missing = {
            p.merged_into_id for p in found if p.merged_into_id is not None
        } - state.profiles.keys()


def _live(state: _State, profile_id: uuid.UUID) -> Profile:
    profile = state.profiles[profile_id]
    while profile.merged_into_id is not None:
        _load_profiles(state, {profile.merged_into_id})
        profile = state.profiles[profile.merged_into_id]
    return profile


def _owner(state: _State, key: Key) -> Profile | None:
    if key in state.new_identifiers:
        return _live(state, state.new_identifiers[key][0])
    if key in state.owner:
        return _live(state, state.owner[key])
    return None


def _stamp(at: datetime) -> str:
    # One fixed-width UTC format, so stamps compare correctly as strings.
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _apply_traits(
    profile: Profile, traits: dict[str, Any], at: datetime, rules: IdentityRules
) -> bool:
    stamp = _stamp(at)
    changed = False
    for name, value in traits.items():
        seen = profile.trait_timestamps.get(name)
        if seen is None:
            take = True
        elif rules.strategy(name) == TraitStrategy.FIRST_SEEN:
            take = stamp < seen
        else:
            take = seen <= stamp and (profile.traits.get(name) != value or seen != stamp)
        if take:
            profile.traits[name] = value
            profile.trait_timestamps[name] = stamp
            changed = True
    return changed


def _touch(profile: Profile, at: datetime) -> bool:
    changed = False
    if profile.first_seen is None or at < profile.first_seen:
        profile.first_seen = at
        changed = True
    if profile.last_seen is None or at > profile.last_seen:
        profile.last_seen = at
        changed = True
    return changed


def _merge(
    state: _State,
    a: Profile,
    b: Profile,
    *,
    reason_key: Key,
    anchor_key: Key | None,
    event_id: int | None,
) -> Profile:
    survivor, absorbed = survivor_of(a, b, state.counts)
    pending = [k for k, (pid, _) in state.new_identifiers.items() if pid == absorbed.id]
    merge_rows(
        survivor=survivor,
        absorbed=absorbed,
        reason=ProfileMerge.Reason.SHARED_IDENTIFIER,
        # One event named both: ``anchor`` (already on one profile) and
        # ``identifier`` (already on the other).
        details={
            "identifier": list(reason_key),
            "anchor": list(anchor_key) if anchor_key else None,
            "event_id": event_id,
        },
        rules=state.rules,
        pending_identifiers=pending,
    )
    for key in pending:
        state.new_identifiers[key] = (survivor.id, state.new_identifiers[key][1])
    state.user_id[survivor.id] = state.user_id.get(survivor.id) or state.user_id.get(absorbed.id)
    state.counts[survivor.id] = state.counts[survivor.id] + state.counts[absorbed.id]
    state.dirty.add(survivor.id)
    state.dirty.discard(absorbed.id)
    return survivor


def _kept_apart(state: _State, a: Profile, b: Profile) -> bool:
    """Did an admin split these two live profiles (or ones they hold) apart?"""
    if state.any_separation is None:
        # Asked once, at the batch's first merge: most installations split rarely.
        state.any_separation = ProfileSeparation.objects.active().exists()
    if not state.any_separation:
        return False
    return frozenset((a.id, b.id)) in separations_among([a.id, b.id])


def _conflict(
    profile: Profile, key: Key, rule: str, other: Profile | None, event_id: int | None
) -> None:
    IdentityConflict.objects.create(
        profile=profile,
        identifier_type=key[0],
        identifier_value=key[1],
        rule=rule,
        other_profile=other,
        event_id=event_id,
    )


def _over_cap(state: _State, counts: Counter[str], extra: Counter[str]) -> bool:
    for kind, n in extra.items():
        cap = state.rules.cap(kind)
        if cap is not None and counts.get(kind, 0) + n > cap:
            return True
    return False


def _resolve_one(state: _State, claim: _Claim) -> uuid.UUID | None:
    if not claim.keys:
        return None
    event_id = claim.source.event_id
    target: Profile | None = None
    target_key: Key | None = None
    target_uid: str | None = None
    link: list[Key] = []
    link_counts: Counter[str] = Counter()
    dropped: list[tuple[Key, str, Profile | None]] = []

    def holding() -> Counter[str]:
        base = state.counts[target.id] if target is not None else Counter()
        return base + link_counts

    for key in claim.keys:  # strongest first
        kind = key[0]
        owner = _owner(state, key)
        if owner is None:
            if kind == IdentifierType.USER_ID and target_uid not in (None, key[1]):
                dropped.append((key, IdentityConflict.Rule.ONE_USER_ID, None))
            elif _over_cap(state, holding(), Counter({kind: 1})):
                dropped.append((key, IdentityConflict.Rule.CAP, None))
            else:
                link.append(key)
                link_counts[kind] += 1
                if kind == IdentifierType.USER_ID:
                    target_uid = key[1]
            continue
        if target is not None and owner.id == target.id:
            continue
        owner_uid = state.user_id.get(owner.id)
        if target_uid is not None and owner_uid is not None and owner_uid != target_uid:
            dropped.append((key, IdentityConflict.Rule.DIFFERENT_USER_IDS, owner))
            continue
        if _over_cap(state, holding(), state.counts[owner.id]):
            dropped.append((key, IdentityConflict.Rule.CAP, owner))
            continue
        if target is None:
            target, target_key = owner, key
        elif _kept_apart(state, target, owner):
            dropped.append((key, IdentityConflict.Rule.SPLIT_BY_ADMIN, owner))
            continue
        else:
            target = _merge(
                state, target, owner, reason_key=key, anchor_key=target_key, event_id=event_id
            )
        target_uid = target_uid or owner_uid
    if target is None:
        target = Profile.objects.create()
        state.profiles[target.id] = target
        state.user_id[target.id] = None
        state.counts[target.id] = Counter()
    for key in link:
        state.new_identifiers[key] = (target.id, claim.raw[key])
        state.counts[target.id][key[0]] += 1
        if key[0] == IdentifierType.USER_ID:
            state.user_id[target.id] = key[1]
    for key, rule, other in dropped:
        _conflict(target, key, rule, other, event_id)
    changed = _touch(target, claim.source.timestamp)
    if claim.source.traits:
        changed = (
            _apply_traits(target, claim.source.traits, claim.source.timestamp, state.rules)
            or changed
        )
    if changed:
        state.dirty.add(target.id)
    return target.id


@transaction.atomic
def profiles_resolve(*, claims: Sequence[IdentityClaim]) -> list[uuid.UUID | None]:
    """Resolve each claim to a live profile id (None when it has no usable identifier)."""
    rules = identity_rules_load()
    prepared = []
    for claim in claims:
        keys, raw = claim_keys(claim, rules)
        prepared.append(_Claim(keys=keys, raw=raw, source=claim))
    all_keys = {k for c in prepared for k in c.keys}
    _advisory_lock(all_keys)
    state = _State(rules=rules)
    _load(state, all_keys)
    result = [_resolve_one(state, c) for c in prepared]
    if state.new_identifiers:
        Identifier.objects.bulk_create(
            [
                Identifier(profile_id=pid, type=k[0], value=k[1], raw_value=raw)
                for k, (pid, raw) in state.new_identifiers.items()
            ]
        )
    dirty = [state.profiles[pid] for pid in sorted(state.dirty)]
    if dirty:
        Profile.objects.bulk_update(
            dirty, ["traits", "trait_timestamps", "first_seen", "last_seen"], batch_size=200
        )
    # A profile absorbed later in the batch hands its events to its survivor.
    return [None if pid is None else _live(state, pid).id for pid in result]
