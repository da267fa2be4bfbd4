from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from django.test import Client

from apps.api_auth.services import api_token_create, service_user_ensure
from apps.events.models import Source


@pytest.fixture
def source(db: None) -> Source:
    return Source.objects.create(name="Web", write_key="wk_test_web")


@pytest.fixture
def api_token(db: None) -> str:
    user = service_user_ensure(name="tests", read_only=True)
    _, raw = api_token_create(name="tests", user=user)
    return raw


@pytest.fixture
def api_client(api_token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")


@pytest.fixture
def post_events(
    client: Client, source: Source, django_capture_on_commit_callbacks: Any
) -> Callable[..., Any]:
    """POST a JSON body to an ingestion route with the source's write key (Basic).

    After-commit processing (eager Celery in tests) runs as it would in production.
    """

    def post(path: str, body: Any, *, key: str | None = None, **extra: Any) -> Any:
        auth = base64.b64encode(f"{key or source.write_key}:".encode()).decode()
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                path,
                data=data,
                content_type=extra.pop("content_type", "application/json"),
                HTTP_AUTHORIZATION=f"Basic {auth}",
                **extra,
            )

    return post
