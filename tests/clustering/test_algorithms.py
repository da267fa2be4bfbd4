"""Every algorithm runs end to end: mini-batch k-means, agglomerative (Ward) on a
sample with the rest assigned to the nearest centroid, DBSCAN and HDBSCAN
reporting the clusters they find and their noise share; and the numeric parts
alone (the knee, the Hungarian match)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from apps.clustering.fitting import knee, match
from apps.clustering.models import RunStatus
from apps.clustering.run import recluster
from apps.segments.models import Membership

from .archetypes import archetype_population
from .test_recovery import labels_of

pytestmark = pytest.mark.django_db


def test_minibatch_kmeans(make_config):
    # given the archetypes and mini-batch k-means
    population = archetype_population(200)
    config = make_config(algorithm="minibatch_kmeans", k_max=7)

    # when it runs
    run = recluster(config_id=config.pk)

    # then it finds them as k-means does
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.chosen_k == 5
    assert not run.fitted_on_sample
    assert adjusted_rand_score(population.labels, labels_of(run, population.profile_ids)) >= 0.9


def test_agglomerative_fits_a_sample_and_assigns_the_rest(make_config):
    # given the archetypes and Ward clustering bounded to 300 profiles
    population = archetype_population(200)
    config = make_config(algorithm="agglomerative", fit_sample_size=300, k_max=7)

    # when it runs
    run = recluster(config_id=config.pk)

    # then it was fitted on the sample, and everyone is placed
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.fitted_on_sample and run.sample_size == 300
    assert run.chosen_k == 5
    labels = labels_of(run, population.profile_ids)
    assert (labels >= 0).all()
    assert adjusted_rand_score(population.labels, labels) >= 0.9
    reason = Membership.objects.filter(exited_at__isnull=True).first().reason
    assert reason["text"].endswith(
        "agglomerative (Ward linkage) on a sample of 300, the rest by nearest centroid"
    )


@pytest.mark.parametrize("algorithm", ["dbscan", "hdbscan"])
def test_density_methods_report_clusters_found_and_noise(make_config, algorithm):
    # given the archetypes and a density method on a sample of 600
    population = archetype_population(200)
    config = make_config(
        algorithm=algorithm, fit_sample_size=600, eps=0.6, min_samples=8, min_cluster_size=20
    )

    # when it runs
    run = recluster(config_id=config.pk)

    # then it reports what it found: five clusters and a small noise share
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.clusters_found == 5 and run.chosen_k == 5
    assert run.noise_share is not None and 0 <= run.noise_share < 0.2
    assert len(run.candidates) == 1 and run.candidates[0]["noise_share"] == run.noise_share
    assert run.fitted_on_sample and run.sample_size == 600
    # and noise in the sample is in no cluster, everyone else is
    labels = labels_of(run, population.profile_ids)
    placed = labels >= 0
    assert (~placed).sum() <= round(run.noise_share * 600)
    assert adjusted_rand_score(population.labels[placed], labels[placed]) >= 0.9


def test_a_density_method_that_finds_one_cluster_is_degenerate(make_config):
    # given the archetypes and a radius that joins everything
    archetype_population(60)
    config = make_config(algorithm="dbscan", eps=50.0, min_samples=3, min_cluster_size=5)

    # when it runs
    run = recluster(config_id=config.pk)

    # then it says what it found, and writes nothing
    assert run is not None and run.status == RunStatus.DEGENERATE
    assert run.clusters_found == 1
    assert "k=1: only 1 distinct cluster" in run.error
    assert not Membership.objects.exists()


def test_the_knee_of_a_curve():
    # a curve that falls steeply to k=4 then flattens
    ks = [2, 3, 4, 5, 6, 7, 8]
    assert knee(ks, [1000, 600, 200, 180, 165, 150, 140]) == 4
    # a straight line has no knee better than its start
    assert knee([2, 3], [10, 5]) == 2


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=7),
    st.integers(min_value=0, max_value=10_000),
)
def test_matching_recovers_a_permutation_of_moved_centroids(k, seed):
    # given centroids far apart, shuffled and moved a little
    rng = np.random.default_rng(seed)
    old = rng.normal(size=(k, 4)) * 10
    order = rng.permutation(k)
    spacing = min(np.linalg.norm(old[i] - old[j]) for i in range(k) for j in range(i + 1, k))
    new = old[order] + rng.normal(size=(k, 4)) * spacing * 0.02

    # when they are matched
    pairs = match(new, old)

    # then each new one is paired with the one it came from
    assert sorted((n, o) for n, o, _ in pairs) == sorted(enumerate(order.tolist()))


def test_kmeans_searches_k_on_a_sample_and_fits_everyone(make_config, monkeypatch):
    # given the archetypes, and a k search bounded to 400 profiles
    from apps.clustering import fitting

    monkeypatch.setattr(fitting, "KSEARCH_SAMPLE", 400)
    population = archetype_population(200)
    config = make_config(k_max=7)

    # when it runs
    run = recluster(config_id=config.pk)

    # then k was chosen on the sample, and the chosen k fitted on all of them
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    assert run.chosen_k == 5
    assert "k searched on a sample of 400 profiles; k=5 fitted on all 1,000" in run.notes
    assert sum(run.candidates[0]["sizes"]) == 400
    assert sorted(c.size for c in run.clusters.all()) == [200] * 5
    assert adjusted_rand_score(population.labels, labels_of(run, population.profile_ids)) >= 0.9
