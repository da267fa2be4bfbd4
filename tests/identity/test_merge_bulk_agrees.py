"""The bulk merge (what a dedup run merges through) and ``profile_merge`` pair by
pair agree on everything a merge touches, in every app: profiles, identifiers,
events, features, segment memberships, consent records and states, exposures,
holdout keys and the merge records; and splitting the bulk merges back, last first,
gives back every profile as it was. Hypothesis draws the people (with or without
an account, events, consent, exposures) and the pairs (chains, repeats, refusals)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import event, given, settings
from hypothesis import strategies as st

from apps.consent.models import ConsentRecord, ConsentState
from apps.consent.selectors import consent_config_clear
from apps.consent.services import consent_grant
from apps.events.models import Event
from apps.identity.models import Identifier, Profile, ProfileMerge
from apps.identity.services import (
    MergeRefused,
    MergeRequest,
    profile_merge,
    profile_merge_bulk,
    profile_split,
)
from apps.personalization import services as perso
from apps.personalization.holdouts import holdout_key
from apps.personalization.models import Exposure, Placement
from apps.segments.memberships import segment_save
from apps.segments.models import Membership, ProfileFeatures
from tests.consent.factories import PurposeFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)

person = st.fixed_dictionaries(
    {
        "account": st.booleans(),
        "views": st.integers(0, 3),
        "orders": st.lists(st.integers(1, 500), max_size=2),
        "consent": st.booleans(),
        "exposures": st.integers(0, 2),
        "city": st.sampled_from(["Oslo", "Bergen", ""]),
    }
)


class _Rollback(Exception):
    pass


def _people(post_events: Any, people: list[dict[str, Any]], placement: Placement) -> list[Any]:
    """One profile per person, built from events as the product builds them."""
    batch: list[dict[str, Any]] = []
    for i, p in enumerate(people):
        at = T0 + timedelta(days=i)
        who: dict[str, Any] = {"anonymousId": f"device-{i}"}
        if p["account"]:
            who["userId"] = f"user-{i}"
        traits = {"name": f"Person {i}", **({"city": p["city"]} if p["city"] else {})}
        batch.append(
            {"type": "identify", "messageId": f"id-{i}", "traits": traits,
             "timestamp": at.isoformat(), **who}
        )  # fmt: skip
        for v in range(p["views"]):
            batch.append(
                {"type": "page", "messageId": f"view-{i}-{v}", "name": "Home",
                 "timestamp": (at + timedelta(hours=v + 1)).isoformat(), **who}
            )  # fmt: skip
        for o, amount in enumerate(p["orders"]):
            batch.append(
                {"type": "track", "event": "Order Completed", "messageId": f"order-{i}-{o}",
                 "properties": {"revenue": amount, "category": "shoes"},
                 "timestamp": (at + timedelta(hours=10 + o)).isoformat(), **who}
            )  # fmt: skip
    assert post_events("/v1/batch", {"batch": batch}).status_code == 200
    ids = [
        Identifier.objects.get(type="anonymous_id", value=f"device-{i}").profile_id
        for i in range(len(people))
    ]
    exposures = []
    for i, (pid, p) in enumerate(zip(ids, people, strict=True)):
        if p["consent"]:
            consent_grant(profile_id=pid, purpose="marketing", source="api",
                          given_at=T0 + timedelta(days=i, minutes=5))  # fmt: skip
        exposures += [
            Exposure(
                profile_id=pid,
                placement_id=placement.pk,
                variant_id=placement.default_variant_id,
                rule_id=None,
                holdout=False,
                at=T0 + timedelta(days=i, minutes=e),
            )
            for e in range(p["exposures"])
        ]
    Exposure.objects.bulk_create(exposures)
    return ids


def _world() -> dict[str, Any]:
    """Everything a merge may change, as plain values (ids kept: both runs start
    from the same rows)."""
    skip = {"updated_at"}
    return {
        "profiles": sorted(
            (str(p.id), p.merged_into_id, p.traits, p.trait_timestamps, p.first_seen, p.last_seen)
            for p in Profile.objects.all()
        ),
        "identifiers": sorted(Identifier.objects.values_list("id", "profile_id")),
        "events": sorted(Event.objects.values_list("id", "profile_id")),
        "features": sorted(
            (
                str(f.profile_id),
                {
                    k: v
                    for k, v in vars(f).items()
                    if not k.startswith("_") and k not in skip | {"profile_id"}
                },
            )
            for f in ProfileFeatures.objects.all()
        ),
        "memberships": sorted(
            Membership.objects.filter(exited_at__isnull=True).values_list(
                "segment_id", "profile_id"
            )
        ),
        "consent_records": sorted(ConsentRecord.objects.values_list("id", "profile_id")),
        "consent_states": sorted(
            ConsentState.objects.values_list("profile_id", "purpose_id", "status", "record_id")
        ),
        "exposures": sorted(Exposure.objects.values_list("id", "profile_id")),
        # The key each profile's holdouts hash (a pinned row, or its own id). Pair
        # by pair, a survivor absorbed later in the batch pins a row of its own
        # too; the bulk merge pins only the last survivors: the keys are the same.
        "holdout_keys": sorted(
            (str(pid), holdout_key(pid)) for pid in Profile.objects.values_list("id", flat=True)
        ),
        "merges": sorted(
            (
                str(r.survivor_id),
                str(r.absorbed_id),
                r.reason,
                str(r.details),
                str(r.survivor_snapshot),
                str(sorted(r.absorbed_snapshot["identifiers"])),
                str({k: v for k, v in r.absorbed_snapshot.items() if k != "identifiers"}),
            )
            for r in ProfileMerge.objects.all()
        ),
    }


def _live(pid: uuid.UUID) -> uuid.UUID:
    profile = Profile.objects.get(pk=pid)
    while profile.merged_into_id is not None:
        profile = Profile.objects.get(pk=profile.merged_into_id)
    return profile.id


def test_bulk_merges_agree_with_merges_one_by_one_and_split_back(
    post_events: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given a purpose, a rule segment on page views and a placement with exposures
    PurposeFactory(key="marketing")
    consent_config_clear()
    segment_save(
        key="viewers",
        name="Viewers",
        condition={"type": "feature", "name": "page_views", "op": "gte", "value": 2},
    )
    placement = perso.placement_create(
        key="hero",
        name="Hero",
        default_variant={"key": "hero-default", "name": "Default", "payload": {"headline": "Hi"}},
    )

    @settings(max_examples=40, deadline=None)
    @given(
        people=st.lists(person, min_size=3, max_size=5),
        pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=8),
    )
    def check(people: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> None:
        try:
            with transaction.atomic():
                ids = _people(post_events, people, placement)
                wanted = [(ids[i % len(ids)], ids[j % len(ids)]) for i, j in pairs]
                wanted = [(a, b) for a, b in wanted if a != b]
                before = _world()

                # when merged pair by pair, as an admin would
                with transaction.atomic():
                    done = []
                    for a, b in wanted:
                        if _live(a) == _live(b):
                            continue
                        try:
                            with transaction.atomic():
                                record = profile_merge(
                                    profile_ids=(a, b), reason="match_score", details={"k": 1}
                                )
                        except MergeRefused:
                            continue
                        done.append(record.absorbed_id)
                    one_by_one = _world()
                    transaction.set_rollback(True)

                # and in one bulk merge, as a dedup run does
                outcomes = profile_merge_bulk(
                    requests=[MergeRequest(profile_ids=pair, details={"k": 1}) for pair in wanted],
                    reason="match_score",
                )

                # then both leave the same world
                assert _world() == one_by_one
                absorbed = [o.merge.absorbed_id for o in outcomes if o.merge is not None]
                assert absorbed == done
                event(f"merges: {len(absorbed)}, refused: {sum(bool(o.refused) for o in outcomes)}")

                # when every bulk merge is split back, the last first
                for pid in reversed(absorbed):
                    profile_split(profile_id=pid)

                # then every profile and row is back where it was, exposures too
                after = _world()
                expected = dict(before)
                after.pop("merges")
                expected.pop("merges")
                assert after == expected
                raise _Rollback
        except _Rollback:
            pass
        consent_config_clear()

    check()
