"""Exposures at the flush: a bad row loses only itself, an absorbed profile's
exposures land on its survivor, and the one-statement writer (PostgreSQL) writes
what the ORM writer writes."""

from __future__ import annotations

import logging
import time
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
from apps.personalization import exposures as exposures_module
from apps.personalization import services
from apps.personalization.decide import decide
from apps.personalization.exposures import (
    PendingExposure,
    _write_orm,
    _write_sql,
    exposures_flush,
    exposures_pending,
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
            "profile_id",
            "origin_profile_id",
            "placement_id",
            "variant_id",
            "rule_id",
            "holdout",
            "at",
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
        [
            (a.pk, None, hero.pk, default, None, False, now),
            (b.pk, None, hero.pk, default, None, False, now),
        ],
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
    # then the exposure is the live survivor's, with the rule and variant decided,
    # and it remembers the profile it was decided for
    assert list(
        Exposure.objects.values_list("profile_id", "origin_profile_id", "rule_id", "variant_id")
    ) == [(last, anon.pk, rule.pk, variant("hero-vip").pk)]


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


def _exposure(profile: Profile, placement: Placement, *, holdout: bool = False) -> PendingExposure:
    return PendingExposure(
        profile_id=profile.pk,
        placement_id=placement.pk,
        variant_id=variant("hero-default").pk,
        rule_id=None,
        holdout=holdout,
        at=timezone.now(),
    )


@postgres_only
def test_a_failure_partway_through_the_row_by_row_writer_keeps_only_the_unwritten_rows(
    buffered: None, hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    # given a database that refuses any batch of several exposures (as a foreign
    # key deleted under it would) and fails, as a lost connection does, on the one
    # held-out exposure written alone
    table = Exposure._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION f3_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (SELECT count(*) FROM new_rows) > 1 THEN
                    RAISE EXCEPTION 'batch refused' USING ERRCODE = '23503';
                END IF;
                IF EXISTS (SELECT 1 FROM new_rows WHERE holdout) THEN
                    RAISE EXCEPTION 'canceled' USING ERRCODE = '57014';
                END IF;
                RETURN NULL;
            END $$"""
        )
        cursor.execute(
            f'CREATE TRIGGER f3_refuse AFTER INSERT ON "{table}" REFERENCING NEW TABLE '
            "AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION f3_refuse()"
        )
    a, b, c = (make_profile(("user_id", x)) for x in "abc")
    exposures_record([_exposure(a, hero), _exposure(b, hero, holdout=True), _exposure(c, hero)])
    # when the buffer is flushed: the first row is written alone, the second fails
    assert exposures_flush() == 1
    # then only the two unwritten rows are kept, and written at the next flush
    assert exposures_pending() == 2
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER f3_refuse ON "{table}"')
    assert exposures_flush() == 2
    # each exactly once
    assert sorted(Exposure.objects.values_list("profile_id", flat=True), key=str) == sorted(
        [a.pk, b.pk, c.pk], key=str
    )


@pytest.mark.django_db(transaction=True)
def test_an_unexpected_error_in_the_flush_thread_keeps_the_rows_and_the_thread(
    settings: Any,
    hero: Placement,
    make_profile: Callable[..., Profile],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given the flush thread running every 20 ms, and a buffered row it cannot write
    # for a reason that is not the database's (a bug: here not an exposure at all)
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 20}
    bad: Any = object()
    with caplog.at_level(logging.ERROR, logger="apps.personalization.exposures"):
        exposures_record([bad])
        exposures_module._wake.set()  # a thread started by an earlier test may sleep long
        # when it has tried
        deadline = time.monotonic() + 5
        while "Exposure flush failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    # then the row is still buffered, the thread alive, and the log names the error
    pending = exposures_pending()
    thread = exposures_module._thread
    with exposures_module._lock:
        exposures_module._buffer[:] = [r for r in exposures_module._buffer if r is not bad]
    assert "Exposure flush failed (AttributeError)" in caplog.text
    assert pending == 1
    assert thread is not None and thread.is_alive()
    # and once the bad row is gone, the same thread writes the next ones
    profile = make_profile(("user_id", "ada"))
    exposures_record([_exposure(profile, hero)])
    deadline = time.monotonic() + 5
    while not Exposure.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(Exposure.objects.values_list("profile_id", flat=True)) == [profile.pk]
    assert exposures_module._thread is thread
