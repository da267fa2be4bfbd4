from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

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
