"""Continuity across runs: a cluster that vanishes has its segment emptied and
disabled, a new one gets a new segment; and the swap of a run's clusters is one
transaction that readers never see half of."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from apps.clustering.models import RunStatus
from apps.clustering.run import recluster
from apps.segments.models import Membership, MembershipChange, ProfileFeatures, Segment

from .archetypes import ARCHETYPES, archetype_population
from .test_recovery import labels_of


@pytest.mark.django_db
def test_a_vanished_cluster_is_emptied_and_a_new_one_gets_a_segment(make_config):
    # given a run over four archetypes
    first_population = archetype_population(150, archetypes=ARCHETYPES[:4])
    config = make_config(k_max=6, min_cluster_size=5)
    first = recluster(config_id=config.pk)
    assert first is not None and first.status == RunStatus.SUCCEEDED and first.chosen_k == 4
    labels = labels_of(first, first_population.profile_ids)
    gone_index = int(labels[first_population.labels == 3][0])  # the browsers who never buy
    gone = first.clusters.get(index=gone_index)
    assert "never buys" in gone.persona_name.lower()
    gone_members = [
        pid
        for pid, a in zip(first_population.profile_ids, first_population.labels, strict=True)
        if a == 3
    ]

    # when the never-buyers' features are gone, and lapsed customers arrive
    ProfileFeatures.objects.filter(profile_id__in=gone_members).delete()
    archetype_population(150, archetypes=[ARCHETYPES[4]], seed=5)
    second = recluster(config_id=config.pk)

    # then the three that stayed keep their segments, the lapsed have a new one
    assert second is not None and second.status == RunStatus.SUCCEEDED, second and second.error
    assert second.chosen_k == 4
    kept = {c.segment_id for c in second.clusters.exclude(previous=None)}
    assert kept == {c.segment_id for c in first.clusters.exclude(pk=gone.pk)}
    new = second.clusters.get(previous=None)
    assert new.segment_id not in {c.segment_id for c in first.clusters.all()}
    assert "lapsed" in new.persona_name.lower()
    assert Segment.objects.get(pk=new.segment_id).size == 150
    # and the vanished cluster's segment is empty and disabled, its members told why
    segment = Segment.objects.get(pk=gone.segment_id)
    assert (segment.size, segment.enabled) == (0, False)
    assert not Membership.objects.filter(segment=segment, exited_at__isnull=True).exists()
    exits = Membership.objects.filter(segment=segment)
    assert {m.exit_reason["text"] for m in exits} == {f"the cluster is gone at run {second.pk}"}
    assert MembershipChange.objects.filter(segment=segment, kind="exited").count() == 150


@pytest.mark.django_db(transaction=True)
def test_a_reader_never_sees_half_a_run(make_config, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: a reader on another connection during the swap")
    # given a first run, and a second run over changed data, paused after it has
    # written every membership and outbox row and given its first segment its
    # new version
    population = archetype_population(60)
    config = make_config(k_max=6, min_cluster_size=5)
    first = recluster(config_id=config.pk)
    assert first is not None and first.status == RunStatus.SUCCEEDED
    before = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )
    # Everyone's orders doubled: some move, and the new version differs.
    for row in ProfileFeatures.objects.filter(profile_id__in=population.profile_ids[:100]):
        row.orders_count = row.orders_count * 3 + 1
        row.save()

    from apps.segments import written

    original = written._segment_written
    seen: list[set[Any]] = []
    calls: list[int] = []

    def read_meanwhile() -> None:
        # Another connection, as a reader of the API would be.
        try:
            seen.append(
                set(
                    Membership.objects.filter(exited_at__isnull=True).values_list(
                        "segment_id", "profile_id"
                    )
                )
            )
        finally:
            connection.close()

    def swap_then_read(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append(args[0])
        if len(calls) == 1:
            reader = threading.Thread(target=read_meanwhile)
            reader.start()
            reader.join(10)
        return result

    monkeypatch.setattr(written, "_segment_written", swap_then_read)

    # when the second run writes
    second = recluster(config_id=config.pk)

    # then the reader, half-way through, saw the first run's memberships whole
    assert second is not None and second.status == RunStatus.SUCCEEDED
    assert len(calls) >= 2
    assert seen == [before]
    after = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )
    assert after != before and len(after) == 300
