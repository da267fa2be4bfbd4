from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.common.views import BROKER_PROBE_TIMEOUT

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_eager_tasks(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "eager"}


def test_healthz_reaches_the_configured_broker(
    client: Client, not_eager: None, settings: object
) -> None:
    # the broker CI configures (Redis) or the in-memory transport
    setattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # noqa: B010
    response = client.get("/healthz")
    assert response.json()["broker"] == "ok"
    assert response.status_code == 200


def test_healthz_reports_a_broker_outage_without_failing_the_node(
    client: Client, not_eager: None, settings: object, broker_at: Any
) -> None:
    # given a broker address where nothing listens
    setattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # noqa: B010
    with broker_at("redis://127.0.0.1:9/0"):
        # when
        response = client.get("/healthz")
    # then ingestion still works (events are committed first), so the node stays in
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "down"}


def test_healthz_answers_probes_by_address_and_over_plain_http(
    client: Client, settings: Any
) -> None:
    # given a production host name and HTTPS redirects
    settings.ALLOWED_HOSTS = ["cdp.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    # when a container probe calls the server by its address, over HTTP
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    # then it is answered, and other paths still get the host check and redirect
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert client.get("/v1/batch", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/admin/", HTTP_HOST="cdp.example.com").status_code == 301


def test_healthz_is_503_when_the_database_is_down(client: Client) -> None:
    # given a database that refuses every statement
    from django.db import DatabaseError, connection

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("connection refused")

    with connection.execute_wrapper(lambda execute, sql, params, many, context: refuse()):
        # when
        response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json()["status"] == "down"


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A broker address that takes connections and never answers (a host behind a
    firewall that drops, or a hung broker): the case that once held /healthz 2 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections complete in the backlog; nothing reads them
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


def test_healthz_does_not_hang_on_a_silent_broker(
    client: Client, not_eager: None, settings: Any, broker_at: Any, silent_broker: str
) -> None:
    # given a broker that never answers
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with broker_at(silent_broker):
        # when
        started = time.monotonic()
        first = client.get("/healthz")
        first_took = time.monotonic() - started
        started = time.monotonic()
        again = client.get("/healthz")
        again_took = time.monotonic() - started

    # then the probe gives up after its short timeout, and the next check reuses it
    assert first.json() == {"status": "degraded", "database": "ok", "broker": "down"}
    assert again.json() == first.json()
    assert first_took < BROKER_PROBE_TIMEOUT * 2 + 0.5
    assert again_took < 0.1
