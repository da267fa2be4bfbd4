"""A real gunicorn serving the test database, for what only a real server shows
(chunked bodies: Django's test client and its development server cannot send or
read them)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection

from tests.gunicorn import gunicorn_serving


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        f"/{db['NAME']}"
    )


@pytest.fixture
def gunicorn_url(transactional_db: None) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of gunicorn running ``cdp.wsgi`` on the test
    database (test settings: tasks run in the server process)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdp.settings.test",
        "DATABASE_URL": _database_url(),
    }
    env.pop("CELERY_BROKER_URL", None)
    with gunicorn_serving(
        env, "--workers", "1", "--worker-class", "gthread", "--threads", "2"
    ) as url:
        yield url
