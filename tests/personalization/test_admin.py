"""The marketers' page in admin (Django's test client): the grid saves rules, ties
are warned about, coverage counts, the profile lookup explains, previews are
escaped and sandboxed, and lift is read from exposures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from apps.events.auth import source_create
from apps.events.models import Event
from apps.identity.models import Profile
from apps.personalization import services
from apps.personalization.admin_views import placement_coverage, rule_lift, variant_preview
from apps.personalization.decide import decide
from apps.personalization.models import Placement, Rule

from .conftest import variant

pytestmark = pytest.mark.django_db

URL = "/admin/personalization/placement/mapping/"


@pytest.fixture
def staff(db: None) -> Client:
    user = get_user_model().objects.create_superuser("marketer", "m@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_grid_creates_changes_and_deletes_rules(
    staff: Client, hero: Placement, make_segment: Any
) -> None:
    # given a segment and the page
    seg = make_segment("vip")
    cell = f"cell-{seg.id}-{hero.id}"
    assert cell in staff.get(URL).content.decode()
    # when a variant is picked and saved, then a rule shows it
    r = staff.post(URL, {cell: str(variant("hero-vip").id)})
    assert r.status_code == 302
    rule = Rule.objects.get()
    assert (rule.segment_id, rule.variant.key) == (seg.id, "hero-vip")
    # when another is picked, the same rule changes; when none, it goes
    staff.post(URL, {cell: str(variant("hero-shoes").id)})
    assert Rule.objects.get().pk == rule.pk and Rule.objects.get().variant.key == "hero-shoes"
    staff.post(URL, {cell: ""})
    assert not Rule.objects.exists()


def test_grid_refuses_another_placements_variant(
    staff: Client, hero: Placement, make_segment: Any
) -> None:
    seg = make_segment("vip")
    other = services.placement_create(
        key="side", name="Side", default_variant={"key": "s", "name": "S", "payload": {"body": "b"}}
    )
    staff.post(URL, {f"cell-{seg.id}-{hero.id}": str(other.default_variant_id)})
    assert not Rule.objects.exists()


def test_ties_warned_and_coverage_counted(
    staff: Client, hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given 10 profiles, 6 in a and 4 in b, 2 of them in both; a and b tie at priority 0
    people = [make_profile(("user_id", f"p{i}")) for i in range(10)]
    a = make_segment("a", members=people[:6])
    b = make_segment("b", members=people[4:8])
    ra = services.rule_create(placement=hero, segment=a, variant=variant("hero-shoes"))
    services.rule_create(placement=hero, segment=b, variant=variant("hero-vip"), holdout_percent=50)
    # then the page warns about the tie and counts two people in both
    page = staff.get(URL).content.decode()
    assert f"Rules {ra.id} and {ra.id + 1} in home_hero both have priority 0" in page
    assert "2 profile(s) in" in page
    # and coverage: 6 see shoes (a first), 2 more are in b only: 1 sees vip, 1 held out
    rows = {r.variant: r for r in placement_coverage("home_hero", total=10)}
    assert rows["hero-shoes"].shown == 6
    assert rows["hero-vip"].shown == 1
    assert rows["hero-default"].held_out == 1 and rows["hero-default"].shown == 2


def test_lookup_says_what_a_profile_sees(
    staff: Client, hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    ada = make_profile(("user_id", "ada"))
    rule = services.rule_create(
        placement=hero, segment=make_segment("vip", members=[ada]), variant=variant("hero-vip")
    )
    page = staff.get(URL, {"profile": "user_id:ada"}).content.decode()
    assert f"rule {rule.id} (segment vip)" in page and "hero-vip" in page
    page = staff.get(URL, {"profile": "user_id:nobody"}).content.decode()
    assert "No such profile" in page and "fallback" in page
    page = staff.get(URL, {"profile": "nonsense"}).content.decode()
    assert "Profile ids have the form" in page


def test_preview_escapes_and_sandboxes() -> None:
    html = variant_preview(
        {
            "headline": "<script>alert(1)</script>",
            "html": '<img src=x onerror="alert(2)"><script>alert(3)</script>',
            "image_url": 'https://x.test/a.jpg"onload="alert(4)',
        }
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<iframe class="perso-snippet" sandbox=""' in html
    assert 'srcdoc="&lt;img src=x onerror=&quot;alert(2)&quot;&gt;' in html
    assert '"onload=' not in html


def test_lift_from_exposures_and_orders(
    hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given 40 members of a rule holding half out, each decided once
    people = [make_profile(("user_id", f"l{i}")) for i in range(40)]
    rule = services.rule_create(
        placement=hero,
        segment=make_segment("s", members=people),
        variant=variant("hero-shoes"),
        holdout_percent=50,
    )
    held = {
        p.pk
        for p in people
        if decide(profile_id=p.pk, placements=["home_hero"])["home_hero"].holdout
    }
    # when three treated and one held-out profile order afterwards (and one before)
    source, _ = source_create(name="s", write_key="wk_lift")
    treated = [p for p in people if p.pk not in held]
    holdouts = [p for p in people if p.pk in held]
    later = timezone.now() + timedelta(minutes=5)
    for i, (p, at) in enumerate(
        [
            (treated[0], later),
            (treated[1], later),
            (treated[2], later),
            (holdouts[0], later),
            (holdouts[1], timezone.now() - timedelta(days=1)),
        ]
    ):
        Event.objects.create(
            source=source,
            message_id=f"m{i}",
            type="track",
            event="Order Completed",
            profile=p,
            timestamp=at,
            received_at=at,
        )
    # then the lift readout counts them by group
    lift = rule_lift(rule.id)
    assert lift["treated"]["profiles"] == len(treated) and lift["treated"]["converted"] == 3
    assert lift["holdout"]["profiles"] == len(holdouts) and lift["holdout"]["converted"] == 1


def test_page_needs_permission(client: Client, hero: Placement) -> None:
    user = get_user_model().objects.create_user("plain", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
