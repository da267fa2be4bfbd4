"""A run recovers known archetypes (adjusted Rand index at least 0.9, the right
k), on two independently made populations, and a second run over slightly
changed data keeps every persona's name and segment."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from apps.clustering.models import ClusteringRun, RunStatus
from apps.clustering.run import recluster
from apps.segments.models import Membership, MembershipChange, ProfileFeatures, Segment

from .archetypes import BLOB_FEATURES, archetype_population, blobs_population

pytestmark = pytest.mark.django_db


def labels_of(run: ClusteringRun, profile_ids: Sequence[uuid.UUID]) -> np.ndarray:
    """Each profile's cluster index in ``run``, read from current memberships (-1: none)."""
    by_segment = {c.segment_id: c.index for c in run.clusters.all()}
    current = dict(
        Membership.objects.filter(
            segment_id__in=list(by_segment), exited_at__isnull=True
        ).values_list("profile_id", "segment_id")
    )
    return np.array([by_segment.get(current.get(pid), -1) for pid in profile_ids])


@pytest.mark.parametrize("k_selection", ["silhouette", "calinski_harabasz"])
def test_five_archetypes_are_recovered_with_the_right_k(make_config, k_selection):
    # given profiles of five archetypes
    population = archetype_population(200)
    config = make_config(k_selection=k_selection, k_max=7)

    # when the config runs
    run = recluster(config_id=config.pk)

    # then it picks five clusters that are the archetypes
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.chosen_k == 5
    assert [c["k"] for c in run.candidates] == [2, 3, 4, 5, 6, 7]
    assert all(c[k_selection] is not None for c in run.candidates)
    assert adjusted_rand_score(population.labels, labels_of(run, population.profile_ids)) >= 0.9
    # and each cluster is a segment of kind "cluster" with a distinct persona
    clusters = list(run.clusters.select_related("segment"))
    names = [c.persona_name for c in clusters]
    assert len(set(names)) == 5
    assert all(c.segment.kind == "cluster" and c.segment.name == c.persona_name for c in clusters)
    assert sorted(c.size for c in clusters) == [200] * 5
    assert sum(c.segment.size for c in clusters) == 1000
    assert run.population_size == 1000
    assert set(run.timings) >= {"extract", "fit", "choose", "assign", "write"}


def test_personas_say_what_sets_each_archetype_apart(make_config):
    # given the five archetypes, clustered
    population = archetype_population(200)
    run = recluster(config_id=make_config(k_max=6).pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    labels = labels_of(run, population.profile_ids)

    # when each archetype's cluster is looked up
    def persona(archetype: int) -> str:
        index = np.bincount(labels[population.labels == archetype]).argmax()
        return run.clusters.get(index=index).persona_name

    # then the names speak of the archetype
    assert "high spend" in persona(0).lower()  # loyal big spenders
    assert "one order" in persona(2).lower()  # one-time buyers
    assert persona(3) == "Browses, never buys"  # browsers who never buy
    assert "lapsed" in persona(4).lower()  # lapsed customers
    never = run.clusters.get(persona_name="Browses, never buys")
    assert never.feature_means["orders_count"]["cluster"] == 0.0
    assert never.distinctive[0]["word"] in {"never buys", "browses"}
    assert "orders_count: 0 against" in never.persona_description


def test_a_second_run_on_changed_data_keeps_names_and_segments(make_config):
    # given a first run over the archetypes, and one persona renamed by a marketer
    population = archetype_population(200)
    config = make_config(k_max=7)
    first = recluster(config_id=config.pk)
    assert first is not None and first.status == RunStatus.SUCCEEDED
    before = {c.index: (c.persona_name, c.segment.key) for c in first.clusters.all()}
    renamed = first.clusters.get(index=0)
    from apps.clustering.services import cluster_rename

    cluster_rename(cluster=renamed, name="Our best friends")
    first_labels = labels_of(first, population.profile_ids)

    # when the data changes a little (a tenth spend more, some new customers) and
    # it runs again
    rng = np.random.default_rng(3)
    chosen = rng.choice(len(population.profile_ids), 100, replace=False)
    for i in chosen:
        row = ProfileFeatures.objects.get(profile_id=population.profile_ids[i])
        row.revenue_total = row.revenue_total * Decimal("1.1")
        row.save()
    archetype_population(20, seed=9)
    second = recluster(config_id=config.pk)

    # then every persona keeps its name and its segment
    assert second is not None and second.status == RunStatus.SUCCEEDED, second and second.error
    assert second.chosen_k == 5
    after = {c.previous.index: (c.persona_name, c.segment.key) for c in second.clusters.all()}
    expected = {**before, 0: ("Our best friends", before[0][1])}
    assert after == expected
    assert second.clusters.get(segment__key=before[0][1]).renamed
    assert Segment.objects.get(key=before[0][1]).name == "Our best friends"
    # and the run records how stable it was
    assert second.previous_run_id == first.pk
    assert second.stability_ari is not None and second.stability_ari >= 0.95
    assert second.stability_shared == 1000
    # and nobody of the old population moved
    second_labels = labels_of(second, population.profile_ids)
    assert adjusted_rand_score(first_labels, second_labels) >= 0.95
    # and no cluster segment is made or disabled for nothing
    assert Segment.objects.filter(kind="cluster").count() == 5
    assert Segment.objects.filter(kind="cluster", enabled=False).count() == 0


def test_another_world_with_another_k(make_config):
    # given profiles drawn from make_blobs (four centres in four features)
    population = blobs_population(1200, centers=4)
    config = make_config(key="blobs", features=BLOB_FEATURES, k_max=7)

    # when it runs
    run = recluster(config_id=config.pk)

    # then the four are found
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.chosen_k == 4
    assert adjusted_rand_score(population.labels, labels_of(run, population.profile_ids)) >= 0.9


def test_memberships_carry_reasons_and_outbox_rows(make_config):
    # given a clustered population
    population = archetype_population(100)
    run = recluster(config_id=make_config(k_max=6, min_cluster_size=5).pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    # (the run reads well wherever it is named, and its write time is stored)
    assert str(run) == f"run {run.pk} of Shoppers (succeeded)"
    run.refresh_from_db()
    assert run.timings["write"] > 0

    # when one person's membership is read
    pid = population.profile_ids[0]
    membership = Membership.objects.get(profile_id=pid, exited_at__isnull=True)

    # then it says why: which cluster of which run, and how near
    cluster = run.clusters.get(segment_id=membership.segment_id)
    assert membership.source == "cluster"
    assert membership.reason["text"] == f"cluster {cluster.index} of run {run.pk}: nearest centroid"
    assert membership.reason["run"] == run.pk
    assert membership.reason["cluster"] == cluster.index
    assert membership.reason["distance"] >= 0
    assert membership.version == 1
    # and every entry is in the outbox, once
    entered = MembershipChange.objects.filter(kind="entered", source="cluster")
    assert entered.count() == 500
    assert entered.filter(profile_id=pid).count() == 1


def test_why_is_this_person_in_this_segment(make_config, api_client):
    # given a clustered population
    population = archetype_population(60)
    run = recluster(config_id=make_config(k_max=6, min_cluster_size=5).pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED

    # when a profile's segments are read through the API
    pid = population.profile_ids[0]
    response = api_client.get(f"/api/v1/profiles/id:{pid}/segments")

    # then its cluster is there, with the reason
    assert response.status_code == 200
    (current,) = response.json()["current"]
    cluster = run.clusters.get(segment__key=current["segment"])
    assert current["reason"]["text"] == (
        f"cluster {cluster.index} of run {run.pk}: nearest centroid"
    )
