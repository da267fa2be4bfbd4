"""Exposures, recorded without slowing the decision.

``exposures_record`` appends to a per-process buffer (a list under a lock: no I/O
on the request's path). A daemon thread writes the buffer every
``CDP["DECIDE_EXPOSURE_FLUSH_MS"]`` ms (default 1000), or sooner once it holds
``EXPOSURE_BUFFER_FLUSH_AT`` rows; the process writes what is left when it exits
(``atexit``: gunicorn's workers exit through ``sys.exit`` on a graceful stop).
With the interval at 0 each decision's exposures are written before it answers
(tests). What can be lost: the last second of a process that is killed (SIGKILL,
OOM) or whose database stays down longer than the buffer's cap
(``EXPOSURE_BUFFER_MAX`` rows; the oldest go first, and the count is logged).

**At the flush, each row is resolved against the database as it is then:** a
profile merged away since the decision is followed to its survivor (through
chains of merges), so its exposure lands where the merge hook moved the older
ones (registrations.py), remembering the profile it was for
(``origin_profile_id``, as the hook does) so that a split gives it back; a
profile erased since, or a placement deleted, loses that row only; a variant or
rule deleted since becomes null (as the foreign keys' SET NULL would have made
it). If the batch still fails on a foreign key
(something deleted between the statement and its commit), the rows are written
one by one, each in its own savepoint, and only those that fail are dropped (and
counted in the log): one bad row never loses the others.

**On PostgreSQL the batch is one statement** (``_write_sql``): the rows go as
arrays (``unnest``) into an ``INSERT ... SELECT`` that follows merges with a
recursive query and joins what must still exist. The ORM's ``bulk_create`` of
1,500 rows held the web process's GIL for 30 ms of CPU each second, long enough
to show in the decision API's p99 at 500 requests/s; the statement costs about
2 ms of Python. Elsewhere (SQLite) ``_write_orm`` does the same with the ORM,
and a property test holds the two to the same rows.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction

from apps.identity.models import Profile

from .models import ContentVariant, Exposure, Placement, Rule

logger = logging.getLogger(__name__)

EXPOSURE_BUFFER_FLUSH_AT = 2000
EXPOSURE_BUFFER_MAX = 200_000
MERGE_CHAIN_MAX = 50


@dataclass(frozen=True, slots=True)
class PendingExposure:
    profile_id: uuid.UUID
    placement_id: int
    variant_id: int | None
    rule_id: int | None
    holdout: bool
    at: datetime


_lock = threading.Lock()
_wake = threading.Event()
_buffer: list[PendingExposure] = []
_thread: threading.Thread | None = None


def _interval() -> float:
    return float(settings.CDP.get("DECIDE_EXPOSURE_FLUSH_MS", 1000)) / 1000.0


def exposures_record(rows: list[PendingExposure]) -> None:
    if not rows:
        return
    interval = _interval()
    if interval <= 0:
        _write(rows)
        return
    with _lock:
        _buffer.extend(rows)
        if len(_buffer) > EXPOSURE_BUFFER_MAX:
            dropped = len(_buffer) - EXPOSURE_BUFFER_MAX
            del _buffer[:dropped]
            logger.error("Exposure buffer full: %d oldest exposures dropped.", dropped)
        full = len(_buffer) >= EXPOSURE_BUFFER_FLUSH_AT
    _thread_ensure()
    if full:
        _wake.set()


def exposures_pending() -> int:
    with _lock:
        return len(_buffer)


def exposures_flush() -> int:
    """Write the buffer now; returns how many rows were written."""
    with _lock:
        rows = list(_buffer)
        _buffer.clear()
    if not rows:
        return 0
    try:
        return _write(rows)
    except _PartlyWritten as exc:
        # Only what was not written goes back: the rest is committed already.
        logger.exception(
            "Writing exposures failed after %d; %d kept for the next flush.",
            exc.written,
            len(exc.rows),
        )
        _requeue(exc.rows)
        return exc.written
    except DatabaseError:
        logger.exception("Writing %d exposures failed; kept for the next flush.", len(rows))
        _requeue(rows)
        return 0
    except BaseException:
        # Not the database's (a bug): nothing was committed; kept, and the caller
        # (the flush thread) logs it.
        _requeue(rows)
        raise


def _requeue(rows: list[PendingExposure]) -> None:
    """Put rows that were not written back at the buffer's front (oldest first),
    within its cap."""
    with _lock:
        _buffer[:0] = rows
        if len(_buffer) > EXPOSURE_BUFFER_MAX:
            dropped = len(_buffer) - EXPOSURE_BUFFER_MAX
            del _buffer[:dropped]
            logger.error("Exposure buffer full: %d oldest exposures dropped.", dropped)


class _PartlyWritten(Exception):
    """Writing row by row failed on something else than the row itself (the
    connection lost, say): ``written`` rows are committed, ``rows`` are not."""

    def __init__(self, rows: list[PendingExposure], written: int) -> None:
        super().__init__(f"{written} exposures written, {len(rows)} not")
        self.rows = rows
        self.written = written


def _write(rows: list[PendingExposure]) -> int:
    write = _write_sql if connection.vendor == "postgresql" else _write_orm
    try:
        with transaction.atomic():
            return write(rows)
    except IntegrityError:
        pass
    # Something was deleted between the statement and its commit: row by row, so
    # that only the rows pointing at it are lost.
    written = dropped = 0
    try:
        for i, row in enumerate(rows):
            try:
                with transaction.atomic():
                    written += write([row])
            except IntegrityError:
                dropped += 1
            except DatabaseError as exc:
                raise _PartlyWritten(rows[i:], written) from exc
    finally:
        if dropped:
            logger.warning("%d exposures dropped: what they point at was deleted.", dropped)
    return written


def _survivors(profile_ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each profile that still exists -> the live profile it is now (itself, or the
    end of its chain of merges)."""
    parent = dict(Profile.objects.filter(pk__in=profile_ids).values_list("pk", "merged_into_id"))
    todo = {p for p in parent.values() if p is not None and p not in parent}
    for _ in range(MERGE_CHAIN_MAX):
        if not todo:
            break
        found = dict(Profile.objects.filter(pk__in=todo).values_list("pk", "merged_into_id"))
        parent.update(found)
        todo = {p for p in found.values() if p is not None and p not in parent}
    out: dict[uuid.UUID, uuid.UUID] = {}
    for start in profile_ids:
        node: uuid.UUID | None = start
        for _ in range(MERGE_CHAIN_MAX):
            if node not in parent:
                node = None  # erased (or the chain ends at a deleted profile)
                break
            nxt = parent[node]
            if nxt is None:
                break
            node = nxt
        if node is not None and parent.get(node, 0) is None:
            out[start] = node
    return out


def _write_orm(rows: list[PendingExposure]) -> int:
    live = _survivors({r.profile_id for r in rows})
    placements = set(Placement.objects.values_list("pk", flat=True))
    variants = set(ContentVariant.objects.values_list("pk", flat=True))
    rules = set(Rule.objects.values_list("pk", flat=True))
    objs = [
        Exposure(
            profile_id=live[r.profile_id],
            origin_profile_id=r.profile_id if live[r.profile_id] != r.profile_id else None,
            placement_id=r.placement_id,
            variant_id=r.variant_id if r.variant_id in variants else None,
            rule_id=r.rule_id if r.rule_id in rules else None,
            holdout=r.holdout,
            at=r.at,
        )
        for r in rows
        if r.profile_id in live and r.placement_id in placements
    ]
    Exposure.objects.bulk_create(objs, batch_size=1000)
    return len(objs)


def _write_sql(rows: list[PendingExposure]) -> int:
    tables = {
        "exposure": Exposure._meta.db_table,
        "profile": Profile._meta.db_table,
        "placement": Placement._meta.db_table,
        "variant": ContentVariant._meta.db_table,
        "rule": Rule._meta.db_table,
        "depth": MERGE_CHAIN_MAX,
    }
    sql = """
    WITH RECURSIVE pending AS (
        SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::bigint[],
                             %s::boolean[], %s::timestamptz[])
            AS t(profile_id, placement_id, variant_id, rule_id, holdout, at)
    ), chain(start, id, next, depth) AS (
        SELECT p.id, p.id, p.merged_into_id, 0 FROM "{profile}" p
        WHERE p.id IN (SELECT DISTINCT profile_id FROM pending)
        UNION ALL
        SELECT c.start, p.id, p.merged_into_id, c.depth + 1
        FROM chain c JOIN "{profile}" p ON p.id = c.next
        WHERE c.depth < {depth}
    )
    INSERT INTO "{exposure}"
        (profile_id, origin_profile_id, placement_id, variant_id, rule_id, holdout, at)
    SELECT live.id, NULLIF(pending.profile_id, live.id), pending.placement_id, v.id, r.id,
           pending.holdout, pending.at
    FROM pending
    JOIN chain live ON live.start = pending.profile_id AND live.next IS NULL
    JOIN "{placement}" pl ON pl.id = pending.placement_id
    LEFT JOIN "{variant}" v ON v.id = pending.variant_id
    LEFT JOIN "{rule}" r ON r.id = pending.rule_id
    """.format(**tables)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                [r.profile_id for r in rows],
                [r.placement_id for r in rows],
                [r.variant_id for r in rows],
                [r.rule_id for r in rows],
                [r.holdout for r in rows],
                [r.at for r in rows],
            ],
        )
        return max(cursor.rowcount, 0)


def _run() -> None:
    while True:
        _wake.wait(timeout=max(_interval(), 0.05))
        _wake.clear()
        try:
            exposures_flush()
        except Exception as exc:
            # Kept in the buffer by exposures_flush; the thread goes on (it is the
            # process's only writer of exposures). The type only: no row's data.
            logger.error(
                "Exposure flush failed (%s); %d kept for the next flush.",
                type(exc).__name__,
                exposures_pending(),
            )
        finally:
            # The thread's own connection: never left open between flushes.
            close_old_connections()
            connection.close()


def _thread_ensure() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_run, name="exposure-flush", daemon=True)
        _thread.start()


@atexit.register
def _flush_at_exit() -> None:
    try:
        exposures_flush()
    except Exception:  # at exit there is nobody left to tell but the log
        logger.exception("Exposures not written at exit.")
