"""Writing events: validate, store durably in one statement, then process later."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.consent.services import consent_gate, suppressed_event_ids
from apps.identity.models import IdentifierType
from apps.identity.selectors import identifier_exists
from apps.identity.services import IdentityClaim, profiles_resolve

from .enqueue import events_enqueue
from .models import Event, RejectedEvent, Source
from .parsing import MAX_NESTING, BatchDefaults, EventError, parse_event
from .pipeline import pipeline_batch_create, pipeline_batch_run

logger = logging.getLogger(__name__)

MAX_REJECTED_PAYLOAD = 64 * 1024

_COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "name",
    "user_id",
    "anonymous_id",
    "previous_id",
    "group_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "timestamp_corrected",
    "properties",
    "traits",
    "context",
    "extra",
)
_JSON_COLUMNS = frozenset({"properties", "traits", "context", "extra"})
_PG_TYPES = {
    "source_id": "bigint",
    "timestamp": "timestamptz",
    "original_timestamp": "timestamptz",
    "sent_at": "timestamptz",
    "received_at": "timestamptz",
    "timestamp_corrected": "boolean",
}


_INSERT_SQL = (
    f"INSERT INTO events_event ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(_COLUMNS)} FROM jsonb_to_recordset(%s::jsonb) AS t("
    + ", ".join(
        f"{col} {'jsonb' if col in _JSON_COLUMNS else _PG_TYPES.get(col, 'text')}"
        for col in _COLUMNS
    )
    + ") ON CONFLICT (source_id, message_id) DO NOTHING RETURNING id"
)


@dataclass
class Rejection:
    index: int
    message: str
    message_id: str = ""


@dataclass
class IngestResult:
    accepted: int = 0
    stored: list[int] = field(default_factory=list)  # ids of newly stored events
    rejected: list[Rejection] = field(default_factory=list)
    # Valid events not stored: the person was erased or has not consented to storage.
    withheld: int = 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a refused body or id may contain one.
    return text.replace("\x00", "\ufffd")


def _insert_postgresql(rows: Sequence[dict[str, Any]]) -> list[int]:
    # The whole batch travels as one JSON document that the server unpacks
    # (jsonb_to_recordset): one string for psycopg to quote. Sending a column per
    # array costs twice the CPU of everything else in the request, because psycopg
    # escapes each array element with a regular expression.
    document = orjson.dumps([{col: r[col] for col in _COLUMNS} for r in rows]).decode()
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, [document])
        return [row[0] for row in cursor.fetchall()]


def _insert_generic(rows: Sequence[dict[str, Any]]) -> list[int]:
    ops = connection.ops
    ids: list[int] = []
    placeholders = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    for start in range(0, len(rows), 50):
        chunk = rows[start : start + 50]
        params: list[Any] = []
        for r in chunk:
            for col in _COLUMNS:
                value = r[col]
                if col in _JSON_COLUMNS:
                    value = _json(value)
                elif _PG_TYPES.get(col) == "timestamptz" and value is not None:
                    value = ops.adapt_datetimefield_value(value)
                params.append(value)
        sql = (
            f"INSERT INTO events_event ({', '.join(_COLUMNS)}) VALUES "
            + ", ".join([placeholders] * len(chunk))
            + " ON CONFLICT (source_id, message_id) DO NOTHING RETURNING id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            ids.extend(row[0] for row in cursor.fetchall())
    return ids


# Columns a row may leave out (rows made before the column existed, or by hand).
_ROW_DEFAULTS = {"timestamp_corrected": False}


def events_insert(*, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert rows, skipping (source, messageId) pairs already stored; new ids."""
    if not rows:
        return []
    rows = [r if _ROW_DEFAULTS.keys() <= r.keys() else {**_ROW_DEFAULTS, **r} for r in rows]
    if connection.vendor == "postgresql":
        return _insert_postgresql(rows)
    return _insert_generic(rows)


def _enqueue(ids: list[int]) -> None:
    events_enqueue(ids)


def rejected_event_record(
    *,
    source: Source | None,
    reason: str,
    message: str,
    payload: Any = None,
    raw: bytes | str | None = None,
    path: str = "",
    received_at: Any = None,
) -> None:
    """Keep what was refused, so an admin can see it and the client be fixed."""
    if payload is not None:
        text = _safe_dump(payload)
    elif isinstance(raw, bytes):
        text = raw[:MAX_REJECTED_PAYLOAD].decode("utf-8", errors="replace")
    else:
        text = raw or ""
    message_id = ""
    event_type = ""
    if isinstance(payload, dict):
        message_id = str(payload.get("messageId") or "")[:255]
        event_type = str(payload.get("type") or "")[:32]
    RejectedEvent.objects.create(
        source=source,
        received_at=received_at or timezone.now(),
        reason=reason,
        message=message,
        path=path[:100],
        message_id=_storable(message_id),
        event_type=_storable(event_type),
        payload=_storable(text[:MAX_REJECTED_PAYLOAD]),
    )


def event_ingest(
    *,
    source: Source,
    events: Sequence[Any],
    defaults: BatchDefaults,
    forced_type: str | None = None,
    path: str = "",
) -> IngestResult:
    """Validate each event, store the valid ones and the rejections, all durably.

    Returns once everything is committed; processing is enqueued after commit.
    """
    result = IngestResult()
    rows: list[dict[str, Any]] = []
    max_bytes = settings.CDP["MAX_EVENT_BYTES"]
    rejected_payloads: list[tuple[Rejection, Any]] = []
    for index, raw in enumerate(events):
        try:
            row = parse_event(raw, defaults, forced_type=forced_type, max_bytes=max_bytes)
        except EventError as exc:
            message_id = str(raw.get("messageId") or "")[:255] if isinstance(raw, dict) else ""
            rejection = Rejection(index=index, message=str(exc), message_id=message_id)
            result.rejected.append(rejection)
            rejected_payloads.append((rejection, raw))
            continue
        row["source_id"] = source.pk
        row["_index"] = index  # not a column: where the event was in the request
        rows.append(row)
    try:
        return _store(source, rows, events, defaults, result, rejected_payloads, forced_type, path)
    except (DataError, orjson.JSONEncodeError):
        # Something validation let through that the database (or the JSON
        # encoder) refuses. It aborted the transaction; do it all again, finding
        # those rows one by one (a savepoint each) so that the others are kept.
        # (No savepoint in the common path: two more round trips per request.)
        return _store(
            source,
            rows,
            events,
            defaults,
            result,
            rejected_payloads,
            forced_type,
            path,
            one_by_one=True,
        )


def _store(
    source: Source,
    rows: list[dict[str, Any]],
    events: Sequence[Any],
    defaults: BatchDefaults,
    parsed: IngestResult,
    rejected: list[tuple[Rejection, Any]],
    forced_type: str | None,
    path: str,
    *,
    one_by_one: bool = False,
) -> IngestResult:
    # Works on copies of the parse's result: a failed first attempt leaves them
    # as they were (the consent gate, too, leaves the rows it is given alone).
    result = IngestResult(accepted=len(rows), rejected=list(parsed.rejected))
    rejected_payloads = list(rejected)
    with transaction.atomic():
        if rows:
            gate = consent_gate(
                rows=rows, gpc=defaults.gpc, request_ip=defaults.ip, user_agent=defaults.user_agent
            )
            kept = gate.rows
            result.withheld = gate.suppressed + gate.dropped
        else:
            kept = rows
        if one_by_one:
            result.stored = _insert_one_by_one(kept, events, result, rejected_payloads)
        else:
            result.stored = events_insert(rows=kept)
        if rejected_payloads:
            RejectedEvent.objects.bulk_create(
                [
                    RejectedEvent(
                        source=source,
                        received_at=defaults.received_at,
                        reason=RejectedEvent.Reason.TOO_LARGE
                        if "bytes; the limit" in rejection.message
                        else RejectedEvent.Reason.INVALID_EVENT,
                        message=rejection.message,
                        path=path[:100],
                        message_id=_storable(rejection.message_id),
                        event_type=_storable(str(raw.get("type") or forced_type or "")[:32])
                        if isinstance(raw, dict)
                        else "",
                        payload=_safe_dump(raw),
                    )
                    for rejection, raw in rejected_payloads
                ]
            )
        if result.stored:
            stored = result.stored
            transaction.on_commit(lambda: _enqueue(stored))
    return result


def _insert_one_by_one(
    rows: list[dict[str, Any]],
    events: Sequence[Any],
    result: IngestResult,
    rejected_payloads: list[tuple[Rejection, Any]],
) -> list[int]:
    stored: list[int] = []
    for row in rows:
        try:
            with transaction.atomic():
                stored.extend(events_insert(rows=[row]))
        except (DataError, orjson.JSONEncodeError) as exc:
            index = row["_index"]
            if isinstance(exc, DataError):
                cause = getattr(exc.__cause__, "diag", None)
                why = getattr(cause, "message_primary", None) or type(exc).__name__
                message = f"The database refused this event: {why}."
            else:
                message = f"This event cannot be stored as JSON: {exc}."
            rejection = Rejection(
                index=index,
                message=message,
                message_id=row["message_id"],
            )
            result.rejected.append(rejection)
            result.accepted -= 1
            rejected_payloads.append((rejection, events[index]))
    result.rejected.sort(key=lambda r: r.index)
    return stored


# How deep a refused payload's copy goes: deeper values become "...". As deep as
# orjson writes, and shallow enough for Python's recursion.
_DUMP_DEPTH = MAX_NESTING


def _shallow(value: Any, depth: int) -> Any:
    if isinstance(value, dict | list) and depth <= 0:
        return "..."
    if isinstance(value, dict):
        return {str(k): _shallow(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_shallow(v, depth - 1) for v in value]
    return value


def _safe_dump(raw: Any) -> str:
    """A refused payload as text for the rejected-event log; never raises.

    It is whatever the client sent, so it may be nested deeper than orjson writes
    (or than ``repr`` can recurse: a RecursionError here once failed the whole
    request and lost the valid events beside it).
    """
    try:
        return _json(raw)[:MAX_REJECTED_PAYLOAD]
    except TypeError:  # orjson.JSONEncodeError: too deep, or an integer past 64 bits
        pass
    try:
        shallow = orjson.dumps(_shallow(raw, _DUMP_DEPTH), default=str)
        return shallow.decode()[:MAX_REJECTED_PAYLOAD]
    except TypeError:
        return f"<a {type(raw).__name__} that cannot be shown>"


def events_reassign_profile(*, from_profile_id: Any, to_profile_id: Any) -> int:
    """Move a merged profile's events to its survivor (called by identity)."""
    return Event.objects.filter(profile_id=from_profile_id).update(profile_id=to_profile_id)


def events_reassign_by_ids(
    *,
    from_profile_id: Any,
    to_profile_id: Any,
    user_ids: Sequence[str],
    anonymous_ids: Sequence[str],
    keep_user_ids: Sequence[str],
) -> int:
    """Move the events a split profile owns back to it (called by identity).

    An event is the split profile's when its user id is one of ``user_ids``, or it
    has an anonymous id in ``anonymous_ids`` and no user id that stays behind.
    """
    if not user_ids and not anonymous_ids:
        return 0

    mine = Q(user_id__in=list(user_ids)) | (
        Q(anonymous_id__in=list(anonymous_ids)) & ~Q(user_id__in=list(keep_user_ids))
    )
    return Event.objects.filter(mine, profile_id=from_profile_id).update(profile_id=to_profile_id)


def _claim(event: Event, batch_user_ids: set[str]) -> Any:
    identifiers: list[tuple[str, Any]] = []
    if event.user_id:
        identifiers.append((IdentifierType.USER_ID, event.user_id))
    if event.anonymous_id:
        identifiers.append((IdentifierType.ANONYMOUS_ID, event.anonymous_id))
    if event.type == "alias" and event.previous_id:
        # previousId may be an anonymous id or an older user id; it is whichever
        # one already exists (an anonymous id when neither does).
        identifiers.append(
            (_previous_id_type(event.previous_id, batch_user_ids), event.previous_id)
        )
    # Clients put anything in context: only well-formed parts are used.
    context_traits = event.context.get("traits")
    if not isinstance(context_traits, dict):
        context_traits = {}
    traits: dict[str, Any] | None = None
    if event.type == "identify":
        traits = {**context_traits, **event.traits}
    elif context_traits:
        traits = context_traits
    external_ids = event.context.get("externalIds")
    return IdentityClaim(
        identifiers=identifiers,
        timestamp=event.timestamp,
        traits=traits,
        event_id=event.id,
        external_ids=external_ids if isinstance(external_ids, list) else None,
    )


def _previous_id_type(value: str, batch_user_ids: set[str]) -> str:
    # A user id elsewhere in this batch is not stored yet, but is a user id all the same.
    if value in batch_user_ids or identifier_exists(type=IdentifierType.USER_ID, value=value):
        return IdentifierType.USER_ID
    return IdentifierType.ANONYMOUS_ID


@transaction.atomic
def events_process(*, event_ids: Sequence[int]) -> int:
    """Resolve the profiles of stored events. Idempotent: processed events are skipped."""
    qs = Event.objects.filter(id__in=event_ids, processed_at__isnull=True).order_by("id")
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    events = list(
        qs.only(
            "id", "type", "user_id", "anonymous_id", "previous_id", "timestamp", "traits", "context"
        )
    )
    if not events:
        return 0

    erased = suppressed_event_ids(events=events)
    if erased:
        # Stored before their person was erased: they go the way of the rest.
        Event.objects.filter(id__in=erased).delete()
        events = [e for e in events if e.id not in erased]
        logger.info("deleted %d pending events of erased people", len(erased))
        if not events:
            return len(erased)
    batch_user_ids = {e.user_id for e in events if e.user_id}
    profile_ids = profiles_resolve(claims=[_claim(e, batch_user_ids) for e in events])
    now = timezone.now()
    # One UPDATE per profile, not a CASE per row: a batch names few people.
    by_profile: dict[Any, list[int]] = {}
    for event, profile_id in zip(events, profile_ids, strict=True):
        by_profile.setdefault(profile_id, []).append(event.id)
    for profile_id, ids in by_profile.items():
        Event.objects.filter(id__in=ids).update(profile_id=profile_id, processed_at=now)
    # Due for the pipeline's stages in this same transaction, run once it commits
    # (robust: a stage's trouble never fails the resolution that committed).
    batch = pipeline_batch_create(event_ids=[e.id for e in events])
    if batch is not None:
        batch_id = batch.id
        transaction.on_commit(lambda: pipeline_batch_run(batch_id=batch_id), robust=True)
    return len(events) + len(erased)


def events_pending_ids(*, older_than_seconds: int, limit: int) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Event.objects.filter(processed_at__isnull=True, received_at__lte=cutoff)
        .order_by("received_at")
        .values_list("id", flat=True)[:limit]
    )


def events_reassign_profiles(*, mapping: dict[Any, Any]) -> int:
    """Move the events of many merged profiles to their survivors (old id -> new id)."""
    if not mapping:
        return 0
    if connection.vendor == "postgresql":
        # One statement for the whole batch of merges.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE events_event AS e SET profile_id = m.new "
                "FROM unnest(%s::uuid[], %s::uuid[]) AS m(old, new) WHERE e.profile_id = m.old",
                [list(mapping), list(mapping.values())],
            )
            return cursor.rowcount
    by_new: dict[Any, list[Any]] = {}
    for old, new in mapping.items():
        by_new.setdefault(new, []).append(old)
    return sum(
        Event.objects.filter(profile_id__in=olds).update(profile_id=new)
        for new, olds in by_new.items()
    )
