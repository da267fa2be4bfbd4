"""Retention: personal data is not kept longer than configured."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)


def retention_purge(*, batch_size: int = 10000, max_batches: int | None = None) -> dict[str, int]:
    """Delete events and refused payloads older than their retention, in batches.

    CDP_EVENT_RETENTION_DAYS (0 keeps events forever) and
    CDP_REJECTED_EVENT_RETENTION_DAYS; each batch is its own transaction, so a
    long purge holds no long locks and resumes where it stopped.
    """
    from apps.events.services import events_purge_older_than, rejected_events_purge_older_than

    now = timezone.now()
    counts = {"events": 0, "rejected_events": 0}
    jobs = (
        ("events", settings.CDP["EVENT_RETENTION_DAYS"], events_purge_older_than),
        (
            "rejected_events",
            settings.CDP["REJECTED_EVENT_RETENTION_DAYS"],
            rejected_events_purge_older_than,
        ),
    )
    for name, days, purge in jobs:
        if not days:
            continue
        cutoff = now - timedelta(days=days)
        batches = 0
        while max_batches is None or batches < max_batches:
            n = purge(cutoff=cutoff, batch_size=batch_size)
            counts[name] += n
            batches += 1
            if n < batch_size:
                break
    if any(counts.values()):
        logger.info("retention purge: %s", counts)
    return counts
