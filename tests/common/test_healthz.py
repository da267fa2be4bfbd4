from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from cdp.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def real_broker() -> Iterator[None]:
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = True


def test_healthz_reports_database_and_eager_tasks(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "eager"}


def test_healthz_reaches_the_configured_broker(
    client: Client, real_broker: None, settings: object
) -> None:
    # the broker CI configures (Redis) or the in-memory transport
    setattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # noqa: B010
    response = client.get("/healthz")
    assert response.json()["broker"] == "ok"
    assert response.status_code == 200


def test_healthz_is_503_when_the_broker_is_down(
    client: Client, real_broker: None, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a broker address where nothing listens
    setattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)  # noqa: B010
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:9/0")
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "down"}
