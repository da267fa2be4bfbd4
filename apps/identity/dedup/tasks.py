import logging

from celery import shared_task

from .models import DedupConfig
from .services import dedup_run as dedup_run_service

logger = logging.getLogger(__name__)


# A full run over a few hundred thousand profiles takes minutes, longer than the
# project-wide task time limit. Runs never overlap (an advisory lock), so a
# retried or late task is harmless.
@shared_task(time_limit=60 * 60, soft_time_limit=55 * 60)
def dedup_run(full: bool = False) -> int | None:
    """Find duplicate profiles: incremental unless ``full``. Returns the run id."""
    if DedupConfig.objects.filter(pk=DedupConfig.SINGLETON_ID, enabled=False).exists():
        logger.info("dedup is disabled in its configuration; nothing done")
        return None
    run = dedup_run_service(full=full)
    return run.pk if run is not None else None
