"""Features through a real Celery worker consuming from the configured broker
(Redis in CI): an event's 200, then the worker resolves it and runs the pipeline's
features stage, and the profile API shows it."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client

from apps.events.auth import source_create
from apps.events.models import PipelineBatch
from cdp.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_keeps_features_current(not_eager: None, api_client: Client) -> None:
    # given a running worker
    _, source_key = source_create(name="App", write_key="wk_features")
    client = Client()
    with start_worker(
        celery_app, perform_ping_check=False, pool="solo", concurrency=1, loglevel="WARNING"
    ):
        # when an order is accepted
        response = client.post(
            "/v1/track",
            data='{"userId": "w-1", "event": "Order Completed", "properties": {"revenue": 12}}',
            content_type="application/json",
            QUERY_STRING=f"writeKey={source_key}",
        )
        assert response.status_code == 200

        # then the profile's features show it, once the worker has run the stage
        deadline = time.monotonic() + 30
        features = None
        while time.monotonic() < deadline:
            got = api_client.get("/api/v1/profiles/user_id:w-1")
            if got.status_code == 200 and got.json()["features"]["orders_count"] == 1:
                features = got.json()["features"]
                break
            time.sleep(0.1)
    assert features is not None, "the worker did not update the features"
    assert features["revenue_total"] == 12.0
    assert not PipelineBatch.objects.exists()
