import logging

from celery import shared_task

logger = logging.getLogger(__name__)


# The limits bound a run whatever its config says; run_start passes the config's
# own (time_limit_seconds) when it queues one, and the run checks it between
# candidates too.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3500, time_limit=3600)
def recluster(config_id: int, run_id: int | None = None) -> str:
    """Recluster one config (or run the queued run ``run_id``). Safe to deliver
    twice: a run that is no longer queued is not repeated, and a second run of
    a config while one is running stops at once."""
    from .run import recluster as recluster_service

    run = recluster_service(config_id=config_id, run_id=run_id)
    outcome = "skipped" if run is None else run.status
    logger.info("recluster config %s: %s", config_id, outcome)
    return outcome


# A chunk of a run's assignment (apps/clustering/chunks.py): any worker may take
# it; one already taken or done is skipped, so a redelivered task repeats nothing.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=600, time_limit=660)
def assign_chunk(run_id: int, index: int) -> str:
    from django.conf import settings
    from threadpoolctl import threadpool_limits

    from .chunks import AssignModel, chunk_claim, chunk_run
    from .models import ClusteringRun

    chunk = chunk_claim(run_id, index=index)
    if chunk is None:
        return "skipped"
    run = ClusteringRun.objects.get(pk=run_id)
    with threadpool_limits(limits=settings.CDP["CLUSTERING_THREADS"]):
        chunk_run(chunk, AssignModel.of_run(run))
    logger.info("assign chunk %s of run %s: %s", index, run_id, chunk.status)
    return str(chunk.status)
