"""The clustering run report in a real browser: headless Chromium (Playwright,
sync API) against pytest-django's live server. A marketer opens a run's page
and sees both kinds of chart drawn (the metric across k with a point per k,
the scatter with a circle per sampled profile and a legend naming the
personas) and the table of clusters; then the config page with "Run now".

Celery is eager in tests and on_commit callbacks run in the live server's
request thread, so "Run now" has finished by the time its redirect is answered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect

from apps.clustering.models import ClusteringRun, RunStatus
from apps.clustering.run import recluster
from tests.browser import admin_page

from .archetypes import archetype_population

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "marketing-admin"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (tests/browser.py); nothing may be fetched from
    elsewhere at page load."""
    outside: list[str] = []

    def watch(context: Any) -> None:
        context.on(
            "request",
            lambda request: (
                outside.append(request.url)
                if not request.url.startswith((live_server.url, "data:"))
                else None
            ),
        )

    with admin_page(live_server, monkeypatch, USERNAME, on_context=watch) as tab:
        yield tab
    assert outside == []


def _clustered(make_config: Any) -> ClusteringRun:
    archetype_population(60)
    config = make_config(k_max=6, min_cluster_size=5)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED, run and run.error
    return run


def test_a_run_report_shows_its_charts_and_clusters(page: Page, make_config: Any) -> None:
    # given a run over five archetypes of 60 profiles, k from 2 to 6
    run = _clustered(make_config)
    personas = list(run.clusters.order_by("index").values_list("persona_name", flat=True))

    # when its page is opened from the run list
    page.goto("/admin/clustering/clusteringrun/")
    page.click(f"a[href$='/clusteringrun/{run.pk}/change/']")

    # then the headline and the facts are there
    expect(page.locator("#run-headline")).to_have_text("5 clusters over 300 profiles.")
    expect(page.locator("#run-facts")).to_contain_text("by silhouette")
    # and the two metric charts are drawn, a point per k, the chosen k marked
    metric_charts = page.locator(".metric-chart svg")
    expect(metric_charts).to_have_count(2)
    for i in range(2):
        chart = metric_charts.nth(i)
        expect(chart).to_be_visible()
        expect(chart.locator("circle.k-point")).to_have_count(5)
        expect(chart.locator("circle.chosen")).to_have_attribute("data-k", "5")
    expect(metric_charts.first).to_have_attribute(
        "aria-label",
        re.compile(r"^silhouette \(on a sample\) for each candidate k .*k=5 was chosen$"),
    )
    # and the scatter has a visible circle per sampled profile and a legend of personas
    scatter = page.locator("#run-scatter svg")
    expect(scatter).to_be_visible()
    expect(scatter.locator("circle.point")).to_have_count(len(run.scatter["points"]))
    expect(scatter.locator("circle")).to_have_count(300)
    box = scatter.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 200
    drawn = scatter.locator("circle.point").first.bounding_box()
    assert drawn is not None and drawn["width"] > 0
    legend = scatter.locator("g.legend-entry")
    expect(legend).to_have_count(5)
    for i, name in enumerate(personas):
        expect(legend.nth(i).locator("title")).to_have_text(name)
    # and the table has a row per cluster, persona linking to its segment
    rows = page.locator("#run-clusters tr.cluster-row")
    expect(rows).to_have_count(5)
    first = run.clusters.get(index=0)
    link = rows.first.locator("td").first.locator("a")
    expect(link).to_have_text(first.persona_name)
    expect(link).to_have_attribute("href", f"/admin/segments/segment/{first.segment_id}/change/")
    expect(rows.first.locator("td.change")).to_have_text("first run")


def test_run_now_on_the_config_page(page: Page, make_config: Any) -> None:
    # given a config with one run
    run = _clustered(make_config)

    # when "Run now" is pressed on its page
    page.goto(f"/admin/clustering/clusteringconfig/{run.config_id}/change/")
    expect(page.locator("tr.config-run")).to_have_count(1)
    page.click("#config-run-now input[type=submit]")

    # then a second run has run, is said to have, and is listed as the current one
    second = ClusteringRun.objects.exclude(pk=run.pk).get()
    expect(page.locator(".messagelist")).to_contain_text(
        f"run {second.pk} succeeded with 5 clusters."
    )
    expect(page.locator("tr.config-run")).to_have_count(2)
    expect(page.locator("tr.config-run").first).to_contain_text(f"run {second.pk} (current)")
    # and its report shows every cluster continuing one of the first run
    page.click(f"a[href$='/clusteringrun/{second.pk}/change/']")
    expect(page.locator("#run-clusters tr.cluster-row")).to_have_count(5)
    expect(page.locator("#run-clusters td.change-continued")).to_have_count(5)
    expect(page.locator("#run-facts")).to_contain_text("adjusted Rand index 1.000")
