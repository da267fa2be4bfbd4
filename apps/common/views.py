from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse


def _broker_state() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"
    from cdp.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return "down"
    return "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    """The database and the task broker.

    503 only when the database is down: without it nothing can be accepted. A
    broker outage is reported ("degraded") with a 200, because ingestion goes on
    (events are committed first; the pending sweep processes them once the broker
    is back), so a load balancer must not take the node out for it.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except DatabaseError:
        database = "down"
    broker = _broker_state()
    if database != "ok":
        status = "down"
    elif broker in ("ok", "eager"):
        status = "ok"
    else:
        status = "degraded"
    return JsonResponse(
        {"status": status, "database": database, "broker": broker},
        status=503 if status == "down" else 200,
    )
