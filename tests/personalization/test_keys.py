"""Publishable keys: decide only, for the caller's own ids, no segment in the
reason, and CORS for the key's origins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.identity.models import Profile
from apps.personalization import services
from apps.personalization.keys import publishable_key_create, publishable_key_revoke
from apps.personalization.models import Placement, PublishableKey

from .conftest import variant

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.com"


@pytest.fixture
def pk(db: None) -> tuple[PublishableKey, str]:
    return publishable_key_create(name="shop", allowed_origins=[SHOP + "/"])


def _decide(raw: str, profile: str, **headers: str) -> Any:
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}", **headers).post(
        "/api/v1/decide",
        {"profile": profile, "placements": ["home_hero"]},
        content_type="application/json",
    )


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
    _, raw = pk
    # when the browser asks by its anonymous id and by its user id
    for profile in ("anonymous_id:a-1", "user_id:ada"):
        r = _decide(raw, profile, HTTP_ORIGIN=SHOP)
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
    user = get_user_model().objects.get(pk=user.pk)  # permissions are cached per object
    from apps.personalization.api import views

    views._may_decide.clear()
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
