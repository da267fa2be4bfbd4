from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings

from apps.api_auth.services import api_token_create, service_user_ensure
from apps.events.models import Source
from cdp.celery import app as celery_app

# .ci/run sets HYPOTHESIS_PROFILE=ci: Hypothesis's own CI profile draws the same
# examples on every run (derandomized, no deadline), so a landing does not hang on
# a new random draw; local runs draw new ones, and keep what failed in .hypothesis/.
if os.environ.get("HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


def _set_broker(url: str | None) -> None:
    # Celery reads CELERY_BROKER_URL from the environment before its own config,
    # and caches connection and producer pools: set both and drop the pools.
    if url:
        os.environ["CELERY_BROKER_URL"] = url
    else:
        os.environ.pop("CELERY_BROKER_URL", None)
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def not_eager() -> Iterator[None]:
    """Tasks go through the broker (and need a worker) instead of running inline."""
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = True


@pytest.fixture
def broker_at() -> Iterator[Callable[[str], Any]]:
    """``with broker_at(url):`` points Celery at another broker, then restores it."""
    saved_env = os.environ.get("CELERY_BROKER_URL")
    saved_conf = celery_app.conf.broker_url

    @contextmanager
    def use(url: str) -> Iterator[None]:
        _set_broker(url)
        try:
            yield
        finally:
            _set_broker(saved_env)
            celery_app.conf.broker_url = saved_conf

    yield use
    _set_broker(saved_env)
    celery_app.conf.broker_url = saved_conf


@pytest.fixture
def as_application_role(db: None) -> str:
    """The rest of the test runs as the application's own database role, as in
    production (apps/common/db_roles.py): no owner of any table, no superuser.
    PostgreSQL only; the role and its grants go with the test's transaction."""
    from django.db import connection

    from apps.common.db_roles import app_role_grant

    if connection.vendor != "postgresql":
        pytest.skip("database roles need PostgreSQL")
    role = f"cdp_test_app_{os.getpid()}"  # roles are cluster-wide: one per test process
    app_role_grant(role, create=True)
    with connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (role, False)
    return role


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
