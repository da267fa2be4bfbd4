"""automatic_select: which pairs above the auto-merge probability are merged, and in which
order."""

from __future__ import annotations

import uuid

from apps.identity.dedup.compare import ADDRESS_SAME
from apps.identity.dedup.models import DuplicateCandidate
from apps.identity.dedup.services.decisions import FATHER_AND_SON, automatic_select

FATHER, FATHERS_TYPO, SON, OTHER = (uuid.UUID(int=i) for i in range(1, 5))


def pair(
    a: uuid.UUID, b: uuid.UUID, score: float, levels: dict[str, int], *vetoes: str
) -> DuplicateCandidate:
    fields = {name: {"level": level} for name, level in levels.items()}
    return DuplicateCandidate(
        profile_a_id=min(a, b),
        profile_b_id=max(a, b),
        score=score,
        # As a prior of -13.3 bits would make them: 20 is the bar's score.
        probability=1 / (1 + 2 ** -(score - 13.3)),
        evidence={"fields": fields, "vetoes": list(vetoes)},
    )


AUTO = 0.99


ONE_NAME_ONE_DOOR = {"first_name": 3, "last_name": 3, "address": ADDRESS_SAME, "email": 0}
TYPO_AT_THE_DOOR = {"first_name": 2, "last_name": 3, "address": ADDRESS_SAME, "email": 0}


def test_pairs_above_the_auto_merge_probability_without_vetoes_best_first() -> None:
    # given
    low = pair(FATHER, OTHER, 19.9, {})
    vetoed = pair(SON, OTHER, 40, {}, "birthdays differ")
    good, better = pair(FATHER, FATHERS_TYPO, 30, {}), pair(SON, OTHER, 50, {})

    # when
    selected = automatic_select([low, vetoed, good, better], AUTO)

    # then
    assert selected == [better, good]


def test_no_detour_joins_two_of_one_name_at_one_door_the_vetoes_kept_apart() -> None:
    # given: a father, his duplicate with a typo in the first name (same email), and
    # his son of one name at one door; the son and the duplicate look alike too
    father_and_son = pair(
        FATHER, SON, 35, ONE_NAME_ONE_DOOR, "no email, phone or birthday in common"
    )
    father_and_typo = pair(FATHER, FATHERS_TYPO, 45, {"first_name": 2, "email": 3})
    typo_and_son = pair(FATHERS_TYPO, SON, 30, TYPO_AT_THE_DOOR)

    # when
    selected = automatic_select([father_and_son, father_and_typo, typo_and_son], AUTO)

    # then: the son stays apart, and the pair that would join him waits for review
    assert selected == [father_and_typo]
    assert typo_and_son.evidence["vetoes"] == [FATHER_AND_SON]
    assert father_and_son.evidence["vetoes"] == ["no email, phone or birthday in common"]


def test_pairs_within_one_profile_already_are_still_selected() -> None:
    # given: three records of one person, each pair good
    pairs = [pair(FATHER, FATHERS_TYPO, 50, {}), pair(FATHERS_TYPO, OTHER, 40, {})]
    pairs.append(pair(FATHER, OTHER, 30, {}))

    # then: the last one is merged already (the merge records say so)
    assert automatic_select(pairs, AUTO) == pairs


def test_a_pair_sharing_an_email_is_no_detour() -> None:
    # given: one person, three records; the second has a new email (and the phone),
    # the third the first one's email only; the second and third look like father and
    # son
    first_and_second = pair(FATHER, FATHERS_TYPO, 60, {"phone": 2, "email": 0})
    second_and_third = pair(
        FATHERS_TYPO, SON, 32, ONE_NAME_ONE_DOOR, "no email, phone or birthday in common"
    )
    first_and_third = pair(FATHER, SON, 50, {**ONE_NAME_ONE_DOOR, "email": 3})

    # when
    selected = automatic_select([first_and_second, second_and_third, first_and_third], AUTO)

    # then
    assert selected == [first_and_second, first_and_third]
