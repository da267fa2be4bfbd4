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
from apps.identity.models import Profile
from cdp.celery import app as celery_app
from tests.events.factories import WEB_WRITE_KEY, SourceFactory
from tests.identity.factories import ProfileFactory

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


@pytest.fixture(autouse=True)
def _consent_log_emptied_before_flush(request: pytest.FixtureRequest) -> Any:
    """Transactional tests end with a TRUNCATE of every table, which the consent
    log refuses while it holds statements (migration 0004): empty it first, as
    the table's owner may, with its guard off for that one transaction."""
    marker = request.node.get_closest_marker("django_db")
    if not marker or not (marker.kwargs.get("transaction") or "transaction" in marker.args):
        yield
        return
    request.getfixturevalue("_django_db_helper")  # so that this ends before the flush
    yield
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        # Foreign keys are checked at commit; ALTER TABLE wants none pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE consent_consentrecord DISABLE TRIGGER consent_log_append_only")
        cursor.execute("DELETE FROM consent_consentstate")
        cursor.execute("DELETE FROM consent_consentrecord")
        cursor.execute("ALTER TABLE consent_consentrecord ENABLE TRIGGER consent_log_append_only")


class OpenApi:
    """The served OpenAPI document, and JSON Schema validation against its parts
    (OpenAPI 3.0's ``nullable`` read as JSON Schema's ``null`` type)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def component(self, name: str) -> dict[str, Any]:
        return self.document["components"]["schemas"][name]

    def operation(self, path: str, method: str) -> dict[str, Any]:
        return self.document["paths"][path][method.lower()]

    def response_schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.operation(path, method)["responses"]
        return responses[str(status)]["content"]["application/json"]["schema"]

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        import jsonschema

        root = {"allOf": [_nullable_as_null(schema)], **_nullable_as_null(self.document)}
        validator = jsonschema.Draft7Validator(root, format_checker=jsonschema.FormatChecker())
        return [error.message for error in validator.iter_errors(instance)]


def _nullable_as_null(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_as_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_as_null(value) for key, value in node.items()}
    if converted.pop("nullable", False):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture
def openapi(db: None) -> OpenApi:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return OpenApi(orjson.loads(response.content))


@pytest.fixture
def source(db: None) -> Source:
    return SourceFactory()


@pytest.fixture
def make_profile(db: None) -> Callable[..., Profile]:
    """``make_profile(("email", "ada@example.com"), traits={...})``: a profile with
    these identifiers, stored normalized as identity resolution stores them."""

    def make(*identifiers: tuple[str, str], traits: dict[str, Any] | None = None) -> Profile:
        return ProfileFactory(traits=traits or {}, identifiers=identifiers)

    return make


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
        auth = base64.b64encode(f"{key or WEB_WRITE_KEY}:".encode()).decode()
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
