"""What events register into consent's privacy registries (apps/events/privacy.py),
and that consent reaches events through them only."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from apps.consent.registry import (
    ErasedPerson,
    pending_sweepers,
    personal_data_erasers,
    personal_data_providers,
    retention_purgers,
)
from apps.events.models import Event
from apps.identity.selectors import profile_get_by_external_id

pytestmark = pytest.mark.django_db

CONSENT = Path(__file__).resolve().parents[2] / "apps" / "consent"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_consent_imports_nothing_of_events_not_even_inside_a_function() -> None:
    upward = {
        str(path.relative_to(CONSENT)): sorted(
            m for m in _imports(path) if m == "apps.events" or m.startswith("apps.events.")
        )
        for path in sorted(CONSENT.rglob("*.py"))
    }
    assert {path: mods for path, mods in upward.items() if mods} == {}


def test_events_register_where_consent_erased_events_itself() -> None:
    erasers = {
        r.name: (r.entry.step, r.entry.batched, r.entry.meanwhile, r.order)
        for r in personal_data_erasers.items()
        if r.name in ("events", "ids_scrubbed", "rejected_events")
    }
    assert erasers == {
        "events": ("events", True, True, 0),
        "ids_scrubbed": ("events", False, False, 10),
        "rejected_events": ("rejected", False, False, 0),
    }
    assert "events" in pending_sweepers
    assert personal_data_providers.items()[0].name == "events"
    purgers = {r.name: r.entry.days_setting for r in retention_purgers.items()}
    assert purgers["events"] == "EVENT_RETENTION_DAYS"
    assert purgers["rejected_events"] == "REJECTED_EVENT_RETENTION_DAYS"


def test_the_events_eraser_deletes_a_batch_per_call_by_profile_and_by_raw_ids(
    post_events: Any,
) -> None:
    # given: two processed events of Ivy's, one not processed yet carrying her user
    # id as she sent it (no profile yet), and someone else's event
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "ivy-1", "messageId": "i1"},
                {"type": "track", "userId": "ivy-1", "event": "E", "messageId": "i2"},
                {"type": "track", "userId": "olga", "event": "E", "messageId": "o1"},
                {"type": "track", "userId": "olga", "event": "E", "messageId": "p1"},
            ]
        },
    )
    ivy = profile_get_by_external_id(external_id="user_id:ivy-1")
    assert ivy is not None
    Event.objects.filter(message_id="p1").update(
        user_id=" Ivy-1", profile_id=None, processed_at=None
    )
    person = ErasedPerson(
        profile_ids=(ivy.id,),
        identifiers=(("user_id", "ivy-1"),),
        user_ids=(" Ivy-1", "ivy-1"),
        anonymous_ids=(),
        texts=(" Ivy-1", "ivy-1"),
    )
    erase = personal_data_erasers["events"].erase
    # when: called until it returns 0, two at a time
    counts = []
    while n := erase(person, batch_size=2):
        counts.append(n)
    # then: at most a batch per call, and only hers went
    assert counts == [2, 1]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["o1"]


def test_her_ids_are_blanked_on_other_peoples_events_in_one_call(post_events: Any) -> None:
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "quinn", "anonymousId": "dev-ivy", "event": "V"},
                {"type": "track", "userId": "quinn", "anonymousId": "dev-q", "event": "W"},
            ]
        },
    )
    person = ErasedPerson(
        profile_ids=(), identifiers=(), user_ids=(), anonymous_ids=("dev-ivy",), texts=()
    )
    scrub = personal_data_erasers["ids_scrubbed"].erase
    assert scrub(person, batch_size=1) == 1
    assert sorted(Event.objects.values_list("user_id", "anonymous_id")) == [
        ("quinn", ""),
        ("quinn", "dev-q"),
    ]
