"""The background refresher (apps/personalization/refresher.py), run for real on
PostgreSQL: another process's mapping change shows up without any request
reloading, a database error does not kill the thread, and once the refresher
stops, requests reload themselves past the hard bound."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.api_auth.models import ApiToken
from apps.api_auth.selectors import token_authenticate, token_cache_clear
from apps.api_auth.services import api_token_create
from apps.personalization import mapping as mapping_module
from apps.personalization.keys import (
    origins_cache_clear,
    publishable_key_create,
    publishable_key_get,
)
from apps.personalization.mapping import mapping_cache_clear, mapping_current
from apps.personalization.models import MappingVersion, Placement, PublishableKey
from apps.personalization.refresher import (
    HARD_BOUND,
    refresher_resume,
    refresher_running,
    refresher_stop,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="a thread with its own PostgreSQL connection"
    ),
]

CHECK_MS = 200


@pytest.fixture
def refresher(settings: Any) -> Iterator[None]:
    settings.CDP = {**settings.CDP, "DECIDE_REFRESHER": True, "DECIDE_MAPPING_CHECK_MS": CHECK_MS}
    MappingVersion.objects.get_or_create(id=1, defaults={"version": 1})
    mapping_cache_clear()
    origins_cache_clear()
    refresher_resume()
    try:
        yield
    finally:
        refresher_stop()  # joins the thread: its connection is closed before teardown
        assert not refresher_running()
        mapping_cache_clear()


def _change_elsewhere(key: str) -> None:
    """A placement added as another process would: committed, the version bumped,
    and nothing in this process told (bulk_create and update send no signals)."""
    Placement.objects.bulk_create([Placement(key=key, name=key)])
    MappingVersion.objects.filter(id=1).update(version=F("version") + 1)


def _cached_keys() -> set[str]:
    snap = mapping_module._snapshot  # what the refresher left, read without a request
    return set(snap.placements) if snap is not None else set()


def _wait_cached(key: str, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if key in _cached_keys():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def test_change_visible_without_a_request_reloading(refresher: None) -> None:
    assert "late" not in mapping_current().placements  # first use: loads, starts the thread
    assert refresher_running()
    _change_elsewhere("late")
    took = _wait_cached("late", timeout=CHECK_MS / 1000 + 1.0)
    assert took is not None, "the refresher did not pick the change up"
    # A request reads the snapshot: no query on its own connection.
    with CaptureQueriesContext(connection) as queries:
        assert "late" in mapping_current().placements
    assert len(queries) == 0


def test_database_error_does_not_kill_the_thread(
    refresher: None, caplog: pytest.LogCaptureFixture
) -> None:
    mapping_current()
    table = MappingVersion._meta.db_table
    with caplog.at_level(logging.WARNING, logger="apps.personalization.refresher"):
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_gone"')
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and "mapping failed" not in caplog.text:
                time.sleep(0.02)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f'ALTER TABLE "{table}_gone" RENAME TO "{table}"')
    assert "decide refresher: mapping failed (ProgrammingError)" in caplog.text
    assert refresher_running()
    _change_elsewhere("after-error")
    assert _wait_cached("after-error", timeout=CHECK_MS / 1000 + 1.0) is not None


def test_requests_reload_past_the_hard_bound_once_the_refresher_stops(refresher: None) -> None:
    mapping_current()
    refresher_stop()
    bound = HARD_BOUND * CHECK_MS / 1000
    loaded = mapping_module._snapshot
    assert loaded is not None
    _change_elsewhere("stopped")
    # Within the bound the request keeps the copy it has (the refresher's job)...
    assert time.monotonic() - loaded.checked_at < bound
    assert "stopped" not in mapping_current().placements
    # ...past it, the request reloads by itself: staleness stays bounded.
    time.sleep(max(0.0, bound - (time.monotonic() - loaded.checked_at)) + 0.05)
    assert "stopped" in mapping_current().placements


# API tokens and publishable keys: re-read in bulk by the refresher, so that a
# request never reloads a cached one, and a revocation by another process still
# shows within the cache time (plus the refresh's own).

TOKEN_SECONDS = 0.5  # the hard bound is 2.5 s: room for a starved thread on a busy machine


@pytest.fixture
def token_refresher(refresher: None, settings: Any) -> Iterator[None]:
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": TOKEN_SECONDS}
    token_cache_clear()
    try:
        yield
    finally:
        refresher_stop()
        token_cache_clear()


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def test_cached_tokens_are_reread_off_the_request_path(token_refresher: None) -> None:
    # given a token cached by a request, with the refresher running
    user = get_user_model().objects.create_user("decider")
    token, raw = api_token_create(name="t", user=user)
    mapping_current()  # a decide cache's first read starts the refresher
    assert refresher_running()
    assert token_authenticate(raw) is not None
    # when requests come long after the cache time, with no change
    time.sleep(3 * TOKEN_SECONDS)
    # then they read the copy the refresher keeps fresh: no query of their own
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert token_authenticate(raw) is not None
            time.sleep(TOKEN_SECONDS)
    assert len(queries) == 0
    # and a revocation by another process (a plain update nothing here hears of)
    # is seen by the refresher within the cache time and its own
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    took = _wait(lambda: token_authenticate(raw) is None, timeout=TOKEN_SECONDS + 2.0)
    assert took is not None, "the revocation was not seen"


def test_a_permission_taken_away_elsewhere_is_seen_by_the_refresher(
    token_refresher: None,
) -> None:
    user = get_user_model().objects.create_user("viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_placement"))
    _, raw = api_token_create(name="t", user=user)
    mapping_current()
    found = token_authenticate(raw)
    assert found is not None and found.user.has_perm("personalization.view_placement")
    user.user_permissions.clear()

    def lost() -> bool:
        token = token_authenticate(raw)
        return token is not None and not token.user.has_perm("personalization.view_placement")

    assert _wait(lost, timeout=TOKEN_SECONDS + 2.0) is not None


def test_publishable_keys_are_reread_off_the_request_path(token_refresher: None) -> None:
    key, raw = publishable_key_create(name="site", allowed_origins=["https://shop.example"])
    mapping_current()
    assert publishable_key_get(raw) is not None
    time.sleep(3 * TOKEN_SECONDS)
    with CaptureQueriesContext(connection) as queries:
        assert publishable_key_get(raw) is not None
    assert len(queries) == 0
    PublishableKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert _wait(lambda: publishable_key_get(raw) is None, timeout=TOKEN_SECONDS + 2.0)


def test_a_token_is_reloaded_by_the_request_past_the_hard_bound_once_the_refresher_stops(
    token_refresher: None,
) -> None:
    user = get_user_model().objects.create_user("late")
    token, raw = api_token_create(name="t", user=user)
    mapping_current()
    assert token_authenticate(raw) is not None
    refresher_stop()
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    # stopped: the request's own cache time applies again
    assert _wait(lambda: token_authenticate(raw) is None, timeout=TOKEN_SECONDS + 1.0)
