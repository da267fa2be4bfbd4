"""Publishable keys: decide only, for the caller's own ids (a user id with its
user_hash), no segment in the reason, and CORS for the key's origins only."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.identity.models import Profile
from apps.personalization import services
from apps.personalization.admin import PublishableKeyAdmin
from apps.personalization.keys import (
    identity_secret,
    identity_secret_rotate,
    publishable_key_create,
    publishable_key_get,
    publishable_key_revoke,
    user_hash_compute,
    user_hash_valid,
)
from apps.personalization.models import Placement, PublishableKey

from .conftest import variant

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.com"


@pytest.fixture
def pk(db: None) -> tuple[PublishableKey, str]:
    return publishable_key_create(name="shop", allowed_origins=[SHOP + "/"])


def _decide(raw: str, profile: str, user_hash: str | None = None, **headers: str) -> Any:
    body: dict[str, Any] = {"profile": profile, "placements": ["home_hero"]}
    if user_hash is not None:
        body["user_hash"] = user_hash
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}", **headers).post(
        "/api/v1/decide", body, content_type="application/json"
    )


def _hash(key: PublishableKey, user_id: str) -> str:
    # what the customer's backend computes, written out here from the definition
    return hmac.new(identity_secret(key).encode(), user_id.encode(), "sha256").hexdigest()


def test_key_is_stored_hashed(pk: tuple[PublishableKey, str]) -> None:
    key, raw = pk
    assert raw.startswith("pk_") and raw not in key.key_hash and len(key.key_hash) == 64
    assert key.allowed_origins == [SHOP]


def test_decides_for_own_ids_without_the_segment(
    pk: tuple[PublishableKey, str],
    hero: Placement,
    make_segment: Any,
    make_profile: Callable[..., Profile],
) -> None:
    # given ada in a mapped segment
    ada = make_profile(("user_id", "ada"), ("anonymous_id", "a-1"), ("email", "ada@example.com"))
    rule = services.rule_create(
        placement=hero, segment=make_segment("lapsed", members=[ada]), variant=variant("hero-vip")
    )
    key, raw = pk
    # when the browser asks by its anonymous id and by its user id, with its hash
    for profile, user_hash in (("anonymous_id:a-1", None), ("user_id:ada", _hash(key, "ada"))):
        r = _decide(raw, profile, user_hash, HTTP_ORIGIN=SHOP)
        # then it gets the content, and the rule but not the segment's key
        assert r.status_code == 200, r.content
        assert r.json()["decisions"]["home_hero"]["reason"] == {"rule": rule.id}
        assert r.json()["decisions"]["home_hero"]["variant"] == "hero-vip"
        assert r["Access-Control-Allow-Origin"] in (SHOP, "*")


@pytest.mark.parametrize(
    "profile", ["email:ada@example.com", "id:00000000-0000-4000-8000-000000000000"]
)
def test_no_lookup_by_other_ids(
    pk: tuple[PublishableKey, str], hero: Placement, profile: str
) -> None:
    r = _decide(pk[1], profile)
    assert r.status_code == 400 and list(r.json()["errors"]) == ["profile"]


def test_nothing_but_decide(pk: tuple[PublishableKey, str], hero: Placement) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {pk[1]}")
    for path in ("/api/v1/placements", "/api/v1/rules", "/api/v1/profiles/user_id:ada"):
        assert client.get(path).status_code == 401
    r = client.post(
        "/api/v1/placements", {"key": "x", "name": "x"}, content_type="application/json"
    )
    assert r.status_code == 401


def test_revoked_and_unknown_keys_refused(pk: tuple[PublishableKey, str], hero: Placement) -> None:
    assert _decide("pk_not-a-key", "anonymous_id:a").status_code == 401
    publishable_key_revoke(key=pk[0])
    assert _decide(pk[1], "anonymous_id:a").status_code == 401


def test_other_origins_refused_and_not_allowed_by_cors(
    pk: tuple[PublishableKey, str], hero: Placement
) -> None:
    r = _decide(pk[1], "anonymous_id:a", HTTP_ORIGIN="https://evil.example.net")
    assert r.status_code == 403
    assert "Access-Control-Allow-Origin" not in r


def test_preflight(pk: tuple[PublishableKey, str], hero: Placement) -> None:
    # given the key's origin, a preflight of decide is allowed with the auth header
    client = Client()
    r = client.options(
        "/api/v1/decide",
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert r.status_code == 200
    assert r["Access-Control-Allow-Origin"] in (SHOP, "*")
    assert "authorization" in r["Access-Control-Allow-Headers"]
    # another origin gets no CORS headers, and neither does the rest of the API
    r = client.options(
        "/api/v1/decide",
        HTTP_ORIGIN="https://evil.example.net",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in r
    r = client.options(
        "/api/v1/placements", HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in r


def test_server_token_needs_the_permission(hero: Placement, client: Client) -> None:
    from django.contrib.auth import get_user_model

    from apps.api_auth.services import api_token_create

    user = get_user_model().objects.create_user(username="noperm")
    raw = api_token_create(name="t", user=user)[1]
    r = _decide(raw, "user_id:ada")
    assert r.status_code == 403
    assert "placements and on segment memberships" in r.json()["detail"]


def test_a_token_that_may_see_placements_but_not_memberships_may_not_decide(
    hero: Placement, client: Client
) -> None:
    # a decision tells which segments a person is in: placements alone are not enough
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from apps.api_auth.services import api_token_create

    user = get_user_model().objects.create_user(username="content-only")
    user.user_permissions.add(Permission.objects.get(codename="view_placement"))
    raw = api_token_create(name="t", user=user)[1]
    assert _decide(raw, "user_id:ada").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_membership"))
    assert _decide(raw, "user_id:ada").status_code == 200


def test_a_body_nested_too_deeply_is_a_400_not_a_500(
    pk: tuple[PublishableKey, str], reader: Client
) -> None:
    # a hundred thousand "[" is a 100 KB body anyone with the public key may send
    _, raw = pk
    deep = b"[" * 100_000
    for client in (Client(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_ORIGIN=SHOP), reader):
        r = client.post("/api/v1/decide", deep, content_type="application/json")
        assert r.status_code == 400
        assert "nested too deeply" in r.json()["detail"]


@pytest.mark.parametrize(
    "origins",
    [
        '"https://shop.example.com"',
        ["https://shop.example.com/checkout"],
        ["shop.example.com"],
        [5],
    ],
)
def test_origins_that_are_not_a_list_of_origins_are_refused(origins: Any) -> None:
    # a string would be read as a substring match, a path or a bare host never matches
    from django.core.exceptions import ValidationError

    key = PublishableKey(name="shop", prefix="pk_x", key_hash="0" * 64, allowed_origins=origins)
    with pytest.raises(ValidationError):
        key.full_clean()


def test_a_string_of_origins_that_slipped_in_is_no_substring_match(
    pk: tuple[PublishableKey, str],
) -> None:
    # given a key whose origins were stored as one string
    key, raw = pk
    PublishableKey.objects.filter(pk=key.pk).update(allowed_origins="https://shop.example.com")

    # then an origin that is a substring of it is refused
    r = _decide(raw, "anonymous_id:a-1", HTTP_ORIGIN="https://shop.example.co")
    assert r.status_code == 403


def test_user_id_needs_a_valid_user_hash(
    pk: tuple[PublishableKey, str],
    hero: Placement,
    make_segment: Any,
    make_profile: Callable[..., Profile],
) -> None:
    # given ada in a mapped segment, and a key's identity secret
    ada = make_profile(("user_id", "ada"), ("anonymous_id", "a-1"))
    services.rule_create(
        placement=hero, segment=make_segment("lapsed", members=[ada]), variant=variant("hero-vip")
    )
    key, raw = pk
    other, _ = publishable_key_create(name="other", allowed_origins=[SHOP])
    good = _hash(key, "ada")
    # then a valid hash decides, upper-case hex too
    for user_hash in (good, good.upper()):
        r = _decide(raw, "user_id:ada", user_hash)
        assert r.status_code == 200 and r.json()["decisions"]["home_hero"]["variant"] == "hero-vip"
    # and without one, with another user's, another key's, or one digit off: 403,
    # nothing decided
    off = good[:-1] + ("0" if good[-1] != "0" else "1")
    for user_hash in (None, _hash(key, "bob"), _hash(other, "ada"), off):
        r = _decide(raw, "user_id:ada", user_hash)
        assert r.status_code == 403, user_hash
        assert "user_hash" in r.json()["detail"] and "decisions" not in r.json()
    # and a refused user id is not looked up at all (nothing to time)
    with CaptureQueriesContext(connection) as queries:
        assert _decide(raw, "user_id:ada", off).status_code == 403
    assert not [q for q in queries if "identity_identifier" in q["sql"]]
    # and what is not 64 hex digits is a 400 naming the field
    for bad in ("zz" * 32, good[:10], 12):
        r = _decide(raw, "user_id:ada", bad)  # type: ignore[arg-type]
        assert r.status_code == 400 and list(r.json()["errors"]) == ["user_hash"]
    # and the anonymous id needs none
    assert _decide(raw, "anonymous_id:a-1").status_code == 200


def test_server_tokens_need_no_user_hash(
    reader: Client, hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    make_profile(("user_id", "ada"))
    r = reader.post(
        "/api/v1/decide",
        {"profile": "user_id:ada", "placements": ["home_hero"]},
        content_type="application/json",
    )
    assert r.status_code == 200


def test_rotating_the_identity_secret_stops_the_old_hashes(
    pk: tuple[PublishableKey, str], hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    make_profile(("user_id", "ada"))
    key, raw = pk
    old_secret, old_hash = identity_secret(key), _hash(key, "ada")
    new_secret = identity_secret_rotate(key=key)
    assert new_secret != old_secret and new_secret.startswith("ids_")
    assert _decide(raw, "user_id:ada", old_hash).status_code == 403
    assert _decide(raw, "user_id:ada", _hash(key, "ada")).status_code == 200
    # the secret is derived, not stored
    key.refresh_from_db()
    assert new_secret not in str(PublishableKey.objects.filter(pk=key.pk).values().get())


@settings(max_examples=50, deadline=None)
@given(user_id=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_user_hash_matches_the_definition_and_no_other_id(user_id: str, other: str) -> None:
    key = PublishableKey(name="k", key_hash="x" * 64, identity_salt="salt-1")
    expected = hmac.new(identity_secret(key).encode(), user_id.encode(), "sha256").hexdigest()
    assert user_hash_compute(identity_secret(key), user_id) == expected
    assert user_hash_valid(key, user_id, expected)
    assert user_hash_valid(key, other, expected) == (other == user_id)


def test_user_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the comparison the check makes
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr("apps.personalization.keys.hmac.compare_digest", spy)
    key = PublishableKey(name="k", key_hash="x" * 64, identity_salt="salt-1")
    good = user_hash_compute(identity_secret(key), "ada")
    # when a right and a wrong hash are checked, both go through compare_digest
    assert user_hash_valid(key, "ada", good)
    assert not user_hash_valid(key, "ada", "0" * 64)
    assert len(seen) == 2


def test_a_revoked_key_stops_in_other_processes_within_the_cache_time(
    pk: tuple[PublishableKey, str], hero: Placement, settings: Any
) -> None:
    # given keys cached for 0.3 s, and the key used once (cached here)
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 0.3}
    key, raw = pk
    assert _decide(raw, "anonymous_id:a").status_code == 200
    # when another process revokes it (a plain update: nothing tells this one)
    PublishableKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    # then it still works from this process's cache, then stops within the time
    assert _decide(raw, "anonymous_id:a").status_code == 200
    time.sleep(0.35)
    assert _decide(raw, "anonymous_id:a").status_code == 401


def test_admin_shows_the_identity_secret_once_and_rotates_it(
    hero: Placement, make_profile: Callable[..., Profile], caplog: pytest.LogCaptureFixture
) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.messages import get_messages

    make_profile(("user_id", "ada"))
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "pw"))
    # when a key is made in admin
    r = staff.post(
        "/admin/personalization/publishablekey/add/",
        {"name": "shop", "allowed_origins": f'["{SHOP}"]', "revoked_at": ""},
        follow=True,
    )
    key = PublishableKey.objects.get(name="shop")
    shown = " ".join(str(m) for m in get_messages(r.wsgi_request))
    # then the page shows its identity secret once, which verifies user hashes
    secret = identity_secret(key)
    assert secret in shown and secret.startswith("ids_")
    page = staff.get(f"/admin/personalization/publishablekey/{key.pk}/change/")
    assert page.status_code == 200 and secret not in page.content.decode()
    # when it is rotated from the change list, the new one is shown and the old stops
    r = staff.post(
        "/admin/personalization/publishablekey/",
        {"action": "rotate_identity_secret", "_selected_action": [key.pk]},
        follow=True,
    )
    key.refresh_from_db()
    rotated = identity_secret(key)
    assert rotated != secret
    assert rotated in " ".join(str(m) for m in get_messages(r.wsgi_request))
    assert not user_hash_valid(key, "ada", user_hash_compute(secret, "ada"))
    assert user_hash_valid(key, "ada", user_hash_compute(rotated, "ada"))
    # and neither secret went to a log
    assert secret not in caplog.text and rotated not in caplog.text


def _key_in_another_thread(raw: str) -> PublishableKey | None:
    found: list[PublishableKey | None] = []

    def run() -> None:
        try:
            found.append(publishable_key_get(raw))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found[0]


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_in_admin_is_not_cached_by_a_thread_reading_before_the_commit(
    settings: Any,
) -> None:
    # given keys cached for 10 minutes, and a key
    settings.CDP = {**settings.CDP, "API_TOKEN_CACHE_SECONDS": 600}
    key, raw = publishable_key_create(name="shop", allowed_origins=[SHOP])
    admin_user = get_user_model().objects.create_superuser("admin", password="pw")
    request = RequestFactory().post("/")
    request.user = admin_user
    # when admin revokes it (in the change view's transaction) and, before the
    # commit, another thread reads it (the committed row: live) and caches it
    with transaction.atomic():
        key.revoked_at = timezone.now()
        PublishableKeyAdmin(PublishableKey, site).save_model(request, key, form=None, change=True)
        assert _key_in_another_thread(raw) is not None
    # then after the commit it is refused in this process at once
    assert publishable_key_get(raw) is None
    assert _key_in_another_thread(raw) is None
