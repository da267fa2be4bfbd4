"""vetoes: which pairs may merge automatically, whatever their score."""

from __future__ import annotations

from typing import Any

import pytest

from apps.identity.dedup.services import vetoes

FIELDS = ("first_name", "last_name", "email", "phone", "birthday", "address")
NO_CONTACT = "no email, phone or birthday in common"
ONLY_ALIKE = "first names only alike, and no shared email or phone"


def levels(*values: int) -> dict[str, int]:
    return dict(zip(FIELDS, values, strict=True))


@pytest.mark.parametrize(
    ("level", "flags", "expected"),
    [
        # One name, one door, no email on one side: one person.
        (levels(3, 3, -1, -1, -1, 3), {}, []),
        # ... with a typo in the last name (Smith, Smiht).
        (levels(3, 2, -1, -1, -1, 3), {"last_name_slip": True}, []),
        (levels(3, 2, -1, -1, -1, 3), {}, [NO_CONTACT]),
        # ... but two different emails: as likely a father and son.
        (levels(3, 3, 0, -1, -1, 3), {}, [NO_CONTACT]),
        (levels(3, 3, 1, -1, -1, 3), {}, [NO_CONTACT]),
        # One name, a birthday one slip apart, nothing that contradicts.
        (levels(3, 3, -1, -1, 1, -1), {}, []),
        (levels(3, 3, -1, 0, 1, -1), {}, [NO_CONTACT]),
        # ... or at one door, whatever the emails: fathers and sons are not born on
        # one day.
        (levels(3, 3, 0, -1, 1, 3), {}, []),
        (levels(3, 3, 0, -1, 1, 0), {}, [NO_CONTACT]),
        # A slip in a name at one door, whatever the emails: sons are spelt as their
        # fathers are; a nickname is no slip (sons go by them), two phones contradict.
        (levels(2, 3, 0, -1, -1, 3), {"first_name_slip": True}, []),
        (
            levels(2, 3, 0, -1, -1, 3),
            {"first_name_slip": True, "merged_profile": True},  # a typo it took in
            [NO_CONTACT],
        ),
        (levels(3, 2, 1, -1, -1, 3), {"last_name_slip": True}, []),
        (levels(2, 3, 0, -1, -1, 3), {"first_name_nickname": True}, [NO_CONTACT]),
        (levels(3, 2, 0, 0, -1, 3), {"last_name_slip": True}, [NO_CONTACT]),
        (levels(2, 3, 0, -1, -1, 0), {"first_name_slip": True}, [ONLY_ALIKE, NO_CONTACT]),
        # A nickname at one door (Jeff, Jeffrey) is one person; another spelling
        # (Anna, Anne) as likely a twin.
        (levels(2, 3, -1, -1, -1, 3), {"first_name_nickname": True}, []),
        (levels(2, 3, 0, -1, 2, 3), {"first_name_nickname": True}, []),
        (levels(2, 3, 0, -1, 2, 3), {}, [ONLY_ALIKE]),
        # A first-name typo and an email typo (Jooshua joshuas@, Joshua josuhas@).
        (levels(2, 3, 2, -1, -1, -1), {"first_name_slip": True}, []),
        (levels(2, 3, 2, -1, -1, -1), {}, [ONLY_ALIKE]),
        # ... but not emails that differ as the names do (phillip.brown@, philip.brown@).
        (
            levels(2, 3, 2, -1, -1, -1),
            {"first_name_slip": True, "email_mirrors_names": True},
            [ONLY_ALIKE],
        ),
        # A nickname with a typo (Dna, Daniel), same email and phone.
        (levels(0, 3, 3, 2, -1, 3), {"first_name_nickname_typo": True}, []),
        (levels(0, 3, 3, 2, -1, 3), {}, ["first names differ"]),
        # A new married name: same first name, email, phone and birthday.
        (levels(3, 0, 3, 2, 2, 0), {}, []),
        # ... or the very same first name with both the email and the phone, unless
        # the birthdays differ.
        (levels(3, 0, 3, 2, -1, -1), {}, []),
        (levels(3, 0, 3, 2, 1, 0), {}, []),
        (levels(3, 0, 3, 2, 0, 3), {}, ["last names differ", "birthdays differ"]),
        (levels(2, 0, 3, 2, -1, 3), {"first_name_slip": True}, ["last names differ"]),
        (levels(3, 0, 3, 1, -1, 3), {}, ["last names differ"]),
        (levels(3, 0, 3, -1, -1, 3), {}, ["last names differ"]),
        (levels(0, 0, 3, 2, 2, 3), {}, ["last names differ"]),
        (levels(3, 3, 3, 2, 0, 3), {}, ["birthdays differ"]),
        # An email typo is contact, unless a profile took in a duplicate's typo.
        (levels(3, 3, 2, -1, -1, 0), {}, []),
        (levels(3, 3, 2, -1, -1, 0), {"merged_profile": True}, [NO_CONTACT]),
    ],
)
def test_vetoes(level: dict[str, int], flags: dict[str, Any], expected: list[str]) -> None:
    assert vetoes(level, **flags) == expected


def test_fields_that_are_not_configured_count_as_missing() -> None:
    assert vetoes({"first_name": 3, "last_name": 3, "address": 3}) == []
    assert vetoes({"email": 3}) == []
    assert vetoes({"first_name": 3, "last_name": 3}) == [NO_CONTACT]
