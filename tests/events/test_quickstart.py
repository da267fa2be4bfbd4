from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_quickstart_prints_a_working_admin_login_write_key_and_token(
    capsys: pytest.CaptureFixture[str], settings: object, tmp_path: Path
) -> None:
    # given a fresh install (the admin password file lives in a temporary place)
    settings.BASE_DIR = tmp_path  # type: ignore[attr-defined]
    # when
    call_command("quickstart", "--customers", "5", "--base-url", "http://127.0.0.1:8123")
    out = capsys.readouterr().out
    # then the login it prints opens the admin, and the key and token work
    password = re.search(r"login admin / (\S+)", out).group(1)  # type: ignore[union-attr]
    client = Client()
    assert client.login(username="admin", password=password)
    assert client.get("/admin/events/event/").status_code == 200
    token = re.search(r"API token:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/profiles")
    assert response.status_code == 200 and response.json()["results"]
    key = re.search(r"Write key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    track = Client().post(
        f"/v1/track?writeKey={key}",
        data='{"userId": "qs", "event": "E"}',
        content_type="text/plain",
    )
    assert track.json() == {"success": True}
    assert "http://127.0.0.1:8123/admin/" in out

    # when it runs again, the same login still works
    call_command("quickstart", "--skip-demo")
    assert f"login admin / {password}" in capsys.readouterr().out
