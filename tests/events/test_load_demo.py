from __future__ import annotations

import io
import logging
from collections import defaultdict
from datetime import UTC, datetime
from statistics import mean
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.consent.models import DataSubjectRequest, RequestEvent, RequestStatus, RequestType
from apps.events.demo import DemoGenerator
from apps.events.models import Event, RejectedEvent, Source
from apps.identity.dedup.models import DedupRun, DuplicateCandidate
from apps.identity.models import IdentityConflict, Profile
from apps.identity.selectors import profile_get_by_external_id

pytestmark = pytest.mark.django_db

SMALL = {"customers": 30, "days": 20, "seed": 42}
ECOMMERCE_EVENTS = {
    "Products Searched",
    "Product List Viewed",
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
    "Email Opened",
}


def load_demo(**options: Any) -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out, verbosity=0, **{**SMALL, **options})
    return out.getvalue()


def demo_events() -> Any:
    return Event.objects.filter(source__name="Demo web")


def test_load_demo_stores_every_ecommerce_event_and_page_views() -> None:
    # given an empty install

    # when
    output = load_demo()

    # then
    events = demo_events()
    names = set(events.filter(type="track").values_list("event", flat=True))
    assert names >= ECOMMERCE_EVENTS
    assert set(events.values_list("type", flat=True)) == {"identify", "page", "track"}
    page = events.filter(type="page", name="Product").first()
    assert page is not None
    assert {"url", "path", "title", "referrer"} <= page.properties.keys()
    assert page.properties["url"].startswith("https://shop.example.com/p/")
    viewed = events.filter(event="Product Viewed").first()
    assert viewed is not None
    assert {"product_id", "sku", "name", "category", "brand", "price", "currency"} <= (
        viewed.properties.keys()
    )
    searched = events.filter(event="Products Searched").first()
    assert searched is not None and searched.properties["query"]
    assert f"events:             {events.count():,} stored" in output
    assert RejectedEvent.objects.count() == 0


def test_load_demo_web_events_carry_session_user_agent_and_locale() -> None:
    # given an empty install

    # when
    load_demo()

    # then every web event says which session and browser it came from
    web = demo_events().exclude(event="Email Opened")
    assert web.exists()
    for context in web.values_list("context", flat=True):
        assert context["session_id"]
        assert context["userAgent"].startswith("Mozilla/5.0")
        assert context["locale"]
        assert context["page"]["url"].startswith("https://shop.example.com/")
    campaigns = [c["campaign"] for c in web.values_list("context", flat=True) if "campaign" in c]
    assert campaigns, "some sessions come from a campaign"
    assert all({"source", "medium", "name"} <= c.keys() for c in campaigns)


def test_load_demo_orders_have_revenue_and_categorised_products() -> None:
    # given an empty install

    # when
    load_demo()

    # then
    orders = list(demo_events().filter(event="Order Completed"))
    assert orders
    for order in orders:
        p = order.properties
        assert order.user_id, "only signed-up customers check out"
        assert p["order_id"].startswith("ord_")
        assert p["currency"] == "USD"
        assert p["revenue"] > 0
        assert p["revenue"] == round(p["subtotal"] - p["discount"], 2)
        assert p["total"] == round(p["revenue"] + p["shipping"] + p["tax"], 2)
        assert p["products"]
        for product in p["products"]:
            assert product["category"]
            assert product["quantity"] >= 1
            assert product["price"] > 0
    started = set(
        demo_events()
        .filter(event="Checkout Started")
        .values_list("properties__order_id", flat=True)
    )
    assert {o.properties["order_id"] for o in orders} <= started


def test_load_demo_signup_links_anonymous_id_to_user_id() -> None:
    # given an empty install

    # when
    load_demo()

    # then each sign-up's profile, found by userId, also holds the visitor's anonymousId
    signups = [e for e in demo_events().filter(type="identify") if "createdAt" in e.traits]
    assert len(signups) >= SMALL["customers"]
    for event in signups:
        assert event.anonymous_id
        profile = profile_get_by_external_id(external_id=f"user_id:{event.user_id}")
        assert profile is not None
        identifiers = set(profile.identifiers.values_list("type", "value"))
        assert ("anonymous_id", event.anonymous_id) in identifiers
        assert ("email", event.traits["email"].lower()) in identifiers
        assert profile.traits["email"] == event.traits["email"]
        # and the anonymous browsing before the sign-up is on the same profile
        earlier = demo_events().filter(
            anonymous_id=event.anonymous_id, timestamp__lt=event.timestamp
        )
        assert earlier.exists()
        assert set(earlier.values_list("profile_id", flat=True)) == {profile.pk}
    assert IdentityConflict.objects.count() == 0


def test_load_demo_keeps_visitors_who_never_sign_up_anonymous() -> None:
    # given an empty install

    # when
    load_demo()

    # then
    profile_ids = set(demo_events().values_list("profile_id", flat=True))
    anonymous_only = (
        Profile.objects.live()
        .filter(pk__in=profile_ids)
        .exclude(identifiers__type__in=["user_id", "email", "phone"])
    )
    assert anonymous_only.count() >= round(SMALL["customers"] * 0.3)
    for profile in anonymous_only:
        assert set(profile.identifiers.values_list("type", flat=True)) == {"anonymous_id"}
    assert not demo_events().filter(profile__isnull=True).exists()
    assert not demo_events().filter(processed_at__isnull=True).exists()


def test_load_demo_times_lie_in_the_requested_window() -> None:
    # given
    before = timezone.now()

    # when
    load_demo()

    # then
    times = demo_events().values_list("timestamp", flat=True)
    assert max(times) < before
    assert (before - min(times)).days <= SMALL["days"] + 1


def test_load_demo_twice_does_not_double_the_data() -> None:
    # given
    load_demo()
    count = demo_events().count()

    # when
    output = load_demo()
    forced = load_demo(force=True)  # same seed: the same messageIds, all skipped

    # then
    assert "demo data already loaded" in output
    assert "0 stored" in forced
    assert demo_events().count() == count
    assert Source.objects.filter(name="Demo web").count() == 1


def test_load_demo_same_seed_gives_the_same_events() -> None:
    # given
    now = datetime(2025, 3, 14, 15, 9, tzinfo=UTC)
    later_that_day = datetime(2025, 3, 14, 23, 59, tzinfo=UTC)

    def generate(seed: int, at: datetime) -> list[dict[str, Any]]:
        generator = DemoGenerator(customers=40, days=30, seed=seed, now=at)
        return [e for events in generator.people_events() for e in events]

    # when
    first, second = generate(42, now), generate(42, later_that_day)
    other = generate(43, now)

    # then
    assert first == second
    assert first != other
    load_demo()
    generator = DemoGenerator(**SMALL, now=now)
    history = [e for events in generator.people_events() for e in events]
    live = generator.live_events(timezone.now())
    assert demo_events().count() == len(history) + len(live)


def test_duplicate_accounts_look_alike_but_stay_apart() -> None:
    # given
    load_demo(customers=100)
    generator = DemoGenerator(customers=100, days=SMALL["days"], seed=42, now=timezone.now())

    # when
    pairs = generator.duplicate_pairs

    # then they are separate profiles with similar, not equal, details
    assert len(pairs) == 2
    for first_id, second_id in pairs:
        first = profile_get_by_external_id(external_id=f"user_id:{first_id}")
        second = profile_get_by_external_id(external_id=f"user_id:{second_id}")
        assert first is not None and second is not None
        assert first.pk != second.pk
        assert first.traits["email"] != second.traits["email"]
        assert first.traits["address"] != second.traits["address"]
        assert first.traits["address"]["postalCode"] == second.traits["address"]["postalCode"]
        phone = first.traits.get("phone")
        assert phone is None or phone != second.traits.get("phone")
    assert IdentityConflict.objects.count() == 0


def test_personas_behave_differently() -> None:
    # given
    generator = DemoGenerator(customers=600, days=180, seed=1, now=timezone.now())
    events = [e for batch in generator.people_events() for e in batch]
    persona = generator.persona_by_user_id

    # when
    spend: dict[str, list[float]] = defaultdict(list)
    coupons: dict[str, list[bool]] = defaultdict(list)
    last_seen: dict[str, str] = {}
    for event in events:
        user_id = event.get("userId")
        if not user_id:
            continue
        last_seen[user_id] = max(last_seen.get(user_id, ""), event["timestamp"])
        if event.get("event") == "Order Completed":
            spend[persona[user_id]].append(event["properties"]["revenue"])
            coupons[persona[user_id]].append("coupon" in event["properties"])
    orders_per_customer = {
        name: len(spend[name]) / sum(1 for p in persona.values() if p == name)
        for name in ("loyal_high_spender", "window_shopper")
    }
    recency = {
        name: mean(
            datetime.fromisoformat(ts).timestamp()
            for uid, ts in last_seen.items()
            if persona[uid] == name
        )
        for name in ("lapsed", "new")
    }

    # then
    assert mean(spend["loyal_high_spender"]) > 1.5 * mean(spend["bargain_hunter"])
    assert mean(coupons["bargain_hunter"]) > 0.6 > 0.2 > mean(coupons["loyal_high_spender"])
    assert orders_per_customer["loyal_high_spender"] > 10 * orders_per_customer["window_shopper"]
    assert recency["new"] - recency["lapsed"] > 60 * 86400  # lapsed stopped months ago


@pytest.mark.django_db(transaction=True)  # commits, so that ingest hands events on
def test_load_demo_without_a_broker_never_reaches_for_one(
    broker_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given no broker configured: tasks run eagerly, as in the quickstart
    caplog.set_level(logging.WARNING)
    with broker_at(""):
        # when
        load_demo()

    # then nothing tried to connect to one (kombu: "No hostname was supplied...")
    assert demo_events().exists()
    assert "hostname" not in caplog.text.lower()
    assert not [r for r in caplog.records if r.name.startswith(("kombu", "celery"))]


def test_load_demo_runs_one_dedup_pass_that_merges_some_and_queues_some() -> None:
    # given
    generator = DemoGenerator(customers=100, days=SMALL["days"], seed=42, now=timezone.now())

    # when
    output = load_demo(customers=100)

    # then the sure newsletter sign-ups joined their customer's profile...
    run = DedupRun.objects.get()
    assert run.status == DedupRun.Status.SUCCEEDED
    assert run.auto_merged >= 1 and run.queued >= 1
    assert f"{run.auto_merged} pairs merged, {run.queued} to review" in output
    pairs = generator.newsletter_pairs
    assert {kind for _, _, kind in pairs} == {"sure", "unsure"}
    for user_id, email, kind in pairs:
        customer = profile_get_by_external_id(external_id=f"user_id:{user_id}")
        signup = profile_get_by_external_id(external_id=f"email:{email}")
        assert customer is not None and signup is not None
        if kind == "sure":
            assert signup.pk == customer.pk
            assert customer.traits["email"] != email, "the account's newer traits win"
    # ...and the unsure ones wait in the review queue
    pending = DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.PENDING)
    assert pending.count() >= 1
    assert DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.MERGED).exists()


def test_load_demo_makes_data_subject_requests_in_each_state() -> None:
    # when
    load_demo()

    # then
    requests = DataSubjectRequest.objects.all()
    assert {r.status for r in requests} == {
        RequestStatus.RECEIVED,
        RequestStatus.VERIFIED,
        RequestStatus.COMPLETED,
        RequestStatus.REJECTED,
    }
    access = requests.get(type=RequestType.ACCESS, status=RequestStatus.COMPLETED)
    assert RequestEvent.objects.filter(request=access, action="exported").exists()
    erasure = requests.get(type=RequestType.ERASURE, status=RequestStatus.COMPLETED)
    assert erasure.subject.startswith("erased:")
    proof = erasure.erasure_summary
    assert proof["counts"]["events"] > 0 and proof["counts"]["profiles"] == 1
    assert proof["hooks_failed"] == []
    rejected = requests.get(status=RequestStatus.REJECTED)
    assert RequestEvent.objects.filter(request=rejected, note__contains="could not show").exists()
