"""The segment builder in a real browser: headless Chromium (Playwright, sync API)
against pytest-django's live server, as a marketer uses it.

A segment is built with the forms (no JSON typed), the live count follows each
change, the JSON textarea follows the forms (and the forms the textarea), and after
saving, the segment's page shows its size chart and its members with their reasons.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect

from apps.consent.models import Purpose
from apps.identity.models import Profile
from apps.segments.models import Membership, ProfileFeatures, Segment
from tests.browser import admin_page
from tests.identity.factories import ProfileFactory

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "marketer-admin"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (tests/browser.py)."""
    with admin_page(live_server, monkeypatch, USERNAME) as tab:
        yield tab


def _customers(orders: list[int]) -> list[Profile]:
    """Profiles with these order counts (their features rows, as the stage writes them)."""
    profiles = []
    for n, count in enumerate(orders):
        profile = ProfileFactory(identifiers=[("user_id", f"customer-{n}")])
        ProfileFeatures.objects.create(profile=profile, orders_count=count)
        profiles.append(profile)
    return profiles


def test_a_segment_built_with_the_forms_shows_its_live_count_and_after_saving_its_chart(
    page: Page,
) -> None:
    # given three customers with orders and two without
    buyers = _customers([1, 3, 2, 0, 0])[:3]

    # when the marketer starts a segment and adds a feature condition with the forms
    page.goto("/admin/segments/segment/add/")
    page.fill("#id_key", "buyers")
    page.fill("#id_name", "Buyers")
    page.fill("#id_description", "Ordered at least once.")
    builder = page.locator("#segment-builder")
    expect(builder).to_be_visible()
    builder.locator("select.add-node").select_option("feature")
    leaf = builder.locator(".cb-node.cb-feature")
    leaf.locator("select.cb-feature-name").select_option("orders_count")
    leaf.locator("select.cb-op").select_option("gte")
    leaf.locator("input.cb-value").fill("2")

    # then the live count follows: two customers have two orders or more
    count = page.locator("#segment-preview .preview-count")
    expect(count).to_have_text("2 profiles match")
    expect(page.locator("#segment-preview .preview-sample a")).to_have_count(2)
    # and the JSON textarea says the same, in the public format
    assert json.loads(page.input_value("#id_condition")) == {
        "type": "and",
        "children": [{"type": "feature", "name": "orders_count", "op": "gte", "value": 2}],
    }

    # when the threshold is lowered, the count follows again
    leaf.locator("input.cb-value").fill("1")
    expect(count).to_have_text("3 profiles match")

    # when the marketer adds an incomplete condition, the preview names its path
    builder.locator(".cb-and > .cb-body > select.add-node").select_option("performed")
    expect(page.locator("#segment-preview .preview-errors li")).to_have_text(
        ["condition.children[1].event: must be an event name"]
    )
    page.locator(".cb-node.cb-performed select.cb-window").select_option("within")
    page.locator(".cb-node.cb-performed .cb-add-filter").click()
    # (a window and a filter are forms too, written into the JSON as the API takes them)
    assert json.loads(page.input_value("#id_condition"))["children"][1] == {
        "type": "performed",
        "event": "",
        "times": 1,
        "times_op": ">=",
        "within_seconds": 3600,
        "where": [{"path": "properties.", "op": "equals", "value": ""}],
    }
    builder.locator(".cb-node.cb-performed .cb-remove").click()
    expect(count).to_have_text("3 profiles match")

    # when the JSON is edited by hand, the forms follow it
    page.fill(
        "#id_condition",
        json.dumps({"type": "feature", "name": "orders_count", "op": "gte", "value": 3}),
    )
    page.dispatch_event("#id_condition", "input")
    expect(builder.locator(".cb-node.cb-feature input.cb-value")).to_have_value("3")
    expect(count).to_have_text("1 profile matches")
    leaf = builder.locator(".cb-node.cb-feature")
    leaf.locator("input.cb-value").fill("1")
    expect(count).to_have_text("3 profiles match")

    # when saved
    page.click("input[name=_continue]")

    # then the segment's page shows its members now, the size chart and the reasons
    expect(page.locator("ul.messagelist")).to_contain_text("Refreshed: 3 profiles are in buyers")
    segment = Segment.objects.get(key="buyers")
    assert segment.size == 3 and segment.version == 1
    assert set(
        Membership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    ) == {p.pk for p in buyers}
    chart = page.locator("svg#segment-size-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("polyline.size-line")).to_have_count(1)
    expect(page.locator("#size-chart-title")).to_have_text("Size of Buyers over time")
    members = page.locator("#segment-members tr.member")
    expect(members).to_have_count(3)
    first = members.first
    first.locator("summary", has_text="why?").click()
    expect(first.locator("details.member-reason li")).to_contain_text(["✓ orders_count ≥ 1"])
    expect(page.locator("#segment-refreshes tr.refresh")).to_have_count(1)
    # the builder shows the saved condition again on the change page
    expect(page.locator("#segment-builder .cb-node.cb-feature input.cb-value")).to_have_value("1")
    expect(page.locator("#segment-preview .preview-count")).to_have_text("3 profiles match")


ISSUE_EXAMPLE = {
    "type": "and",
    "children": [
        {
            "type": "performed",
            "event": "Product Viewed",
            "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
            "times": 3,
            "times_op": ">=",
            "within_seconds": 3600,
        },
        {"type": "feature", "name": "orders_count", "op": "gte", "value": 2},
        {"type": "trait", "path": "address.country", "op": "in", "value": ["DE", "AT"]},
        {"type": "not", "child": {"type": "segment", "key": "churned"}},
        {"type": "consent", "purpose": "personalization"},
    ],
}


def test_json_typed_by_hand_shows_as_forms_of_every_node_type_and_edits_keep_the_rest(
    page: Page,
) -> None:
    # given a purpose and a segment the issue's example condition refers to
    Purpose.objects.create(key="personalization", name="Personalization", notice_version="v1")
    Segment.objects.create(key="churned", name="Churned", condition=None, kind="cluster")

    # when a power user pastes the issue's example into the JSON textarea
    page.goto("/admin/segments/segment/add/")
    page.fill("#id_condition", json.dumps(ISSUE_EXAMPLE))

    # then every node shows as its forms, with its values
    builder = page.locator("#segment-builder")
    expect(builder.locator(".cb-raw")).to_have_count(0)
    performed = builder.locator(".cb-node.cb-performed")
    expect(performed.locator("input.cb-event")).to_have_value("Product Viewed")
    expect(performed.locator("select.cb-times-op")).to_have_value(">=")
    expect(performed.locator("input.cb-times")).to_have_value("3")
    expect(performed.locator("select.cb-window")).to_have_value("within")
    expect(performed.locator("input.cb-within")).to_have_value("1")
    expect(performed.locator("select.cb-unit")).to_have_value("3600")
    expect(performed.locator("input.cb-filter-path")).to_have_value("properties.category")
    expect(performed.locator(".cb-filter input.cb-value")).to_have_value("shoes")
    expect(builder.locator(".cb-node.cb-feature select.cb-feature-name")).to_have_value(
        "orders_count"
    )
    trait = builder.locator(".cb-node.cb-trait")
    expect(trait.locator("input.cb-path")).to_have_value("address.country")
    expect(trait.locator("select.cb-op")).to_have_value("in")
    expect(trait.locator("input.cb-value")).to_have_value("DE, AT")
    expect(builder.locator(".cb-node.cb-not .cb-segment-key")).to_have_value("churned")
    expect(builder.locator(".cb-node.cb-consent select.cb-purpose")).to_have_value(
        "personalization"
    )
    expect(page.locator("#segment-preview .preview-count")).to_have_text("0 profiles match")

    # when one value is changed in the forms, and the consent condition negated
    builder.locator(".cb-node.cb-feature input.cb-value").fill("5")
    builder.locator(".cb-node.cb-consent .cb-negate").click()

    # then the JSON changes there and nowhere else
    expected = json.loads(json.dumps(ISSUE_EXAMPLE))
    expected["children"][1]["value"] = 5
    expected["children"][4] = {"type": "not", "child": ISSUE_EXAMPLE["children"][4]}
    assert json.loads(page.input_value("#id_condition")) == expected

    # when the "not" is dropped again, and the window made 2 days
    builder.locator(".cb-node.cb-not:has(.cb-consent) .cb-unwrap").click()
    performed.locator("input.cb-within").fill("2")
    performed.locator("select.cb-unit").select_option("86400")

    # then
    expected["children"][4] = ISSUE_EXAMPLE["children"][4]
    expected["children"][0]["within_seconds"] = 2 * 86400
    assert json.loads(page.input_value("#id_condition")) == expected
    expect(page.locator("#segment-preview .preview-count")).to_have_text("0 profiles match")
