"""Exposures, recorded without slowing the decision.

``exposures_record`` appends to a per-process buffer (a list under a lock: no I/O
on the request's path). A daemon thread writes the buffer in one ``bulk_create``
every ``CDP["DECIDE_EXPOSURE_FLUSH_MS"]`` ms (default 1000), or sooner once it
holds ``EXPOSURE_BUFFER_FLUSH_AT`` rows; the process writes what is left when it
exits (``atexit``: gunicorn's workers exit through ``sys.exit`` on a graceful
stop). With the interval at 0 each decision's exposures are written before it
answers (tests). What can be lost: the last second of a process that is killed
(SIGKILL, OOM) or whose database stays down longer than the buffer's cap
(``EXPOSURE_BUFFER_MAX`` rows; the oldest go first, and the count is logged).
A profile erased or merged away between decision and flush loses that exposure
only (its rows are skipped, the others written).
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
    except IntegrityError:
        # Deleted between the check and the commit: not worth a retry loop.
        logger.warning("%d exposures dropped: what they point at was deleted.", len(rows))
        return 0
    except DatabaseError:
        logger.exception("Writing %d exposures failed; kept for the next flush.", len(rows))
        with _lock:
            _buffer[:0] = rows[-EXPOSURE_BUFFER_MAX:]
        return 0


def _write(rows: list[PendingExposure]) -> int:
    # A profile, placement, variant or rule deleted since the decision (erased,
    # merged away and then erased, a rule removed): keep the rows that still point
    # at something. Foreign keys are checked at commit in PostgreSQL, so this is
    # looked up first (one query by primary key, and three small tables).
    live = set(
        Profile.objects.filter(pk__in={r.profile_id for r in rows}).values_list("pk", flat=True)
    )
    placements = set(Placement.objects.values_list("pk", flat=True))
    variants = set(ContentVariant.objects.values_list("pk", flat=True))
    rules = set(Rule.objects.values_list("pk", flat=True))
    objs = [
        Exposure(
            profile_id=r.profile_id,
            placement_id=r.placement_id,
            variant_id=r.variant_id if r.variant_id in variants else None,
            rule_id=r.rule_id if r.rule_id in rules else None,
            holdout=r.holdout,
            at=r.at,
        )
        for r in rows
        if r.profile_id in live and r.placement_id in placements
    ]
    with transaction.atomic():
        Exposure.objects.bulk_create(objs, batch_size=1000)
    return len(objs)


def _run() -> None:
    while True:
        _wake.wait(timeout=max(_interval(), 0.05))
        _wake.clear()
        try:
            exposures_flush()
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
