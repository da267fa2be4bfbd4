"""Rule segments at work: saving them, evaluating profiles in real time, the
expiry sweep, batch refresh with an atomic swap, and reading memberships.

Two implementations answer "who is in this segment": the evaluator
(apps/segments/rules.py) for the profiles an event touched, and one SQL query
(apps/segments/compiler.py) for everyone. Both write memberships the same way:

- A membership is one stay (entered_at, exited_at, reason); every entry and exit
  is also written to the outbox (MembershipChange) in the same transaction.
- Real-time evaluation locks the profiles it evaluates, and holds a shared
  advisory lock per segment; a refresh holds that lock exclusively while it
  swaps, so the swap is one transaction no reader sees half of, and no real-time
  write interleaves with it. What real time changed while the refresh was
  computing wins (it saw newer data): the refresh leaves those rows alone.
- Windows expire with no new event: whenever a windowed count could change a
  profile's standing as time passes, a MembershipRecheck row says when; the
  sweep reads only the rows that are due.

Day-level time (``within_last_days`` and ``before_days_ago``, ``days_since_last_order``,
``cart_abandoned``, consent lapsing) is brought up to date by the periodic refresh
(CDP SEGMENT_REFRESH_SECONDS).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, ProtectedError, QuerySet
from django.db.models.functions import Trunc
from django.utils import timezone

from apps.consent.models import Purpose
from apps.consent.selectors import UnknownPurpose, profiles_with_consent
from apps.events.models import Event
from apps.identity.models import Profile

from .conditions import ConditionInvalid, Lookups, condition_validate, segment_keys_referenced
from .models import (
    Membership,
    MembershipChange,
    MembershipRecheck,
    MembershipSource,
    ProfileFeatures,
    RefreshStaging,
    Segment,
    SegmentKind,
    SegmentRefresh,
)
from .rules import (
    EventFacts,
    Facts,
    Outcome,
    Plan,
    evaluate,
    feature_values,
    given_instant,
    plan_build,
)
from .rules import reason_build as _reason

logger = logging.getLogger(__name__)

__all__ = ["ConditionInvalid"]

ENTERED, EXITED = MembershipChange.Kind.ENTERED, MembershipChange.Kind.EXITED
PYTHON_CHUNK = 2000


def _cart_after() -> timedelta:
    return timedelta(seconds=settings.CDP["CART_ABANDONED_AFTER_SECONDS"])


def _postgres() -> bool:
    return connection.vendor == "postgresql"


# -- definitions ---------------------------------------------------------------


def segment_lookups(*, own_key: str | None = None) -> Lookups:
    refs = dict(Segment.objects.values_list("key", "refs"))
    return Lookups(
        purposes=set(Purpose.objects.values_list("key", flat=True)),
        segment_refs=lambda key: refs.get(key),
        own_key=own_key,
    )


def _conditions() -> dict[str, Any]:
    return dict(Segment.objects.values_list("key", "condition"))


@dataclass(frozen=True)
class Active:
    segment: Segment
    plan: Plan


def _active(segment_ids: Iterable[int] | None = None) -> list[Active]:
    # One query: every segment's condition is needed to inline references.
    segments = list(Segment.objects.order_by("id"))
    conditions = {s.key: s.condition for s in segments}
    wanted = None if segment_ids is None else set(segment_ids)
    out = []
    for segment in segments:
        if not (
            segment.kind == SegmentKind.RULE
            and segment.enabled
            and segment.condition is not None
            and (wanted is None or segment.pk in wanted)
        ):
            continue
        try:
            out.append(Active(segment, plan_build(segment.condition or {}, conditions)))
        except (KeyError, TypeError, ValueError):
            logger.exception("segment %s has a condition that cannot be planned", segment.key)
    return out


class SegmentInUse(Exception):
    """The segment cannot go: other segments refer to it (``keys``), or what other
    apps keep of it does (``users``, described: a clustering config's population)."""

    def __init__(self, keys: list[str], users: Sequence[str] = ()) -> None:
        self.keys = keys
        self.users = list(users)
        if keys:
            self.message = (
                "Other segments refer to this one: "
                + ", ".join(keys)
                + ". Change their conditions first."
            )
        else:
            self.message = "This segment is in use by " + "; ".join(self.users) + "."
        super().__init__(self.message)


def _dependants(key: str) -> list[Segment]:
    """Segments whose conditions refer to ``key``, directly or through others,
    each once, dependencies first."""
    by_key = {s.key: s for s in Segment.objects.all()}
    out: list[Segment] = []
    frontier = [key]
    seen = {key}
    while frontier:
        nxt = []
        for s in by_key.values():
            if s.key not in seen and any(r in frontier for r in s.refs or ()):
                seen.add(s.key)
                out.append(s)
                nxt.append(s.key)
        frontier = nxt
    return out


def segment_save(
    *,
    key: str,
    name: str,
    description: str = "",
    condition: dict[str, Any] | None,
    min_size: int = 0,
    enabled: bool = True,
    segment: Segment | None = None,
    refresh: bool = True,
) -> Segment:
    """Create (or, with ``segment``, update) a rule segment: validate the tree,
    save, and refresh it and every segment that refers to it."""
    if condition is None:
        raise ConditionInvalid(["condition: is required for a rule segment"])
    condition_validate(condition, segment_lookups(own_key=key))
    segment = segment or Segment(key=key)
    segment.name = name
    segment.description = description
    segment.condition = condition
    segment.refs = segment_keys_referenced(condition)
    segment.min_size = min_size
    segment.enabled = enabled
    segment.kind = SegmentKind.RULE
    segment.save()
    if refresh:
        segment_refresh(segment)
        for dependant in _dependants(segment.key):
            if dependant.kind == SegmentKind.RULE and dependant.condition is not None:
                segment_refresh(dependant)
    return segment


def segment_delete(segment: Segment) -> None:
    users = sorted(s.key for s in Segment.objects.exclude(pk=segment.pk) if segment.key in s.refs)
    if users:
        raise SegmentInUse(users)
    try:
        with transaction.atomic():
            # Locked before its memberships are collected: a writer holding it
            # (FOR KEY SHARE, or a swap's FOR UPDATE) finishes first and its rows
            # are collected; one that comes later finds it gone (_segments_kept).
            # Memberships and the outbox have no foreign-key constraint to check
            # this at commit (migration 0007).
            if not Segment.objects.select_for_update().filter(pk=segment.pk).exists():
                return
            segment.delete()
    except ProtectedError as exc:
        raise SegmentInUse([], sorted(_described(obj) for obj in exc.protected_objects)) from exc


def _described(obj: Any) -> str:
    text, kind = str(obj), str(obj._meta.verbose_name)
    return text if text.startswith(kind) else f"{kind} {text!r}"


# -- facts ------------------------------------------------------------------------


def _events_lower_bound(plans: Sequence[Plan], now: datetime) -> datetime | None:
    """The earliest timestamp any performed node of these plans counts (None: all time)."""
    bounds: list[datetime] = []
    for plan in plans:
        for leaf in plan.of_type("performed"):
            node = leaf.node
            if "within_seconds" in node:
                bounds.append(now - timedelta(seconds=node["within_seconds"]))
            elif "between" in node:
                bounds.append(given_instant(node["between"][0]) - timedelta(microseconds=1))
            else:
                return None
    return min(bounds) if bounds else None


def facts_load(
    profile_ids: Sequence[uuid.UUID], plans: Sequence[Plan], now: datetime
) -> dict[uuid.UUID, Facts]:
    """What evaluating these plans for these profiles reads, in a few queries."""
    ids = list(profile_ids)
    traits = dict(Profile.objects.filter(pk__in=ids).values_list("pk", "traits"))
    need_features = any(plan.of_type("feature") for plan in plans)
    rows = (
        {r.profile_id: r for r in ProfileFeatures.objects.filter(profile_id__in=ids)}
        if need_features
        else {}
    )
    purposes = set().union(*(plan.purposes for plan in plans)) if plans else set()
    consents: dict[str, set[uuid.UUID]] = {}
    for purpose in purposes:
        try:
            allowed = profiles_with_consent(Profile.objects.filter(pk__in=ids), purpose)
            consents[purpose] = set(allowed.values_list("pk", flat=True))
        except UnknownPurpose:  # deleted since the segment was saved: nobody consents
            consents[purpose] = set()
    names = set().union(*(plan.event_names for plan in plans)) if plans else set()
    events: dict[uuid.UUID, list[EventFacts]] = defaultdict(list)
    if names:
        query = Event.objects.filter(profile_id__in=ids, event__in=sorted(names))
        lower = _events_lower_bound(plans, now)
        if lower is not None:
            query = query.filter(timestamp__gt=lower)
        for row in query.values_list(
            "profile_id", "event", "type", "name", "timestamp", "properties", "context", "traits"
        ):
            events[row[0]].append(EventFacts(*row[1:]))
    member_keys = set().union(*(plan.member_keys for plan in plans)) if plans else set()
    member_of: dict[uuid.UUID, set[str]] = defaultdict(set)
    if member_keys:
        # By profile only (see _apply): a profile's own current rows.
        for pid, key in Membership.objects.filter(
            profile_id__in=ids, exited_at__isnull=True
        ).values_list("profile_id", "segment__key"):
            if key in member_keys:
                member_of[pid].add(key)
    after = _cart_after()
    return {
        pid: Facts(
            features=feature_values(rows.get(pid), now, after) if need_features else {},
            traits=traits.get(pid) or {},
            consents={p: pid in allowed for p, allowed in consents.items()},
            events=events.get(pid, ()),
            member_of=member_of.get(pid, set()),
        )
        for pid in ids
    }


# -- writing memberships ---------------------------------------------------------------


def _segment_locks(segment_ids: Iterable[int], *, exclusive: bool) -> None:
    if not _postgres():
        return  # SQLite writes one transaction at a time
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        for sid in sorted(set(segment_ids)):
            cursor.execute(f"SELECT {fn}(%s, %s)", [_LOCK_SPACE, sid])


def _segments_kept(segment_ids: Iterable[int]) -> set[int]:
    """Of the segments a writer of single profiles is about to write rows to,
    those that still exist, each row locked FOR KEY SHARE until the transaction
    ends: write only to those. Call it right before writing, for the segments
    written to only (most evaluations write nothing, and lock nothing).

    It stands in for the foreign key that memberships and the outbox do not have
    (migration 0007), and locks what the key's check locked: segment_delete
    locks the row FOR UPDATE before collecting the memberships, so a delete
    either waits for this transaction and takes its rows, or is committed
    before the lock is granted and the segment is left out here. (The swaps
    lock their rows FOR UPDATE themselves.) Take it after the segments'
    advisory locks, never before: that is the order every writer keeps."""
    ids = sorted(set(segment_ids))
    if not ids:
        return set()
    if not _postgres():
        # SQLite writes one transaction at a time (and keeps the constraint).
        return set(Segment.objects.filter(pk__in=ids).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM segments_segment WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE", [ids]
        )
        return {int(row[0]) for row in cursor.fetchall()}


_LOCK_SPACE = 7_411_002  # our advisory-lock namespace (the first key of the pair)
_ERASURE_KEY = 0  # the second key of the erasure lock (segment ids start at 1)


def _erasure_lock(*, exclusive: bool) -> None:
    """The lock that stands in for the profile foreign key memberships and the
    outbox do not have (migration 0008), until the transaction ends.

    Shared: a set writer (a rule refresh's or a cluster run's swap), which
    inserts rows for every profile its set names without locking any of them;
    take it before the segment rows, and insert only for profiles that exist
    after it is held. Exclusive: the memberships eraser, before it locks the
    profiles and deletes their rows; erasure deletes the profiles in the same
    transaction as its last pass. So a swap either ends before the eraser looks
    (and its rows are deleted) or starts after the profiles are gone. The
    writers of single profiles lock them FOR UPDATE and write for live ones
    only, which the eraser's FOR UPDATE orders the same way. Merges and swaps
    do not wait for each other: a merge does not take it."""
    if not _postgres():
        return  # SQLite writes one transaction at a time (and keeps the constraint)
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {fn}(%s, %s)", [_LOCK_SPACE, _ERASURE_KEY])


def _apply(
    results: dict[tuple[int, uuid.UUID], tuple[Outcome, Active]],
    now: datetime,
    source: str,
) -> tuple[int, int]:
    """Write the evaluated standings: entries, exits, outbox rows and rechecks.
    Runs in the caller's transaction, with the profiles locked."""
    if not results:
        return 0, 0
    segment_ids = {sid for sid, _ in results}
    profile_ids = {pid for _, pid in results}
    _segment_locks(segment_ids, exclusive=False)
    # Read by profile only, and pick the segments here: with a segment predicate
    # too, the planner may scan every current member of those segments (it did,
    # at 1M profiles, whenever a refresh had just written rows its statistics
    # did not know yet); a profile's own rows are a few index entries.
    current = {
        (m.segment_id, m.profile_id): m
        for m in Membership.objects.filter(profile_id__in=profile_ids, exited_at__isnull=True).only(
            "id", "segment_id", "profile_id"
        )
        if m.segment_id in segment_ids
    }
    rechecks = {
        (r.segment_id, r.profile_id): r
        for r in MembershipRecheck.objects.filter(profile_id__in=profile_ids)
        if r.segment_id in segment_ids
    }
    entering: list[Membership] = []
    exiting: list[Membership] = []
    changes: list[MembershipChange] = []
    recheck_new: list[MembershipRecheck] = []
    recheck_moved: list[MembershipRecheck] = []
    recheck_gone: list[int] = []
    for (sid, pid), (outcome, active) in results.items():
        row = current.get((sid, pid))
        changed = outcome.member != (row is not None)
        # The reason is built only for what changes (this runs for every event).
        reason = (
            _reason(active.plan, outcome, source=source, version=active.segment.version)
            if changed
            else {}
        )
        if outcome.member and row is None:
            entering.append(
                Membership(
                    segment_id=sid,
                    profile_id=pid,
                    entered_at=now,
                    reason=reason,
                    source=source,
                    changed_at=now,
                )
            )
            changes.append(
                MembershipChange(
                    segment_id=sid, profile_id=pid, kind=ENTERED, at=now, source=source
                )
            )
        elif not outcome.member and row is not None:
            row.exited_at = now
            row.changed_at = now
            row.exit_reason = reason
            exiting.append(row)
            changes.append(
                MembershipChange(segment_id=sid, profile_id=pid, kind=EXITED, at=now, source=source)
            )
        recheck = rechecks.get((sid, pid))
        if outcome.recheck_at is None:
            if recheck is not None:
                recheck_gone.append(recheck.pk)
        elif recheck is None:
            recheck_new.append(
                MembershipRecheck(segment_id=sid, profile_id=pid, due_at=outcome.recheck_at)
            )
        elif recheck.due_at != outcome.recheck_at:
            recheck.due_at = outcome.recheck_at
            recheck_moved.append(recheck)
    written = {c.segment_id for c in changes}
    if written:
        kept = _segments_kept(written)
        if kept != written:  # deleted meanwhile: its memberships went with it
            entering = [m for m in entering if m.segment_id in kept]
            exiting = [m for m in exiting if m.segment_id in kept]
            changes = [c for c in changes if c.segment_id in kept]
            recheck_new = [r for r in recheck_new if r.segment_id in kept]
    if entering:
        Membership.objects.bulk_create(entering)
    if exiting:
        Membership.objects.bulk_update(exiting, ["exited_at", "changed_at", "exit_reason"])
    if changes:
        MembershipChange.objects.bulk_create(changes)
    if recheck_new:
        MembershipRecheck.objects.bulk_create(recheck_new)
    if recheck_moved:
        MembershipRecheck.objects.bulk_update(recheck_moved, ["due_at"])
    if recheck_gone:
        MembershipRecheck.objects.filter(pk__in=recheck_gone).delete()
    _sizes_adjust(entering, exiting)
    return len(entering), len(exiting)


def _sizes_adjust(entering: Sequence[Membership], exiting: Sequence[Membership]) -> None:
    delta: dict[int, int] = defaultdict(int)
    for m in entering:
        delta[m.segment_id] += 1
    for m in exiting:
        delta[m.segment_id] -= 1
    for sid, d in delta.items():
        if d:
            Segment.objects.filter(pk=sid).update(size=F("size") + d)


def profiles_evaluate(
    profile_ids: Iterable[uuid.UUID],
    *,
    source: str = MembershipSource.REALTIME,
    segment_ids: Iterable[int] | None = None,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Evaluate these profiles against the enabled rule segments (or the given
    ones) and write what changed. Locks the profiles; call in a transaction."""
    now = now or timezone.now()
    active = _active(segment_ids)
    ids = sorted(set(profile_ids))
    if not active or not ids:
        return 0, 0
    live = list(
        Profile.objects.select_for_update()
        .filter(pk__in=ids, merged_into__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    facts = facts_load(live, [a.plan for a in active], now)
    results = {
        (a.segment.pk, pid): (evaluate(a.plan, facts[pid], now), a) for a in active for pid in live
    }
    return _apply(results, now, str(source))


def segments_realtime(events: list[Any]) -> None:
    """The pipeline stage "segments.realtime": after features (they are current
    for these events), evaluate each touched profile against every enabled rule
    segment."""
    profile_ids = {e.profile_id for e in events if e.profile_id is not None}
    if profile_ids:
        profiles_evaluate(profile_ids)


def segments_recheck_due(*, now: datetime | None = None, limit: int = 5000) -> int:
    """The expiry sweep: re-evaluate the (segment, profile) pairs whose windows
    have moved on. Reads only rows that are due; workers share it (SKIP LOCKED)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = MembershipRecheck.objects.filter(due_at__lte=now).order_by("due_at")
        if _postgres():
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values_list("pk", "segment_id", "profile_id")[:limit])
        if not rows:
            return 0
        by_segment: dict[int, list[uuid.UUID]] = defaultdict(list)
        for _, sid, pid in rows:
            by_segment[sid].append(pid)
        # A profile merged away since has nothing to re-evaluate.
        MembershipRecheck.objects.filter(pk__in=[r[0] for r in rows]).delete()
        for sid, pids in by_segment.items():
            profiles_evaluate(pids, source=MembershipSource.RECHECK, segment_ids=[sid], now=now)
    return len(rows)


# -- batch refresh ---------------------------------------------------------------------------


def _adapt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _live_ids() -> QuerySet[Any]:
    return (
        Profile.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)
    )


def _stage_python(plan: Plan, token: int, now: datetime, version: int) -> None:
    """Where there is no SQL compiler (SQLite): evaluate every live profile."""
    ids = (
        Profile.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)
    )
    iterator = ids.iterator(chunk_size=PYTHON_CHUNK)
    while chunk := list(itertools.islice(iterator, PYTHON_CHUNK)):
        facts = facts_load(chunk, [plan], now)
        staged = []
        for pid in chunk:
            outcome = evaluate(plan, facts[pid], now)
            if outcome.member:
                staged.append(
                    RefreshStaging(
                        refresh_token=token,
                        profile_id=pid,
                        reason=_reason(plan, outcome, source="refresh", version=version),
                        recheck_at=outcome.recheck_at,
                    )
                )
        RefreshStaging.objects.bulk_create(staged)


def segment_refresh(segment: Segment, *, now: datetime | None = None) -> SegmentRefresh:
    """Recompute the segment's members and swap them in as a new version, in one
    transaction: a reader sees the old members or the new ones, never a mix."""
    from . import compiler

    started = now or timezone.now()
    clock = time.monotonic()
    if segment.condition is None:
        raise ValueError(f"segment {segment.key} has no condition: another app writes its members")
    plan = plan_build(segment.condition, _conditions())
    token = uuid.uuid4().int >> 65  # fits a bigint
    with transaction.atomic():
        version = segment.version + 1
        method = "sql" if _postgres() else "python"
        if _postgres():
            compiler.stage(plan, token=token, now=started, version=version)
        else:
            _stage_python(plan, token, started, version)
        # The swap: nobody else writes this segment's memberships meanwhile, and
        # no profile is erased meanwhile (its entries are only for profiles that
        # exist from here on).
        # Lock order, everywhere: erasure lock, segment advisory lock, segment row.
        _erasure_lock(exclusive=False)
        _segment_locks([segment.pk], exclusive=True)
        locked = Segment.objects.select_for_update().get(pk=segment.pk)
        version = locked.version + 1
        entered, exited = _swap(segment.pk, token, started, version)
        RefreshStaging.objects.filter(refresh_token=token).delete()
        size = Membership.objects.filter(segment_id=segment.pk, exited_at__isnull=True).count()
        finished = timezone.now()
        Segment.objects.filter(pk=segment.pk).update(
            version=version, size=size, refreshed_at=finished
        )
        record = SegmentRefresh.objects.create(
            segment_id=segment.pk,
            version=version,
            started_at=started,
            finished_at=finished,
            duration_ms=int((time.monotonic() - clock) * 1000),
            entered=entered,
            exited=exited,
            size=size,
            method=method,
        )
    segment.version, segment.size, segment.refreshed_at = version, size, finished
    return record


_EXIT_WHERE = """
    m.segment_id = %s AND m.exited_at IS NULL AND m.changed_at < %s
    AND NOT EXISTS (SELECT 1 FROM segments_refreshstaging s
                    WHERE s.refresh_token = %s AND s.profile_id = m.profile_id)"""
_ENTER_WHERE = """
    s.refresh_token = %s
    AND NOT EXISTS (SELECT 1 FROM segments_membership m
                    WHERE m.segment_id = %s AND m.profile_id = s.profile_id
                      AND (m.exited_at IS NULL OR m.changed_at >= %s))"""
_OUTBOX = (
    "INSERT INTO segments_membershipchange (segment_id, profile_id, kind, at, source, version)"
)
_MEMBERSHIP = (
    "INSERT INTO segments_membership (segment_id, profile_id, entered_at, exited_at, reason, "
    "exit_reason, source, version, changed_at)"
)


def _swap(
    segment_id: int,
    token: int,
    started: datetime,
    version: int,
    *,
    source: str = MembershipSource.REFRESH,
    gone_text: str = "no longer matches the condition",
) -> tuple[int, int]:
    """Swap the staged member set (``token``) in as ``version``: exits and entries,
    each with its outbox rows, and the staged rechecks. Rows changed since
    ``started`` (by real time, on newer data) are left alone. Also used by the apps
    that write a segment's members themselves (clustering), with their ``source``."""
    now = _adapt(timezone.now())
    at = _adapt(started)
    source = str(source)
    gone = json.dumps({"source": source, "version": version, "text": gone_text})
    exit_args = [segment_id, at, token]
    enter_args = [token, segment_id, at]
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute(
                f"""WITH gone AS (
                      UPDATE segments_membership m
                         SET exited_at = %s, changed_at = %s, exit_reason = %s::jsonb
                       WHERE {_EXIT_WHERE} RETURNING m.profile_id)
                    {_OUTBOX} SELECT %s, profile_id, 'exited', %s, %s, %s FROM gone""",
                [now, now, gone, *exit_args, segment_id, now, source, version],
            )
            exited = cursor.rowcount
            cursor.execute(
                f"""WITH added AS (
                      {_MEMBERSHIP}
                      SELECT %s, s.profile_id, %s, NULL, s.reason, '{{}}'::jsonb, %s, %s, %s
                        FROM segments_refreshstaging s
                        JOIN identity_profile p ON p.id = s.profile_id
                       WHERE {_ENTER_WHERE}
                      ON CONFLICT DO NOTHING RETURNING profile_id)
                    {_OUTBOX} SELECT %s, profile_id, 'entered', %s, %s, %s FROM added""",
                [
                    segment_id,
                    now,
                    source,
                    version,
                    now,
                    *enter_args,
                    segment_id,
                    now,
                    source,
                    version,
                ],
            )
            entered = cursor.rowcount
            # Only for profiles that still exist (one staged may have been erased
            # before the erasure lock was held): the recheck table keeps its
            # profile foreign key, which would fail the refresh at commit.
            cursor.execute(
                """INSERT INTO segments_membershiprecheck (segment_id, profile_id, due_at)
                   SELECT %s, s.profile_id, s.recheck_at FROM segments_refreshstaging s
                     JOIN identity_profile p ON p.id = s.profile_id
                    WHERE s.refresh_token = %s AND s.recheck_at IS NOT NULL
                   ON CONFLICT (segment_id, profile_id)
                   DO UPDATE SET due_at = LEAST(segments_membershiprecheck.due_at,
                                               EXCLUDED.due_at)""",
                [segment_id, token],
            )
        else:
            cursor.execute(
                f"""{_OUTBOX} SELECT %s, m.profile_id, 'exited', %s, %s, %s
                      FROM segments_membership m WHERE {_EXIT_WHERE}""",
                [segment_id, now, source, version, *exit_args],
            )
            exited = cursor.rowcount
            cursor.execute(
                f"""UPDATE segments_membership AS m
                       SET exited_at = %s, changed_at = %s, exit_reason = %s
                     WHERE {_EXIT_WHERE}""",
                [now, now, gone, *exit_args],
            )
            cursor.execute(
                f"""{_OUTBOX} SELECT %s, s.profile_id, 'entered', %s, %s, %s
                      FROM segments_refreshstaging s WHERE {_ENTER_WHERE}""",
                [segment_id, now, source, version, *enter_args],
            )
            entered = cursor.rowcount
            cursor.execute(
                f"""{_MEMBERSHIP}
                    SELECT %s, s.profile_id, %s, NULL, s.reason, '{{}}', %s, %s, %s
                      FROM segments_refreshstaging s WHERE {_ENTER_WHERE}""",
                [segment_id, now, source, version, now, *enter_args],
            )
            # Only for profiles that still exist (one staged may have been erased
            # before the erasure lock was held): the recheck table keeps its
            # profile foreign key, which would fail the refresh at commit.
            cursor.execute(
                """INSERT INTO segments_membershiprecheck (segment_id, profile_id, due_at)
                   SELECT %s, s.profile_id, s.recheck_at FROM segments_refreshstaging s
                     JOIN identity_profile p ON p.id = s.profile_id
                    WHERE s.refresh_token = %s AND s.recheck_at IS NOT NULL
                   ON CONFLICT (segment_id, profile_id)
                   DO UPDATE SET due_at = MIN(segments_membershiprecheck.due_at,
                                             excluded.due_at)""",
                [segment_id, token],
            )
    return entered, exited


def segments_refresh_all(
    *, progress: Callable[[Segment, SegmentRefresh], None] | None = None
) -> int:
    """Refresh every enabled rule segment, referenced ones before those referring to them."""
    segments = list(
        Segment.objects.filter(kind=SegmentKind.RULE, enabled=True, condition__isnull=False)
    )
    done: set[str] = set()
    ordered: list[Segment] = []
    pending = {s.key: s for s in segments}
    while pending:
        ready = [s for s in pending.values() if all(r in done or r not in pending for r in s.refs)]
        if not ready:  # cannot happen (cycles are refused); refresh the rest anyway
            ready = list(pending.values())
        for s in sorted(ready, key=lambda s: s.key):
            ordered.append(s)
            done.add(s.key)
            del pending[s.key]
    for segment in ordered:
        record = segment_refresh(segment)
        if progress:
            progress(segment, record)
    return len(ordered)


# -- preview ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[uuid.UUID]


def segment_preview(
    condition: dict[str, Any], *, sample_size: int = 20, now: datetime | None = None
) -> Preview:
    """How many profiles a condition selects now, and some of them; nothing saved."""
    from . import compiler

    condition_validate(condition, segment_lookups())
    now = now or timezone.now()
    plan = plan_build(condition, _conditions())
    if _postgres():
        count, sample = compiler.count_and_sample(plan, now=now, sample_size=sample_size)
        return Preview(count, sample)
    ids = (
        Profile.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)
    )
    count, sample = 0, []
    iterator = ids.iterator(chunk_size=PYTHON_CHUNK)
    while chunk := list(itertools.islice(iterator, PYTHON_CHUNK)):
        facts = facts_load(chunk, [plan], now)
        for pid in chunk:
            if evaluate(plan, facts[pid], now).member:
                count += 1
                if len(sample) < sample_size:
                    sample.append(pid)
    return Preview(count, sample)


# -- lifecycle -------------------------------------------------------------------------------


def memberships_follow_merge(mapping: dict[uuid.UUID, uuid.UUID]) -> None:
    """Absorbed profiles' memberships move to their survivors (the absorbed ids
    exit, the survivor enters where it was not in already); then the survivors
    are evaluated against the rule segments with their merged data."""
    now = timezone.now()
    absorbed = list(mapping)
    moving = list(Membership.objects.filter(profile_id__in=absorbed, exited_at__isnull=True))
    if moving:
        _segment_locks({m.segment_id for m in moving}, exclusive=False)
        kept = _segments_kept({m.segment_id for m in moving})
        # A segment deleted meanwhile took its memberships with it.
        moving = [m for m in moving if m.segment_id in kept]
    if moving:
        survivors = set(mapping.values())
        held = set(
            Membership.objects.filter(profile_id__in=survivors, exited_at__isnull=True).values_list(
                "segment_id", "profile_id"
            )
        )
        entering, changes = [], []
        for m in moving:
            survivor = mapping[m.profile_id]
            m.exited_at = now
            m.changed_at = now
            m.exit_reason = {"source": "merge", "merged_into": str(survivor)}
            changes.append(
                MembershipChange(
                    segment_id=m.segment_id,
                    profile_id=m.profile_id,
                    kind=EXITED,
                    at=now,
                    source=MembershipSource.MERGE,
                )
            )
            if (m.segment_id, survivor) not in held:
                held.add((m.segment_id, survivor))
                entering.append(
                    Membership(
                        segment_id=m.segment_id,
                        profile_id=survivor,
                        entered_at=m.entered_at,
                        reason={**m.reason, "moved_from": str(m.profile_id)},
                        source=MembershipSource.MERGE,
                        version=m.version,
                        changed_at=now,
                    )
                )
                changes.append(
                    MembershipChange(
                        segment_id=m.segment_id,
                        profile_id=survivor,
                        kind=ENTERED,
                        at=now,
                        source=MembershipSource.MERGE,
                    )
                )
        Membership.objects.bulk_update(moving, ["exited_at", "changed_at", "exit_reason"])
        Membership.objects.bulk_create(entering)
        MembershipChange.objects.bulk_create(changes)
        _sizes_adjust(entering, moving)
    MembershipRecheck.objects.filter(profile_id__in=absorbed).delete()
    profiles_evaluate(set(mapping.values()), source=MembershipSource.MERGE, now=now)


def memberships_follow_split(profile_ids: Sequence[uuid.UUID]) -> None:
    profiles_evaluate(profile_ids, source=MembershipSource.MERGE)


def memberships_erase(profile_ids: Sequence[uuid.UUID]) -> int:
    """Every membership row of these profiles, history and outbox included."""
    ids = list(profile_ids)
    # No swap is writing (it holds this lock shared) and no writer of single
    # profiles is writing for these: whatever they wrote is committed, and
    # deleted here. Stands in for the profile foreign key (migration 0008).
    _erasure_lock(exclusive=True)
    if _postgres():
        list(
            Profile.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # The segments whose rows this deletes, locked in id order before any
        # row is: segment_delete locks its segment first and deletes its rows
        # next, so deleting rows first and updating sizes after deadlocked
        # with it. (No writer adds rows of these profiles meanwhile: they are
        # locked, and no swap runs while the erasure lock is held.)
        affected: set[int] = set()
        for model in (MembershipRecheck, MembershipChange, Membership):
            affected.update(
                model.objects.filter(profile_id__in=ids)  # type: ignore[attr-defined]
                .values_list("segment_id", flat=True)
                .distinct()
            )
        if affected:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM segments_segment WHERE id = ANY(%s) ORDER BY id"
                    " FOR NO KEY UPDATE",
                    [sorted(affected)],
                )
    counts = (
        Membership.objects.filter(profile_id__in=ids, exited_at__isnull=True)
        .values("segment_id")
        .annotate(n=Count("id"))
    )
    shrink = {row["segment_id"]: row["n"] for row in counts}
    deleted = 0
    for model in (MembershipRecheck, MembershipChange, Membership):
        n, _ = model.objects.filter(profile_id__in=ids).delete()  # type: ignore[attr-defined]
        deleted += n
    for sid, n in shrink.items():
        Segment.objects.filter(pk=sid).update(size=F("size") - n)
    return deleted


# -- reading -----------------------------------------------------------------------------------


def segment_members(segment: Segment) -> QuerySet[Membership]:
    return Membership.objects.filter(segment=segment, exited_at__isnull=True).order_by(
        "entered_at", "id"
    )


def profile_memberships(profile_id: uuid.UUID) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(profile_id=profile_id)
        .select_related("segment")
        .order_by("-entered_at", "-id")
    )


def profile_segment_keys(profile_id: uuid.UUID) -> list[str]:
    return list(
        Membership.objects.filter(profile_id=profile_id, exited_at__isnull=True)
        .order_by("segment__key")
        .values_list("segment__key", flat=True)
    )


def segment_size_series(
    segment: Segment, *, points: int = 60, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """The segment's size over time, from its membership history: entries minus
    exits up to each point (bucketed in the database, summed here)."""
    now = now or timezone.now()
    first = (
        Membership.objects.filter(segment=segment)
        .order_by("entered_at")
        .values_list("entered_at", flat=True)
        .first()
    )
    start = min(first or segment.created_at, segment.created_at)
    span = max(now - start, timedelta(minutes=1))
    start = now - span  # a segment under a minute old: its points still end now
    kind = (
        "minute" if span <= timedelta(hours=12) else "hour" if span <= timedelta(days=60) else "day"
    )
    rows = Membership.objects.filter(segment=segment)
    entered = dict(
        rows.annotate(b=Trunc("entered_at", kind))
        .values("b")
        .annotate(n=Count("id"))
        .values_list("b", "n")
    )
    exited = dict(
        rows.filter(exited_at__isnull=False)
        .annotate(b=Trunc("exited_at", kind))
        .values("b")
        .annotate(n=Count("id"))
        .values_list("b", "n")
    )
    deltas = sorted(
        [(b, n) for b, n in entered.items()] + [(b, -n) for b, n in exited.items()],
        key=lambda item: item[0],
    )
    series = []
    step = span / max(points - 1, 1)
    total, i = 0, 0
    for k in range(points):
        at = start + step * k if k < points - 1 else now
        while i < len(deltas) and deltas[i][0] <= at:
            total += deltas[i][1]
            i += 1
        series.append((at, total))
    return series


def reason_lines(reason: dict[str, Any]) -> list[str]:
    """A reason, readable: each condition, whether it held, and what it saw."""
    lines = []
    for item in reason.get("conditions", []):
        mark = "✓" if item.get("held") else "✗"
        value = item.get("value")
        shown = "" if value is None or isinstance(value, bool) else f" (saw {value})"
        lines.append(f"{mark} {item.get('condition', item.get('path'))}{shown}")
    if "text" in reason:
        lines.append(str(reason["text"]))
    if "merged_into" in reason:
        lines.append(f"merged into profile {reason['merged_into']}")
    if "moved_from" in reason:
        lines.append(f"moved here from merged profile {reason['moved_from']}")
    return lines


__all__ += [
    "Preview",
    "SegmentInUse",
    "profile_memberships",
    "profile_segment_keys",
    "profiles_evaluate",
    "reason_lines",
    "segment_delete",
    "segment_lookups",
    "segment_members",
    "segment_preview",
    "segment_refresh",
    "segment_save",
    "segment_size_series",
    "segments_realtime",
    "segments_recheck_due",
    "segments_refresh_all",
]
