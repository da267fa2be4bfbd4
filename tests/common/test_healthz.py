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


def test_healthz_is_503_when_the_broker_is_down(
    client: Client, not_eager: None, settings: object, broker_at: Any
) -> None:
    # given a broker address where nothing listens
    setattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # noqa: B010
    with broker_at("redis://127.0.0.1:9/0"):
        # when
        response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "down"}
