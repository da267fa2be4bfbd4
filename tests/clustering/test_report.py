"""The run report a marketer reads: its data from a real run over generated
ProfileFeatures rows, its SVG charts (one point per sampled profile, one line
point per candidate k, every text escaped), and the admin pages around it (the
run page, the config page with its latest runs, "Run now" and the schedule,
and renaming a persona), with their permissions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django_celery_beat.models import PeriodicTask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.clustering.charts import metric_line_chart, scatter_chart
from apps.clustering.fitting import SCATTER_POINTS
from apps.clustering.models import Cluster, ClusteringConfig, ClusteringRun, RunStatus
from apps.clustering.report import run_report
from apps.clustering.run import recluster
from apps.segments.models import ProfileFeatures, Segment

from .archetypes import ARCHETYPES, archetype_population

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"


def _svgs(html: str) -> list[ET.Element]:
    """The page's charts (not the admin's own icons)."""
    found = re.findall(r"<svg\b[^>]*class=\"clustering-chart\".*?</svg>", html, flags=re.S)
    return [ET.fromstring(m) for m in found]


def _circles(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [c for c in svg.iter(f"{SVG}circle") if cls in c.get("class", "").split()]


@pytest.fixture
def clustered(make_config) -> tuple[ClusteringConfig, ClusteringRun]:
    """Five archetypes of 100 profiles, clustered with k from 2 to 6 by silhouette."""
    archetype_population(100)
    config = make_config(k_max=6, min_cluster_size=5)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    return config, run


def _staff(*perms: str) -> Client:
    user = get_user_model().objects.create_user("marketer", password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_the_report_of_a_first_run(clustered):
    # given a succeeded first run
    _, run = clustered

    # when its report is read
    report = run_report(run)

    # then it has the metric k was chosen by and the elbow, one point per k, the knee marked
    assert not report.flagged
    assert report.headline == "5 clusters over 500 profiles."
    assert [m.metric for m in report.metrics] == ["silhouette", "inertia"]
    silhouette, inertia = report.metrics
    assert silhouette.decides and not inertia.decides
    assert [k for k, _ in silhouette.points] == [2, 3, 4, 5, 6]
    assert silhouette.chosen_k == 5
    best = max(silhouette.points, key=lambda p: p[1] or -1)
    assert best[0] == 5
    assert inertia.knee_k is not None and 2 <= inertia.knee_k <= 6
    values = [v for _, v in inertia.points]
    assert values == sorted(values, reverse=True)  # inertia falls with k
    # and the scatter is the stored sample, one point per sampled profile, legend by persona
    assert len(report.scatter_points) == min(SCATTER_POINTS, 500)
    assert {int(p[2]) for p in report.scatter_points} == {0, 1, 2, 3, 4}
    assert report.legend == [(c.index, c.persona_name) for c in run.clusters.order_by("index")]
    # and one row per cluster with its segment, share and what sets it apart
    assert len(report.clusters) == 5
    assert sum(r.size for r in report.clusters) == 500
    assert abs(sum(r.share for r in report.clusters) - 1) < 1e-6
    for row in report.clusters:
        assert row.segment_url == f"/admin/segments/segment/{row.cluster.segment_id}/change/"
        assert row.change == "first" and row.change_text == "first run"
        assert row.distinctive, row.persona
        assert all(abs(d.z) >= 0.5 for d in row.distinctive)
        assert row.distinctive[0].feature in row.distinctive[0].text
    # and the facts say how k was chosen, the population and the phases' timings
    facts = {f.label: f.value for f in report.facts}
    assert facts["Population"] == "500 profiles"
    assert facts["Chosen k"] == "5, by silhouette (highest, on a sample) among k=2..6"
    assert facts["Stability against the previous run"] == "first run of this config"
    assert [name for name, _ in report.timings][:2] == ["extract", "transform"]
    assert {"fit", "choose", "assign", "write"} <= {name for name, _ in report.timings}
    assert report.sample_note == ""  # k-means fits everyone


def test_a_second_run_reports_its_change_since_the_last(clustered, make_config):
    # given a first run, then the lapsed customers (archetype 4) gone and a marketer's name
    config, first = clustered
    lapsed = first.clusters.get(persona_name__icontains="lapsed")
    members = list(
        Segment.objects.get(pk=lapsed.segment_id)
        .memberships.filter(exited_at__isnull=True)
        .values_list("profile_id", flat=True)
    )
    ProfileFeatures.objects.filter(profile_id__in=members).delete()
    spenders = first.clusters.get(persona_name__icontains="high spend")
    Cluster.objects.filter(pk=spenders.pk).update(persona_name="Champions", renamed=True)

    # when the config runs again and its report is read
    second = recluster(config_id=config.pk)
    assert second is not None and second.status == RunStatus.SUCCEEDED, second.error
    report = run_report(second)

    # then four clusters continue the first run's, with their size change, and one vanished
    assert second.chosen_k == 4
    rows = {r.persona: r for r in report.clusters}
    assert all(r.change == "continued" for r in rows.values())
    champions = rows["Champions"]
    assert champions.previous_persona == "Champions"
    assert champions.size_change == champions.size - spenders.size
    assert "since the last run" in champions.change_text
    assert [v.persona for v in report.vanished] == [lapsed.persona_name]
    assert report.vanished[0].size == lapsed.size
    # and the stability against the first run is a fact
    facts = {f.label: f.value for f in report.facts}
    assert facts["Stability against the previous run"].startswith("adjusted Rand index ")
    assert second.stability_ari is not None and second.stability_ari > 0.9


def test_the_charts_have_a_point_per_profile_and_per_k(clustered):
    # given a run's report
    _, run = clustered
    report = run_report(run)

    # when its charts are drawn
    line = ET.fromstring(
        metric_line_chart(
            title="silhouette by k",
            metric_label="silhouette",
            points=report.metrics[0].points,
            chosen_k=run.chosen_k,
        )
    )
    scatter = ET.fromstring(
        scatter_chart(
            title="PCA",
            axes=report.scatter_axes,
            points=report.scatter_points,
            legend=report.legend,
            centroids=report.scatter_centroids,
        )
    )

    # then the line has one point per candidate k, the chosen one marked
    points = _circles(line, "k-point")
    assert [int(c.get("data-k", 0)) for c in points] == [2, 3, 4, 5, 6]
    assert [c.get("data-k") for c in _circles(line, "chosen")] == ["5"]
    # and the scatter one circle per sampled profile, centres drawn as crosses
    assert len(list(scatter.iter(f"{SVG}circle"))) == len(run.scatter["points"]) == 500
    assert len(scatter.findall(f".//{SVG}path[@class='centroid']")) == 5
    legend = [t.itertext() for t in scatter.findall(f".//{SVG}g[@class='legend-entry']")]
    assert len(legend) == 5
    # and both are labelled for a screen reader, with axis labels
    for svg in (line, scatter):
        assert svg.get("role") == "img" and svg.get("aria-label")
        assert svg.find(f"{SVG}title") is not None
        assert len(svg.findall(f"{SVG}text[@class='axis-label']")) == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(
        st.tuples(
            st.floats(-1e6, 1e6, allow_nan=False),
            st.floats(-1e6, 1e6, allow_nan=False),
            st.integers(-1, 11),
        ),
        max_size=60,
    ),
    names=st.lists(st.text(max_size=40), min_size=1, max_size=12),
)
def test_any_scatter_is_well_formed_svg_with_its_points(points, names):
    # given any points and any persona names (markup included)
    legend = list(enumerate(names))

    # when drawn
    svg = scatter_chart(
        title="<b>scatter</b> & co", axes=["PC1", "PC2"], points=points, legend=legend
    )

    # then it parses as XML, has one circle per point, and every name is text, not markup
    root = ET.fromstring(svg)
    assert len(list(root.iter(f"{SVG}circle"))) == len(points)
    assert root.find(f"{SVG}title").text == "<b>scatter</b> & co"
    assert not list(root.iter("b")) and not list(root.iter(f"{SVG}b"))
    assert "<script" not in svg


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)), min_size=1, max_size=12
    )
)
def test_any_metric_line_has_one_point_per_scored_k(values):
    # given a metric for k = 2, 3, ..., some not scored
    points = [(k + 2, v) for k, v in enumerate(values)]

    # when drawn
    root = ET.fromstring(metric_line_chart(title="m", metric_label="m", points=points, chosen_k=2))

    # then there is a point per k with a value, and no other
    drawn = [int(c.get("data-k", 0)) for c in _circles(root, "k-point")]
    assert drawn == [k for k, v in points if v is not None]


def test_the_run_page_needs_a_staff_user_with_permission(clustered):
    # given a run
    _, run = clustered
    url = f"/admin/clustering/clusteringrun/{run.pk}/change/"

    # when nobody, a staff user without permission and one with it open its page
    anonymous = Client().get(url)
    denied = _staff().get(url)
    get_user_model().objects.all().delete()
    allowed = _staff("clustering.view_clusteringrun").get(url)

    # then the first is sent to log in, the second refused, the third sees the report
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert denied.status_code == 403
    assert allowed.status_code == 200
    html = allowed.content.decode()
    assert "5 clusters over 500 profiles." in html
    metric, inertia, scatter = _svgs(html)
    assert len(_circles(metric, "k-point")) == 5
    assert len(_circles(inertia, "k-point")) == 5
    assert len(_circles(scatter, "point")) == 500
    assert html.count('class="cluster-row"') == 5
    for cluster in run.clusters.all():
        assert f'href="/admin/segments/segment/{cluster.segment_id}/change/"' in html
        assert cluster.persona_name in html
    # and nothing on the page is fetched from elsewhere
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_a_degenerate_run_is_flagged(make_config, admin_client):
    # given profiles that no clustering can split into clusters of 1,000
    archetype_population(40)
    config = make_config(k_max=4, min_cluster_size=1000)

    # when it runs
    run = recluster(config_id=config.pk)

    # then the run is degenerate, and its page and the config's say so prominently
    assert run is not None and run.status == RunStatus.DEGENERATE
    report = run_report(run)
    assert report.flagged
    assert report.headline.startswith("This run gave degenerate clusters and was not applied: ")
    assert report.headline.endswith("Previous memberships kept.")
    assert report.clusters == [] and report.scatter_points == []
    html = admin_client.get(f"/admin/clustering/clusteringrun/{run.pk}/change/").content.decode()
    assert 'class="run-headline flagged"' in html and 'role="alert"' in html
    assert "Previous memberships kept." in html
    assert len(_svgs(html)) == 2  # the metrics across k still say what was tried
    page = admin_client.get(f"/admin/clustering/clusteringconfig/{config.pk}/change/")
    assert 'data-status="degenerate"' in page.content.decode()
    listing = admin_client.get("/admin/clustering/clusteringrun/").content.decode()
    assert 'class="run-flagged"' in listing


def test_a_failed_run_is_flagged_with_its_error(make_config, admin_client):
    # given three profiles and k from 5
    archetype_population(1, archetypes=ARCHETYPES[:3])
    run = recluster(config_id=make_config(k_min=5, k_max=8).pk)
    assert run is not None and run.status == RunStatus.FAILED

    # when its page is opened
    html = admin_client.get(f"/admin/clustering/clusteringrun/{run.pk}/change/").content.decode()

    # then it says it failed, why, and that the previous memberships stay
    assert "This run failed: the population has 3 profiles: too few for k from 5" in html
    assert "Previous memberships kept." in html
    assert _svgs(html) == []


def test_run_now_from_the_config_list_and_page(
    make_config, admin_client, django_capture_on_commit_callbacks
):
    # given a config over five archetypes
    archetype_population(60)
    config = make_config(k_max=6, min_cluster_size=5)

    # when "Run now" is chosen in the list, then pressed on the config's page
    with django_capture_on_commit_callbacks(execute=True):
        listed = admin_client.post(
            "/admin/clustering/clusteringconfig/",
            {"action": "run_now", "_selected_action": [config.pk]},
            follow=True,
        )
    with django_capture_on_commit_callbacks(execute=True):
        pressed = admin_client.post(
            f"/admin/clustering/clusteringconfig/{config.pk}/run/", follow=True
        )

    # then each queued a run and said so (the eager task ran once the request's
    # transaction committed, after the message was written), and both ran
    first, second = ClusteringRun.objects.filter(config=config).order_by("id")
    assert first.status == second.status == RunStatus.SUCCEEDED
    assert f"Shoppers: run {first.pk} queued" in listed.content.decode()
    assert f"Shoppers: run {second.pk} queued" in pressed.content.decode()
    # and the config page lists both, the current one marked
    html = admin_client.get(f"/admin/clustering/clusteringconfig/{config.pk}/change/")
    html = html.content.decode()
    assert html.count('class="config-run"') == 2
    assert f"run {second.pk}</a> (current)" in html
    # and a GET does not start a run
    assert (
        admin_client.get(f"/admin/clustering/clusteringconfig/{config.pk}/run/").status_code == 405
    )
    assert ClusteringRun.objects.filter(config=config).count() == 2


def test_run_now_needs_the_change_permission(make_config):
    # given a config and a staff user who may only view configs
    config = make_config()
    client = _staff("clustering.view_clusteringconfig")

    # when they press "Run now"
    response = client.post(f"/admin/clustering/clusteringconfig/{config.pk}/run/")

    # then they are refused and nothing runs
    assert response.status_code == 403
    assert not ClusteringRun.objects.exists()
    assert (
        'id="config-run-now"'
        not in client.get(
            f"/admin/clustering/clusteringconfig/{config.pk}/change/"
        ).content.decode()
    )


def test_the_schedule_is_edited_in_the_config_page(make_config, admin_client):
    # given a config run nightly
    config = make_config(schedule="0 3 * * *")
    url = f"/admin/clustering/clusteringconfig/{config.pk}/change/"
    page = admin_client.get(url)
    form = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if name in page.context["adminform"].form.fields
    }
    form.update(
        features='[{"name": "orders_count", "transform": "log1p"}, '
        '{"name": "product_views", "transform": "none"}]',
        population_segment="",
        pca_components="",
        enabled="on",
    )

    # when a marketer sets it to every Monday at 05:30, then to a wrong line
    done = admin_client.post(url, {**form, "schedule": "30 5 * * 1"})
    wrong = admin_client.post(url, {**form, "schedule": "every monday"})

    # then the beat entry follows the first, and the second is refused, naming the field
    assert done.status_code == 302
    task = PeriodicTask.objects.get(pk=ClusteringConfig.objects.get(pk=config.pk).periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "5", "1")
    assert task.task == "apps.clustering.tasks.recluster"
    assert wrong.status_code == 200
    assert "must be five cron fields" in wrong.content.decode()
    task.refresh_from_db()
    assert task.crontab.minute == "30"


def test_a_marketer_renames_a_persona_and_nothing_else(clustered, admin_client):
    # given a cluster of a run
    _, run = clustered
    cluster = run.clusters.order_by("index").first()
    size, segment_id = cluster.size, cluster.segment_id
    url = f"/admin/clustering/cluster/{cluster.pk}/change/"

    # when a marketer renames it, sending a size too
    response = admin_client.post(
        url,
        {
            "persona_name": "Weekend <b>shoppers</b>",
            "persona_description": "Buy on Saturdays.",
            "size": "1",
        },
    )

    # then the name, the description and the renamed flag change, on the segment too, not the size
    assert response.status_code == 302
    cluster.refresh_from_db()
    assert (cluster.persona_name, cluster.persona_description) == (
        "Weekend <b>shoppers</b>",
        "Buy on Saturdays.",
    )
    assert cluster.renamed and cluster.size == size
    assert Segment.objects.get(pk=segment_id).name == "Weekend <b>shoppers</b>"
    # and the run page shows the name escaped
    html = admin_client.get(f"/admin/clustering/clusteringrun/{run.pk}/change/").content.decode()
    assert "Weekend &lt;b&gt;shoppers&lt;/b&gt;" in html and "<b>shoppers</b>" not in html
    # and clusters and runs are neither added nor deleted in admin
    assert admin_client.get("/admin/clustering/cluster/add/").status_code == 403
    assert admin_client.get(f"/admin/clustering/cluster/{cluster.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/clustering/clusteringrun/{run.pk}/delete/").status_code == 403


def test_a_density_run_reports_its_sample_and_noise(make_config, admin_client):
    # given the archetypes and HDBSCAN fitted on a sample of 300 of 1,000 profiles
    archetype_population(200)
    config = make_config(
        algorithm="hdbscan", fit_sample_size=300, min_samples=8, min_cluster_size=20
    )

    # when it runs and its report is read
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    report = run_report(run)

    # then it says the fit was on a sample and the rest assigned, the clusters found and
    # the noise share, and draws no metric across k (there is no k searched)
    assert report.sample_note == (
        "Fitted on a sample of 300; the rest assigned to the nearest cluster."
    )
    facts = {f.label: f.value for f in report.facts}
    assert facts["Chosen k"] == (
        f"{run.clusters_found} found by HDBSCAN (density: the data gives the number)"
    )
    assert facts["Noise"] == f"{run.noise_share:.1%} of the fitted profiles"
    assert report.metrics == []
    html = admin_client.get(f"/admin/clustering/clusteringrun/{run.pk}/change/").content.decode()
    assert "Fitted on a sample of 300; the rest assigned to the nearest cluster." in html
    (scatter,) = _svgs(html)
    assert len(_circles(scatter, "point")) == len(run.scatter["points"])


def test_a_config_with_a_run_in_progress_is_not_deleted(make_config, admin_client):
    # given a config whose run is queued
    config = make_config()
    queued = ClusteringRun.objects.create(config=config, status=RunStatus.QUEUED)

    # when a marketer confirms its deletion
    response = admin_client.post(
        f"/admin/clustering/clusteringconfig/{config.pk}/delete/", {"post": "yes"}, follow=True
    )

    # then it stays, and the page says which run holds it
    assert ClusteringConfig.objects.filter(pk=config.pk).exists()
    assert f"Not deleted: run {queued.pk} is queued." in response.content.decode()


def test_a_config_is_deleted_with_its_runs_and_its_segments_emptied(clustered, admin_client):
    # given a config with a succeeded run and its cluster segments
    config, run = clustered
    segments = list(run.clusters.values_list("segment_id", flat=True))

    # when a marketer confirms its deletion
    response = admin_client.post(
        f"/admin/clustering/clusteringconfig/{config.pk}/delete/", {"post": "yes"}
    )

    # then the config and its runs are gone, and its segments stay, emptied and disabled
    assert response.status_code == 302
    assert not ClusteringConfig.objects.exists() and not ClusteringRun.objects.exists()
    kept = Segment.objects.filter(pk__in=segments)
    assert kept.count() == 5 and not kept.filter(enabled=True).exists()
    assert not kept.filter(memberships__exited_at__isnull=True).exists()
