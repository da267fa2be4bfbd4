"""Between runs: the pipeline stage "clustering.assign" places a profile whose
features change in the nearest cluster of the current model, with a reason and
outbox rows, only when its cluster changes; with no config it costs one query."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from apps.clustering.assign import clustering_assign
from apps.clustering.models import RunStatus
from apps.clustering.run import recluster
from apps.events.pipeline import stages
from apps.identity.models import Identifier
from apps.segments.models import Membership, MembershipChange, Segment

from .archetypes import archetype_population

pytestmark = pytest.mark.django_db


def _events(
    user: str, name: str, count: int, *, key: str = "userId", **properties: Any
) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "track",
                "event": name,
                key: user,
                "messageId": f"{user}-{name}-{uuid.uuid4()}",
                "properties": properties,
            }
            for _ in range(count)
        ]
    }


def _current(user: str, kind: str = "user_id") -> Membership | None:
    pid = Identifier.objects.get(type=kind, value=user).profile_id
    return Membership.objects.filter(profile_id=pid, exited_at__isnull=True).first()


def test_the_stage_runs_after_the_segments_stages():
    names = [r.name for r in stages.items()]
    assert names.index("clustering.assign") > names.index("segments.realtime")
    assert names.index("segments.realtime") > names.index("segments.features")


def test_a_new_profile_joins_and_moves_as_its_features_change(post_events, make_config):
    # given a current model of the five archetypes
    archetype_population(100)
    run = recluster(config_id=make_config(k_max=6, min_cluster_size=5).pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    never = run.clusters.get(persona_name="Browses, never buys")

    # when a new person browses products
    assert post_events("/v1/batch", _events("newbie", "Product Viewed", 40)).status_code == 200

    # then the stage placed them with the browsers who never buy, saying why
    joined = _current("newbie")
    assert joined is not None and joined.segment_id == never.segment_id
    assert joined.source == "cluster"
    assert joined.reason["text"] == (
        f"nearest centroid of run {run.pk}, assigned on a feature change"
    )
    assert joined.reason["cluster"] == never.index
    size = Segment.objects.get(pk=never.segment_id).size
    assert size == 101

    # when they browse a little more (still never buying)
    changes = MembershipChange.objects.count()
    assert post_events("/v1/batch", _events("newbie", "Product Viewed", 2)).status_code == 200

    # then nothing moves, and nothing is written
    assert _current("newbie").pk == joined.pk
    assert MembershipChange.objects.count() == changes

    # when they start ordering, a lot and big
    body = _events("newbie", "Order Completed", 30, revenue=250)
    assert post_events("/v1/batch", body).status_code == 200

    # then they left the never-buyers for another cluster: an exit and an entry
    moved = _current("newbie")
    assert moved is not None and moved.segment_id != never.segment_id
    assert moved.segment_id in {c.segment_id for c in run.clusters.all()}
    joined.refresh_from_db()
    assert joined.exited_at is not None
    assert joined.exit_reason["text"] == (
        f"nearer another cluster of run {run.pk}, on a feature change"
    )
    kinds = list(
        MembershipChange.objects.filter(profile_id=moved.profile_id)
        .order_by("id")
        .values_list("kind", "segment_id")
    )
    assert kinds == [
        ("entered", never.segment_id),
        ("exited", never.segment_id),
        ("entered", moved.segment_id),
    ]
    assert Segment.objects.get(pk=never.segment_id).size == 100


def test_with_no_config_the_stage_costs_one_query(django_assert_num_queries):
    # given no clustering config; when a batch passes the stage; then one query
    with django_assert_num_queries(1):
        clustering_assign([SimpleNamespace(profile_id=uuid.uuid4())])


def test_a_config_whose_run_failed_assigns_nothing(post_events, make_config):
    # given a config whose only run failed (no model)
    config = make_config()
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.FAILED

    # when someone's features change
    assert post_events("/v1/batch", _events("someone", "Product Viewed", 3)).status_code == 200

    # then they are in no cluster
    assert _current("someone") is None


def test_a_merge_leaves_the_survivor_in_one_cluster(post_events, make_config):
    # given a current model, a buyer and a browser in different clusters
    from apps.identity.services import profile_merge

    archetype_population(100)
    run = recluster(config_id=make_config(k_max=6, min_cluster_size=5).pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    body = _events("buyer", "Order Completed", 30, revenue=250)
    assert post_events("/v1/batch", body).status_code == 200
    body = _events("browser", "Product Viewed", 40, key="anonymousId")
    assert post_events("/v1/batch", body).status_code == 200
    buyer, browser = _current("buyer"), _current("browser", "anonymous_id")
    assert buyer is not None and browser is not None
    assert buyer.segment_id != browser.segment_id
    segments = {c.segment_id for c in run.clusters.all()}

    # when they are merged
    merged = profile_merge(profile_ids=(buyer.profile_id, browser.profile_id), reason="admin")

    # then the survivor is in exactly one cluster, and the absorbed one in none
    def clusters_of(pid: uuid.UUID) -> list[int]:
        return list(
            Membership.objects.filter(
                profile_id=pid, exited_at__isnull=True, segment_id__in=segments
            ).values_list("segment_id", flat=True)
        )

    assert len(clusters_of(merged.survivor_id)) == 1
    assert clusters_of(merged.absorbed_id) == []
