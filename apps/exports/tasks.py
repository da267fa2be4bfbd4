import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, soft_time_limit=50 * 60, time_limit=55 * 60)
def export_run_execute(run_id: int) -> str:
    """Execute one pending run (a run not pending is left as it is)."""
    from .services import export_run_execute as execute

    return str(execute(run_id).status)


@shared_task(ignore_result=True)
def export_run_scheduled(destination_id: int) -> str:
    """Beat's entry for a scheduled destination: an incremental run after a
    first full one; nothing if a run is already in progress."""
    from .services import export_run_scheduled as scheduled

    return scheduled(destination_id)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def webhooks_deliver_due() -> int:
    from .webhooks import webhooks_deliver_due as deliver

    return deliver()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def webhooks_tick() -> int:
    """Every few seconds (beat): push new outbox changes to webhook destinations,
    then attempt the deliveries that are due."""
    from .services import webhooks_push_all
    from .webhooks import webhooks_deliver_due as deliver

    webhooks_push_all()
    return deliver()


@shared_task(ignore_result=True, soft_time_limit=10 * 60, time_limit=11 * 60)
def export_files_expire() -> int:
    """Daily (beat): delete the files of runs older than the retention."""
    from .services import export_files_expire as expire

    return expire()
