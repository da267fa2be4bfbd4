"""The mapping API: placements, variants and rules; CRUD, validation and conflicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.personalization.models import ContentVariant, MappingVersion, Placement, Rule
from apps.segments.models import Segment

pytestmark = pytest.mark.django_db


def _post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, body, content_type="application/json")


def _patch(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.patch(path, body, content_type="application/json")


def test_placement_variant_rule_round_trip(
    writer: Client, make_segment: Callable[..., Segment]
) -> None:
    # given a segment
    make_segment("browsing-shoes")
    # when a placement is created with its default, then a variant and a rule
    r = _post(
        writer,
        "/api/v1/placements",
        {
            "key": "home_hero",
            "name": "Home hero",
            "default_variant": {
                "key": "hero-default",
                "name": "Default",
                "payload": {"headline": "Welcome", "image_url": "https://cdn.example.com/a.jpg"},
            },
        },
    )
    assert r.status_code == 201, r.content
    assert r.json()["default_variant"] == "hero-default"
    r = _post(
        writer,
        "/api/v1/variants",
        {
            "key": "hero-shoes",
            "placement": "home_hero",
            "name": "Shoes",
            "payload": {"headline": "Shoes", "cta_text": "Shop", "cta_url": "https://x.test/s"},
        },
    )
    assert r.status_code == 201, r.content
    r = _post(
        writer,
        "/api/v1/rules",
        {
            "placement": "home_hero",
            "segment": "browsing-shoes",
            "variant": "hero-shoes",
            "priority": 5,
            "holdout_percent": 10,
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": None,
        },
    )
    # then each reads back as written
    assert r.status_code == 201, r.content
    rule = r.json()
    assert {k: rule[k] for k in ("placement", "segment", "variant", "priority")} == {
        "placement": "home_hero",
        "segment": "browsing-shoes",
        "variant": "hero-shoes",
        "priority": 5,
    }
    assert rule["holdout_percent"] == 10 and rule["enabled"] is True
    assert writer.get(f"/api/v1/rules/{rule['id']}").json()["id"] == rule["id"]
    placement = writer.get("/api/v1/placements/home_hero").json()
    assert placement["variants"] == ["hero-default", "hero-shoes"]
    assert [v["key"] for v in writer.get("/api/v1/variants").json()] == [
        "hero-default",
        "hero-shoes",
    ]
    assert len(writer.get("/api/v1/rules").json()) == 1
    assert len(writer.get("/api/v1/placements").json()) == 1
    # and each change bumped the mapping version
    assert MappingVersion.objects.get(id=1).version >= 4


def test_patch_and_delete(writer: Client, hero: Placement, make_segment: Any) -> None:
    # given a rule showing hero-shoes
    make_segment("vip")
    rule = _post(
        writer,
        "/api/v1/rules",
        {"placement": "home_hero", "segment": "vip", "variant": "hero-shoes"},
    ).json()
    # when the rule, the variant and the placement are changed
    r = _patch(writer, f"/api/v1/rules/{rule['id']}", {"variant": "hero-vip", "priority": 3})
    assert r.status_code == 200, r.content
    assert (r.json()["variant"], r.json()["priority"]) == ("hero-vip", 3)
    r = _patch(writer, "/api/v1/variants/hero-vip", {"payload": {"html": "<b>Hi</b>"}})
    assert r.status_code == 200 and r.json()["payload"] == {"html": "<b>Hi</b>"}
    r = _patch(writer, "/api/v1/placements/home_hero", {"default_variant": "hero-shoes"})
    assert r.status_code == 200 and r.json()["default_variant"] == "hero-shoes"
    # then deleting goes rule, variant, placement
    assert writer.delete(f"/api/v1/rules/{rule['id']}").status_code == 204
    assert writer.delete("/api/v1/variants/hero-vip").status_code == 204
    assert writer.delete("/api/v1/placements/home_hero").status_code == 204
    assert not Placement.objects.exists() and not ContentVariant.objects.exists()
    assert writer.get("/api/v1/placements/home_hero").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"placement": "nope", "segment": "vip", "variant": "hero-shoes"}, "placement"),
        ({"placement": "home_hero", "segment": "nope", "variant": "hero-shoes"}, "segment"),
        ({"placement": "home_hero", "segment": "vip", "variant": "nope"}, "variant"),
        ({"placement": "home_hero", "segment": "vip", "variant": "side-a"}, "variant"),
        (
            {"placement": "home_hero", "segment": "vip", "variant": "hero-shoes", "priority": "1"},
            "priority",
        ),
        (
            {
                "placement": "home_hero",
                "segment": "vip",
                "variant": "hero-shoes",
                "holdout_percent": 101,
            },
            "holdout_percent",
        ),
        (
            {
                "placement": "home_hero",
                "segment": "vip",
                "variant": "hero-shoes",
                "starts_at": "2026-02-01T00:00:00Z",
                "ends_at": "2026-01-01T00:00:00Z",
            },
            "ends_at",
        ),
        ({"segment": "vip", "variant": "hero-shoes"}, "placement"),
    ],
)
def test_rule_refused_naming_the_field(
    writer: Client, hero: Placement, make_segment: Any, body: dict[str, Any], field: str
) -> None:
    # given a second placement with its own variant
    make_segment("vip")
    _post(writer, "/api/v1/placements", {"key": "side", "name": "Side"})
    _post(
        writer,
        "/api/v1/variants",
        {"key": "side-a", "placement": "side", "name": "A", "payload": {"body": "x"}},
    )
    # when a rule is posted with one bad field
    r = _post(writer, "/api/v1/rules", body)
    # then a 400 names it, and no rule was made
    assert r.status_code == 400, r.content
    assert list(r.json()["errors"]) == [field]
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "at least one"),
        ([], "JSON object"),
        ({"headLine": "typo"}, "headLine: Unknown key"),
        ({"image_url": "javascript:alert(1)"}, "image_url: Must be an absolute http(s) URL"),
        ({"headline": 3}, "headline: Must be a string"),
        ({"headline": "x" * 201}, "headline: At most 200"),
        ({"data": [1]}, "data: Must be a JSON object"),
    ],
)
def test_variant_payload_checked(
    writer: Client, hero: Placement, payload: Any, message: str
) -> None:
    # when a variant's payload is malformed
    r = _post(
        writer,
        "/api/v1/variants",
        {"key": "v", "placement": "home_hero", "name": "V", "payload": payload},
    )
    # then the 400 says what is wrong under payload
    assert r.status_code == 400, r.content
    assert message in r.json()["errors"]["payload"][0]
    assert not ContentVariant.objects.filter(key="v").exists()


def test_conflicts_are_409(writer: Client, hero: Placement, make_segment: Any) -> None:
    # given a rule showing hero-shoes
    make_segment("vip")
    _post(
        writer,
        "/api/v1/rules",
        {"placement": "home_hero", "segment": "vip", "variant": "hero-shoes"},
    )
    # then the default, a variant in use, a placement with rules and taken keys are 409s
    for r in (
        writer.delete("/api/v1/variants/hero-default"),
        writer.delete("/api/v1/variants/hero-shoes"),
        writer.delete("/api/v1/placements/home_hero"),
        _post(writer, "/api/v1/placements", {"key": "home_hero", "name": "again"}),
        _post(
            writer,
            "/api/v1/variants",
            {"key": "hero-vip", "placement": "home_hero", "name": "x", "payload": {"body": "b"}},
        ),
    ):
        assert r.status_code == 409, r.content
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert ContentVariant.objects.count() == 3 and Rule.objects.count() == 1


def test_default_variant_must_be_its_own(writer: Client, hero: Placement) -> None:
    # given another placement's variant
    _post(
        writer,
        "/api/v1/placements",
        {
            "key": "side",
            "name": "Side",
            "default_variant": {"key": "side-a", "name": "A", "payload": {"body": "x"}},
        },
    )
    # when it is made home_hero's default
    r = _patch(writer, "/api/v1/placements/home_hero", {"default_variant": "side-a"})
    # then a 400 names default_variant
    assert r.status_code == 400 and list(r.json()["errors"]) == ["default_variant"]
    assert Placement.objects.get(key="home_hero").default_variant.key == "hero-default"


def test_permissions(reader: Client, client: Client, hero: Placement) -> None:
    # a read-only token reads but does not write; no token is a 401
    assert reader.get("/api/v1/placements").status_code == 200
    assert _post(reader, "/api/v1/placements", {"key": "x", "name": "X"}).status_code == 403
    assert client.get("/api/v1/placements").status_code == 401
