from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery import shared_task
from django.core.mail import mail_admins
from django.db import OperationalError
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=10,
)
def erasure_run(self: object, request_id: str) -> bool:
    """Erase a person; resumes at the step that did not finish."""
    from apps.consent.services.erasure import erasure_run as run

    return run(request_id=uuid.UUID(request_id))


@shared_task
def erasure_resume_stalled(stalled_minutes: int = 15) -> int:
    """Re-enqueue erasures in progress that made no progress for a while (a crash)."""
    from apps.consent.models import DataSubjectRequest, RequestStatus, RequestType

    cutoff = timezone.now() - timedelta(minutes=stalled_minutes)
    ids = list(
        DataSubjectRequest.objects.filter(
            type=RequestType.ERASURE, status=RequestStatus.IN_PROGRESS, updated_at__lt=cutoff
        ).values_list("id", flat=True)
    )
    for request_id in ids:
        erasure_run.delay(str(request_id))
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
