"""Identifier-type settings cannot weaken the user id rule or split stitching."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.test import Client

from apps.identity.models import Identifier, IdentifierTypeConfig, IdentityConflict, Profile
from apps.identity.services import IdentityClaim, profiles_resolve

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, tzinfo=UTC)
CHANGELIST = "/admin/identity/identifiertypeconfig/"


def _row(key: str, **values: Any) -> IdentifierTypeConfig:
    # Transactional tests may have flushed the migration's rows: put them back.
    defaults = {
        "user_id": {"label": "User id", "priority": 0, "max_per_profile": 1},
        "email": {"label": "Email", "priority": 10, "max_per_profile": 5, "trait": "email"},
    }[key]
    normalization = "email" if key == "email" else "exact"
    row, _ = IdentifierTypeConfig.objects.update_or_create(
        key=key, defaults={**defaults, "normalization": normalization, **values}
    )
    return row


@pytest.fixture
def admin_client_(client: Client) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def _changelist_post(client: Client, changes: dict[str, dict[str, Any]]) -> Any:
    """Save the changelist's editable columns, with ``changes`` by key."""
    rows = list(IdentifierTypeConfig.objects.order_by("priority", "key"))
    data: dict[str, Any] = {
        "form-TOTAL_FORMS": len(rows),
        "form-INITIAL_FORMS": len(rows),
        "form-MIN_NUM_FORMS": 0,
        "form-MAX_NUM_FORMS": 1000,
        "_save": "Save",
    }
    for i, row in enumerate(rows):
        values = {
            "priority": row.priority,
            "max_per_profile": row.max_per_profile or "",
            "enabled": "on" if row.enabled else "",
            **changes.get(row.key, {}),
        }
        data[f"form-{i}-id"] = row.pk
        for name, value in values.items():
            if value != "":
                data[f"form-{i}-{name}"] = value
    return client.post(CHANGELIST, data)


def test_user_id_outranks_every_type_whatever_its_priority_row_says() -> None:
    # given alice, and an admin who put email above user_id
    _row("user_id", priority=50)
    _row("email", priority=0)
    [alice] = profiles_resolve(
        claims=[IdentityClaim([("user_id", "alice")], T0, traits={"email": "alice@x.com"})]
    )

    # when bob identifies with alice's email
    [bob] = profiles_resolve(
        claims=[IdentityClaim([("user_id", "bob")], T0, traits={"email": "alice@x.com"})]
    )

    # then bob keeps his own profile and user id; it is the email that is dropped
    assert bob != alice
    assert set(Identifier.objects.filter(profile_id=bob).values_list("type", "value")) == {
        ("user_id", "bob")
    }
    assert set(Identifier.objects.filter(profile_id=alice).values_list("type", "value")) == {
        ("user_id", "alice"),
        ("email", "alice@x.com"),
    }
    conflict = IdentityConflict.objects.get()
    assert (conflict.profile_id, conflict.other_profile_id, conflict.rule) == (
        bob,
        alice,
        "different_user_ids",
    )
    assert (conflict.identifier_type, conflict.identifier_value) == ("email", "alice@x.com")
    assert Profile.objects.live().count() == 2


def test_changelist_cannot_change_user_id_priority_or_cap(admin_client_: Client) -> None:
    # given
    _row("user_id")
    _row("email")

    # when an admin edits the list, moving user_id down and email up
    response = _changelist_post(
        admin_client_,
        {"user_id": {"priority": 50, "max_per_profile": 3}, "email": {"priority": 5}},
    )

    # then email's row changes; user_id's stays pinned
    assert response.status_code == 302
    assert IdentifierTypeConfig.objects.get(key="email").priority == 5
    pinned = IdentifierTypeConfig.objects.get(key="user_id")
    assert (pinned.priority, pinned.max_per_profile) == (0, 1)


def test_change_form_shows_user_id_priority_read_only(admin_client_: Client) -> None:
    # given
    row = _row("user_id")
    url = f"{CHANGELIST}{row.pk}/change/"

    # when
    page = admin_client_.get(url)
    response = admin_client_.post(
        url,
        {
            "label": "User id",
            "priority": 50,
            "max_per_profile": 2,
            "normalization": "exact",
            "trait": "",
            "enabled": "on",
        },
    )

    # then
    assert 'name="priority"' not in page.content.decode()
    assert 'name="max_per_profile"' not in page.content.decode()
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.priority, row.max_per_profile, row.label) == (0, 1, "User id")


def test_key_and_normalization_are_read_only_once_identifiers_of_the_type_exist(
    admin_client_: Client,
) -> None:
    # given a custom type in use
    row = IdentifierTypeConfig.objects.create(
        key="crm_id", label="CRM id", priority=30, normalization="exact"
    )
    profiles_resolve(
        claims=[IdentityClaim([], T0, external_ids=[{"id": "CRM-1", "type": "crm_id"}])]
    )
    url = f"{CHANGELIST}{row.pk}/change/"

    # when an admin tries to rename it and make it case-insensitive
    response = admin_client_.post(
        url,
        {
            "key": "crm",
            "label": "CRM",
            "priority": 30,
            "normalization": "lowercase",
            "trait": "",
            "enabled": "on",
        },
    )

    # then the label changes, the key and the normalization do not
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.key, row.normalization, row.label) == ("crm_id", "exact", "CRM")


def test_key_and_normalization_of_an_unused_custom_type_can_change(admin_client_: Client) -> None:
    # given
    row = IdentifierTypeConfig.objects.create(
        key="crm_id", label="CRM id", priority=30, normalization="exact"
    )

    # when
    response = admin_client_.post(
        f"{CHANGELIST}{row.pk}/change/",
        {
            "key": "crm",
            "label": "CRM",
            "priority": 30,
            "normalization": "lowercase",
            "trait": "",
            "enabled": "on",
        },
    )

    # then
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.key, row.normalization) == ("crm", "lowercase")


def test_builtin_type_keys_are_read_only(admin_client_: Client) -> None:
    # given an email type no identifier uses yet
    row = _row("email")

    # when
    page = admin_client_.get(f"{CHANGELIST}{row.pk}/change/").content.decode()

    # then its key cannot be renamed, its normalization still can
    assert 'name="key"' not in page
    assert 'name="normalization"' in page


def test_migration_sets_an_edited_user_id_row_back() -> None:
    # given a user_id row edited before it was pinned
    _row("user_id", priority=50, max_per_profile=4)
    # when the data migration's function runs
    migration = importlib.import_module("apps.identity.migrations.0004_user_id_row_pinned")
    migration.pin_user_id_row(django_apps, None)
    # then
    row = IdentifierTypeConfig.objects.get(key="user_id")
    assert (row.priority, row.max_per_profile) == (0, 1)
