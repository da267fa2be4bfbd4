import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from .pipeline import pipeline_batch_run, pipeline_batches_due
from .services import events_pending_ids
from .services import events_process as events_process_service

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def events_process(event_ids: list[int]) -> int:
    """Resolve identities for stored events. Safe to retry; deadlocks are retried."""
    return events_process_service(event_ids=event_ids)


@shared_task
def events_process_pending() -> int:
    """Process events whose task was lost (broker outage, crashed worker)."""
    size = settings.CDP["PROCESS_BATCH_SIZE"]
    total = 0
    while True:
        ids = events_pending_ids(
            older_than_seconds=settings.CDP["PENDING_SWEEP_AFTER_SECONDS"], limit=size
        )
        if not ids:
            break
        done = events_process_service(event_ids=ids)
        total += done
        if done == 0:  # all locked by running workers; they will finish them
            break
    if total:
        logger.info("pending sweep processed %d events", total)
    return total


@shared_task
def pipeline_sweep() -> int:
    """Run the pipeline batches a crash left, and failed ones whose retry is due."""
    ran = 0
    for batch_id in pipeline_batches_due(limit=settings.CDP["PIPELINE_SWEEP_BATCHES"]):
        try:
            pipeline_batch_run(batch_id=batch_id)
        except Exception:
            # Not a stage's failure (those are counted on the batch): the
            # bookkeeping itself. One batch must not stop the sweep for the rest.
            logger.exception("pipeline sweep: batch %s could not be run", batch_id)
            continue
        ran += 1
    if ran:
        logger.info("pipeline sweep ran %d batches", ran)
    return ran
