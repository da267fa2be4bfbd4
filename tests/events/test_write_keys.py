"""Write keys stored hashed: the table holds no key, the key is shown once (command,
admin, quickstart), rotation shuts the old key out (at once in the rotating
process, within the cache time in the others), and the migration hashes the keys
stored plain before."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.common.utils import sha256_hex
from apps.events import auth
from apps.events.auth import (
    source_create,
    source_for_key,
    source_write_key_rotate,
    write_key_problem,
)
from apps.events.models import Event, Source

pytestmark = pytest.mark.django_db


def _track(key: str) -> Any:
    auth_header = base64.b64encode(f"{key}:".encode()).decode()
    return Client().post(
        "/v1/track",
        data='{"userId": "u-1", "event": "E"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth_header}",
    )


def _raw_row(pk: int) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM events_source WHERE id = %s", [pk])
        names = [column[0] for column in cursor.description]
        row = cursor.fetchone()
    return {name: str(value) for name, value in zip(names, row, strict=True)}


def test_the_table_holds_the_digest_and_a_prefix_never_the_key() -> None:
    # given
    source, key = source_create(name="Web")
    # then
    row = _raw_row(source.pk)
    assert "write_key" not in row
    assert not any(key in value for value in row.values())
    assert row["write_key_hash"] == sha256_hex(key)
    assert row["write_key_prefix"] == key[:6] and len(key) == 32


def test_a_key_ingests_and_a_wrong_one_is_401() -> None:
    # given
    source, key = source_create(name="Web")
    # when / then
    assert _track(key).json() == {"success": True}
    assert Event.objects.get().source_id == source.pk
    for wrong in (key[:-1], key + "x", sha256_hex(key), source.write_key_hash):
        response = _track(wrong)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_write_key"
    assert Event.objects.count() == 1


def test_a_source_made_without_a_key_takes_no_events_until_rotated() -> None:
    # given a source made the plain ORM way (load_demo's old path, fixtures)
    source = Source.objects.create(name="Bare")
    other = Source.objects.create(name="Bare too")  # no clash on the unique digest
    # then nobody holds a key that works
    assert source.write_key_hash != other.write_key_hash
    assert source.write_key_prefix == ""
    assert _track("").status_code == 401
    # when rotated, the key it shows works
    key = source_write_key_rotate(source=source)
    assert _track(key).json() == {"success": True}


def test_rotation_shuts_the_old_key_out_and_the_new_one_works() -> None:
    # given
    source, old = source_create(name="Web")
    assert _track(old).status_code == 200
    # when
    new = source_write_key_rotate(source=source)
    # then
    assert new != old
    assert _track(old).json()["code"] == "invalid_write_key"
    assert _track(new).json() == {"success": True}
    source.refresh_from_db()
    assert source.write_key_hash == sha256_hex(new)
    assert source.write_key_prefix == new[:6]


@pytest.mark.django_db(transaction=True)
def test_the_cache_keeps_a_key_rotated_elsewhere_only_for_its_ttl(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a five-second cache and a key in it
    settings.CDP = {**settings.CDP, "WRITE_KEY_CACHE_SECONDS": 5}
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(auth, "_cache", {})
    source, old = source_create(name="Web")
    assert source_for_key(old) == source
    # when another process rotates it (the row changes, this cache is not told)
    Source.objects.filter(pk=source.pk).update(write_key_hash=sha256_hex("elsewhere"))
    # then this process honours the old key until the cache time is over, no longer
    clock[0] += 4.9
    assert source_for_key(old) == source
    clock[0] += 0.2
    assert source_for_key(old) is None
    assert source_for_key("elsewhere") == source


@pytest.mark.django_db(transaction=True)
def test_rotating_in_this_process_forgets_the_cached_key_at_once(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a long cache holding the key and a miss for the key to come
    settings.CDP = {**settings.CDP, "WRITE_KEY_CACHE_SECONDS": 3600}
    monkeypatch.setattr(auth, "_cache", {})
    source, old = source_create(name="Web")
    assert source_for_key(old) == source
    assert source_for_key("wk_the_next_one") is None
    # when
    source_write_key_rotate(source=source, write_key="wk_the_next_one")
    # then
    assert source_for_key(old) is None
    assert source_for_key("wk_the_next_one") == source


def test_create_source_prints_the_key_once_and_refuses_unusable_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # when
    call_command("create_source", "iOS")
    key = capsys.readouterr().out.strip()
    # then
    assert source_for_key(key) == Source.objects.get(name="iOS")
    for bad, why in (("a:b", "colon"), ("x" * 101, "longer than 100"), ("  ", "empty")):
        with pytest.raises(CommandError, match=why):
            call_command("create_source", "Bad", "--write-key", bad)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_source", "iOS")
    assert not Source.objects.filter(name="Bad").exists()


def test_rotate_write_key_command_prints_a_working_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    source, old = source_create(name="Android app")
    # when
    call_command("rotate_write_key", "Android app")
    new = capsys.readouterr().out.strip()
    # then
    assert source_for_key(new) == source and source_for_key(old) is None
    with pytest.raises(CommandError, match='No source is named "Nope"'):
        call_command("rotate_write_key", "Nope")


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _key_messages(response: Any) -> list[str]:
    """The admin's messages that show a key (not Django's "was added" ones)."""
    return [str(m) for m in response.context["messages"] if "not be shown again" in str(m)]


def test_admin_shows_the_key_once_at_creation_and_only_its_prefix_after(
    admin_client: Client,
) -> None:
    # when
    response = admin_client.post(
        "/admin/events/source/add/", {"name": "Shop", "enabled": "on"}, follow=True
    )
    # then the message holds a working key, the list only its prefix
    [message] = _key_messages(response)
    key = re.search(r"shown again: (\S+)", message).group(1)  # type: ignore[union-attr]
    source = Source.objects.get(name="Shop")
    assert source_for_key(key) == source
    listing = admin_client.get("/admin/events/source/").content.decode()
    assert f"{key[:6]}…" in listing and key not in listing
    page = admin_client.get(f"/admin/events/source/{source.pk}/change/").content.decode()
    assert key not in page and source.write_key_hash not in page
    found = admin_client.get("/admin/events/source/", {"q": key[:6]}).content.decode()
    assert "Shop" in found


def test_admin_rotate_action_shows_the_new_key_and_the_old_one_fails(
    admin_client: Client,
) -> None:
    # given
    source, old = source_create(name="Shop")
    # when
    response = admin_client.post(
        "/admin/events/source/",
        {"action": "rotate_write_keys", "_selected_action": [source.pk]},
        follow=True,
    )
    # then
    [message] = _key_messages(response)
    new = re.search(r'"Shop": (\S+)', message).group(1)  # type: ignore[union-attr]
    assert source_for_key(new) == source
    assert source_for_key(old) is None


def test_quickstart_keeps_the_demo_key_in_a_private_file_and_rotates_a_lost_one(
    capsys: pytest.CaptureFixture[str], settings: Any, tmp_path: Path
) -> None:
    # given a first run (no demo data: the key is what is tested)
    settings.BASE_DIR = tmp_path
    call_command("load_demo", "--customers", "1", "--days", "1", verbosity=0)
    first_out = capsys.readouterr().out
    call_command("quickstart", "--skip-demo")
    out = capsys.readouterr().out
    key = re.search(r"Write key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    demo = Source.objects.get(name="Demo web")
    # load_demo made the source and showed its key; quickstart had no file: rotated
    assert "write key " in first_out and "rotated" in out
    assert source_for_key(key) == demo
    key_file = tmp_path / "var" / "quickstart-write-key.txt"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # when it runs again: the same key, nothing rotated
    call_command("quickstart", "--skip-demo")
    again = capsys.readouterr().out
    assert f"Write key:  {key}" in again and "rotated" not in again
    # when the file is lost: a new key, shown, and the old one no longer works
    key_file.unlink()
    call_command("quickstart", "--skip-demo")
    new = re.search(r"Write key:\s+(\S+)", capsys.readouterr().out).group(1)  # type: ignore[union-attr]
    assert new != key and source_for_key(new) == demo and source_for_key(key) is None


def test_load_demo_shows_only_the_prefix_of_an_existing_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    _, key = source_create(name="Demo web")
    # when
    call_command("load_demo", "--customers", "1", "--days", "1", verbosity=0)
    out = capsys.readouterr().out
    # then
    assert key not in out
    assert f"write key {key[:6]}…" in out and 'rotate_write_key "Demo web"' in out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.text(min_size=1, max_size=100), other=st.text(max_size=100))
def test_any_usable_key_finds_its_source_and_no_other_key_does(key: str, other: str) -> None:
    Source.objects.filter(name="Any").delete()
    if write_key_problem(key) is not None:
        assert key.strip() == "" or ":" in key or "\x00" in key
        return
    source, raw = source_create(name="Any", write_key=key)
    assert raw == key
    assert source_for_key(key) == source
    if other != key:
        assert source_for_key(other) is None
    assert key not in _raw_row(source.pk).values()


BEFORE = [("events", "0004_pipeline_batch")]
AFTER = [("events", "0005_source_write_key_hashed")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_hashes_the_plain_keys_and_refuses_to_go_back() -> None:
    try:
        # given sources stored before, their keys in plain text
        old = _migrate(BEFORE).get_model("events", "Source")
        web = old.objects.create(name="Web", write_key="wk_" + "a" * 29).pk
        short = old.objects.create(name="Short", write_key="ios_key_1").pk
        # when
        _migrate(AFTER)
        # then the keys are gone from the table and still work
        for pk, key, prefix in ((web, "wk_" + "a" * 29, "wk_aaa"), (short, "ios_key_1", "io")):
            row = _raw_row(pk)
            assert "write_key" not in row
            assert row["write_key_hash"] == sha256_hex(key)
            assert row["write_key_prefix"] == prefix
            assert source_for_key(key) == Source.objects.get(pk=pk)
        # when going back: refused, the keys cannot be brought back
        with pytest.raises(RuntimeError, match="cannot be reversed while sources exist"):
            _migrate(BEFORE)
        assert source_for_key("ios_key_1") == Source.objects.get(pk=short)
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_goes_back_when_there_is_no_source() -> None:
    try:
        Source.objects.all().delete()
        back = _migrate(BEFORE).get_model("events", "Source")
        assert "write_key" in {f.name for f in back._meta.get_fields()}
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
