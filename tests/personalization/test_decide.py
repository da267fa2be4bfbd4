"""POST /api/v1/decide: what wins, the defaults, unknown input, consent, the cache
across processes, and exposures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.consent.models import Purpose
from apps.consent.selectors import consent_config_clear
from apps.consent.services.consent import consent_grant, consent_withdraw
from apps.identity.models import Profile
from apps.personalization import mapping, services
from apps.personalization.decide import decide
from apps.personalization.exposures import exposures_flush, exposures_pending
from apps.personalization.models import Exposure, Placement, Rule
from apps.segments.models import Segment

from .conftest import members_add, members_remove, variant

pytestmark = pytest.mark.django_db


def _decide(client: Client, profile: str, *placements: str) -> Any:
    return client.post(
        "/api/v1/decide",
        {"profile": profile, "placements": list(placements), "context": {"url": "/"}},
        content_type="application/json",
    )


@pytest.fixture
def ada(make_profile: Callable[..., Profile]) -> Profile:
    return make_profile(("user_id", "ada"), ("anonymous_id", "anon-ada"))


def _rule(placement: Placement, segment: Segment, key: str, **kw: Any) -> Rule:
    return services.rule_create(placement=placement, segment=segment, variant=variant(key), **kw)


def test_member_sees_the_rules_variant_with_reason(
    reader: Client, hero: Placement, make_segment: Any, ada: Profile
) -> None:
    # given ada in browsing-shoes, mapped to hero-shoes
    shoes = make_segment("browsing-shoes", members=[ada])
    rule = _rule(hero, shoes, "hero-shoes")
    # when the site asks
    r = _decide(reader, "user_id:ada", "home_hero")
    # then she sees it, with the rule and segment as the reason
    assert r.status_code == 200, r.content
    assert r.json() == {
        "decisions": {
            "home_hero": {
                "variant": "hero-shoes",
                "payload": {"headline": "Shoes for you"},
                "holdout": False,
                "reason": {"rule": rule.id, "segment": "browsing-shoes"},
            }
        }
    }


def test_priority_then_lowest_id(hero: Placement, make_segment: Any, ada: Profile) -> None:
    # given ada in two segments, both mapped
    a = make_segment("a", members=[ada])
    b = make_segment("b", members=[ada])
    low = _rule(hero, a, "hero-shoes", priority=1)
    high = _rule(hero, b, "hero-vip", priority=2)
    # then the higher priority wins
    assert (
        decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].rule
        == (mapping.mapping_current().placements["home_hero"].rules[0])
    )
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-vip"
    # and at equal priority the lower id wins, whatever the order of the segments
    services.rule_update(rule=high, priority=1)
    got = decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"]
    assert (got.variant, got.rule and got.rule.id) == ("hero-shoes", low.id)


def test_date_window(hero: Placement, make_segment: Any, ada: Profile) -> None:
    # given a rule from tomorrow and one that ended an hour ago
    seg = make_segment("s", members=[ada])
    now = timezone.now()
    later = _rule(hero, seg, "hero-shoes", priority=5, starts_at=now + timedelta(days=1))
    _rule(hero, seg, "hero-vip", priority=4, ends_at=now - timedelta(hours=1))
    # then neither applies now
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].reason == "fallback"
    # and the first applies once its day has come (ends_at is exclusive)
    got = decide(profile_id=ada.pk, placements=["home_hero"], now=now + timedelta(days=2))
    assert got["home_hero"].rule is not None and got["home_hero"].rule.id == later.id


def test_only_activated_segments_count(hero: Placement, make_segment: Any, ada: Profile) -> None:
    # given ada in a segment below its minimum size, and in a disabled one
    small = make_segment("small", members=[ada], min_size=5)
    off = make_segment("off", members=[ada], enabled=False)
    _rule(hero, small, "hero-shoes", priority=2)
    _rule(hero, off, "hero-vip", priority=1)
    # then she gets the default
    got = decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"]
    assert (got.variant, got.reason) == ("hero-default", "fallback")
    # and once the small one reaches its minimum size it counts
    Segment.objects.filter(pk=small.pk).update(size=5)
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"


def test_unknown_profile_and_first_time_anonymous_id_get_defaults(
    reader: Client, hero: Placement
) -> None:
    for profile in ("anonymous_id:never-seen", "user_id:nobody", "email:x@example.com"):
        r = _decide(reader, profile, "home_hero")
        assert r.status_code == 200, r.content
        assert r.json()["decisions"]["home_hero"] == {
            "variant": "hero-default",
            "payload": {"headline": "Welcome"},
            "holdout": False,
            "reason": "fallback",
        }
    assert not Exposure.objects.exists()


def test_unknown_placement_is_an_entry_error(reader: Client, hero: Placement, ada: Profile) -> None:
    r = _decide(reader, "user_id:ada", "home_hero", "nope")
    assert r.status_code == 200
    assert r.json()["decisions"]["nope"] == {"error": "Unknown placement 'nope'."}
    assert r.json()["decisions"]["home_hero"]["variant"] == "hero-default"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"profile": "user_id:ada", "placements": []}, "placements"),
        ({"profile": "user_id:ada"}, "placements"),
        ({"profile": "ada", "placements": ["home_hero"]}, "profile"),
        ({"profile": "user_id:ada", "placements": "home_hero"}, "placements"),
        ({"profile": 7, "placements": ["home_hero"]}, "profile"),
        ({"profile": "user_id:a\x00", "placements": ["home_hero"]}, "profile"),
    ],
)
def test_bad_requests_name_the_field(
    reader: Client, hero: Placement, body: dict[str, Any], field: str
) -> None:
    r = reader.post("/api/v1/decide", body, content_type="application/json")
    assert r.status_code == 400, r.content
    assert list(r.json()["errors"]) == [field]


def test_without_consent_defaults_and_no_exposure(
    reader: Client, hero: Placement, make_segment: Any, ada: Profile
) -> None:
    # given a purpose gating personalization that is off by default, and a rule
    Purpose.objects.create(
        key="personalization", name="Personalization", gates_personalization=True
    )
    consent_config_clear()
    _rule(hero, make_segment("s", members=[ada]), "hero-shoes")
    # when ada has not consented, then the default, saying why
    entry = _decide(reader, "user_id:ada", "home_hero").json()["decisions"]["home_hero"]
    assert (entry["variant"], entry["reason"]) == ("hero-default", "no_consent")
    assert not Exposure.objects.exists()
    # when she grants it, then the rule applies; and withdrawn, the default again
    consent_grant(profile_id=ada.pk, purpose="personalization", source="api")
    assert _decide(reader, "user_id:ada", "home_hero").json()["decisions"]["home_hero"][
        "variant"
    ] == ("hero-shoes")
    consent_withdraw(profile_id=ada.pk, purpose="personalization", source="api")
    entry = _decide(reader, "user_id:ada", "home_hero").json()["decisions"]["home_hero"]
    assert entry["reason"] == "no_consent"
    consent_config_clear()


def test_membership_change_is_visible_at_once_while_the_mapping_is_cached(
    settings: Any, hero: Placement, make_segment: Any, ada: Profile
) -> None:
    # given a mapping cached for an hour
    settings.CDP = {**settings.CDP, "DECIDE_MAPPING_CHECK_MS": 3_600_000}
    seg = make_segment("s", members=[ada])
    _rule(hero, seg, "hero-shoes")
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"
    # when ada leaves the segment, then the next decision knows (memberships are not cached)
    members_remove(seg, [ada])
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == (
        "hero-default"
    )
    members_add(seg, [ada])
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"


def test_a_change_in_another_process_is_seen_after_the_check_interval(
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    hero: Placement,
    make_segment: Any,
    ada: Profile,
) -> None:
    # given this process's cached mapping, checked every 60 s
    settings.CDP = {**settings.CDP, "DECIDE_MAPPING_CHECK_MS": 60_000}
    seg = make_segment("s", members=[ada])
    rule = _rule(hero, seg, "hero-shoes")
    mapping.mapping_cache_clear()
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"
    cached = mapping.mapping_current()
    # when another process changes the rule: the row and the version change in the
    # database, but its on-commit drop of the cache happens in that process, not here
    Rule.objects.filter(pk=rule.pk).update(variant=variant("hero-vip"))
    with django_capture_on_commit_callbacks(execute=False):
        mapping.mapping_version_bump(kind="rule", key=str(rule.pk), action="saved")
    # then within the interval this process still has its copy
    assert mapping.mapping_current() is cached
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"
    # and at the next check it sees the new version and reloads
    cached.checked_at -= 61
    assert mapping.mapping_current().version == cached.version + 1
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-vip"


def test_a_change_here_is_seen_at_once(
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    hero: Placement,
    make_segment: Any,
    ada: Profile,
) -> None:
    # given a long check interval and a cached mapping
    settings.CDP = {**settings.CDP, "DECIDE_MAPPING_CHECK_MS": 60_000}
    seg = make_segment("s", members=[ada])
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == (
        "hero-default"
    )
    # when this process saves a rule (through the service, as API and admin do)
    with django_capture_on_commit_callbacks(execute=True):
        _rule(hero, seg, "hero-shoes")
    # then its next decision has it
    assert decide(profile_id=ada.pk, placements=["home_hero"])["home_hero"].variant == "hero-shoes"


def test_mapping_changed_signal(django_capture_on_commit_callbacks: Any, hero: Placement) -> None:
    seen: list[dict[str, Any]] = []

    def listen(sender: Any, **kw: Any) -> None:
        seen.append({k: kw[k] for k in ("kind", "key", "action")})

    mapping.mapping_changed.connect(listen)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.variant_update(variant=variant("hero-vip"), name="VIP")
        with django_capture_on_commit_callbacks(execute=True):
            services.variant_delete(variant=variant("hero-vip"))
    finally:
        mapping.mapping_changed.disconnect(listen)
    assert seen == [
        {"kind": "variant", "key": "hero-vip", "action": "saved"},
        {"kind": "variant", "key": "hero-vip", "action": "deleted"},
    ]


def test_exposures_written_in_bulk(
    settings: Any, reader: Client, hero: Placement, make_segment: Any, ada: Profile
) -> None:
    # given buffered exposures (flushed by the thread every 10 minutes)
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 600_000}
    rule = _rule(hero, make_segment("s", members=[ada]), "hero-shoes")
    side = services.placement_create(key="side", name="Side")
    # when ada is decided three times, once with a placement without default
    for _ in range(3):
        _decide(reader, "user_id:ada", "home_hero", "side")
    # then nothing is written yet, three rows wait; a flush writes them at once
    assert not Exposure.objects.exists()
    assert exposures_pending() == 3
    assert exposures_flush() == 3
    rows = list(Exposure.objects.values_list("profile_id", "placement_id", "variant_id", "rule_id"))
    assert rows == [(ada.pk, hero.pk, variant("hero-shoes").pk, rule.pk)] * 3
    assert side.pk not in {r[1] for r in rows}  # nothing was shown there


def test_exposure_of_a_profile_erased_before_the_flush_is_skipped(
    settings: Any, hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    # given two buffered exposures
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 600_000}
    kept, gone = make_profile(("user_id", "k")), make_profile(("user_id", "g"))
    decide(profile_id=kept.pk, placements=["home_hero"])
    decide(profile_id=gone.pk, placements=["home_hero"])
    # when one profile is deleted before the flush
    Profile.objects.filter(pk=gone.pk).delete()
    # then the other's is written
    assert exposures_flush() == 1
    assert list(Exposure.objects.values_list("profile_id", flat=True)) == [kept.pk]
