from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps

from apps.identity.models import (
    Identifier,
    IdentifierTypeConfig,
    IdentityConflict,
    JunkIdentifierValue,
    Profile,
    TraitMergeRule,
)
from apps.identity.selectors import profile_get_by_external_id
from apps.identity.services import IdentityClaim, profiles_resolve

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def claim(
    *ids: tuple[str, Any], traits: dict | None = None, at: datetime = T0, **kw: Any
) -> IdentityClaim:  # type: ignore[type-arg]
    return IdentityClaim(identifiers=list(ids), timestamp=at, traits=traits, **kw)


def _set_type(key: str, **values: Any) -> None:
    # Rows for built-in types come from a migration (which transactional tests may
    # have flushed): make sure the row is there, as the migration makes it, first.
    builtin = key in ("email", "phone")
    defaults = {
        "label": key,
        "priority": 10,
        "normalization": key if builtin else "exact",
        "trait": key if builtin else "",
    }
    IdentifierTypeConfig.objects.update_or_create(key=key, defaults={**defaults, **values})


def test_builtin_identifier_types_are_created_as_editable_rows() -> None:
    # given no rows (as after a flush)
    IdentifierTypeConfig.objects.all().delete()
    # when the data migration's function runs
    migration = importlib.import_module("apps.identity.migrations.0002_rules_merge_split")
    migration.create_builtin_types(django_apps, None)
    # then the four built-in types are rows with their default limits
    keys = dict(IdentifierTypeConfig.objects.values_list("key", "max_per_profile"))
    assert keys == {"user_id": 1, "email": 5, "phone": 5, "anonymous_id": None}


def test_builtin_rules_apply_without_rows() -> None:
    IdentifierTypeConfig.objects.all().delete()
    [pid] = profiles_resolve(claims=[claim(("user_id", "u"), traits={"email": "A@example.com"})])
    assert Identifier.objects.get(profile_id=pid, type="email").value == "a@example.com"


def test_custom_identifier_type_from_a_trait_and_from_external_ids() -> None:
    # given an admin-defined CRM id, read from the crm_id trait, case-insensitive
    IdentifierTypeConfig.objects.create(
        key="crm_id", label="CRM id", priority=5, normalization="lowercase", trait="crm_id"
    )
    # when one event names it as a trait and another through context.externalIds
    first, second = profiles_resolve(
        claims=[
            claim(("anonymous_id", "a"), traits={"crm_id": "CRM-77"}),
            claim(("anonymous_id", "b"), external_ids=[{"id": "crm-77", "type": "crm_id"}]),
        ]
    )
    # then both land on one profile, found by the custom type
    assert first == second
    assert Identifier.objects.get(type="crm_id").value == "crm-77"
    assert profile_get_by_external_id(external_id="crm_id:CRM-77").id == first


def test_unconfigured_or_disabled_types_are_ignored() -> None:
    _set_type("phone", enabled=False)
    [pid] = profiles_resolve(
        claims=[
            claim(
                ("user_id", "u"),
                traits={"phone": "+14155552671"},
                external_ids=[{"id": "x", "type": "not_configured"}],
            )
        ]
    )
    assert list(Identifier.objects.filter(profile_id=pid).values_list("type", flat=True)) == [
        "user_id"
    ]


def test_cap_on_a_type_drops_the_extra_identifier_and_records_a_conflict() -> None:
    # given a limit of two emails per profile
    _set_type("email", max_per_profile=2)
    profiles_resolve(claims=[claim(("user_id", "u"), traits={"email": "one@example.com"})])
    profiles_resolve(claims=[claim(("user_id", "u"), traits={"email": "two@example.com"})])
    # when a third email arrives for the same person
    [pid] = profiles_resolve(
        claims=[claim(("user_id", "u"), traits={"email": "three@example.com"})]
    )
    # then it is not linked, and admins can see why
    assert Identifier.objects.filter(profile_id=pid, type="email").count() == 2
    conflict = IdentityConflict.objects.get()
    assert (conflict.rule, conflict.identifier_value) == ("cap", "three@example.com")


def test_cap_blocks_a_merge_that_would_exceed_it() -> None:
    # given two anonymous profiles each holding an email, and a cap of one email
    _set_type("email", max_per_profile=1)
    a, b = profiles_resolve(
        claims=[
            claim(("anonymous_id", "a"), traits={"email": "a@example.com"}),
            claim(("anonymous_id", "b"), traits={"email": "b@example.com"}),
        ]
    )
    # when an event names both anonymous ids
    [result] = profiles_resolve(claims=[claim(("anonymous_id", "a"), ("anonymous_id", "b"))])
    # then they stay apart: the weaker link is dropped and recorded
    assert result == a
    assert Profile.objects.live().count() == 2
    assert IdentityConflict.objects.get().other_profile_id == b


def test_one_user_id_per_profile_drops_the_second_user_id_of_an_event() -> None:
    [pid] = profiles_resolve(claims=[claim(("user_id", "u1"))])
    [result] = profiles_resolve(
        claims=[
            IdentityClaim(
                identifiers=[("user_id", "u1")],
                timestamp=T0,
                external_ids=[{"id": "u2", "type": "user_id"}],
            )
        ]
    )
    assert result == pid
    assert list(Identifier.objects.filter(type="user_id").values_list("value", flat=True)) == ["u1"]
    assert IdentityConflict.objects.get().rule == "one_user_id"


def test_admin_junk_values_are_never_identifiers() -> None:
    JunkIdentifierValue.objects.create(value="  Not-Set ")
    a, b = profiles_resolve(
        claims=[
            claim(("user_id", "1"), ("anonymous_id", "not-set")),
            claim(("user_id", "2"), ("anonymous_id", "NOT-SET")),
        ]
    )
    assert a != b
    assert not Identifier.objects.filter(type="anonymous_id").exists()


def test_first_seen_strategy_keeps_the_earliest_value() -> None:
    # given signup source is kept as first seen
    TraitMergeRule.objects.create(trait="signup_source", strategy="first_seen")
    profiles_resolve(
        claims=[claim(("user_id", "u"), traits={"signup_source": "ads", "plan": "pro"})]
    )
    # when a later and then an earlier event disagree
    profiles_resolve(
        claims=[
            claim(
                ("user_id", "u"),
                at=T0 + timedelta(days=1),
                traits={"signup_source": "seo", "plan": "max"},
            )
        ]
    )
    [pid] = profiles_resolve(
        claims=[
            claim(
                ("user_id", "u"),
                at=T0 - timedelta(days=1),
                traits={"signup_source": "email", "plan": "free"},
            )
        ]
    )
    # then signup_source is the earliest, plan the newest
    assert Profile.objects.get(pk=pid).traits == {"signup_source": "email", "plan": "max"}
