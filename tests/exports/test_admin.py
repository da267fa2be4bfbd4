"""Admin: a destination made in the form (settings checked per kind, the secret
shown once), runs started by hand, files downloaded only with permission, and
dead letters retried."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from apps.exports.models import Destination, ExportRun
from apps.exports.webhooks import webhook_secret_of

from .conftest import run_now

pytestmark = pytest.mark.django_db


def _staff(*perms: str) -> Client:
    user = get_user_model().objects.create_user("marketer", password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_a_webhook_made_in_admin_shows_its_secret_once_and_refuses_bad_settings(
    ads: Any, audience: Any
) -> None:
    # given
    client = _staff(
        "exports.add_destination", "exports.change_destination", "exports.view_destination"
    )
    shoes = audience("shoes", [])
    form = {
        "key": "crm-hook",
        "name": "CRM hook",
        "kind": "webhook",
        "purpose": ads.pk,
        "identifier_type": "user_id",
        "hashing": "none",
        "segments": [shoes.pk],
        "schedule": "",
        "enabled": "on",
    }
    # when: settings without a usable URL
    bad = client.post("/admin/exports/destination/add/", {**form, "settings": '{"url": "ftp://x"}'})
    # then: the form names the setting, nothing is saved
    assert bad.status_code == 200
    assert "url: must be an http or https URL with a host" in bad.content.decode()
    assert not Destination.objects.exists()
    # when: a good one
    good = client.post(
        "/admin/exports/destination/add/",
        {**form, "settings": '{"url": "https://hooks.example.com/cdp"}'},
        follow=True,
    )
    # then: saved, the whsec_ secret shown this once, never on its page again
    destination = Destination.objects.get(key="crm-hook")
    secret = webhook_secret_of(destination)
    assert secret.startswith("whsec_")
    assert secret in good.content.decode()
    page = client.get(f"/admin/exports/destination/{destination.pk}/change/")
    assert secret not in page.content.decode()
    assert "set, encrypted (shown once when made" in page.content.decode()
    assert list(destination.segments.all()) == [shoes]


def test_a_bad_schedule_is_refused_and_a_good_one_makes_a_beat_entry(ads: Any) -> None:
    client = _staff(
        "exports.add_destination", "exports.change_destination", "exports.view_destination"
    )
    form = {
        "key": "opt",
        "name": "Optimizely",
        "kind": "optimizely",
        "settings": "{}",
        "purpose": ads.pk,
        "identifier_type": "user_id",
        "hashing": "none",
        "enabled": "on",
    }
    bad = client.post("/admin/exports/destination/add/", {**form, "schedule": "every day"})
    assert "a cron expression has five fields" in bad.content.decode()
    client.post("/admin/exports/destination/add/", {**form, "schedule": "30 3 * * *"})
    destination = Destination.objects.get(key="opt")
    assert destination.periodic_task is not None
    assert destination.periodic_task.task == "apps.exports.tasks.export_run_scheduled"
    assert (destination.periodic_task.crontab.minute, destination.periodic_task.crontab.hour) == (
        "30",
        "3",
    )


def test_files_download_only_with_permission(person: Any, audience: Any, destination: Any) -> None:
    # given: a finished run with one file
    shoes = audience("shoes", [person("ada")])
    optimizely, _ = destination("optimizely", [shoes])
    run = run_now(optimizely)
    (row,) = run.export_files.all()
    url = f"/admin/exports/exportrun/file/{row.pk}/download/"
    # when/then: a staff member without the permissions is refused
    assert _staff().get(url).status_code == 403
    get_user_model().objects.all().delete()
    # with them, the file
    allowed = _staff("exports.view_exportrun", "exports.view_exportfile")
    response = allowed.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"ada\n"
    # and anonymous visitors are sent to log in
    assert Client().get(url).status_code == 302


def test_a_run_started_by_hand_from_the_list(
    person: Any, audience: Any, destination: Any, django_capture_on_commit_callbacks: Any
) -> None:
    shoes = audience("shoes", [person("ada")])
    optimizely, _ = destination("optimizely", [shoes])
    client = _staff("exports.change_destination", "exports.view_destination")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/admin/exports/destination/",
            {"action": "run_full", "_selected_action": [optimizely.pk]},
        )
    run = ExportRun.objects.get(destination=optimizely)
    assert (run.status, run.trigger, run.rows) == ("succeeded", "manual", 1)
