"""The JSON feed: token auth (401 without a feed token, 403 for a disabled
feed), and its versioned schema with placements, variants, rules and audiences."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client

from apps.exports.models import Destination
from apps.exports.services import destination_secret_rotate
from apps.personalization.models import ContentVariant, Placement
from apps.personalization.services import placement_create, rule_create, variant_create

pytestmark = pytest.mark.django_db
FEED = "/api/v1/exports/feed"


def _get(token: str | None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return Client().get(FEED, **headers)


@pytest.fixture
def feed(person: Any, audience: Any, destination: Any) -> tuple[Destination, str]:
    ada, bob, no = person("ada"), person("bob"), person("no", consent=False)
    shoes = audience("shoes", [ada, bob, no])
    tiny = audience("tiny", [ada], min_size=3)
    hero = placement_create(
        key="home_hero",
        name="Home hero",
        default_variant={"key": "hero-default", "name": "Default", "payload": {"headline": "Hi"}},
    )
    shoes_variant = variant_create(
        placement=hero, key="hero-shoes", name="Shoes", payload={"headline": "Shoes!"}
    )
    rule_create(placement=hero, segment=shoes, variant=shoes_variant, priority=5)
    rule_create(placement=hero, segment=tiny, variant=shoes_variant, priority=9)
    return destination("json_feed", [shoes, tiny], key="site-feed")


def test_the_feed_holds_the_mapping_and_consented_audience_counts(
    feed: tuple[Destination, str], openapi: Any
) -> None:
    # given
    _, token = feed
    assert token.startswith("cdpfeed_")
    # when
    response = _get(token)
    # then: the versioned schema, as the OpenAPI document says
    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert openapi.errors(openapi.response_schema(FEED + "/", "get", 200), body) == []
    assert body["schema"] == "cdp.feed/1"
    assert body["destination"] == "site-feed"
    assert body["placements"] == [
        {"key": "home_hero", "name": "Home hero", "default_variant": "hero-default"}
    ]
    assert sorted(v["key"] for v in body["variants"]) == ["hero-default", "hero-shoes"]
    # the rule of "tiny" (below its minimum size) is left out, as is the segment
    assert [(r["segment"], r["variant"], r["priority"]) for r in body["rules"]] == [
        ("shoes", "hero-shoes", 5)
    ]
    # members: the consented ones only, and a count, never a list
    assert body["audiences"] == [{"key": "shoes", "name": "Shoes", "kind": "cluster", "members": 2}]


@pytest.mark.parametrize(
    "token",
    [None, "", "cdpfeed_not-a-real-token", "cdp_an-api-token-is-not-a-feed-token"],
)
def test_no_valid_feed_token_is_a_401(feed: tuple[Destination, str], token: str | None) -> None:
    response = _get(token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "detail" in orjson.loads(response.content)


def test_an_api_token_does_not_open_a_feed(feed: tuple[Destination, str], api_token: str) -> None:
    assert _get(api_token).status_code == 401


def test_a_disabled_feed_is_a_403_and_a_rotated_token_stops_the_old_one(
    feed: tuple[Destination, str],
) -> None:
    # given
    target, token = feed
    # when: rotated
    new = destination_secret_rotate(destination=target)
    # then
    assert _get(token).status_code == 401
    assert _get(new).status_code == 200
    # when: disabled
    Destination.objects.filter(pk=target.pk).update(enabled=False)
    # then
    response = _get(new)
    assert response.status_code == 403
    assert orjson.loads(response.content)["detail"] == "This feed is disabled."
    # and the token is stored hashed only
    target.refresh_from_db()
    assert new not in (target.feed_token_hash, target.feed_token_prefix)


def test_the_feed_holds_no_rule_of_a_segment_it_was_not_given(
    feed: tuple[Destination, str], person: Any, audience: Any
) -> None:
    # given a rule of another activated segment, not the feed's
    other = audience("pregnancy", [person("cy")])
    hero = Placement.objects.get(key="home_hero")
    variant = ContentVariant.objects.get(key="hero-shoes")
    rule_create(placement=hero, segment=other, variant=variant, priority=20)
    _, token = feed

    # when
    body = orjson.loads(_get(token).content)

    # then neither its rule nor its key leaves
    assert [r["segment"] for r in body["rules"]] == ["shoes"]
    assert "pregnancy" not in orjson.dumps(body).decode()
