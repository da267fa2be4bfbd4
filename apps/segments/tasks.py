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
