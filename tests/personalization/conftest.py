"""Shared fixtures: API clients, segments with members written as the segments
app writes them, and a small content mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.api_auth.services import api_token_create, service_user_ensure
from apps.identity.models import Profile
from apps.personalization import services
from apps.personalization.exposures import exposures_flush
from apps.personalization.keys import origins_cache_clear
from apps.personalization.mapping import mapping_cache_clear
from apps.personalization.models import ContentVariant, Placement
from apps.segments.models import Membership, MembershipSource, Segment, SegmentKind


@pytest.fixture(autouse=True)
def _fresh_caches(settings: Any) -> Iterator[None]:
    # Every decision checks the mapping version and writes its exposures at once,
    # unless a test sets the intervals itself.
    settings.CDP = {**settings.CDP, "DECIDE_MAPPING_CHECK_MS": 0, "DECIDE_EXPOSURE_FLUSH_MS": 0}
    mapping_cache_clear()
    origins_cache_clear()
    yield
    exposures_flush()
    mapping_cache_clear()
    origins_cache_clear()


def _token(*, read_only: bool) -> str:
    user = service_user_ensure(name="read" if read_only else "write", read_only=read_only)
    return api_token_create(name="t", user=user)[1]


@pytest.fixture
def writer(db: None) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {_token(read_only=False)}")


@pytest.fixture
def reader(db: None) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {_token(read_only=True)}")


@pytest.fixture
def make_segment(db: None) -> Callable[..., Segment]:
    """``make_segment("shoes", members=[p1, p2], min_size=0)``: a segment whose
    current members are these profiles."""

    def make(
        key: str,
        *,
        members: list[Profile] = (),  # type: ignore[assignment]
        min_size: int = 0,
        enabled: bool = True,
        kind: str = SegmentKind.CLUSTER,
    ) -> Segment:
        segment = Segment.objects.create(
            key=key,
            name=key.title(),
            kind=kind,
            min_size=min_size,
            enabled=enabled,
            size=len(members),
        )
        members_add(segment, members)
        return segment

    return make


def members_add(segment: Segment, profiles: list[Profile]) -> None:
    now = timezone.now()
    Membership.objects.bulk_create(
        Membership(
            segment=segment,
            profile=p,
            entered_at=now,
            changed_at=now,
            source=MembershipSource.CLUSTER,
            reason={"test": True},
        )
        for p in profiles
    )
    Segment.objects.filter(pk=segment.pk).update(
        size=Membership.objects.filter(segment=segment, exited_at__isnull=True).count()
    )


def members_remove(segment: Segment, profiles: list[Profile]) -> None:
    Membership.objects.filter(segment=segment, profile__in=profiles, exited_at__isnull=True).update(
        exited_at=timezone.now()
    )


@pytest.fixture
def hero(db: None) -> Placement:
    """``home_hero`` with the default ``hero-default`` and two more variants."""
    placement = services.placement_create(
        key="home_hero",
        name="Home hero",
        default_variant={
            "key": "hero-default",
            "name": "Default",
            "payload": {"headline": "Welcome"},
        },
    )
    for key, headline in (("hero-shoes", "Shoes for you"), ("hero-vip", "Hello, VIP")):
        services.variant_create(
            placement=placement, key=key, name=key, payload={"headline": headline}
        )
    return placement


def variant(key: str) -> ContentVariant:
    return ContentVariant.objects.get(key=key)
