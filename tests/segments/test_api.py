"""The segments API: definitions, members, preview, and a profile's segments."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

# The ``segments`` field of a profile's detail; registrations.py imports it too
# (importing it again registers nothing twice).
import apps.segments.api.profile_fields  # noqa: F401
from apps.api_auth.services import api_token_create, service_user_ensure
from apps.identity.models import Profile, ProfileMerge
from apps.identity.services import profile_merge
from apps.segments.memberships import segment_members
from apps.segments.models import (
    Membership,
    MembershipChange,
    Segment,
    SegmentKind,
    SegmentRefresh,
)

pytestmark = pytest.mark.django_db

PRO = {"type": "trait", "path": "plan", "op": "equals", "value": "pro"}
FREE = {"type": "trait", "path": "plan", "op": "equals", "value": "free"}


def _iso(at: Any) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _token(*, read_only: bool) -> str:
    user = service_user_ensure(name="read" if read_only else "write", read_only=read_only)
    return api_token_create(name="t", user=user)[1]


@pytest.fixture
def writer(db: None) -> Client:
    """A full-access token: add, change and delete segments."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {_token(read_only=False)}")


@pytest.fixture
def reader(db: None) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {_token(read_only=True)}")


def _client_with(*perms: str) -> Client:
    user = get_user_model().objects.create_user(username="-".join(perms) or "nobody")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(name='t', user=user)[1]}")


@pytest.fixture
def people(make_profile: Callable[..., Profile]) -> dict[str, Profile]:
    return {
        "ada": make_profile(("user_id", "u-ada"), traits={"plan": "pro"}),
        "grace": make_profile(("user_id", "u-grace"), traits={"plan": "pro"}),
        "alan": make_profile(("user_id", "u-alan"), traits={"plan": "free"}),
    }


def _post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, body, content_type="application/json")


def _patch(client: Client, path: str, body: Any) -> Any:
    return client.patch(path, body, content_type="application/json")


def _create(client: Client, key: str, condition: Any, **fields: Any) -> Any:
    body = {"key": key, "name": key.title(), "condition": condition, **fields}
    return _post(client, "/api/v1/segments", body)


def _eid(profile: Profile) -> str:
    return f"id:{profile.id}"


def _invalid(errors: dict[str, Any]) -> dict[str, Any]:
    return {"detail": "Invalid input.", "errors": errors}


# --- Create ----------------------------------------------------------------------------


def test_create_answers_201_with_the_segment_and_its_members(writer, people):
    # when
    response = _post(
        writer,
        "/api/v1/segments",
        {"key": "pro", "name": "Pro plan", "description": "Paying", "condition": PRO},
    )

    # then
    assert response.status_code == 201
    segment = Segment.objects.get()
    refresh = SegmentRefresh.objects.get()
    assert response.json() == {
        "key": "pro",
        "name": "Pro plan",
        "description": "Paying",
        "kind": "rule",
        "condition": PRO,
        "min_size": 0,
        "enabled": True,
        "size": 2,
        "activated": True,
        "version": refresh.version,
        "refreshed_at": _iso(segment.refreshed_at),
        "created_at": _iso(segment.created_at),
        "updated_at": _iso(segment.updated_at),
    }
    assert refresh.version >= 1
    assert set(segment_members(segment).values_list("profile_id", flat=True)) == {
        people["ada"].id,
        people["grace"].id,
    }


def test_create_takes_min_size_and_enabled(writer, people):
    # when
    response = _create(writer, "pro", PRO, min_size=3, enabled=True)

    # then: two members, fewer than three: not activated
    assert response.status_code == 201
    assert (response.json()["size"], response.json()["min_size"]) == (2, 3)
    assert response.json()["activated"] is False


@pytest.mark.parametrize(
    ("condition", "errors"),
    [
        (
            {"type": "and", "children": [PRO, {"type": "performed", "event": "Login", "times": 0}]},
            ["condition.children[1].times: must be a positive integer"],
        ),
        (
            {
                "type": "or",
                "children": [
                    {"type": "feature", "name": "shoe_size", "op": "gte", "value": 2},
                    {"type": "consent", "purpose": "telepathy"},
                    {"type": "segment", "key": "nobody"},
                ],
            },
            [
                "condition.children[0].name: unknown feature 'shoe_size'",
                "condition.children[1].purpose: unknown purpose 'telepathy'",
                "condition.children[2].key: no segment has the key 'nobody'",
            ],
        ),
        (
            {"type": "xor"},
            [
                "condition.type: must be one of "
                + ", ".join(
                    ["and", "or", "not", "performed", "feature", "trait", "segment", "consent"]
                )
            ],
        ),
        ([PRO], ["condition: must be an object with a type"]),
    ],
)
def test_an_invalid_condition_is_400_naming_each_bad_node(writer, people, condition, errors):
    # when
    response = _create(writer, "pro", condition)

    # then
    assert response.status_code == 400
    assert response.json() == _invalid({"condition": errors})
    assert not Segment.objects.exists()
    assert not Membership.objects.exists()


def test_a_duplicate_key_is_400_naming_key(writer, people):
    # given
    assert _create(writer, "pro", PRO).status_code == 201

    # when
    response = _create(writer, "pro", FREE)

    # then
    assert response.status_code == 409
    assert response.json() == {"detail": "A segment with the key 'pro' already exists."}
    assert Segment.objects.get().condition == PRO


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"key": "preview", "name": "P", "condition": PRO},
            {"key": ["'preview' is reserved (POST /api/v1/segments/preview): choose another key."]},
        ),
        (
            {"key": "big spenders", "name": "B", "condition": PRO},
            {"key": ["Letters, digits, hyphens and underscores only."]},
        ),
        (
            {"key": "k", "name": "K"},
            {"condition": ["This field is required."]},
        ),
        (
            {"key": "k", "name": "K", "condition": PRO, "min_size": -1},
            {"min_size": ["Ensure this value is greater than or equal to 0."]},
        ),
        (
            {"key": "k", "name": "K", "condition": PRO, "enabled": "yes"},
            {"enabled": ["Must be a valid boolean."]},
        ),
        (
            {"key": "k", "name": "K", "condition": {**PRO, "value": "a\x00b"}},
            {"condition": ["NUL characters (\\u0000) are not allowed."]},
        ),
    ],
)
def test_malformed_fields_are_400_naming_them(writer, body, errors):
    # when
    response = _post(writer, "/api/v1/segments", body)

    # then
    assert response.status_code == 400
    assert response.json() == _invalid(errors)
    assert not Segment.objects.exists()


# --- Read ------------------------------------------------------------------------------


def test_list_gives_every_segment_by_key_with_its_size(writer, reader, people):
    # given
    _create(writer, "pro", PRO)
    _create(writer, "free", FREE, min_size=5)

    # when
    response = reader.get("/api/v1/segments")

    # then
    assert response.status_code == 200
    rows = [
        (s["key"], s["size"], s["activated"], s["version"] >= 1, s["refreshed_at"] is not None)
        for s in response.json()
    ]
    assert rows == [("free", 1, False, True, True), ("pro", 2, True, True, True)]


def test_detail_gives_the_segment_and_an_unknown_key_is_404(writer, reader, people):
    # given
    created = _create(writer, "pro", PRO).json()

    # when
    found = reader.get("/api/v1/segments/pro")
    missing = reader.get("/api/v1/segments/nobody")

    # then
    assert (found.status_code, found.json()) == (200, created)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No Segment matches the given query."}


# --- Change ----------------------------------------------------------------------------


def test_patch_changes_the_given_fields_and_refreshes_the_members(writer, people):
    # given
    _create(writer, "pro", PRO, description="Paying")

    # when
    response = _patch(writer, "/api/v1/segments/pro", {"name": "Free plan", "condition": FREE})

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["key"], body["name"], body["description"]) == ("pro", "Free plan", "Paying")
    assert (body["condition"], body["size"]) == (FREE, 1)
    segment = Segment.objects.get()
    assert list(segment_members(segment).values_list("profile_id", flat=True)) == [
        people["alan"].id
    ]


def test_patch_with_the_same_key_is_accepted_and_another_key_is_400(writer, people):
    # given
    _create(writer, "pro", PRO)

    # when
    same = _patch(writer, "/api/v1/segments/pro", {"key": "pro", "min_size": 1})
    other = _patch(writer, "/api/v1/segments/pro", {"key": "paying"})

    # then
    assert same.status_code == 200
    assert same.json()["min_size"] == 1
    assert other.status_code == 400
    assert other.json() == _invalid(
        {"key": ["The key of a segment does not change (this one is 'pro')."]}
    )
    assert list(Segment.objects.values_list("key", flat=True)) == ["pro"]


def test_patch_into_a_reference_cycle_is_400_and_changes_nothing(writer, people):
    # given: vip refers to pro
    _create(writer, "pro", PRO)
    _create(writer, "vip", {"type": "and", "children": [{"type": "segment", "key": "pro"}, PRO]})

    # when: pro would refer to vip
    response = _patch(
        writer, "/api/v1/segments/pro", {"condition": {"type": "segment", "key": "vip"}}
    )

    # then
    assert response.status_code == 400
    assert response.json() == _invalid(
        {"condition": ["condition: segment references form a cycle (pro -> vip -> pro)"]}
    )
    assert Segment.objects.get(key="pro").condition == PRO


def test_patch_of_an_unknown_segment_is_404(writer):
    # when
    response = _patch(writer, "/api/v1/segments/nobody", {"name": "X"})

    # then
    assert response.status_code == 404


def test_put_is_not_offered(writer, people):
    # given
    _create(writer, "pro", PRO)

    # when
    response = writer.put(
        "/api/v1/segments/pro",
        {"key": "pro", "name": "P", "condition": FREE},
        content_type="application/json",
    )

    # then
    assert response.status_code == 405
    assert Segment.objects.get().condition == PRO


def test_a_cluster_segment_is_not_changed_or_deleted_here(writer):
    # given
    Segment.objects.create(key="persona-1", name="Bargain hunters", kind=SegmentKind.CLUSTER)

    # when
    changed = _patch(writer, "/api/v1/segments/persona-1", {"name": "X"})
    deleted = writer.delete("/api/v1/segments/persona-1")

    # then
    detail = "The members of 'persona-1' are written by Cluster: change it there."
    assert (changed.status_code, changed.json()) == (409, {"detail": detail})
    assert (deleted.status_code, deleted.json()) == (409, {"detail": detail})
    assert Segment.objects.get().name == "Bargain hunters"


# --- Delete ----------------------------------------------------------------------------


def test_delete_answers_204_and_removes_it(writer, people):
    # given
    _create(writer, "pro", PRO)

    # when
    response = writer.delete("/api/v1/segments/pro")

    # then
    assert response.status_code == 204
    assert not Segment.objects.exists()
    assert not Membership.objects.exists()
    assert writer.get("/api/v1/segments/pro").status_code == 404


def test_delete_of_a_segment_others_refer_to_is_409_naming_them(writer, people):
    # given
    _create(writer, "pro", PRO)
    _create(writer, "vip", {"type": "segment", "key": "pro"})
    _create(writer, "not-pro", {"type": "not", "child": {"type": "segment", "key": "pro"}})

    # when
    response = writer.delete("/api/v1/segments/pro")

    # then
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Other segments refer to this one: not-pro, vip. Change their conditions first.",
    }
    assert Segment.objects.count() == 3
    assert Membership.objects.filter(segment__key="pro").count() == 2


def test_delete_of_a_segment_a_clustering_config_clusters_is_409_naming_it(writer, people):
    # given a segment whose members a clustering config clusters
    from apps.clustering.models import ClusteringConfig

    _create(writer, "pro", PRO)
    ClusteringConfig.objects.create(
        key="pro-personas",
        name="Pro personas",
        features=[{"name": "orders_count", "transform": "log1p"}],
        population_segment=Segment.objects.get(key="pro"),
    )

    # when
    response = writer.delete("/api/v1/segments/pro")

    # then refused, naming the config, and nothing is gone
    assert response.status_code == 409
    assert response.json() == {
        "detail": "This segment is in use by clustering config 'Pro personas'.",
    }
    assert Membership.objects.filter(segment__key="pro").count() == 2


def test_delete_of_a_segment_content_is_mapped_to_is_409_naming_the_rule(writer, people):
    # given a rule showing a banner to the segment's members
    from apps.personalization import services

    _create(writer, "pro", PRO)
    hero = services.placement_create(
        key="home_hero",
        name="Home hero",
        default_variant={"key": "hero-default", "name": "Default", "payload": {"headline": "Hi"}},
    )
    vip = services.variant_create(
        placement=hero, key="hero-vip", name="VIP", payload={"headline": "VIP"}
    )
    rule = services.rule_create(placement=hero, segment=Segment.objects.get(key="pro"), variant=vip)

    # when
    response = writer.delete("/api/v1/segments/pro")

    # then refused, naming the rule, and the mapping stays
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"This segment is in use by rule {rule.pk}")
    assert Segment.objects.filter(key="pro").exists()
    assert rule.__class__.objects.filter(pk=rule.pk).exists()


# --- Members ---------------------------------------------------------------------------


def test_members_are_cursor_paginated_longest_standing_first(writer, reader, make_profile):
    # given: five members, and one who has left
    for i in range(6):
        make_profile(("user_id", f"u-{i}"), traits={"plan": "pro"})
    _create(writer, "pro", PRO)
    segment = Segment.objects.get()
    left = segment_members(segment).last()
    assert left is not None
    Membership.objects.filter(pk=left.pk).update(exited_at=timezone.now())
    # entered at different times, and two at the same moment
    base = timezone.now() - timedelta(days=1)
    rows = list(segment_members(segment).order_by("id"))
    for row, minutes in zip(rows, [30, 10, 20, 10, 0], strict=True):
        Membership.objects.filter(pk=row.pk).update(entered_at=base + timedelta(minutes=minutes))
    expected = [
        {"profile": f"id:{m.profile_id}", "entered_at": _iso(m.entered_at)}
        for m in segment_members(segment)
    ]

    # when
    pages = []
    response = reader.get("/api/v1/segments/pro/members", {"limit": 2})
    while True:
        assert response.status_code == 200
        pages.append(response.json()["results"])
        if response.json()["next"] is None:
            break
        response = reader.get(response.json()["next"])

    # then
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [m for page in pages for m in page] == expected
    assert expected[0]["entered_at"] == _iso(base)
    assert f"id:{left.profile_id}" not in {m["profile"] for m in expected}


def test_members_of_an_unknown_segment_is_404(reader):
    # when
    response = reader.get("/api/v1/segments/nobody/members")

    # then
    assert response.status_code == 404


def test_members_refuse_an_unreadable_cursor(writer, reader, people):
    # given
    _create(writer, "pro", PRO)

    # when
    response = reader.get("/api/v1/segments/pro/members", {"cursor": "nope"})

    # then
    assert response.status_code == 400
    assert response.json() == _invalid(
        {"cursor": "Invalid cursor: use the next or previous link of a page as it was returned."}
    )


# --- Preview ---------------------------------------------------------------------------


def test_preview_counts_and_samples_without_saving(writer, reader, people):
    # given
    _create(writer, "free", FREE)
    before = (Segment.objects.count(), Membership.objects.count(), MembershipChange.objects.count())

    # when
    response = _post(reader, "/api/v1/segments/preview", {"condition": PRO})

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert sorted(body["sample"]) == sorted([_eid(people["ada"]), _eid(people["grace"])])
    after = (Segment.objects.count(), Membership.objects.count(), MembershipChange.objects.count())
    assert after == before
    assert SegmentRefresh.objects.count() == 1


def test_preview_of_an_invalid_condition_is_400(reader, people):
    # when
    response = _post(
        reader,
        "/api/v1/segments/preview",
        {"condition": {"type": "not", "child": {"type": "trait", "path": "plan", "op": "near"}}},
    )

    # then
    assert response.status_code == 400
    assert response.json() == _invalid(
        {
            "condition": [
                "condition.child.op: must be one of equals, not_equals, in, not_in, contains, "
                "starts_with, gt, gte, lt, lte, between, exists, not_exists, "
                "within_last_days, before_days_ago"
            ]
        }
    )
    assert not Segment.objects.exists()


# --- A profile's segments --------------------------------------------------------------


def test_profile_segments_give_current_and_past_memberships(writer, reader, people):
    # given: ada is in pro; she was in "paying" until it changed to the free plan
    _create(writer, "pro", PRO)
    _create(writer, "paying", PRO)
    _patch(writer, "/api/v1/segments/paying", {"condition": FREE})
    pro = Membership.objects.get(segment__key="pro", profile=people["ada"])
    paid = Membership.objects.get(segment__key="paying", profile=people["ada"])

    # when
    response = reader.get("/api/v1/profiles/user_id:u-ada/segments")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "current": [{"segment": "pro", "entered_at": _iso(pro.entered_at), "reason": pro.reason}],
        "past": [
            {
                "segment": "paying",
                "entered_at": _iso(paid.entered_at),
                "exited_at": _iso(paid.exited_at),
                "reason": paid.reason,
                "exit_reason": paid.exit_reason,
            }
        ],
    }
    assert paid.exited_at is not None
    assert pro.reason  # says why


def test_profile_segments_past_limit(writer, reader, people):
    # given: three past stays
    _create(writer, "pro", PRO)
    segment = Segment.objects.get()
    now = timezone.now()
    for days in (3, 2, 1):
        Membership.objects.create(
            segment=segment,
            profile=people["ada"],
            entered_at=now - timedelta(days=days, hours=1),
            exited_at=now - timedelta(days=days),
            source="refresh",
            changed_at=now,
        )

    # when
    response = reader.get("/api/v1/profiles/user_id:u-ada/segments", {"past_limit": 2})
    wrong = reader.get("/api/v1/profiles/user_id:u-ada/segments", {"past_limit": 0})

    # then
    assert response.status_code == 200
    assert [p["exited_at"] for p in response.json()["past"]] == [
        _iso(now - timedelta(days=1)),
        _iso(now - timedelta(days=2)),
    ]
    assert wrong.status_code == 400
    assert wrong.json() == _invalid(
        {"past_limit": "past_limit must be a whole number from 1 to 1000, got '0'."}
    )


def test_profile_segments_of_another_or_unknown_profile(writer, reader, people):
    # given
    _create(writer, "pro", PRO)

    # when
    alan = reader.get("/api/v1/profiles/user_id:u-alan/segments")
    unknown = reader.get("/api/v1/profiles/user_id:nobody/segments")
    unknown_id = reader.get(f"/api/v1/profiles/id:{uuid.uuid4()}/segments")
    malformed = reader.get("/api/v1/profiles/shoe:42/segments")

    # then: alan sees none of ada's
    assert (alan.status_code, alan.json()) == (200, {"current": [], "past": []})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "No profile with this id."})
    assert unknown_id.status_code == 404
    assert malformed.status_code == 400
    assert list(malformed.json()["errors"]) == ["external_id"]


def test_an_absorbed_profile_leads_to_its_survivor_as_its_events_do(writer, reader, people):
    # given: grace turns out to be ada
    _create(writer, "pro", PRO)
    record = profile_merge(
        profile_ids=(people["ada"].id, people["grace"].id),
        reason=ProfileMerge.Reason.ADMIN,
        details={},
        force=True,  # two user ids
    )
    absorbed = record.absorbed_id

    # when
    via_absorbed = reader.get(f"/api/v1/profiles/id:{absorbed}/segments")
    via_survivor = reader.get(f"/api/v1/profiles/id:{record.survivor_id}/segments")
    events = reader.get(f"/api/v1/profiles/id:{absorbed}/events")

    # then
    assert via_absorbed.status_code == events.status_code == 200
    assert via_absorbed.json() == via_survivor.json()
    assert [m["segment"] for m in via_absorbed.json()["current"]] == ["pro"]


def test_profile_detail_lists_its_current_segment_keys(writer, reader, people):
    # given
    _create(writer, "pro", PRO)
    _create(writer, "all", {"type": "trait", "path": "plan", "op": "exists"})

    # when
    ada = reader.get(f"/api/v1/profiles/{quote(_eid(people['ada']))}")
    alan = reader.get("/api/v1/profiles/user_id:u-alan")

    # then
    assert ada.status_code == 200
    assert ada.json()["segments"] == ["all", "pro"]
    assert alan.json()["segments"] == ["all"]


# --- Auth ------------------------------------------------------------------------------

READS = [
    ("get", "/api/v1/segments"),
    ("get", "/api/v1/segments/pro"),
    ("get", "/api/v1/segments/pro/members"),
    ("get", "/api/v1/profiles/user_id:u-ada/segments"),
    ("post", "/api/v1/segments/preview"),
]
WRITES = [
    ("post", "/api/v1/segments"),
    ("patch", "/api/v1/segments/pro"),
    ("delete", "/api/v1/segments/pro"),
]
BODIES = {
    "/api/v1/segments": {"key": "free", "name": "Free", "condition": FREE},
    "/api/v1/segments/pro": {"name": "Renamed"},
    "/api/v1/segments/preview": {"condition": PRO},
}


def _send(client: Client, method: str, path: str) -> Any:
    return getattr(client, method)(path, BODIES.get(path), content_type="application/json")


@pytest.fixture
def pro(writer: Client, people: dict[str, Profile]) -> None:
    assert _create(writer, "pro", PRO).status_code == 201


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_no_token_is_401(client, pro, method, path):
    # when
    response = _send(client, method, path)

    # then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_read_only_token_cannot_write(reader, pro, method, path):
    # when
    response = _send(reader, method, path)

    # then
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}
    segment = Segment.objects.get()
    assert (segment.key, segment.name) == ("pro", "Pro")


@pytest.mark.parametrize(("method", "path"), READS)
def test_a_read_only_token_reads(reader, pro, method, path):
    # when
    response = _send(reader, method, path)

    # then
    assert response.status_code == 200


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_a_token_without_permissions_is_403(pro, method, path):
    # when
    response = _send(_client_with(), method, path)

    # then
    assert response.status_code == 403
    assert Segment.objects.get().name == "Pro"


@pytest.mark.parametrize(
    ("perms", "method", "path"),
    [
        # memberships without profiles: no probing which external ids exist
        (["segments.view_membership"], "get", "/api/v1/profiles/user_id:u-ada/segments"),
        (["identity.view_profile"], "get", "/api/v1/profiles/user_id:u-ada/segments"),
        (["segments.view_segment"], "get", "/api/v1/segments/pro/members"),
        (["segments.view_segment"], "post", "/api/v1/segments/preview"),
        (["segments.view_segment", "segments.change_segment"], "delete", "/api/v1/segments/pro"),
    ],
)
def test_each_route_needs_its_own_permissions(pro, perms, method, path):
    # when
    response = _send(_client_with(*perms), method, path)

    # then
    assert response.status_code == 403
    assert Segment.objects.filter(key="pro").exists()


def test_a_token_with_the_add_permission_creates(people):
    # when
    response = _send(_client_with("segments.add_segment"), "post", "/api/v1/segments")

    # then
    assert response.status_code == 201
    assert Segment.objects.get().key == "free"


# --- Schema ----------------------------------------------------------------------------


def test_the_schema_lists_every_route_with_its_errors(openapi):
    # then
    statuses = {
        ("/api/v1/segments/", "get"): {"200", "401", "403"},
        ("/api/v1/segments/", "post"): {"201", "400", "401", "403", "409"},
        ("/api/v1/segments/{key}/", "get"): {"200", "401", "403", "404"},
        ("/api/v1/segments/{key}/", "patch"): {"200", "400", "401", "403", "404", "409"},
        ("/api/v1/segments/{key}/", "delete"): {"204", "401", "403", "404", "409"},
        ("/api/v1/segments/{key}/members/", "get"): {"200", "400", "401", "403", "404"},
        ("/api/v1/segments/preview/", "post"): {"200", "400", "401", "403"},
        ("/api/v1/profiles/{external_id}/segments/", "get"): {
            "200",
            "400",
            "401",
            "403",
            "404",
        },
    }
    for (path, method), expected in statuses.items():
        assert set(openapi.operation(path, method)["responses"]) == expected, (path, method)
    assert "put" not in openapi.document["paths"]["/api/v1/segments/{key}/"]


def test_answers_match_the_schema(openapi, writer, reader, people):
    # given
    created = _create(writer, "pro", PRO)
    _create(writer, "paying", PRO)
    _patch(writer, "/api/v1/segments/paying", {"condition": FREE})
    _create(writer, "vip", {"type": "segment", "key": "pro"})
    answers = [
        ("/api/v1/segments/", "post", 201, created),
        ("/api/v1/segments/", "get", 200, reader.get("/api/v1/segments")),
        ("/api/v1/segments/{key}/", "get", 200, reader.get("/api/v1/segments/pro")),
        ("/api/v1/segments/{key}/", "delete", 409, writer.delete("/api/v1/segments/pro")),
        (
            "/api/v1/segments/{key}/",
            "patch",
            400,
            _patch(writer, "/api/v1/segments/pro", {"condition": {}}),
        ),
        (
            "/api/v1/segments/{key}/members/",
            "get",
            200,
            reader.get("/api/v1/segments/pro/members", {"limit": 1}),
        ),
        (
            "/api/v1/segments/preview/",
            "post",
            200,
            _post(reader, "/api/v1/segments/preview", {"condition": PRO}),
        ),
        (
            "/api/v1/profiles/{external_id}/segments/",
            "get",
            200,
            reader.get("/api/v1/profiles/user_id:u-ada/segments"),
        ),
        (
            "/api/v1/profiles/{external_id}/",
            "get",
            200,
            reader.get("/api/v1/profiles/user_id:u-ada"),
        ),
    ]

    # then
    for path, method, status, response in answers:
        assert response.status_code == status, (path, method, response.content)
        schema = openapi.response_schema(path, method, status)
        assert openapi.errors(schema, response.json()) == [], (path, method)
