"""The processing pipeline: what runs on events after identity resolution.

Higher apps register stages in their ``AppConfig.ready()`` (segments: "update
features", then "evaluate real-time segments"):

    from apps.events.pipeline import stages
    stages.register("segments.features", features_update, order=10)

**Contract of a stage.** ``stage(events)`` gets a list of processed events (their
``profile_id`` set, in event-time order, then by id), and writes to its own
tables. It runs inside a transaction that also records it as done for these
events, so each event passes each stage exactly once: a stage that raises has
its writes rolled back and runs again later; one that succeeded never runs again
for those events, whatever retries or crashes happen around it. A stage does no
network I/O (a slow destination would hold the transaction and the worker):
exports read an outbox that stages write.

**One transaction per stage, not one per batch.** A stage's failure then costs
only its own writes: the stages before it keep theirs, and identity resolution,
committed before any stage runs, is never undone or delayed by a stage. Stages of
one batch run in the registry's order, and a stage runs only after every stage
before it succeeded for that batch (real-time segments read the features the
stage before them wrote).

**Failures.** A failing stage is counted on its batch (``PipelineBatch``) and
tried again after a backoff (``RETRY_DELAYS``). After ``MAX_ATTEMPTS`` the batch
is parked: it stops trying, shows in admin (*Pipeline batches*, with the stage
and the error) and can be retried from there once the stage is fixed. Other
batches go on. Nothing loops forever, nothing blocks ingestion.

**Safety net.** A batch is created in the transaction that resolves its events,
and run right after that commits. A crash in between leaves the batch row:
``pipeline_sweep`` (beat, every minute) runs what is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from apps.common.registry import Registry

from .models import Event, PipelineBatch

logger = logging.getLogger(__name__)

Stage = Callable[[list[Event]], None]

stages: Registry[Stage] = Registry("events.pipeline")

# Seconds to wait before trying a failed stage again, by attempt; then parked.
RETRY_DELAYS = (5, 30, 120, 600, 1800)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A batch younger than this is still being run by the task that made it.
SWEEP_AFTER_SECONDS = 30
MAX_ERROR_CHARS = 2000


def pipeline_batch_create(*, event_ids: Sequence[int]) -> PipelineBatch | None:
    """Record that ``event_ids`` are due for every stage. Call it in the
    transaction that resolves them; None when no stage is registered."""
    if not stages or not event_ids:
        return None
    return PipelineBatch.objects.create(event_ids=sorted(event_ids))


def _locked(batch_id: int) -> PipelineBatch | None:
    query = PipelineBatch.objects.filter(id=batch_id)
    if connection.features.has_select_for_update_skip_locked:
        # Another worker runs it right now: leave it to that one.
        query = query.select_for_update(skip_locked=True)
    return query.first()


def _events(batch: PipelineBatch) -> list[Event]:
    # Erased meanwhile: gone, and rightly not passed on.
    return list(
        Event.objects.filter(id__in=batch.event_ids, processed_at__isnull=False).order_by(
            "timestamp", "id"
        )
    )


def pipeline_batch_run(*, batch_id: int, force: bool = False) -> str:
    """Run the stages a batch still needs, each in its own transaction.

    Returns "done" (every stage passed; the batch row is gone), "failed" (a stage
    raised: counted, retried later or parked), "waiting" (its retry is not due,
    or it is parked; ``force`` runs it anyway) or "busy" (another worker holds it,
    or it is done already).
    """
    for registered in stages.items():
        with transaction.atomic():
            batch = _locked(batch_id)
            if batch is None:
                return "busy"
            if registered.name in batch.done_stages:
                continue
            if not force and (
                batch.parked_at is not None
                or (batch.next_attempt_at is not None and batch.next_attempt_at > timezone.now())
            ):
                return "waiting"
            try:
                with transaction.atomic():  # the stage's writes, undone if it raises
                    registered.entry(_events(batch))
            except Exception as exc:
                _failure_record(batch, registered.name, exc)
                return "failed"
            batch.done_stages = [*batch.done_stages, registered.name]
            batch.attempts = 0
            batch.failing_stage = ""
            batch.last_error = ""
            batch.next_attempt_at = None
            batch.parked_at = None
            batch.save(
                update_fields=[
                    "done_stages",
                    "attempts",
                    "failing_stage",
                    "last_error",
                    "next_attempt_at",
                    "parked_at",
                ]
            )
    with transaction.atomic():
        batch = _locked(batch_id)
        if batch is None:
            return "busy"
        if set(stages.names()) <= set(batch.done_stages):
            batch.delete()
            return "done"
    return "waiting"  # a stage was registered while it ran: the sweep finishes it


def _failure_record(batch: PipelineBatch, stage: str, exc: Exception) -> None:
    now = timezone.now()
    batch.attempts += 1
    batch.failures_total += 1
    batch.failing_stage = stage
    batch.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if batch.attempts >= MAX_ATTEMPTS:
        batch.parked_at = now
        batch.next_attempt_at = None
    else:
        batch.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[batch.attempts - 1])
    batch.save(
        update_fields=[
            "attempts",
            "failures_total",
            "failing_stage",
            "last_error",
            "next_attempt_at",
            "parked_at",
        ]
    )
    # Ids and the exception's type only: its message may quote personal data.
    logger.warning(
        "pipeline stage %s failed on batch %s (attempt %d%s): %s",
        stage,
        batch.id,
        batch.attempts,
        ", parked" if batch.parked_at else "",
        type(exc).__name__,
    )


def pipeline_batches_due(*, limit: int) -> list[int]:
    """Batches a crash or a failure left, whose next try is due (oldest first)."""
    now = timezone.now()
    return list(
        PipelineBatch.objects.filter(
            parked_at__isnull=True, created_at__lte=now - timedelta(seconds=SWEEP_AFTER_SECONDS)
        )
        .exclude(next_attempt_at__gt=now)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def pipeline_batches_retry(*, batch_ids: Sequence[int]) -> int:
    """Un-park batches (the admin's "retry"): they are tried again at once."""
    return PipelineBatch.objects.filter(id__in=list(batch_ids)).update(
        parked_at=None, next_attempt_at=None, attempts=0
    )
