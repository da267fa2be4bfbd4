"""Retention: personal data is not kept longer than configured."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.consent.registry import retention_purgers

logger = logging.getLogger(__name__)


def retention_purge(*, batch_size: int = 10000, max_batches: int | None = None) -> dict[str, int]:
    """Delete what is older than its retention, in batches: each registered purger
    (apps/consent/registry.py) by its own setting; the count per purger's name.

    Events register "events" (CDP_EVENT_RETENTION_DAYS, 0 keeps events forever)
    and "rejected_events" (CDP_REJECTED_EVENT_RETENTION_DAYS); each batch is its
    own transaction, so a long purge holds no long locks and resumes where it
    stopped.
    """
    now = timezone.now()
    counts = dict.fromkeys(retention_purgers.names(), 0)
    for item in retention_purgers.items():
        days = settings.CDP.get(item.entry.days_setting)
        if not days:
            continue
        cutoff = now - timedelta(days=days)
        batches = 0
        while max_batches is None or batches < max_batches:
            n = item.entry.purge(cutoff=cutoff, batch_size=batch_size)
            counts[item.name] += n
            batches += 1
            if n < batch_size:
                break
    if any(counts.values()):
        logger.info("retention purge: %s", counts)
    return counts
