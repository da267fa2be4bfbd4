"""The consent admin in a real browser: headless Chromium (Playwright, sync API)
against pytest-django's live server, clicking through the pages a privacy admin uses.

1. A profile's consent section: current state per purpose, the timeline with its
   proof, and recording a statement given by phone through "Record consent".
2. An erasure request from creation to completion through the workflow buttons,
   and the request list showing open requests (the overdue first) before closed ones.

Celery is eager in tests and on_commit callbacks run in the live server's request
thread, so "Run erasure" has finished by the time its redirect is answered.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import formats, timezone

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect

from apps.consent.deadlines import due_date
from apps.consent.models import ConsentRecord, DataSubjectRequest, Purpose
from apps.consent.services import consent_grant, consent_withdraw
from apps.consent.services.dsr import dsr_create, dsr_transition
from apps.identity.models import Profile
from apps.identity.services import IdentityClaim, profiles_resolve
from tests.browser import admin_page

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "privacy-admin"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 ConsentTest"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (tests/browser.py)."""
    with admin_page(live_server, monkeypatch, USERNAME) as tab:
        yield tab


def _ada() -> Profile:
    profile_id = profiles_resolve(
        claims=[IdentityClaim(identifiers=[("email", "ada@example.com")], timestamp=timezone.now())]
    )[0]
    assert profile_id is not None
    return Profile.objects.get(pk=profile_id)


def _marketing() -> Purpose:
    return Purpose.objects.create(
        key="marketing",
        name="Marketing emails",
        notice_version="v2",
        notice_text="We send you offers by email.",
    )


def _readonly(page: Page, field: str) -> Any:
    return page.locator(f".field-{field} .readonly")


def test_profile_consent_timeline_and_recording_consent(page: Page, live_server: Any) -> None:
    # given: a grant on the signup form, withdrawn an hour later by the preference centre
    purpose = _marketing()
    profile = _ada()
    now = timezone.now()
    consent_grant(
        profile_id=profile.pk,
        purpose="marketing",
        source="api",
        given_at=now - timedelta(hours=2),
        method="signup checkbox",
        page_url="https://shop.example.com/signup",
        user_agent=UA,
    )
    consent_withdraw(
        profile_id=profile.pk,
        purpose="marketing",
        source="api",
        given_at=now - timedelta(hours=1),
        method="preference centre",
        page_url="https://shop.example.com/preferences",
        user_agent=UA,
    )

    # when: the admin opens the profile
    page.goto(f"/admin/identity/profile/{profile.pk}/change/")

    # then: the current state per purpose, and the timeline newest first with its proof
    section = page.locator("#consent-timeline")
    expect(section.locator("h2")).to_have_text("Consent")
    state = section.locator("tr.consent-state[data-purpose=marketing]")
    expect(state).to_have_count(1)
    expect(state).to_contain_text("Marketing emails")
    expect(state.locator("td").nth(1)).to_contain_text("withdrawn")
    expect(state).to_contain_text("may not be used")
    records = section.locator("tr.consent-record")
    expect(records).to_have_count(2)
    newest, oldest = records.nth(0), records.nth(1)
    expect(newest.locator("td").nth(2)).to_have_text("withdrawn")
    expect(newest.locator("td").nth(3)).to_contain_text("Management API — preference centre")
    expect(newest.locator("td").nth(4)).to_contain_text("page https://shop.example.com/preferences")
    expect(oldest.locator("td").nth(2)).to_have_text("granted")
    expect(oldest.locator("td").nth(3)).to_contain_text("signup checkbox")
    proof = oldest.locator("td").nth(4)
    expect(proof).to_contain_text("notice v2")
    expect(proof.locator("code").first).to_have_attribute("title", purpose.notice_hash)
    expect(proof).to_contain_text("page https://shop.example.com/signup")
    expect(proof.locator(f"span[title='{UA}']")).to_have_count(1)

    # when: the admin records a consent given by phone
    page.get_by_role("link", name="Record consent").click()
    expect(page).to_have_url(re.compile(r"/admin/consent/consentrecord/add/\?profile="))
    expect(page.locator("#id_profile")).to_have_value(str(profile.pk))
    page.select_option("#id_purpose", label="Marketing emails")
    page.select_option("#id_status", label="Granted")
    given = timezone.localtime() - timedelta(minutes=1)
    page.fill("#id_given_at_0", given.strftime("%Y-%m-%d"))
    page.fill("#id_given_at_1", given.strftime("%H:%M:%S"))
    page.fill("#id_method", "phone call")
    page.click("input[name=_save]")

    # then: back on the profile, granted, and the statement is the admin's
    expect(page).to_have_url(re.compile(rf"/admin/identity/profile/{profile.pk}/change/$"))
    expect(page.locator("ul.messagelist")).to_contain_text("The consent statement was recorded.")
    state = page.locator("#consent-timeline tr.consent-state[data-purpose=marketing]")
    expect(state.locator("td").nth(1)).to_contain_text("granted")
    expect(state).to_contain_text("may be used")
    records = page.locator("#consent-timeline tr.consent-record")
    expect(records).to_have_count(3)
    expect(records.nth(0).locator("td").nth(2)).to_have_text("granted")
    expect(records.nth(0).locator("td").nth(3)).to_have_text(f"Admin — phone call by {USERNAME}")
    assert list(
        ConsentRecord.objects.filter(profile=profile, source="admin").values_list(
            "status", "method", "entered_by__username"
        )
    ) == [("granted", "phone call", USERNAME)]


def test_erasure_request_from_creation_to_completion(page: Page, live_server: Any) -> None:
    # given: Ada, with consent statements; another person's request, open and overdue;
    # and an old request that was rejected (closed, with the earliest due date)
    purpose = _marketing()
    profile = _ada()
    consent_grant(profile_id=profile.pk, purpose="marketing", source="api", user_agent=UA)
    consent_withdraw(profile_id=profile.pk, purpose="marketing", source="api", user_agent=UA)
    overdue = dsr_create(
        type="access",
        subject="email:zed@example.com",
        received_at=timezone.now() - timedelta(days=40),
    )
    old = dsr_create(
        type="access",
        subject="email:old@example.com",
        received_at=timezone.now() - timedelta(days=90),
    )
    dsr_transition(request=old, status="rejected", note="could not verify the requester")

    # when: the admin records an erasure request
    page.goto("/admin/consent/datasubjectrequest/add/")
    page.select_option("#id_type", label="Erasure (Art. 17)")
    page.fill("#id_subject", "email:ada@example.com")
    page.click("input[name=_save]")
    message = page.locator("ul.messagelist")
    expect(message).to_contain_text("was added successfully")
    dsr = DataSubjectRequest.objects.get(type="erasure")
    message.get_by_role("link").click()

    # then: its change page shows the legal deadline, one calendar month from today
    expect(page).to_have_url(re.compile(rf"/admin/consent/datasubjectrequest/{dsr.pk}/change/$"))
    expected_due = due_date(timezone.localdate())
    assert dsr.due_date == expected_due
    expect(_readonly(page, "due_date")).to_have_text(formats.date_format(expected_due))
    expect(_readonly(page, "status")).to_have_text("Received")
    expect(page.locator("#workflow button[value=erase]")).to_have_count(0)

    # when: identity is verified, then the erasure runs
    page.get_by_role("button", name="Mark identity verified").click()
    expect(page.locator("ul.messagelist")).to_contain_text("The request is now identity verified.")
    expect(_readonly(page, "status")).to_have_text("Identity verified")
    page.get_by_role("button", name="Run erasure").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Erasure started")
    deadline = time.monotonic() + 20
    while _readonly(page, "status").inner_text().strip() != "Completed":
        assert time.monotonic() < deadline, "the erasure did not complete within 20 s"
        time.sleep(0.5)
        page.reload()

    # then: completed, fully, and the request no longer names the person
    expect(_readonly(page, "status")).to_have_text("Completed")
    expect(_readonly(page, "progress")).to_have_text("100")
    expect(_readonly(page, "subject")).to_have_text(re.compile(r"^erased:[0-9a-f]{16}$"))
    expect(page.locator("#workflow")).to_have_count(0)
    assert not Profile.objects.filter(pk=profile.pk).exists()
    assert not purpose.records.filter(profile_id=profile.pk).exists()
    assert not ConsentRecord.objects.filter(origin_profile_id=profile.pk).exists()
    dsr.refresh_from_db()
    assert dsr.subject.startswith("erased:")
    assert dsr.erasure_summary["counts"]["consent_records"] == 2

    # and: the request list shows open requests first (the overdue one at the top)
    page.goto("/admin/consent/datasubjectrequest/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    first = rows.nth(0)
    expect(first.locator("td.field-subject")).to_have_text("email:zed@example.com")
    expect(first.locator("td.field-status")).to_have_text("Received")
    late = (timezone.localdate() - overdue.due_date).days
    expect(first.locator("td.field-deadline")).to_have_text(
        f"{overdue.due_date.isoformat()} (overdue by {late} days)"
    )
    # closed ones after it, by due date, even the one due long before it
    expect(rows.nth(1).locator("td.field-subject")).to_have_text("email:old@example.com")
    expect(rows.nth(1).locator("td.field-status")).to_have_text("Rejected")
    expect(rows.nth(2).locator("td.field-subject")).to_have_text(re.compile(r"^erased:"))
    expect(rows.nth(2).locator("td.field-status")).to_have_text("Completed")
    expect(rows.nth(2).locator("td.field-progress_bar")).to_contain_text("100%")


def test_request_list_fits_a_1440_pixel_window(page: Page, live_server: Any) -> None:
    # given: requests of every type, with long subjects and long progress notes
    # (as long as the field allows; set after creation, as an unbroken string)
    long_subject = "email:" + "ada.lovelace." * 20 + "@example.com"
    for request_type in ("access", "erasure", "rectification", "portability", "restriction"):
        dsr = dsr_create(
            type=request_type,
            subject="email:ada@example.com",
            received_at=timezone.now() - timedelta(days=40),
        )
        DataSubjectRequest.objects.filter(pk=dsr.pk).update(
            subject=long_subject,
            progress=42,
            progress_note="step 3 of 7: " + "deleting events " * 10,
        )

    # when
    page.goto("/admin/consent/datasubjectrequest/")

    # then: no horizontal scroll, and a cut subject keeps its full value in a title
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    widths = page.evaluate(
        "[document.querySelector('#result_list').scrollWidth, document.documentElement.scrollWidth]"
    )
    assert max(widths) <= 1440, widths
    subject = page.locator("#result_list tbody tr td.field-subject span").first
    expect(subject).to_have_attribute("title", long_subject)
