"""The application's database role can do what the application does (the erasure
tests run as it too: tests/consent/test_erasure.py) and cannot switch the consent
log's guard off."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from apps.common.db_roles import RoleRefused, app_role_grant
from apps.consent.models import ConsentRecord
from apps.consent.services import consent_grant
from apps.identity.models import Profile

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="database roles need PostgreSQL",
    ),
]


def _refused(statement: str, params: list[Any] | None = None) -> str:
    """Runs the statement in a savepoint; returns the database's error message."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, params)
    except DatabaseError as exc:
        return str(exc)
    raise AssertionError(f"the database ran {statement!r}")


@pytest.fixture
def record(make_purpose: Any) -> ConsentRecord:
    make_purpose("marketing")
    profile = Profile.objects.create(traits={"email": "ada@example.com"})
    return consent_grant(profile_id=profile.id, purpose="marketing", source="api")


def test_the_application_role_cannot_switch_the_guard_off(
    record: ConsentRecord, as_application_role: str
) -> None:
    table = ConsentRecord._meta.db_table
    # it writes the log as the application does
    assert ConsentRecord.objects.filter(pk=record.pk).exists()
    # but may not switch triggers off, for the table or for the session
    assert "must be owner" in _refused(
        f"ALTER TABLE {table} DISABLE TRIGGER consent_log_append_only"
    )
    assert "permission denied" in _refused("SET session_replication_role = replica")
    assert "permission denied" in _refused(f"TRUNCATE {table}")
    # nor change or delete a statement
    assert "append-only" in _refused(f"UPDATE {table} SET status = 'withdrawn'")
    assert "append-only" in _refused(f"DELETE FROM {table}")
    # nor fool the guard with a table of its own in front of the real one: a
    # temporary "erasure in progress" naming the profile
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE consent_datasubjectrequest"
            " (type text, status text, work_state jsonb)"
        )
        cursor.execute(
            "INSERT INTO consent_datasubjectrequest VALUES ('erasure', 'in_progress', %s)",
            [f'{{"profile_ids": ["{record.profile_id}"]}}'],
        )
        cursor.execute("SELECT set_config('cdp.erasure', 'on', true)")
        assert "append-only" in _refused(f"DELETE FROM {table} WHERE id = %s", [record.pk])
    assert ConsentRecord.objects.filter(pk=record.pk).exists()


def test_a_role_that_could_switch_the_guard_off_is_refused() -> None:
    # the owner itself (here a superuser too)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (owner,) = cursor.fetchone()
    with pytest.raises(RoleRefused):
        app_role_grant(owner)
    name = f"cdp_test_role_{uuid.uuid4().hex[:8]}"
    # a role that does not exist, unless it is to be created
    with pytest.raises(RoleRefused, match="does not exist"):
        app_role_grant(name)
    # a superuser
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{name}_su" SUPERUSER')
        cursor.execute(f'CREATE ROLE "{name}_member"')
        cursor.execute(f'GRANT "{owner}" TO "{name}_member"')
    with pytest.raises(RoleRefused, match="superuser"):
        app_role_grant(f"{name}_su")
    # a member of the owner's role (it could SET ROLE to it)
    with pytest.raises(RoleRefused, match="may act as"):
        app_role_grant(f"{name}_member")


def test_the_command_creates_the_role_with_a_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cdp_test_role_{uuid.uuid4().hex[:8]}"
    with pytest.raises(CommandError, match="CDP_TEST_APP_DB_PASSWORD is not set"):
        call_command("db_app_role", name, "--create", "--password-env", "CDP_TEST_APP_DB_PASSWORD")
    monkeypatch.setenv("CDP_TEST_APP_DB_PASSWORD", "s3cret-from-env")
    call_command("db_app_role", name, "--create", "--password-env", "CDP_TEST_APP_DB_PASSWORD")
    out = capsys.readouterr().out
    assert f"created role {name}" in out and f"set the password of {name}" in out
    assert "s3cret" not in out
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid"
            " WHERE rolname = %s",
            [name],
        )
        assert cursor.fetchone() == (True, False, True)
        cursor.execute("SELECT has_table_privilege(%s, 'identity_profile', 'INSERT')", [name])
        assert cursor.fetchone() == (True,)
        cursor.execute("SELECT has_table_privilege(%s, 'identity_profile', 'TRUNCATE')", [name])
        assert cursor.fetchone() == (False,)
    # run again (after the next migrate): nothing to create, the grants again
    call_command("db_app_role", name)
    assert "granted" in capsys.readouterr().out
    with pytest.raises(CommandError, match="superuser"):
        call_command("db_app_role", "postgres")


def test_the_application_role_runs_deduplication(as_application_role: str) -> None:
    from apps.identity.dedup.services import dedup_run

    # given: two records of one person, written as the application writes them
    traits = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}
    Profile.objects.create(traits=traits)
    Profile.objects.create(traits={**traits, "phone": "+14155550100"})
    # when: a full run (it empties and rebuilds its blocking index, takes its
    # advisory lock, merges) runs as the application's role
    run = dedup_run(full=True)
    # then: it succeeded and merged them
    assert run is not None and run.status == "succeeded"
    assert run.auto_merged == 1
    assert Profile.objects.live().count() == 1
