"""The one-query reader of a profile's state (``profile_state_for``, PostgreSQL)
against the same facts read one by one (``profile_state_load``): consent under
each kind of purpose, current and exited memberships, holdout keys, merges."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
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
