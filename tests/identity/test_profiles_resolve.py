from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.identity.models import Identifier, IdentityConflict, Profile, ProfileMerge
from apps.identity.normalize import is_junk, normalize
from apps.identity.services import IdentityClaim, profiles_resolve

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def claim(*ids: tuple[str, str], at: datetime = T0, traits: dict | None = None) -> IdentityClaim:  # type: ignore[type-arg]
    return IdentityClaim(identifiers=list(ids), timestamp=at, traits=traits)


def identifiers_of(profile_id: object) -> set[tuple[str, str]]:
    return set(Identifier.objects.filter(profile_id=profile_id).values_list("type", "value"))


def test_new_identifiers_create_one_profile_with_all_of_them() -> None:
    # when
    [pid] = profiles_resolve(claims=[claim(("user_id", "42"), ("anonymous_id", "a-1"))])
    # then
    assert Profile.objects.count() == 1
    assert identifiers_of(pid) == {("user_id", "42"), ("anonymous_id", "a-1")}


def test_anonymous_visitor_who_signs_up_keeps_one_profile() -> None:
    # given an anonymous visitor with history
    [anon] = profiles_resolve(claims=[claim(("anonymous_id", "a-1"))])
    # when they identify
    [user] = profiles_resolve(
        claims=[claim(("user_id", "42"), ("anonymous_id", "a-1"), at=T0 + timedelta(days=1))]
    )
    # then
    assert user == anon
    assert Profile.objects.count() == 1


def test_two_devices_of_one_user_merge_into_the_older_profile() -> None:
    # given two anonymous profiles, the first identified
    [first] = profiles_resolve(claims=[claim(("user_id", "42"), ("anonymous_id", "laptop"))])
    [second] = profiles_resolve(
        claims=[
            claim(("anonymous_id", "phone"), at=T0 + timedelta(hours=1), traits={"plan": "pro"})
        ]
    )
    assert first != second
    # when the phone is identified as the same user
    [result] = profiles_resolve(
        claims=[claim(("user_id", "42"), ("anonymous_id", "phone"), at=T0 + timedelta(hours=2))]
    )
    # then the older profile survives with everything, and the merge is audited
    assert result == first
    absorbed = Profile.objects.get(pk=second)
    assert absorbed.merged_into_id == first
    assert identifiers_of(first) == {
        ("user_id", "42"),
        ("anonymous_id", "laptop"),
        ("anonymous_id", "phone"),
    }
    assert Profile.objects.get(pk=first).traits == {"plan": "pro"}
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.absorbed_id) == (first, second)
    assert merge.details["anchor"] == ["user_id", "42"]
    assert merge.details["identifier"] == ["anonymous_id", "phone"]
    assert merge.absorbed_snapshot["traits"] == {"plan": "pro"}


def test_profiles_with_different_user_ids_are_never_merged() -> None:
    # given one device used by two people
    [alice] = profiles_resolve(claims=[claim(("user_id", "alice"), ("anonymous_id", "shared"))])
    # when the second person logs in on it
    [bob] = profiles_resolve(claims=[claim(("user_id", "bob"), ("anonymous_id", "shared"))])
    # then bob gets his own profile, the shared device stays with alice, and the
    # refused link is recorded for admins
    assert bob != alice
    assert identifiers_of(bob) == {("user_id", "bob")}
    assert ("anonymous_id", "shared") in identifiers_of(alice)
    conflict = IdentityConflict.objects.get()
    assert (conflict.profile_id, conflict.other_profile_id) == (bob, alice)
    assert (conflict.identifier_type, conflict.identifier_value) == ("anonymous_id", "shared")
    assert not ProfileMerge.objects.exists()


def test_email_trait_becomes_a_normalized_identifier() -> None:
    # when
    [pid] = profiles_resolve(
        claims=[
            claim(
                ("user_id", "7"), traits={"email": "  Ann@Example.COM ", "phone": "(415) 555-2671"}
            )
        ]
    )
    # then
    assert identifiers_of(pid) == {
        ("user_id", "7"),
        ("email", "ann@example.com"),
        ("phone", "+14155552671"),
    }
    raw = Identifier.objects.get(type="email").raw_value
    assert raw == "  Ann@Example.COM "


@pytest.mark.parametrize(
    "junk",
    [
        "undefined",
        "null",
        "NULL",
        "None",
        "anonymous",
        "Anonymous",
        "guest",
        "GUEST",
        " guest ",
        "[object Object]",
        "0",
        "-1",
        "00000",
        "000-000",
        "---",
        "-",
        "",
        " ",
        "\t\n",
    ],
)
@pytest.mark.parametrize("kind", ["anonymous_id", "user_id"])
def test_junk_identifiers_never_stitch_visitors(junk: str, kind: str) -> None:
    # when two strangers both send a junk id
    other = "user_id" if kind == "anonymous_id" else "anonymous_id"
    first, second = profiles_resolve(
        claims=[claim((other, "a"), (kind, junk)), claim((other, "b"), (kind, junk))]
    )
    # then they stay apart and the junk value is stored nowhere
    assert first != second
    assert not Identifier.objects.filter(type=kind).exists()


def test_claim_with_only_junk_has_no_profile() -> None:
    assert profiles_resolve(claims=[claim(("anonymous_id", "undefined"))]) == [None]
    assert not Profile.objects.exists()


def test_older_event_does_not_overwrite_a_newer_trait() -> None:
    # given a trait set by a recent event
    profiles_resolve(
        claims=[claim(("user_id", "1"), at=T0, traits={"plan": "pro", "city": "Oslo"})]
    )
    # when an older event arrives late
    [pid] = profiles_resolve(
        claims=[
            claim(("user_id", "1"), at=T0 - timedelta(days=3), traits={"plan": "free", "age": 30})
        ]
    )
    # then only the trait it newly knows is taken, and first_seen moves back
    profile = Profile.objects.get(pk=pid)
    assert profile.traits == {"plan": "pro", "city": "Oslo", "age": 30}
    assert profile.first_seen == T0 - timedelta(days=3)
    assert profile.last_seen == T0


def test_one_batch_with_overlapping_identities_creates_no_duplicates() -> None:
    # when one batch mentions the same person through different identifiers
    results = profiles_resolve(
        claims=[
            claim(("anonymous_id", "x")),
            claim(("anonymous_id", "y")),
            claim(("user_id", "u"), ("anonymous_id", "x")),
            claim(("user_id", "u"), ("anonymous_id", "y")),
            claim(("anonymous_id", "y")),
        ]
    )
    # then every claim resolves to the one live profile
    assert len(set(results)) == 1
    assert Profile.objects.live().count() == 1
    assert identifiers_of(results[0]) == {
        ("anonymous_id", "x"),
        ("anonymous_id", "y"),
        ("user_id", "u"),
    }


@given(st.emails())
def test_email_normalization_is_idempotent_and_case_insensitive(email: str) -> None:
    normalized = normalize("email", email)
    assert normalized is not None
    assert normalized == normalized.lower()
    assert normalize("email", normalized) == normalized
    assert normalize("email", email.upper()) == normalized


@given(st.from_regex(r"\A[0\-]*\Z"))
def test_zeros_and_dashes_are_junk(value: str) -> None:
    assert is_junk(value)
    assert normalize("anonymous_id", value) is None


@given(
    st.one_of(st.none(), st.booleans(), st.dictionaries(st.text(), st.text()), st.lists(st.text()))
)
def test_structured_values_are_never_identifiers(value: object) -> None:
    assert normalize("user_id", value) is None
