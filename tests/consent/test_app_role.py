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


def _current_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return str(cursor.fetchone()[0])


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        ('CREATE ROLE "{r}" SUPERUSER', "superuser"),
        ('CREATE ROLE "{r}" CREATEROLE', "may create roles"),
        ('CREATE ROLE "{r}" BYPASSRLS', "row security"),
        ('CREATE ROLE "{r}" REPLICATION', "replication"),
        # a member of the owner may SET ROLE to it, inheriting or not
        ('CREATE ROLE "{r}" NOINHERIT; GRANT "{owner}" TO "{r}"', "may act as"),
        # the owner of the schema (here a role of its own, like a database owner)
        ('CREATE ROLE "{r}"; ALTER SCHEMA public OWNER TO "{r}"', "may act as"),
        # CREATE in the schema: a function of its own could stand in for the guard's
        ('CREATE ROLE "{r}"; GRANT CREATE ON SCHEMA public TO PUBLIC', "may create objects"),
    ],
)
def test_a_role_that_could_switch_the_guard_off_is_refused(setup: str, refusal: str) -> None:
    name = f"cdp_test_role_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(setup.format(r=name, owner=_current_user()))
    with pytest.raises(RoleRefused, match=refusal):
        app_role_grant(name)


def test_the_owner_and_missing_roles_are_refused() -> None:
    with pytest.raises(RoleRefused):
        app_role_grant(_current_user())
    with pytest.raises(RoleRefused, match="does not exist"):
        app_role_grant(f"cdp_test_role_{uuid.uuid4().hex[:8]}")


def test_tables_made_after_the_grant_are_granted_too() -> None:
    name = f"cdp_test_role_{uuid.uuid4().hex[:8]}"
    app_role_grant(name, create=True)
    with connection.cursor() as cursor:
        # as a later migration would, run by the same owner
        cursor.execute("CREATE TABLE cdp_test_later (id bigserial PRIMARY KEY, note text)")
        cursor.execute(f'SET LOCAL ROLE "{name}"')
        cursor.execute("INSERT INTO cdp_test_later (note) VALUES ('ok') RETURNING id")
        assert cursor.fetchone()[0] == 1
        cursor.execute("RESET ROLE")


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
            "SELECT rolcanlogin, rolsuper, rolpassword FROM pg_authid WHERE rolname = %s",
            [name],
        )
        can_login, superuser, stored = cursor.fetchone()
        # sent and stored as a SCRAM verifier, never as the password itself
        assert (can_login, superuser) == (True, False)
        assert stored.startswith("SCRAM-SHA-256$") and "s3cret" not in stored
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
