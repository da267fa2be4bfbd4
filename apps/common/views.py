from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

# A health check must never hang a load balancer on a broker that is away: the
# probe gives up after BROKER_PROBE_TIMEOUT (connection refused answers at once;
# a host that drops packets would otherwise hold each check for the broker's own
# 2 s connect timeout, and its retry), and its answer is reused for
# BROKER_STATE_SECONDS, so a node polled every second pays it once in a while.
BROKER_PROBE_TIMEOUT = 0.5
BROKER_STATE_SECONDS = 5.0
_broker_states: dict[str, tuple[float, str]] = {}
_broker_lock = threading.Lock()


def _broker_probe(url: str) -> str:
    from cdp.celery import app

    try:
        with app.connection_for_write(url, connect_timeout=BROKER_PROBE_TIMEOUT) as conn:
            conn.transport_options = {
                **conn.transport_options,
                "socket_connect_timeout": BROKER_PROBE_TIMEOUT,
                "socket_timeout": BROKER_PROBE_TIMEOUT,
            }
            # No retry: one attempt, bounded by the timeouts above.
            conn.ensure_connection(max_retries=0, timeout=BROKER_PROBE_TIMEOUT)
    except Exception:
        return "down"
    return "ok"


def _broker_state() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"
    from cdp.celery import app

    url = app.conf.broker_url or ""
    now = time.monotonic()
    cached = _broker_states.get(url)
    if cached and now - cached[0] < BROKER_STATE_SECONDS:
        return cached[1]
    with _broker_lock:  # one probe at a time per process; the others reuse it
        cached = _broker_states.get(url)
        if cached and time.monotonic() - cached[0] < BROKER_STATE_SECONDS:
            return cached[1]
        state = _broker_probe(url)
        _broker_states[url] = (time.monotonic(), state)
        return state


def healthz(request: HttpRequest) -> JsonResponse:
    """The database and the task broker.

    503 only when the database is down: without it nothing can be accepted. A
    broker outage is reported ("degraded") with a 200, because ingestion goes on
    (events are committed first; the pending sweep processes them once the broker
    is back), so a load balancer must not take the node out for it. The broker's
    state may be up to BROKER_STATE_SECONDS old.
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
