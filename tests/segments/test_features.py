"""Behavioural features (apps/segments): a known history computed by hand, the
incremental stage equal to the rebuild on random streams (out of order too),
merges, splits, erasure, the rebuild command, RFM."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.identity.models import Identifier
from apps.identity.services import profile_merge, profile_split
from apps.segments.features import EventView, features_fold_all
from apps.segments.models import (
    Membership,
    MembershipRecheck,
    ProfileFeatures,
    RfmGroup,
    Segment,
)
from apps.segments.services import (
    _RFM_GRID,
    features_public,
    features_rebuild,
    features_recompute,
    quintiles,
    rfm_group,
    rfm_refresh,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
UA_PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
UA_DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _profile_id(user: str) -> Any:
    return Identifier.objects.get(type="user_id", value=user).profile_id


def _row(user: str) -> dict[str, Any]:
    row = ProfileFeatures.objects.get(profile_id=_profile_id(user))
    data = model_to_dict(row)
    data.pop("updated_at", None)
    return data


def test_the_features_of_a_known_history_computed_by_hand(post_events, api_client):
    # given: two visits on two days from a phone then a laptop, by hand:
    # day 1, 09:00-09:20: page, a product (shoes) viewed twice, one added, an order
    # of 120.50 (revenue); a new visit 09:55 (35 min later): page, an email open;
    # day 2, 10:00 (a new session id): a product (bags), a checkout start, an order
    # with only a total of 30; an email click
    u = "ann"
    phone = {"userAgent": UA_PHONE, "locale": "de-AT", "sessionId": "s1"}
    laptop = {"userAgent": UA_DESKTOP, "location": {"country": "Germany"}, "sessionId": "s2"}
    batch = [
        {"type": "page", "name": "Home", "timestamp": _at(0), "context": phone},
        {"type": "track", "event": "Product Viewed", "properties": {"category": "shoes"},
         "timestamp": _at(5), "context": phone},
        {"type": "track", "event": "Product Viewed", "properties": {"category": "shoes"},
         "timestamp": _at(8), "context": phone},
        {"type": "track", "event": "Product Added", "timestamp": _at(10), "context": phone},
        {"type": "track", "event": "Order Completed",
         "properties": {"revenue": 120.5, "total": 130}, "timestamp": _at(20), "context": phone},
        {"type": "page", "name": "Blog", "timestamp": _at(55), "context": phone},
        {"type": "track", "event": "Email Opened", "timestamp": _at(56), "context": phone},
        {"type": "track", "event": "Product Viewed", "properties": {"category": "bags"},
         "timestamp": _at(24 * 60 + 60), "context": laptop},
        {"type": "track", "event": "Checkout Started", "timestamp": _at(24 * 60 + 61),
         "context": laptop},
        {"type": "track", "event": "Order Completed", "properties": {"total": "30"},
         "timestamp": _at(24 * 60 + 62), "context": laptop},
        {"type": "track", "event": "Email Link Clicked", "timestamp": _at(24 * 60 + 63),
         "context": laptop},
    ]  # fmt: skip
    for i, event in enumerate(batch):
        event.update(userId=u, messageId=f"m{i}")

    # when
    post_events("/v1/import", {"batch": batch})
    body = api_client.get(f"/api/v1/profiles/user_id:{u}").json()

    # then
    features = body["features"]
    now_days = (datetime.now(UTC) - (T0 + timedelta(minutes=24 * 60 + 62))).days
    assert features == {
        "orders_count": 2,
        "revenue_total": 150.5,
        "average_order_value": 75.25,
        "first_order_at": "2025-03-03T09:20:00+00:00",
        "last_order_at": "2025-03-04T10:02:00+00:00",
        "days_since_last_order": now_days,
        "first_seen_at": "2025-03-03T09:00:00+00:00",
        "last_seen_at": "2025-03-04T10:03:00+00:00",
        "active_days": 2,
        # 09:00-09:20 (20 min), 09:55-09:56 (1 min), 10:00-10:03 (3 min)
        "sessions_count": 3,
        "average_session_seconds": round((20 + 1 + 3) * 60 / 3, 1),
        "page_views": 2,
        "product_views": 3,
        "top_categories": [{"category": "shoes", "count": 2}, {"category": "bags", "count": 1}],
        "cart_adds": 1,
        "cart_abandoned": False,  # an order followed the checkout
        "email_opens": 1,
        "email_clicks": 1,
        "last_device": "desktop",
        "last_country": "Germany",
        "rfm_recency": None,
        "rfm_frequency": None,
        "rfm_monetary": None,
        "rfm_group": None,
    }
    # the public shape: features before consents
    assert list(body).index("features") < list(body).index("consents")


def test_a_cart_left_an_hour_is_abandoned_until_an_order_follows(post_events):
    # given a cart add two hours ago with no order
    added = datetime.now(UTC) - timedelta(hours=2)
    post_events(
        "/v1/track",
        {"userId": "cart", "event": "Product Added", "timestamp": added.isoformat()},
    )
    row = ProfileFeatures.objects.get(profile_id=_profile_id("cart"))

    # then it is abandoned now, not an hour ago, and not after an order
    assert features_public(row)["cart_abandoned"] is True
    assert features_public(row, now=added + timedelta(minutes=59))["cart_abandoned"] is False
    post_events("/v1/track", {"userId": "cart", "event": "Order Completed"})
    row.refresh_from_db()
    assert features_public(row)["cart_abandoned"] is False


# --- Incremental equals the rebuild ------------------------------------------------

EVENT_KINDS = st.sampled_from(
    [
        ("page", ""),
        ("track", "Order Completed"),
        ("track", "Product Viewed"),
        ("track", "Product Added"),
        ("track", "Checkout Started"),
        ("track", "Email Opened"),
        ("track", "Email Link Clicked"),
        ("track", "Something Else"),
        ("identify", ""),
    ]
)


@st.composite
def histories(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=25))
    events = []
    for _ in range(n):
        kind, name = draw(EVENT_KINDS)
        # minutes apart, in clusters: sessions split and join
        minute = draw(st.integers(min_value=0, max_value=3 * 24 * 60))
        context: dict[str, Any] = {}
        if draw(st.booleans()):
            context["sessionId"] = draw(st.sampled_from(["a", "b", "c"]))
        context["userAgent"] = draw(st.sampled_from([UA_PHONE, UA_DESKTOP, ""]))
        if draw(st.booleans()):
            context["locale"] = draw(st.sampled_from(["en-US", "de-DE", "fr"]))
        properties: dict[str, Any] = {}
        if name == "Order Completed":
            money = st.one_of(
                st.decimals(min_value=0, max_value=10_000, places=2).map(float),
                st.sampled_from(["12.5", "x", None]),
            )
            properties[draw(st.sampled_from(["revenue", "total"]))] = draw(money)
        if name == "Product Viewed":
            properties["category"] = draw(st.sampled_from(["shoes", "bags", "hats", 7, ""]))
        event = {"type": kind, "timestamp": _at(minute), "context": context}
        if kind == "track":
            event.update(event=name, properties=properties)
        events.append(event)
    return events


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), seed=st.integers(0, 2**32 - 1))
def test_incremental_features_equal_the_rebuild(post_events, history, seed):
    # given a person's events, shuffled (late ones too) and sent in random batches
    user = f"p-{uuid.uuid4()}"
    rng = random.Random(seed)
    for i, event in enumerate(history):
        event.update(userId=user, messageId=f"{user}-{i}")
    rng.shuffle(history)
    while history:
        size = rng.randint(1, 5)
        batch, history = history[:size], history[size:]
        post_events("/v1/import", {"batch": batch})
    incremental = _row(user)

    # when everything is recomputed from scratch
    features_recompute(profile_ids=[_profile_id(user)])

    # then
    assert _row(user) == incremental


@given(history=histories(), seed=st.integers(0, 2**32 - 1))
def test_the_fold_does_not_depend_on_the_order_events_are_given_in(history, seed):
    views = [
        EventView(
            id=i + 1,
            timestamp=datetime.fromisoformat(e["timestamp"]),
            type=e["type"],
            event=e.get("event", ""),
            properties=e.get("properties", {}),
            context=e["context"],
        )
        for i, e in enumerate(history)
    ]
    shuffled = list(views)
    random.Random(seed).shuffle(shuffled)
    assert features_fold_all(shuffled) == features_fold_all(views)


# --- Merges, splits, erasure, rebuild ----------------------------------------------


def test_a_merge_recomputes_the_survivor_and_a_split_both(post_events):
    # given two people's orders
    post_events("/v1/track", {"userId": "ann", "event": "Order Completed",
                              "properties": {"revenue": 10}})  # fmt: skip
    post_events("/v1/track", {"anonymousId": "dev", "event": "Order Completed",
                              "properties": {"revenue": 5}})  # fmt: skip
    ann = _profile_id("ann")
    other = Identifier.objects.get(type="anonymous_id", value="dev").profile_id

    # when merged
    profile_merge(profile_ids=(ann, other), reason="admin")

    # then the survivor holds both, the absorbed profile has no row
    assert ProfileFeatures.objects.get(profile_id=ann).orders_count == 2
    assert ProfileFeatures.objects.get(profile_id=ann).revenue_total == Decimal("15")
    assert not ProfileFeatures.objects.filter(profile_id=other).exists()

    # when split again
    profile_split(profile_id=other)

    # then each has its own again
    assert ProfileFeatures.objects.get(profile_id=ann).revenue_total == Decimal("10")
    assert ProfileFeatures.objects.get(profile_id=other).revenue_total == Decimal("5")


def test_the_rebuild_command_recomputes_everyone_with_progress(post_events):
    # given features that drifted (a row edited by hand)
    post_events("/v1/track", {"userId": "ann", "event": "Order Completed"})
    post_events("/v1/page", {"userId": "bob", "name": "Home"})
    ProfileFeatures.objects.update(orders_count=99, page_views=99)
    err = StringIO()

    # when
    out = StringIO()
    call_command("features_rebuild", stdout=out, stderr=err)

    # then
    assert ProfileFeatures.objects.get(profile_id=_profile_id("ann")).orders_count == 1
    assert ProfileFeatures.objects.get(profile_id=_profile_id("bob")).page_views == 1
    assert "Features of 2 profiles rebuilt." in out.getvalue()
    assert "2/2" in err.getvalue()  # the progress bar


# --- RFM ---------------------------------------------------------------------------


def test_quintiles_rank_and_ties_share_a_score() -> None:
    import numpy as np

    assert quintiles(np.array([1.0, 2, 3, 4, 5])).tolist() == [1, 2, 3, 4, 5]
    assert quintiles(np.array([5.0, 3, 1, 4, 2])).tolist() == [5, 3, 1, 4, 2]
    # ties share the quintile of their middle rank
    assert quintiles(np.array([7.0] * 10)).tolist() == [3] * 10
    assert quintiles(np.array([1.0] + [9.0] * 9)).tolist() == [1] + [3] * 9


def test_every_rfm_group_is_reachable_and_champions_are_recent_and_frequent() -> None:
    groups = {rfm_group(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert groups == set(RfmGroup.values)
    assert rfm_group(5, 5, 5) == "Champions"
    assert rfm_group(1, 1, 1) == "Lost"
    assert rfm_group(1, 5, 5) == "Can't Lose Them"
    assert len(_RFM_GRID) == 5


def test_rfm_scores_people_with_orders(post_events):
    # given five customers, the more recent the more they bought
    now = datetime.now(UTC)
    for i in range(5):
        for k in range(i + 1):
            post_events(
                "/v1/track",
                {
                    "userId": f"c{i}",
                    "event": "Order Completed",
                    "properties": {"revenue": 10 * (i + 1)},
                    "timestamp": (now - timedelta(days=50 - 10 * i, hours=k)).isoformat(),
                    "messageId": f"c{i}-{k}",
                },
            )
    post_events("/v1/page", {"userId": "browser", "name": "Home"})

    # when
    assert rfm_refresh() == 5

    # then
    best = ProfileFeatures.objects.get(profile_id=_profile_id("c4"))
    worst = ProfileFeatures.objects.get(profile_id=_profile_id("c0"))
    assert (best.rfm_recency, best.rfm_frequency, best.rfm_monetary) == (5, 5, 5)
    assert best.rfm_group == "Champions"
    assert (worst.rfm_recency, worst.rfm_group) == (1, "Lost")
    assert ProfileFeatures.objects.get(profile_id=_profile_id("browser")).rfm_group == ""


def test_features_rebuild_service_scores_rfm_too(post_events):
    post_events("/v1/track", {"userId": "ann", "event": "Order Completed"})
    features_rebuild()
    # one customer alone is in the middle of every ranking
    row = ProfileFeatures.objects.get(profile_id=_profile_id("ann"))
    assert (row.rfm_recency, row.rfm_frequency, row.rfm_monetary) == (3, 3, 3)
    assert row.rfm_group == "Need Attention"


def test_erasure_leaves_no_feature_row_and_counts_it_in_the_proof(post_events):
    from apps.consent.services.dsr import dsr_create, dsr_transition
    from apps.consent.services.erasure import erasure_run, erasure_start

    # given a person with features, merged from two profiles, and someone else
    post_events("/v1/identify", {"userId": "dee", "anonymousId": "dee-phone"})
    post_events("/v1/track", {"anonymousId": "dee-phone", "event": "Order Completed"})
    post_events("/v1/page", {"userId": "eve", "name": "Home"})
    assert ProfileFeatures.objects.count() == 2

    # when she is erased
    request = dsr_create(type="erasure", subject="user_id:dee")
    dsr_transition(request=request, status="verified")
    erasure_start(request=request)
    assert erasure_run(request_id=request.id) is True

    # then her row is gone, the other stays, and the proof says how many went
    assert list(ProfileFeatures.objects.values_list("profile_id", flat=True)) == [
        _profile_id("eve")
    ]
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["profile_features"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_demo_shows_features_and_rfm_groups_at_once() -> None:
    # when a newcomer loads the demo (real commits: each runs the pipeline's stages)
    out = StringIO()
    call_command("load_demo", stdout=out, verbosity=0, customers=30, days=20, seed=42)

    # then customers have features, and those with orders an RFM group
    assert "features:           RFM scores for" in out.getvalue()
    with_orders = ProfileFeatures.objects.filter(orders_count__gt=0)
    assert with_orders.exists()
    assert not with_orders.filter(rfm_group="").exists()
    assert ProfileFeatures.objects.filter(product_views__gt=0, sessions_count__gt=0).exists()

    # and the demo's rule segments have their members: the live visit's shoppers
    # are browsing shoes now, and each has a recheck due when the hour is over
    assert "segments:           9 rule segments" in out.getvalue()
    names = set(Segment.objects.values_list("name", flat=True))
    assert {"Currently browsing shoes", "Cart abandoned in the last 24 h"} <= names
    assert {"Champions", "At Risk"} <= names
    browsing = Segment.objects.get(key="browsing-shoes")
    members = set(
        Membership.objects.filter(segment=browsing, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )
    assert len(members) == 5
    due = MembershipRecheck.objects.filter(segment=browsing, profile_id__in=members)
    assert due.count() == 5
    soon = timezone.now() + timedelta(hours=1)
    assert all(r.due_at <= soon for r in due)
    assert Segment.objects.exclude(key="browsing-shoes").filter(size__gt=0).exists()


def test_a_batch_whose_events_moved_in_a_merge_is_folded_where_they_are(post_events):
    # given a visitor's events, resolved, whose features batch has not run yet
    from apps.events.models import Event, PipelineBatch
    from apps.events.pipeline import pipeline_batch_run, stages
    from tests.registry import emptied

    post_events("/v1/track", {"userId": "ann", "event": "Order Completed",
                              "properties": {"revenue": 10}})  # fmt: skip
    with emptied(stages):
        post_events("/v1/track", {"anonymousId": "dev", "event": "Order Completed",
                                  "properties": {"revenue": 5}})  # fmt: skip
    dev = Identifier.objects.get(value="dev").profile_id
    batch = PipelineBatch.objects.create(
        event_ids=list(Event.objects.filter(profile_id=dev).values_list("id", flat=True))
    )
    # when the visitor is merged into ann first, then the batch runs
    ann = _profile_id("ann")
    profile_merge(profile_ids=(ann, dev), reason="admin")
    assert pipeline_batch_run(batch_id=batch.id) == "done"

    # then: counted once, at ann; no row comes back for the merged-away visitor
    assert ProfileFeatures.objects.get(profile_id=ann).orders_count == 2
    assert not ProfileFeatures.objects.filter(profile_id=dev).exists()
    before = _row("ann")
    features_recompute(profile_ids=[ann])
    assert _row("ann") == before
