import logging

from celery import shared_task

from .services import features_rebuild as features_rebuild_service
from .services import rfm_refresh as rfm_refresh_service

logger = logging.getLogger(__name__)


@shared_task
def features_rebuild() -> int:
    """Recompute every profile's features from its events, then RFM."""
    return features_rebuild_service()


@shared_task
def rfm_refresh() -> int:
    """Score recency, frequency and monetary quintiles, and the RFM groups."""
    scored = rfm_refresh_service()
    logger.info("rfm scores for %d profiles", scored)
    return scored


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def segments_recheck_due() -> int:
    """Window expiry: re-evaluate the memberships whose windows moved on."""
    from .memberships import segments_recheck_due as sweep

    total = 0
    while (done := sweep()) > 0:
        total += done
        if done < 5000:
            break
    return total


@shared_task(ignore_result=True, soft_time_limit=1700, time_limit=1800)
def segments_refresh_all() -> int:
    """Refresh every enabled rule segment (a new version each, swapped in at once)."""
    from .memberships import segments_refresh_all as refresh_all

    count = refresh_all()
    logger.info("refreshed %d segments", count)
    return count


@shared_task(ignore_result=True, soft_time_limit=1700, time_limit=1800)
def segment_refresh(segment_id: int) -> int:
    from .memberships import segment_refresh as refresh
    from .models import Segment

    segment = Segment.objects.filter(pk=segment_id).first()
    return refresh(segment).size if segment is not None and segment.condition else 0
