from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery import shared_task
from django.core.mail import mail_admins
from django.db import OperationalError
from django.utils import timezone

from apps.common.queue import task_send

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=10,
)
def erasure_run(self: object, request_id: str) -> bool:
    """Erase a person, a bounded number of steps per task (well inside the time
    limit); enqueues itself for the rest, or for a deletion hook's next attempt."""
    from django.conf import settings

    from apps.consent.services.erasure import erasure_run as run
    from apps.consent.services.erasure import erasure_waiting_until

    pk = uuid.UUID(request_id)
    if run(request_id=pk, max_steps=settings.CDP["ERASURE_STEPS_PER_TASK"]):
        return True
    wait = erasure_waiting_until(request_id=pk)
    countdown = max(0.0, (wait - timezone.now()).total_seconds()) if wait else 0.0
    if countdown and self.app.conf.task_always_eager:  # type: ignore[attr-defined]
        # Eager tasks run at once whatever the countdown: the retry would call
        # this again and again. The stalled-erasure sweep (or an admin's
        # "Resume") picks it up once the hook's next attempt is due.
        logger.info("erasure %s waits for a deletion hook's next attempt", request_id)
        return False
    erasure_run.apply_async((request_id,), countdown=countdown)
    return False


@shared_task
def erasure_resume_stalled(stalled_minutes: int = 15) -> int:
    """Re-enqueue erasures in progress that made no progress for a while (a crash),
    except those waiting for a deletion hook's next attempt and those that failed
    too often in a row (an administrator resumes them)."""
    from apps.consent.models import DataSubjectRequest, RequestStatus, RequestType
    from apps.consent.services.erasure import MAX_STEP_FAILURES, erasure_waiting_until

    now = timezone.now()
    cutoff = now - timedelta(minutes=stalled_minutes)
    ids = []
    for request_id, state in DataSubjectRequest.objects.filter(
        type=RequestType.ERASURE, status=RequestStatus.IN_PROGRESS, updated_at__lt=cutoff
    ).values_list("id", "work_state"):
        if int((state or {}).get("failures", 0)) >= MAX_STEP_FAILURES:
            continue
        wait = erasure_waiting_until(request_id=request_id)
        if wait is not None and wait > now:
            continue
        ids.append(request_id)
    for request_id in ids:
        task_send(erasure_run, str(request_id))
    return len(ids)


@shared_task
def dsr_deadlines_check() -> dict[str, int]:
    """Tell the admins, daily, when requests are overdue or due within a week."""
    from apps.consent.services.dsr import dsr_deadline_report

    report = dsr_deadline_report()
    if report["overdue"] or report["due_soon"]:
        mail_admins(
            "Data-subject requests need attention",
            f"{report['overdue']} overdue, {report['due_soon']} due within 7 days, "
            f"{report['open']} open. See Admin > Consent and privacy > Data-subject requests.",
        )
        logger.warning("data-subject requests: %s", report)
    return report


@shared_task
def retention_purge() -> dict[str, int]:
    from apps.consent.services.retention import retention_purge as purge

    return purge()
