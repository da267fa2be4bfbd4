"""What a destination may receive: its activated segments, the profiles that
allow its purpose, and their identifiers, streamed from the database.

Consent is checked in the query (``apps.consent.selectors``: one EXISTS per
purpose), never per row in Python, so a million-member audience streams with a
server-side cursor (``.iterator``) in chunks of ``CHUNK`` rows.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, Min, OuterRef, QuerySet, Subquery, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce

from apps.consent.selectors import profiles_for_use, profiles_with_consent
from apps.identity.models import Identifier, Profile
from apps.segments.models import Membership, MembershipChange, Segment

from .models import Destination, IdentifierChoice

CHUNK = 5000


@dataclass(frozen=True)
class Audiences:
    exported: list[Segment]
    skipped: list[Segment]  # below their minimum size, or disabled


def destination_audiences(destination: Destination) -> Audiences:
    segments = list(destination.segments.order_by("key"))
    return Audiences(
        exported=[s for s in segments if s.activated],
        skipped=[s for s in segments if not s.activated],
    )


def profiles_allowed(destination: Destination) -> QuerySet[Profile]:
    """Live profiles that allow the destination's purpose and every purpose that
    gates this destination (``Purpose.gated_destinations``)."""
    live = Profile.objects.filter(merged_into__isnull=True)
    allowed = profiles_with_consent(live, destination.purpose.key)
    return profiles_for_use(allowed, f"destination:{destination.key}")


def _identifier(kind: str) -> Subquery:
    # The smallest value of that type: deterministic, and an aggregate over the
    # (profile, type) index costs less per row than ORDER BY id LIMIT 1, which
    # sorts (measured at 1M rows, bench/exports.py).
    return Subquery(
        Identifier.objects.filter(profile_id=OuterRef("pk"), type=kind)
        .values("profile_id")
        .annotate(smallest=Min("value"))
        .values("smallest")[:1]
    )


def identifier_expression(identifier_type: str) -> Any:
    if identifier_type == IdentifierChoice.PROFILE_ID:
        # The UUID itself (SQLite would cast it to hex without dashes); written as
        # its canonical text by whoever writes it.
        return F("pk")
    return _identifier(identifier_type)


def _contact(kind: str, trait: str) -> Any:
    return Coalesce(_identifier(kind), KeyTextTransform(trait, "traits"), output_field=TextField())


def current_members(segment_ids: Sequence[int]) -> QuerySet[Membership]:
    return Membership.objects.filter(segment_id__in=list(segment_ids), exited_at__isnull=True)


def touched_profiles(
    segment_ids: Sequence[int], *, after: int, upto: int
) -> QuerySet[MembershipChange]:
    return MembershipChange.objects.filter(
        segment_id__in=list(segment_ids), id__gt=after, id__lte=upto
    )


def audience_profiles(
    destination: Destination,
    segment_ids: Sequence[int],
    *,
    touched: tuple[int, int] | None = None,
    contact: bool = False,
    flags: bool = False,
) -> QuerySet[Profile]:
    """The allowed profiles in any of ``segment_ids`` now (or, with ``touched``
    = (after, upto), those whose membership in them changed in that outbox
    range, with ``member`` saying whether they are in one now), ordered by id,
    with ``ident`` (the destination's identifier, null if they have none) or,
    with ``contact``, ``email``, ``phone`` and ``traits``; with ``flags``, an
    ``in_<segment id>`` boolean per segment (one index probe each, no second
    query per chunk)."""
    members = current_members(segment_ids)
    profiles = profiles_allowed(destination)
    if touched is None:
        profiles = profiles.filter(pk__in=members.values("profile_id"))
    else:
        after, upto = touched
        changed = touched_profiles(segment_ids, after=after, upto=upto)
        profiles = profiles.filter(pk__in=changed.values("profile_id")).annotate(
            member=Exists(members.filter(profile_id=OuterRef("pk")))
        )
    if contact:
        profiles = profiles.annotate(
            email=_contact("email", "email"), phone=_contact("phone", "phone")
        )
    else:
        profiles = profiles.annotate(ident=identifier_expression(destination.identifier_type))
    if flags:
        profiles = profiles.annotate(
            **{
                f"in_{sid}": Exists(members.filter(segment_id=sid, profile_id=OuterRef("pk")))
                for sid in segment_ids
            }
        )
    return profiles.order_by("pk")


def audience_counts(destination: Destination, segment_ids: Sequence[int]) -> tuple[int, int]:
    """(profiles in the segments now, of them those who allow the destination)."""
    members = current_members(segment_ids).values("profile_id")
    total = Profile.objects.filter(pk__in=members, merged_into__isnull=True).count()
    allowed = profiles_allowed(destination).filter(pk__in=members).count()
    return total, allowed


def memberships_of(
    profile_ids: Sequence[uuid.UUID], segment_ids: Sequence[int]
) -> dict[uuid.UUID, set[int]]:
    """Each profile's current segments among ``segment_ids`` (one query)."""
    out: dict[uuid.UUID, set[int]] = {}
    rows = current_members(segment_ids).filter(profile_id__in=list(profile_ids))
    for pid, sid in rows.values_list("profile_id", "segment_id"):
        out.setdefault(pid, set()).add(sid)
    return out


def chunked(
    queryset: QuerySet[Any], *fields: str, prefetch: bool = False
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``values_list(*fields)`` in lists of ``CHUNK``, streamed.

    On PostgreSQL through a server-side cursor of the compiled query, as the
    database sends them (uuid as UUID, jsonb as text): Django's per-row
    conversion cost more than the query itself at a million rows. With
    ``prefetch``, the caller must not use the database until the stream ends."""
    values = queryset.values_list(*fields)
    if connection.vendor != "postgresql":
        chunk: list[tuple[Any, ...]] = []
        for row in values.iterator(chunk_size=CHUNK):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    sql, params = values.query.sql_with_params()
    yield from chunked_sql(sql, params, prefetch=prefetch)


def chunked_sql(
    sql: str, params: Sequence[Any], *, prefetch: bool = False
) -> Iterator[list[tuple[Any, ...]]]:
    """``chunked`` for a query of one's own (PostgreSQL only): its rows as the
    database sends them, in lists of ``CHUNK``, through a server-side cursor.

    With ``prefetch`` the cursor lives in a transaction of its own: outside
    one, Django declares it WITH HOLD, and PostgreSQL then runs the whole query
    into a temporary store at the DECLARE's commit before the first row leaves
    (measured: the 23 s of a million-row Meta query spent before any writing),
    where in a transaction rows are made as they are fetched, while the caller
    writes the previous chunk. Without ``prefetch`` the caller may write to the
    database between chunks, each in its own committed transaction, so the
    cursor is held.

    That transaction lasts the whole stream (minutes at a million rows) and is
    idle whenever the writer is slower than the database: a managed server's
    ``idle_in_transaction_session_timeout`` would end the session half-way, so
    it is set to 0 (off) for this transaction alone. It is one snapshot of the
    data for the run, and holds back vacuum's removal of rows dead since it
    began until the stream ends."""
    if not prefetch:
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(CHUNK):
                yield rows
        return
    with transaction.atomic():
        with connection.cursor() as plain:
            plain.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            yield from _prefetched(cursor)


def _prefetched(cursor: Any) -> Iterator[list[tuple[Any, ...]]]:
    # The next chunk is fetched in a thread while the caller works on this one:
    # the database computes and sends rows (the GIL released while waiting)
    # during the caller's hashing and writing, instead of in turns. The cursor
    # is used by that thread alone until the stream ends.
    ahead: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(CHUNK)
                ahead.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the caller, raised there
            ahead.put(exc)

    thread = threading.Thread(target=fetch, name="exports-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.1)
        thread.join()


def outbox_last_id() -> int:
    last = MembershipChange.objects.order_by("-id").values_list("id", flat=True).first()
    return int(last or 0)


def changes_after(
    segment_ids: Sequence[int], *, after: int, limit: int
) -> list[tuple[int, uuid.UUID, int, str, Any]]:
    """Outbox rows (id, profile, segment, kind, at) after ``after``, in order."""
    rows = (
        MembershipChange.objects.filter(segment_id__in=list(segment_ids), id__gt=after)
        .order_by("id")
        .values_list("id", "profile_id", "segment_id", "kind", "at")[:limit]
    )
    return list(rows)
