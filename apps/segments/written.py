"""Segments whose members another app computes (kind "cluster"): making their
segment rows, swapping a whole set of them in at once, and moving single
profiles between them.

The writer (apps/clustering) decides who belongs where; this module writes it
the way segments write everything else: versioned memberships with a reason,
an outbox row for every entry and exit, sizes kept. Merges, splits and erasure
of these memberships are handled by segments as for every other kind.

Profile ids come as a numpy array of 16-byte UUIDs (dtype ``V16``, the bytes of
``uuid.UUID.bytes``), so that a million members go to the database in one
binary COPY, with no Python object per member.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.identity.models import Profile

from .memberships import _erasure_lock, _segment_locks, _segments_kept, _swap
from .models import (
    Membership,
    MembershipChange,
    MembershipSource,
    RefreshStaging,
    Segment,
    SegmentKind,
    WrittenStaging,
)

CLUSTER = MembershipSource.CLUSTER
ENTERED, EXITED = MembershipChange.Kind.ENTERED, MembershipChange.Kind.EXITED
UUID_DTYPE = np.dtype("V16")
SQLITE_CHUNK = 2000


def uuids_pack(ids: Iterable[uuid.UUID]) -> np.ndarray:
    """UUIDs as the 16-byte array this module takes."""
    return np.array([u.bytes for u in ids], dtype="S16").view(UUID_DTYPE)


def uuids_unpack(ids: np.ndarray) -> list[uuid.UUID]:
    raw = np.ascontiguousarray(ids).view(UUID_DTYPE).tobytes()
    return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]


# -- the segments --------------------------------------------------------------------


def written_segment_create(*, key: str, name: str, description: str = "") -> Segment:
    """A new segment whose members another app writes (kind "cluster", no condition)."""
    segment = Segment(key=key, name=name[:200], description=description, kind=SegmentKind.CLUSTER)
    segment.full_clean()
    segment.save()
    return segment


def written_segment_describe(
    segment_id: int, *, name: str, description: str, enabled: bool = True
) -> None:
    Segment.objects.filter(pk=segment_id, kind=SegmentKind.CLUSTER).update(
        name=name[:200], description=description, enabled=enabled
    )


# -- staging in chunks ---------------------------------------------------------------------

_STAGE_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l0", ">i4"),
        ("token", ">i8"),
        ("l1", ">i4"),
        ("chunk", ">i4"),
        ("l2", ">i4"),
        ("slot", ">i4"),
        ("l3", ">i4"),
        ("id", "V16"),
        ("l4", ">i4"),
        ("d", ">f8"),
    ]
)


def written_stage_chunk(
    *,
    token: int,
    chunk: int,
    slots: np.ndarray,
    profile_ids: np.ndarray,
    distances: np.ndarray,
) -> int:
    """Stage one chunk of members under ``token`` for a later staged swap: each
    profile (16-byte UUIDs) in ``slots`` (the writer's number of a segment) at
    its distance. Replaces whatever this chunk staged before (a chunk done
    twice stages its rows once). Its own transaction (or a savepoint of the
    caller's, which can lock what says the chunk is still its own). Returns
    the number of rows staged: the swap checks they are all still there."""
    with transaction.atomic():
        WrittenStaging.objects.filter(token=token, chunk=chunk).delete()
        if not len(profile_ids):
            return 0
        if connection.vendor == "postgresql":
            rows = np.empty(len(profile_ids), dtype=_STAGE_ROW)
            rows["n"], rows["l0"], rows["l1"], rows["l2"] = 5, 8, 4, 4
            rows["l3"], rows["l4"] = 16, 8
            rows["token"], rows["chunk"] = token, chunk
            rows["slot"] = np.asarray(slots, dtype=np.int64)
            rows["id"] = np.ascontiguousarray(profile_ids).view(UUID_DTYPE).reshape(-1)
            rows["d"] = np.round(np.asarray(distances, dtype=np.float64), 4)
            with (
                connection.cursor() as cursor,
                cursor.cursor.copy(  # type: ignore[attr-defined]
                    "COPY segments_writtenstaging (token, chunk, slot, profile_id, distance) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.write(_COPY_HEADER + rows.tobytes() + _COPY_TRAILER)
            return len(rows)
        ids = uuids_unpack(profile_ids)
        rounded = np.round(np.asarray(distances, dtype=np.float64), 4).tolist()
        slot_list = np.asarray(slots, dtype=np.int64).tolist()
        WrittenStaging.objects.bulk_create(
            (
                WrittenStaging(token=token, chunk=chunk, slot=sl, profile_id=pid, distance=d)
                for sl, pid, d in zip(slot_list, ids, rounded, strict=True)
            ),
            batch_size=SQLITE_CHUNK // 6,
        )
        return len(ids)


def written_stage_tokens() -> list[int]:
    """Every token something is staged under (a writer sweeps those of its
    runs that are no longer running)."""
    return sorted(WrittenStaging.objects.values_list("token", flat=True).distinct())


def written_stage_drop(token: int) -> None:
    """Forget everything staged under ``token`` (a run that failed or is done)."""
    WrittenStaging.objects.filter(token=token).delete()


def _staged_members(
    token: int, members: Sequence[WrittenMembers], expected: int | None
) -> tuple[list[WrittenMembers], int]:
    """SQLite: the staged rows read back as each segment's arrays, without the
    profiles erased or merged since they were staged; and how many those were."""
    by_slot: dict[int, tuple[list[bytes], list[float]]] = {}
    staged = WrittenStaging.objects.filter(token=token)
    found = staged.count()
    _check_complete(token, found, expected)
    rows = list(
        staged.filter(
            profile_id__in=Profile.objects.filter(merged_into__isnull=True).values("pk")
        ).values_list("slot", "profile_id", "distance")
    )
    skipped = found - len(rows)
    for slot, pid, d in rows:
        ids, ds = by_slot.setdefault(slot, ([], []))
        ids.append(pid.bytes)
        ds.append(d)
    out = []
    for m in members:
        ids, ds = by_slot.get(m.slot if m.slot is not None else -1, ([], []))
        packed = np.array(ids, dtype="S16").view(UUID_DTYPE) if ids else np.empty(0, UUID_DTYPE)
        out.append(
            WrittenMembers(
                segment_id=m.segment_id,
                profile_ids=packed,
                distances=np.asarray(ds, dtype=np.float64),
                reason=m.reason,
                gone_text=m.gone_text,
            )
        )
    return out, skipped


class StagedIncomplete(Exception):
    """The rows staged for a swap are not all there (an unlogged staging table
    is emptied by a PostgreSQL crash, and is empty on a promoted replica):
    nothing is swapped."""


def _check_complete(token: int, found: int, expected: int | None) -> None:
    if expected is not None and found != expected:
        raise StagedIncomplete(
            f"{found:,} of the {expected:,} memberships staged under {token} are there; "
            "nothing was swapped"
        )


# -- the swap of a whole set ------------------------------------------------------------


@dataclass
class WrittenMembers:
    """The new members of one segment: ``profile_ids`` (16-byte UUIDs) with a
    ``distance`` each; every member's reason is ``reason`` plus its distance."""

    segment_id: int
    profile_ids: np.ndarray
    distances: np.ndarray
    reason: dict[str, Any]
    gone_text: str = "no longer in this cluster"
    slot: int | None = None  # with a staged swap: the staged rows of this slot


@dataclass
class SwapResult:
    entered: dict[int, int] = field(default_factory=dict)
    exited: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    # staged rows left out: their profile was erased or merged since
    skipped: int = 0


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l0", ">i4"),
        ("segment", ">i8"),
        ("l1", ">i4"),
        ("id", "V16"),
        ("l2", ">i4"),
        ("d", ">f8"),
    ]
)
_OUTBOX = (
    "INSERT INTO segments_membershipchange (segment_id, profile_id, kind, at, source, version)"
)


def _copy_rows(members: Sequence[WrittenMembers]) -> bytes:
    """Every segment's members as one binary COPY of (segment, profile, distance)."""
    parts = [_COPY_HEADER]
    for m in members:
        rows = np.empty(len(m.profile_ids), dtype=_ROW)
        rows["n"], rows["l0"], rows["l1"], rows["l2"] = 3, 8, 16, 8
        rows["segment"] = m.segment_id
        rows["id"] = np.ascontiguousarray(m.profile_ids).view(UUID_DTYPE)
        rows["d"] = np.round(np.asarray(m.distances, dtype=np.float64), 4)
        parts.append(rows.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _segment_written(segment_id: int, update: Mapping[str, Any]) -> None:
    """A swapped segment's new version, size and refresh time."""
    Segment.objects.filter(pk=segment_id).update(**update)


def _swap_postgres(
    locked: Mapping[int, Segment],
    members: Sequence[WrittenMembers],
    emptied: Sequence[int],
    emptied_text: str,
    started: datetime,
    staged: int | None = None,
    expected: int | None = None,
) -> SwapResult:
    """The whole set in a handful of set-based statements: one binary COPY of
    every member into a temporary table, one UPDATE for the exits and one INSERT
    for the entries of all the segments at once (each with its outbox rows), and
    one grouped count for the sizes. No row goes through segments_refreshstaging.

    The anti-joins are hash (or merge) joins whatever the planner believes of the
    membership table: right after a first run its statistics may still say it is
    empty, and a nested loop over a table "of no rows" that holds a million is
    quadratic (measured: 240 s instead of 11 s for a million members)."""
    now = timezone.now()
    source = str(CLUSTER)
    ids = sorted(locked)
    segs: list[tuple[int, int | None, int, str, str]] = []
    for m in members:
        version = locked[m.segment_id].version + 1
        gone = {"source": source, "version": version, "text": m.gone_text}
        segs.append((m.segment_id, m.slot, version, json.dumps(m.reason), json.dumps(gone)))
    for sid in emptied:
        version = locked[sid].version + 1
        gone = {"source": source, "version": version, "text": emptied_text}
        segs.append((sid, None, version, "{}", json.dumps(gone)))
    result = SwapResult()
    with connection.cursor() as cursor:
        for table, columns in (
            ("written_stage", "segment_id bigint NOT NULL, profile_id uuid NOT NULL, "
             "distance float8 NOT NULL"),
            ("written_segs", "segment_id bigint PRIMARY KEY, slot integer, "
             "version integer NOT NULL, reason jsonb NOT NULL, gone jsonb NOT NULL"),
        ):  # fmt: skip
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DROP")
            cursor.execute(f"TRUNCATE {table}")
        cursor.executemany(
            "INSERT INTO written_segs VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)", segs
        )
        if staged is not None:
            cursor.execute(
                "SELECT count(*) FROM segments_writtenstaging WHERE token = %s", [staged]
            )
            found = int(cursor.fetchone()[0])
            _check_complete(staged, found, expected)
            # A profile erased since it was staged would leave a row of no one
            # (there is no foreign key to fail the swap), one merged would get a
            # membership: both are left out.
            cursor.execute(
                """INSERT INTO written_stage (segment_id, profile_id, distance)
                   SELECT g.segment_id, s.profile_id, s.distance
                     FROM segments_writtenstaging s JOIN written_segs g ON g.slot = s.slot
                     JOIN identity_profile p ON p.id = s.profile_id
                          AND p.merged_into_id IS NULL
                    WHERE s.token = %s""",
                [staged],
            )
            result.skipped = found - cursor.rowcount
        elif any(len(m.profile_ids) for m in members):
            with cursor.cursor.copy(  # type: ignore[attr-defined]
                "COPY written_stage (segment_id, profile_id, distance) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(_copy_rows(members))
            # Profiles that no longer exist are left out (no foreign key would
            # catch them).
            cursor.execute(
                """DELETE FROM written_stage s WHERE NOT EXISTS
                   (SELECT 1 FROM identity_profile p WHERE p.id = s.profile_id)"""
            )
            result.skipped = cursor.rowcount
        cursor.execute("ANALYZE written_stage")
        cursor.execute("SELECT current_setting('enable_nestloop')")
        nestloop = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('enable_nestloop', 'off', true)")
        cursor.execute(
            f"""WITH gone AS (
                  UPDATE segments_membership m
                     SET exited_at = %s, changed_at = %s,
                         exit_reason = (SELECT g.gone FROM written_segs g
                                         WHERE g.segment_id = m.segment_id)
                   WHERE m.segment_id = ANY(%s) AND m.exited_at IS NULL AND m.changed_at < %s
                     AND NOT EXISTS (SELECT 1 FROM written_stage s
                                      WHERE s.segment_id = m.segment_id
                                        AND s.profile_id = m.profile_id)
                  RETURNING m.segment_id, m.profile_id),
                out AS (
                  {_OUTBOX}
                  SELECT gone.segment_id, gone.profile_id, 'exited', %s, %s, g.version
                    FROM gone JOIN written_segs g ON g.segment_id = gone.segment_id)
                SELECT segment_id, count(*) FROM gone GROUP BY segment_id""",
            [now, now, ids, started, now, source],
        )
        result.exited = {int(sid): int(n) for sid, n in cursor.fetchall()}
        cursor.execute(
            f"""WITH added AS (
                  INSERT INTO segments_membership (segment_id, profile_id, entered_at,
                      exited_at, reason, exit_reason, source, version, changed_at)
                  SELECT s.segment_id, s.profile_id, %s, NULL,
                         g.reason || jsonb_build_object('distance', s.distance),
                         '{{}}'::jsonb, %s, g.version, %s
                    FROM written_stage s JOIN written_segs g ON g.segment_id = s.segment_id
                   WHERE NOT EXISTS (
                         SELECT 1 FROM segments_membership m
                          WHERE m.segment_id = ANY(%s)
                            AND m.segment_id = s.segment_id AND m.profile_id = s.profile_id
                            AND (m.exited_at IS NULL OR m.changed_at >= %s))
                  ON CONFLICT DO NOTHING
                  RETURNING segment_id, profile_id, version),
                out AS (
                  {_OUTBOX}
                  SELECT segment_id, profile_id, 'entered', %s, %s, version FROM added)
                SELECT segment_id, count(*) FROM added GROUP BY segment_id""",
            [now, source, now, ids, started, now, source],
        )
        result.entered = {int(sid): int(n) for sid, n in cursor.fetchall()}
        cursor.execute("SELECT set_config('enable_nestloop', %s, true)", [nestloop])
        cursor.execute(
            """SELECT segment_id, count(*) FROM segments_membership
                WHERE segment_id = ANY(%s) AND exited_at IS NULL GROUP BY segment_id""",
            [ids],
        )
        sizes = {int(sid): int(n) for sid, n in cursor.fetchall()}
        cursor.execute("TRUNCATE written_stage")
    written = {m.segment_id for m in members}
    for sid, _, version, _, _ in segs:
        update: dict[str, Any] = {
            "version": version,
            "size": sizes.get(sid, 0),
            "refreshed_at": started,
        }
        if sid not in written:
            update["enabled"] = False
        _segment_written(sid, update)
        result.entered.setdefault(sid, 0)
        result.exited.setdefault(sid, 0)
        result.sizes[sid], result.versions[sid] = sizes.get(sid, 0), version
    return result


def _stage_sqlite(token: int, members: WrittenMembers) -> None:
    ids = uuids_unpack(members.profile_ids)
    distances = np.round(np.asarray(members.distances, dtype=np.float64), 4).tolist()
    for start in range(0, len(ids), SQLITE_CHUNK):
        RefreshStaging.objects.bulk_create(
            RefreshStaging(
                refresh_token=token,
                profile_id=pid,
                reason={**members.reason, "distance": d},
            )
            for pid, d in zip(
                ids[start : start + SQLITE_CHUNK],
                distances[start : start + SQLITE_CHUNK],
                strict=True,
            )
        )


def written_segments_swap(
    *,
    members: Sequence[WrittenMembers],
    emptied: Sequence[int] = (),
    emptied_text: str = "the cluster is gone",
    staged: int | None = None,
    expected: int | None = None,
) -> SwapResult:
    """Swap in the new members of every segment in ``members`` and empty the
    segments in ``emptied`` (their members exit, and they are disabled), as one
    transaction: a reader sees all of the old sets or all of the new ones.

    Each segment gets a new version; entries and exits go to the outbox with
    source "cluster". Holds the segments' advisory locks exclusively while it
    swaps, so no real-time write or move interleaves. On PostgreSQL every
    segment is swapped by the same few set-based statements (``_swap_postgres``);
    on SQLite each goes through segments_refreshstaging and the rule segments'
    ``_swap``.

    With ``staged`` (a token of ``written_stage_chunk``), each segment's members
    are the rows staged under that token in its ``slot`` instead of its arrays;
    the staged rows are dropped with the swap. ``expected``: how many rows were
    staged; when fewer or more are there, nothing is swapped (StagedIncomplete).
    A staged profile erased or merged since is left out (``skipped``)."""
    if staged is not None:
        slots = [m.slot for m in members]
        if any(s is None for s in slots) or len(set(slots)) != len(slots):
            raise ValueError("a staged swap needs a distinct slot for every segment")
    result = SwapResult()
    all_ids = sorted({m.segment_id for m in members} | set(emptied))
    with transaction.atomic():
        # No profile is erased while this swap writes: it inserts rows only for
        # profiles that exist once this is held (memberships have no profile
        # foreign key to check that at commit).
        _erasure_lock(exclusive=False)
        # Then the advisory locks, then the rows: the order every writer takes
        # (single-profile writers hold the advisory lock shared before they lock
        # the segment rows FOR KEY SHARE).
        _segment_locks(all_ids, exclusive=True)
        locked = {
            s.pk: s
            for s in Segment.objects.select_for_update().filter(pk__in=all_ids).order_by("pk")
        }
        missing = set(all_ids) - set(locked)
        if missing:
            raise ValueError(f"no such segments: {sorted(missing)}")
        not_written = sorted(s.key for s in locked.values() if s.kind != SegmentKind.CLUSTER)
        if not_written:
            raise ValueError(f"segments {not_written} are rule segments: their condition decides")
        # Everything written before this instant is replaced (the set was
        # computed from data read before it).
        started = timezone.now()
        if connection.vendor == "postgresql":
            swapped = _swap_postgres(
                locked, members, emptied, emptied_text, started, staged, expected
            )
            if staged is not None:
                written_stage_drop(staged)
            return swapped
        if staged is not None:
            members, result.skipped = _staged_members(staged, members, expected)
            written_stage_drop(staged)
        work = [(m.segment_id, m) for m in members] + [(sid, None) for sid in emptied]
        for sid, written in work:
            token = uuid.uuid4().int >> 65
            if written is not None and len(written.profile_ids):
                _stage_sqlite(token, written)
            version = locked[sid].version + 1
            gone = written.gone_text if written is not None else emptied_text
            entered, exited = _swap(sid, token, started, version, source=CLUSTER, gone_text=gone)
            RefreshStaging.objects.filter(refresh_token=token).delete()
            size = Membership.objects.filter(segment_id=sid, exited_at__isnull=True).count()
            update: dict[str, Any] = {"version": version, "size": size, "refreshed_at": started}
            if written is None:
                update["enabled"] = False
            _segment_written(sid, update)
            result.entered[sid], result.exited[sid] = entered, exited
            result.sizes[sid], result.versions[sid] = size, version
    return result


# -- moving single profiles between runs --------------------------------------------------


def written_segments_hold(segment_ids: Iterable[int]) -> None:
    """Hold these segments' advisory locks shared until the transaction ends: a
    swap of any of them (which holds them exclusively) waits, and one that
    committed before is seen. Call in a transaction."""
    _segment_locks(segment_ids, exclusive=False)


@dataclass(frozen=True)
class Move:
    """Where one profile belongs now among a group of segments (None: in none),
    and why."""

    segment_id: int | None
    reason: dict[str, Any]
    exit_reason: dict[str, Any]


def written_members_move(
    *,
    segment_ids: Sequence[int],
    moves: Mapping[uuid.UUID, Move],
    now: datetime | None = None,
) -> tuple[int, int]:
    """Move profiles between the segments of one group (the clusters of one
    config: a profile is in at most one of them). A profile already where it
    belongs is left alone; otherwise it exits its segment and enters the new
    one, each with an outbox row, sizes adjusted. Locks the profiles; call in a
    transaction. Returns (entered, exited)."""
    if not moves or not segment_ids:
        return 0, 0
    now = now or timezone.now()
    group = set(segment_ids)
    _segment_locks(group, exclusive=False)
    ids = sorted(moves)
    live = set(
        Profile.objects.select_for_update()
        .filter(pk__in=ids, merged_into__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    current: dict[uuid.UUID, list[Membership]] = {}
    for m in Membership.objects.filter(profile_id__in=ids, exited_at__isnull=True).only(
        "id", "segment_id", "profile_id"
    ):
        if m.segment_id in group:
            current.setdefault(m.profile_id, []).append(m)
    versions = dict(Segment.objects.filter(pk__in=group).values_list("pk", "version"))
    entering: list[Membership] = []
    exiting: list[Membership] = []
    changes: list[MembershipChange] = []
    for pid in ids:
        if pid not in live:
            continue
        move = moves[pid]
        target = move.segment_id if move.segment_id in group else None
        rows = current.get(pid, [])
        if [r.segment_id for r in rows] == ([target] if target is not None else []):
            continue
        for row in rows:
            if row.segment_id == target:
                continue
            row.exited_at = now
            row.changed_at = now
            row.exit_reason = move.exit_reason
            exiting.append(row)
            changes.append(
                MembershipChange(
                    segment_id=row.segment_id,
                    profile_id=pid,
                    kind=EXITED,
                    at=now,
                    source=CLUSTER,
                    version=versions.get(row.segment_id, 0),
                )
            )
        if target is not None and all(r.segment_id != target for r in rows):
            entering.append(
                Membership(
                    segment_id=target,
                    profile_id=pid,
                    entered_at=now,
                    reason=move.reason,
                    source=CLUSTER,
                    version=0,
                    changed_at=now,
                )
            )
            changes.append(
                MembershipChange(
                    segment_id=target, profile_id=pid, kind=ENTERED, at=now, source=CLUSTER
                )
            )
    written = {c.segment_id for c in changes}
    if written:
        kept = _segments_kept(written)
        if kept != written:  # deleted meanwhile: its memberships went with it
            entering = [m for m in entering if m.segment_id in kept]
            exiting = [m for m in exiting if m.segment_id in kept]
            changes = [c for c in changes if c.segment_id in kept]
    if exiting:
        Membership.objects.bulk_update(exiting, ["exited_at", "changed_at", "exit_reason"])
    if entering:
        Membership.objects.bulk_create(entering)
    if changes:
        MembershipChange.objects.bulk_create(changes)
    delta: dict[int, int] = {}
    for m in entering:
        delta[m.segment_id] = delta.get(m.segment_id, 0) + 1
    for m in exiting:
        delta[m.segment_id] = delta.get(m.segment_id, 0) - 1
    for sid, d in delta.items():
        if d:
            Segment.objects.filter(pk=sid).update(size=F("size") + d)
    return len(entering), len(exiting)


def written_current_segments(
    profile_ids: Sequence[uuid.UUID], segment_ids: Sequence[int]
) -> dict[uuid.UUID, int]:
    """Which of these segments each profile is currently in (one, for a group
    whose segments exclude each other)."""
    group = set(segment_ids)
    out: dict[uuid.UUID, int] = {}
    for pid, sid in Membership.objects.filter(
        profile_id__in=list(profile_ids), exited_at__isnull=True
    ).values_list("profile_id", "segment_id"):
        if sid in group:
            out[pid] = sid
    return out


__all__ = [
    "Move",
    "StagedIncomplete",
    "SwapResult",
    "WrittenMembers",
    "uuids_pack",
    "uuids_unpack",
    "written_current_segments",
    "written_members_move",
    "written_segment_create",
    "written_segment_describe",
    "written_segments_hold",
    "written_segments_swap",
    "written_stage_chunk",
    "written_stage_drop",
    "written_stage_tokens",
]
