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
