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
from django.contrib.auth import get_user_model

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright

from apps.clustering.models import ClusteringRun, RunStatus
from apps.clustering.run import recluster

from .archetypes import archetype_population

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME, PASSWORD = "marketing-admin", "correct-horse-battery"
TIMEOUT_MS = 10_000


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's browser page.

    Playwright's sync API keeps an asyncio event loop registered as running in
    this thread while it is open, and Django then refuses ORM calls here
    (SynchronousOnlyOperation) although nothing runs concurrently: the test
    drives the browser and queries the database strictly in turn, and the live
    server answers from its own thread. DJANGO_ALLOW_ASYNC_UNSAFE lifts the check
    for this test only (monkeypatch restores the environment afterwards).
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", viewport={"width": 1440, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        # Nothing may be fetched from elsewhere at page load.
        outside: list[str] = []
        context.on(
            "request",
            lambda request: (
                outside.append(request.url)
                if not request.url.startswith((live_server.url, "data:"))
                else None
            ),
        )
        tab = context.new_page()
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", USERNAME)
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        expect(tab.locator("#user-tools")).to_contain_text(USERNAME.upper(), ignore_case=True)
        try:
            yield tab
        finally:
            context.close()
            browser.close()
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
