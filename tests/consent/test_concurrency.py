"""Consent written for one person by two workers at once (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from apps.consent.models import ConsentRecord, ConsentState
from apps.consent.services import consent_statements_append

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite serializes writers itself"
    ),
]


def test_two_writers_of_one_profile_both_succeed_and_the_state_is_the_latest(
    make_purpose: Any, make_profile: Any
) -> None:
    # given: a person with a grant
    make_purpose("ads")
    ada = make_profile(("user_id", "ada"))
    consent_statements_append(
        statements=[{"profile_id": ada.id, "purpose": "ads", "status": "granted", "source": "api"}]
    )
    barrier = threading.Barrier(2)
    errors: list[str] = []

    def write(status: str) -> None:
        try:
            with transaction.atomic():
                barrier.wait()
                consent_statements_append(
                    statements=[
                        {"profile_id": ada.id, "purpose": "ads", "status": status, "source": "api"}
                    ]
                )
                time.sleep(0.3)  # both transactions are open at once
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    # when: two workers record a statement for her at the same moment
    threads = [threading.Thread(target=write, args=(s,)) for s in ("withdrawn", "granted")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: both are recorded, and the state is the log's latest statement
    assert errors == []
    assert ConsentRecord.objects.filter(profile=ada).count() == 3
    latest = ConsentRecord.objects.filter(profile=ada).order_by("-given_at", "-id").first()
    state = ConsentState.objects.get(profile=ada)
    assert latest is not None and state.record_id == latest.id


def test_a_consent_write_during_a_merge_waits_and_lands_on_the_survivor(
    make_purpose: Any, make_profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apps.consent.services as consent_services
    from apps.identity.models import ProfileMerge
    from apps.identity.services import profile_merge

    # given: two records of one person with consent, and a merge of them that is
    # slow to move the log (it holds both profiles' rows meanwhile)
    make_purpose("ads")
    a = make_profile(("anonymous_id", "anon-a"))
    b = make_profile(("anonymous_id", "anon-b"))
    for profile in (a, b):
        consent_statements_append(
            statements=[
                {"profile_id": profile.id, "purpose": "ads", "status": "granted", "source": "api"}
            ]
        )
    moving = threading.Event()
    reassign = consent_services.consent_reassign_profile

    def slow_reassign(**kwargs: Any) -> int:
        moving.set()
        time.sleep(0.5)  # the API's writer arrives meanwhile
        return reassign(**kwargs)

    monkeypatch.setattr(consent_services, "consent_reassign_profile", slow_reassign)
    errors: list[str] = []

    def merge() -> None:
        try:
            profile_merge(profile_ids=(a.id, b.id), reason=ProfileMerge.Reason.ADMIN)
        except Exception as exc:
            errors.append(f"merge: {type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    def withdraw() -> None:
        moving.wait(5)
        try:
            consent_statements_append(
                statements=[
                    {"profile_id": p.id, "purpose": "ads", "status": "withdrawn", "source": "api"}
                    for p in (a, b)
                ]
            )
        except Exception as exc:
            errors.append(f"withdraw: {type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    # when: the person withdraws (through the API) while the merge runs
    threads = [threading.Thread(target=merge), threading.Thread(target=withdraw)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: no deadlock; the withdrawal waited for the merge and joined the survivor
    assert errors == []
    merged = ProfileMerge.objects.get()
    survivor = merged.survivor_id
    assert set(ConsentRecord.objects.values_list("profile_id", flat=True)) == {survivor}
    assert ConsentRecord.objects.filter(status="withdrawn").count() == 2
    assert ConsentState.objects.get(profile_id=survivor).status == "withdrawn"
