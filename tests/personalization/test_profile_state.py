"""The one-query reader of a profile's state (``profile_state_for``, PostgreSQL)
against the same facts read one by one (``profile_state_load``): consent under
each kind of purpose, current and exited memberships, holdout keys, merges."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.consent.models import Purpose
from apps.consent.selectors import consent_config_clear
from apps.consent.services.consent import consent_record
from apps.identity.models import Profile
from apps.personalization import decide as decide_module
from apps.personalization.decide import profile_state_for, profile_state_load
from apps.personalization.models import HoldoutKey
from apps.segments.models import Membership, MembershipSource, Segment, SegmentKind


@pytest.fixture
def django_settings(settings: Any) -> Any:
    return settings


pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one query is PostgreSQL's"),
]

PURPOSES = {
    "none": None,
    "opt_in": {"default_granted": False},
    "opt_out": {"default_granted": True},
    "opt_in_expiring": {"default_granted": False, "expiry_days": 30},
}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    purpose=st.sampled_from(sorted(PURPOSES)),
    statement=st.sampled_from([None, "granted", "denied", "withdrawn", "granted_long_ago"]),
    memberships=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=6),
    pinned_key=st.booleans(),
)
def test_one_query_reads_what_the_step_by_step_reader_reads(
    django_settings: Any,
    make_profile: Callable[..., Profile],
    purpose: str,
    statement: str | None,
    memberships: list[tuple[int, bool]],
    pinned_key: bool,
) -> None:
    # given a consent purpose of each kind, a statement, memberships and a key
    # (the consent log keeps its purposes: earlier examples' are switched off)
    Purpose.objects.update(gates_personalization=False)
    key = f"perso-{Purpose.objects.count()}"
    if PURPOSES[purpose] is not None:
        Purpose.objects.create(
            key=key,
            name="Personalization",
            gates_personalization=True,
            **PURPOSES[purpose],
        )
    consent_config_clear()
    decide_module._template = None
    user_id = f"ada-{Profile.objects.count()}-{key}"
    profile = make_profile(("user_id", user_id))
    now = timezone.now()
    if statement is not None and PURPOSES[purpose] is not None:
        consent_record(
            profile_id=profile.pk,
            purpose=key,
            status=statement.removesuffix("_long_ago"),
            source="api",
            given_at=now - timedelta(days=60 if statement.endswith("long_ago") else 0),
        )
    Segment.objects.all().delete()
    segments = [
        Segment.objects.create(key=f"s{i}", name=f"S{i}", kind=SegmentKind.CLUSTER)
        for i in range(4)
    ]
    for i, exited in dict(memberships).items():
        Membership.objects.create(
            segment=segments[i],
            profile=profile,
            entered_at=now,
            changed_at=now,
            exited_at=now if exited else None,
            source=MembershipSource.CLUSTER,
            reason={},
        )
    if pinned_key:
        HoldoutKey.objects.create(profile=profile, key="kept-from-before")
    # when the state is read both ways (the one query's SQL built for another id
    # first, then reused with this one's: as it is between requests)
    django_settings.CDP = {**django_settings.CDP, "CONSENT_CACHE_SECONDS": 600}
    assert profile_state_for("user_id:nobody-at-all") is None
    fast = profile_state_for(f"user_id:{user_id}")
    slow = profile_state_load(profile.pk, full=True)
    # then they agree
    assert fast == slow
    django_settings.CDP = {**django_settings.CDP, "CONSENT_CACHE_SECONDS": 0}


def test_a_merged_profile_and_an_unknown_one(make_profile: Callable[..., Profile]) -> None:
    survivor = make_profile(("user_id", "s"))
    absorbed = make_profile(("user_id", "a"))
    Profile.objects.filter(pk=absorbed.pk).update(merged_into_id=survivor.pk)
    state = profile_state_for("user_id:a")
    assert state is not None and state.profile_id == survivor.pk
    assert profile_state_for("user_id:nobody") is None
    assert profile_state_for(f"id:{survivor.pk}") == profile_state_load(survivor.pk)


# After a restart of PostgreSQL (or of a PgBouncer in front of it) each thread's
# persistent connection is broken, or its prepared statement gone: the next
# decision must still answer. A real backend is terminated from another
# connection, as a restart does.


@pytest.fixture
def persistent_connection(django_settings: Any) -> Iterator[None]:
    """Connections kept between requests with health checks, as in production; the
    identity rules and consent configuration cached, as between requests (so the
    one query is the first of a decision)."""
    django_settings.CDP = {
        **django_settings.CDP,
        "DECIDE_MAPPING_CHECK_MS": 600_000,
        "CONSENT_CACHE_SECONDS": 600,
    }
    keys = ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "OPTIONS")
    saved = {k: connection.settings_dict[k] for k in keys}
    connection.close()
    # prepared statements on (Django turns them off unless OPTIONS asks for them)
    options = {**saved["OPTIONS"], "prepare_threshold": 5}
    connection.settings_dict.update(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=True, OPTIONS=options)
    decide_module._template = None
    yield
    connection.close()
    connection.settings_dict.update(saved)


def _terminate_backend() -> None:
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        # wait until the backend is gone, so the next query sees it dead
        for _ in range(100):
            row = other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
            if row.fetchone() is None:
                break
            time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_restarted_database_is_seen_by_the_health_check_at_the_next_request(
    persistent_connection: None, make_profile: Callable[..., Profile]
) -> None:
    # given a thread's connection, used by one decision, then broken by a restart
    profile = make_profile(("user_id", "ada"))
    assert profile_state_for("user_id:ada") is not None
    broken = connection.connection
    _terminate_backend()
    # when the next request starts (Django's request_started) and decides
    close_old_connections()
    state = profile_state_for("user_id:ada")
    # then it answers, on a new connection
    assert state is not None and state.profile_id == profile.pk
    assert connection.connection is not broken and not connection.connection.broken


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_after_the_health_check_is_retried_once(
    persistent_connection: None, make_profile: Callable[..., Profile]
) -> None:
    # given a connection health-checked for this request, then broken
    profile = make_profile(("user_id", "ada"))
    close_old_connections()
    assert profile_state_for("user_id:ada") is not None
    _terminate_backend()
    # when the same request decides again
    state = profile_state_for("user_id:ada")
    # then it answers, on a new connection
    assert state is not None and state.profile_id == profile.pk
    assert not connection.connection.broken


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_the_server_forgot_is_run_again(
    persistent_connection: None, make_profile: Callable[..., Profile]
) -> None:
    # given the one query prepared on this connection, then forgotten by the server
    # (as PgBouncer in transaction mode does without max_prepared_statements)
    profile = make_profile(("user_id", "ada"))
    assert profile_state_for("user_id:ada") is not None
    assert profile_state_for("user_id:nobody") is None
    with psycopg.Cursor(connection.connection) as cursor:
        assert cursor.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 1
    # (on the wire, behind psycopg's back, which would forget them too otherwise)
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")
    # when the next decisions run
    states = [profile_state_for("user_id:ada") for _ in range(3)]
    # then each answers
    assert all(s is not None and s.profile_id == profile.pk for s in states)


@pytest.mark.django_db(transaction=True)
def test_a_decision_sends_no_health_check_of_its_own(
    persistent_connection: None, make_profile: Callable[..., Profile], monkeypatch: Any
) -> None:
    # given a persistent connection with health checks on, at a new request's start
    profile = make_profile(("user_id", "ada"))
    assert profile_state_for("user_id:ada") is not None
    close_old_connections()
    checks: list[bool] = []
    real = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(True) or real())
    # when the request decides
    state = profile_state_for("user_id:ada")
    # then the one query went without a SELECT 1 before it, and the connection
    # counts as checked for the rest of the request
    assert state is not None and state.profile_id == profile.pk
    assert checks == []
    assert connection.health_check_done
