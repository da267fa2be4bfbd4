from __future__ import annotations

import base64
import hashlib
import importlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.utils import timezone

from apps.api_auth import selectors
from apps.api_auth.admin import ApiTokenAdmin
from apps.api_auth.models import ApiToken
from apps.api_auth.selectors import token_cache_clear
from apps.api_auth.services import api_token_create, api_token_revoke
from apps.events.auth import source_create, source_for_key
from apps.events.models import Source

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_a_token_that_is_stored_only_hashed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # when
    call_command("create_api_token", "crm-sync")
    raw = capsys.readouterr().out.strip()
    # then the printed token works, and only its hash is in the database
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {token.prefix, token.key_hash, token.name}
    assert token.user.username == "api-crm-sync"
    response = Client().get("/api/v1/profiles", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


def test_read_only_token_cannot_get_write_permissions() -> None:
    call_command("create_api_token", "bi", "--read-only", stdout=open("/dev/null", "w"))  # noqa: SIM115
    user = ApiToken.objects.get().user
    assert user.has_perm("identity.view_profile")
    assert not user.has_perm("identity.change_profile")


def test_create_api_token_for_an_existing_user(capsys: pytest.CaptureFixture[str]) -> None:
    get_user_model().objects.create_user("ann")
    call_command("create_api_token", "ann-laptop", "--user", "ann")
    assert ApiToken.objects.get().user.username == "ann"


def test_create_source_prints_its_write_key(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("create_source", "iOS app", "--write-key", "ios_key_1")
    assert capsys.readouterr().out.strip() == "ios_key_1"
    assert source_for_key("ios_key_1") == Source.objects.get(name="iOS app")


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer not-a-token", 401),
        ("Bearer", 401),
        ("Token abc", 401),
    ],
)
def test_api_refuses_missing_or_bad_tokens(header: str | None, status: int) -> None:
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/api/v1/profiles")
    assert response.status_code == status
    assert "detail" in response.json()


def test_write_key_cannot_read_the_api() -> None:
    # given a valid write key
    _, source_key = source_create(name="Web", write_key="wk_public")
    basic = base64.b64encode(f"{source_key}:".encode()).decode()
    # then neither as Basic nor as Bearer does it open the management API
    for header in (f"Basic {basic}", f"Bearer {source_key}"):
        response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/profiles")
        assert response.status_code == 401


def test_revoked_and_expired_tokens_stop_working() -> None:
    user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    revoked, revoked_raw = api_token_create(name="old", user=user)
    api_token_revoke(token=revoked)
    expired, expired_raw = api_token_create(name="short", user=user, expires_in_days=1)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at="2000-01-01T00:00:00Z")
    _, good_raw = api_token_create(name="good", user=user)
    for raw, status in ((revoked_raw, 401), (expired_raw, 401), (good_raw, 200)):
        response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/profiles")
        assert response.status_code == status


def test_token_of_a_user_without_permission_is_forbidden() -> None:
    user = get_user_model().objects.create_user("nobody")
    _, raw = api_token_create(name="none", user=user)
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/profiles")
    assert response.status_code == 403


def test_full_access_token_cannot_force_merge_unless_granted_explicitly() -> None:
    # when a full-access token and one with --force-merge are created
    call_command("create_api_token", "crm", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("create_api_token", "ops", "--force-merge", stdout=open("/dev/null", "w"))  # noqa: SIM115
    crm = get_user_model().objects.get(username="api-crm")
    ops = get_user_model().objects.get(username="api-ops")
    # then both may merge and split, only the explicit one may override safety rules
    assert crm.has_perm("identity.change_profile")
    assert not crm.has_perm("identity.force_merge_profile")
    assert ops.has_perm("identity.change_profile")
    assert ops.has_perm("identity.force_merge_profile")
    full_access = Group.objects.get(name="API full access")
    assert not full_access.permissions.filter(codename="force_merge_profile").exists()


def test_full_access_group_loses_force_merge_it_had_before() -> None:
    # given a full-access group made by an earlier version, with every permission
    group = Group.objects.create(name="API full access")
    group.permissions.set(Permission.objects.filter(content_type__app_label="identity"))
    # when a token is created
    call_command("create_api_token", "crm", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # then the group no longer carries the override
    assert not group.permissions.filter(codename="force_merge_profile").exists()
    assert group.permissions.filter(codename="change_profile").exists()


@pytest.mark.parametrize("flags", [["--read-only"], ["--user", "ann"]])
def test_force_merge_flag_is_refused_where_it_cannot_apply(flags: list[str]) -> None:
    # given
    get_user_model().objects.create_user("ann")
    # when / then
    with pytest.raises(CommandError, match="--force-merge applies to a full-access service user"):
        call_command("create_api_token", "x", "--force-merge", *flags)
    assert not ApiToken.objects.exists()
    assert not get_user_model().objects.get(username="ann").has_perm("identity.force_merge_profile")


def test_migration_takes_force_merge_from_an_existing_full_access_group() -> None:
    # given a full-access group made by an earlier version
    group = Group.objects.create(name="API full access")
    group.permissions.set(Permission.objects.filter(content_type__app_label="identity"))
    before = group.permissions.count()
    # when the data migration's function runs
    migration = importlib.import_module(
        "apps.api_auth.migrations.0002_full_access_without_force_merge"
    )
    migration.drop_force_merge_from_full_access(django_apps, None)
    # then only the override is gone
    assert not group.permissions.filter(codename="force_merge_profile").exists()
    assert group.permissions.count() == before - 1


def test_cached_tokens_follow_revocation_and_permission_changes_within_the_cache_time(
    settings: Any,
) -> None:
    # given tokens cached for 0.3 s per process, and two tokens used once (cached)
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 0.3}
    token_cache_clear()
    user = get_user_model().objects.create_user("reporting")
    user.user_permissions.add(Permission.objects.get(codename="view_profile"))
    mine, mine_raw = api_token_create(name="here", user=user)
    theirs, theirs_raw = api_token_create(name="there", user=user)
    for raw in (mine_raw, theirs_raw):
        assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/profiles").status_code == 200
    # when this process revokes one through the service, another process the
    # other (a plain update nothing here hears of), and the permission is taken away
    api_token_revoke(token=mine)
    ApiToken.objects.filter(pk=theirs.pk).update(revoked_at=timezone.now())
    user.user_permissions.clear()

    # then the first stops at once, the second within the cache time
    def status(raw: str) -> int:
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/profiles").status_code

    assert status(mine_raw) == 401
    assert status(theirs_raw) == 200
    time.sleep(0.35)
    assert status(theirs_raw) == 401
    # and a new token of the user, now without the permission, is refused (403)
    _, fresh = api_token_create(name="fresh", user=user)
    assert status(fresh) == 403
    token_cache_clear()


def test_a_permission_granted_or_a_user_deactivated_counts_within_the_cache_time(
    settings: Any,
) -> None:
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 0.3}
    token_cache_clear()
    user = get_user_model().objects.create_user("later")
    _, raw = api_token_create(name="t", user=user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/profiles").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_profile"))
    time.sleep(0.35)
    assert client.get("/api/v1/profiles").status_code == 200
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    time.sleep(0.35)
    assert client.get("/api/v1/profiles").status_code == 401
    token_cache_clear()


def test_an_expiry_date_passing_counts_at_once_even_when_cached(settings: Any) -> None:
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 60}
    token_cache_clear()
    user = get_user_model().objects.create_superuser("root2", "r2@example.com", "pw")
    token, raw = api_token_create(name="short", user=user)
    ApiToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() + timedelta(milliseconds=300)
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/profiles").status_code == 200  # cached for a minute
    time.sleep(0.35)
    assert client.get("/api/v1/profiles").status_code == 401
    token_cache_clear()


def test_a_load_that_began_before_a_revocation_does_not_cache_the_old_row(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given tokens cached for 10 minutes, and a request whose load of the token row
    # reads it live, then, before it puts it in the cache, another thread revokes it
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 600}
    token_cache_clear()
    user = get_user_model().objects.create_user("reporting")
    token, raw = api_token_create(name="t", user=user)
    real_load = selectors._load

    def load_then_revoked(key_hash: str) -> ApiToken | None:
        found = real_load(key_hash)
        api_token_revoke(token=ApiToken.objects.get(pk=token.pk))
        return found

    monkeypatch.setattr(selectors, "_load", load_then_revoked)
    # when that request authenticates (it read the row before the revocation)
    assert selectors.token_authenticate(raw) is not None
    monkeypatch.setattr(selectors, "_load", real_load)
    # then what it read is not cached: the next request sees the revocation
    assert selectors.token_authenticate(raw) is None
    token_cache_clear()


def _authenticate_in_another_thread(raw: str) -> ApiToken | None:
    found: list[ApiToken | None] = []

    def run() -> None:
        try:
            found.append(selectors.token_authenticate(raw))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found[0]


@pytest.mark.django_db(transaction=True)
def test_a_token_revoked_in_admin_is_not_cached_by_a_thread_reading_before_the_commit(
    settings: Any,
) -> None:
    # given tokens cached for 10 minutes
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 600}
    token_cache_clear()
    admin_user = get_user_model().objects.create_superuser("admin", password="pw")
    user = get_user_model().objects.create_user("reporting")
    token, raw = api_token_create(name="t", user=user)
    model_admin = ApiTokenAdmin(ApiToken, site)
    request = RequestFactory().post("/")
    request.user = admin_user
    # when admin revokes it (in the change view's transaction) and, before the
    # commit, another thread authenticates it (it reads the committed, live row)
    with transaction.atomic():
        token.revoked_at = timezone.now()
        model_admin.save_model(request, token, form=None, change=True)
        assert _authenticate_in_another_thread(raw) is not None
    # then after the commit the token is refused in this process at once
    assert selectors.token_authenticate(raw) is None
    assert _authenticate_in_another_thread(raw) is None
    token_cache_clear()
