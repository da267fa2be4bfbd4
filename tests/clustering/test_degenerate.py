"""Degenerate data gives a clear run error or a sensible result, and a failed or
degenerate run never loses the previous memberships."""

from __future__ import annotations

import pytest

from apps.clustering.models import ClusteringConfig, ClusteringRun, RunStatus
from apps.clustering.run import recluster
from apps.segments.models import Membership, MembershipChange, ProfileFeatures

from .archetypes import ARCHETYPES, FEATURES, archetype_population

pytestmark = pytest.mark.django_db


def _current() -> set[tuple[int, object]]:
    return set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )


@pytest.fixture
def clustered(make_config) -> tuple[ClusteringConfig, ClusteringRun]:
    archetype_population(100)
    config = make_config(k_max=6, min_cluster_size=5)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    config.refresh_from_db()
    return config, run


def _kept(config: ClusteringConfig, good: ClusteringRun, members: set, outbox: int) -> None:
    config.refresh_from_db()
    assert config.current_run_id == good.pk
    assert _current() == members
    assert MembershipChange.objects.count() == outbox


def test_identical_profiles_fail_clearly_and_keep_the_memberships(clustered):
    # given a good run, then every profile made the same
    config, good = clustered
    members, outbox = _current(), MembershipChange.objects.count()
    ProfileFeatures.objects.update(
        orders_count=3, revenue_total=90, last_order_at=None, product_views=7, sessions_count=2
    )
    ProfileFeatures.objects.update(first_seen_at=ProfileFeatures.objects.first().first_seen_at)

    # when it runs again
    run = recluster(config_id=config.pk)

    # then the run failed and says why, and the memberships are the good run's
    assert run is not None and run.status == RunStatus.FAILED
    assert "identical profiles" in run.error
    assert len(run.notes) == len(FEATURES)
    assert run.finished_at is not None
    _kept(config, good, members, outbox)


def test_fewer_profiles_than_k(make_config):
    # given three profiles and k from 5
    archetype_population(1, archetypes=ARCHETYPES[:3])
    config = make_config(k_min=5, k_max=8)

    # when it runs
    run = recluster(config_id=config.pk)

    # then it fails, naming the numbers
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == (
        "the population has 3 profiles: too few for k from 5 (k must be below the number "
        "of profiles)"
    )
    assert not Membership.objects.exists()


def test_k_is_searched_only_up_to_what_the_population_allows(make_config):
    # given six profiles, two of each of three kinds, and k up to 8
    archetype_population(2, archetypes=ARCHETYPES[:3])
    config = make_config(k_min=2, k_max=8, min_cluster_size=1)

    # when it runs
    run = recluster(config_id=config.pk)

    # then k went up to 5 and the run says so
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert [c["k"] for c in run.candidates] == [2, 3, 4, 5]
    assert "k searched up to 5 (the population has 6 profiles)" in run.notes
    assert run.chosen_k == 3


def test_a_constant_and_an_all_missing_feature_are_left_out_with_a_note(make_config):
    # given the archetypes, a feature nobody has (email_opens 0) and one missing for
    # everyone (rfm_recency: nobody was scored)
    archetype_population(60)
    features = [
        *FEATURES,
        {"name": "email_opens", "transform": "log1p"},
        {"name": "rfm_recency", "transform": "none"},
    ]
    config = make_config(features=features, k_max=6, min_cluster_size=5)

    # when it runs
    run = recluster(config_id=config.pk)

    # then it clusters on the rest, and says what it left out
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.features_used == [f["name"] for f in FEATURES]
    assert run.notes == [
        "email_opens is the same (0) for every profile: left out",
        "rfm_recency is missing for every profile: left out",
    ]
    assert run.chosen_k == 5


def test_one_cluster_holding_almost_everyone_is_degenerate(clustered):
    # given a good run, then nearly everyone the same and a few outliers
    config, good = clustered
    members, outbox = _current(), MembershipChange.objects.count()
    ids = list(ProfileFeatures.objects.order_by("profile_id").values_list("profile_id", flat=True))
    at = ProfileFeatures.objects.exclude(last_order_at=None).first().last_order_at
    ProfileFeatures.objects.update(
        orders_count=3, revenue_total=90, product_views=7, sessions_count=2, last_order_at=at
    )
    ProfileFeatures.objects.filter(profile_id__in=ids[:3]).update(orders_count=300)
    ClusteringConfig.objects.filter(pk=config.pk).update(k_max=3)

    # when it runs again
    run = recluster(config_id=config.pk)

    # then no candidate passes the guard rails: degenerate, the memberships stay
    assert run is not None and run.status == RunStatus.DEGENERATE
    assert run.error.startswith("no clustering passed the guard rails, the previous memberships")
    assert "under the minimum of 5" in run.error or "holds" in run.error
    assert all(not c["valid"] for c in run.candidates)
    _kept(config, good, members, outbox)


def test_an_empty_population(make_config):
    # given no profile at all
    config = make_config()

    # when it runs
    run = recluster(config_id=config.pk)

    # then it fails clearly
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == "the population is empty: no profile has features to cluster"


def test_a_crash_mid_run_keeps_the_memberships(clustered, monkeypatch):
    # given a good run, and a write that breaks half-way: at the second segment's
    # new version (on PostgreSQL every membership and outbox row of the run is
    # written by then; on SQLite the first segment's)
    config, good = clustered
    members, outbox = _current(), MembershipChange.objects.count()
    from apps.segments import written

    original = written._segment_written
    calls = []

    def failing(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(written, "_segment_written", failing)

    # when it runs again
    run = recluster(config_id=config.pk)

    # then the run failed, nothing of it was written, and it says so
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == "internal error (RuntimeError); see the logs"
    assert not run.clusters.exists()
    _kept(config, good, members, outbox)
