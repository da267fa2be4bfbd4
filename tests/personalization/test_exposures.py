"""Exposures at the flush: a bad row loses only itself, an absorbed profile's
exposures land on its survivor, and the one-statement writer (PostgreSQL) writes
what the ORM writer writes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.identity.models import Profile
from apps.identity.services import profile_merge
from apps.personalization import services
from apps.personalization.decide import decide
from apps.personalization.exposures import (
    PendingExposure,
    _write_orm,
    _write_sql,
    exposures_flush,
    exposures_record,
)
from apps.personalization.models import Exposure, Placement

from .conftest import variant

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement writer is PostgreSQL's"
)


def _rows() -> list[tuple[Any, ...]]:
    return sorted(
        Exposure.objects.values_list(
            "profile_id", "placement_id", "variant_id", "rule_id", "holdout", "at"
        ),
        key=str,
    )


@pytest.fixture
def buffered(settings: Any) -> None:
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 600_000}


def test_a_bad_row_loses_only_itself(
    buffered: None,
    hero: Placement,
    make_profile: Callable[..., Profile],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given two good exposures and, between them, one the database refuses (no time)
    a, b = make_profile(("user_id", "a")), make_profile(("user_id", "b"))
    now = timezone.now()
    default = variant("hero-default").pk

    def row(profile: Profile, at: Any) -> PendingExposure:
        return PendingExposure(
            profile_id=profile.pk,
            placement_id=hero.pk,
            variant_id=default,
            rule_id=None,
            holdout=False,
            at=at,
        )

    exposures_record([row(a, now), row(b, None), row(b, now)])
    # when the buffer is flushed
    with caplog.at_level(logging.WARNING, logger="apps.personalization.exposures"):
        written = exposures_flush()
    # then the two good rows are written, the bad one is dropped and counted
    assert written == 2
    assert _rows() == sorted(
        [(a.pk, hero.pk, default, None, False, now), (b.pk, hero.pk, default, None, False, now)],
        key=str,
    )
    assert "1 exposures dropped" in caplog.text
    # and nothing is kept to fail again at the next flush
    assert exposures_flush() == 0


def test_exposures_of_a_profile_merged_before_the_flush_land_on_the_survivor(
    buffered: None, hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given a decision for an anonymous profile, buffered
    anon = make_profile(("anonymous_id", "a-1"))
    rule = services.rule_create(
        placement=hero, segment=make_segment("s", members=[anon]), variant=variant("hero-vip")
    )
    decide(profile_id=anon.pk, placements=["home_hero"])
    # when it is merged before the flush, and the profile it went into merged again
    first = profile_merge(
        profile_ids=(make_profile(("user_id", "k")).pk, anon.pk), reason="test"
    ).survivor_id
    last = profile_merge(
        profile_ids=(make_profile(("email", "o@example.com")).pk, first), reason="test"
    ).survivor_id
    assert Profile.objects.get(pk=last).merged_into_id is None
    exposures_flush()
    # then the exposure is the live survivor's, with the rule and variant decided
    assert list(Exposure.objects.values_list("profile_id", "rule_id", "variant_id")) == [
        (last, rule.pk, variant("hero-vip").pk)
    ]


def _pending(profiles: list[Profile], hero: Placement, choices: list[tuple[int, ...]]) -> Any:
    now = timezone.now().replace(microsecond=0)
    default = variant("hero-default").pk
    shoes = variant("hero-shoes").pk
    return [
        PendingExposure(
            profile_id=profiles[p].pk,
            placement_id=hero.pk if placement else 10**9,  # or a deleted placement
            variant_id=(default, shoes, 10**9, None)[v],  # 10**9: a deleted variant
            rule_id=None,
            holdout=bool(h),
            at=now + timedelta(seconds=s),
        )
        for p, placement, v, h, s in choices
    ]


@postgres_only
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    choices=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from([1, 1, 1, 0]),
            st.integers(0, 3),
            st.integers(0, 1),
            st.integers(0, 100),
        ),
        max_size=30,
    ),
    merges=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=3),
    erased=st.sets(st.integers(0, 4), max_size=2),
)
def test_the_one_statement_writer_writes_what_the_orm_writer_writes(
    hero: Placement,
    make_profile: Callable[..., Profile],
    choices: list[tuple[int, ...]],
    merges: list[tuple[int, int]],
    erased: set[int],
) -> None:
    # given five profiles, some merged (chains too) and some deleted
    Exposure.objects.all().delete()
    profiles = [make_profile() for _ in range(5)]
    for into, gone in merges:
        if into != gone:
            # a merge's forwarding pointer (chains, even a cycle: ends nowhere live)
            Profile.objects.filter(pk=profiles[gone].pk).update(merged_into_id=profiles[into].pk)
    pending = _pending(profiles, hero, choices)
    Profile.objects.filter(pk__in=[profiles[i].pk for i in erased]).delete()
    # when each writer writes the same rows
    _write_orm(pending)
    by_orm = _rows()
    Exposure.objects.all().delete()
    _write_sql(pending)
    by_sql = _rows()
    # then they wrote the same rows
    assert by_sql == by_orm
    Profile.objects.all().delete()
