from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from celery.utils.log import get_multiprocessing_logger

from apps.common.logging import handlers_redact

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["apps.identity.dedup"])


@after_setup_logger.connect
@after_setup_task_logger.connect
def celery_logging_redact(logger, **kwargs):  # type: ignore[no-untyped-def]
    """The worker sets up its own log handlers: they redact personal data too
    (a failed task's traceback may quote an email from a database error). The
    pool's logger ("multiprocessing", which does not propagate) is set up just
    before the root logger's signal."""
    handlers_redact(logger)
    handlers_redact(get_multiprocessing_logger())
