"""Consent's registries (apps/consent/registry.py): unique names, and what the
erasure does with an eraser another app registers (here: registered by the test)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.common.registry import Registry, RegistryError
from apps.consent.models import DataSubjectRequest, RequestEvent
from apps.consent.registry import (
    ErasedPerson,
    PersonalDataEraser,
    RetentionPurger,
    deletion_hooks,
    pending_sweepers,
    personal_data_erasers,
    personal_data_providers,
    retention_purgers,
)
from apps.consent.services.dsr import dsr_create, dsr_transition
from apps.consent.services.erasure import STEPS, erasure_run, erasure_start
from apps.consent.services.export import person_data
from apps.identity.models import Profile
from tests.registry import registered

pytestmark = pytest.mark.django_db


def _eraser(person: ErasedPerson, *, batch_size: int) -> int:
    return 0


def _purge(*, cutoff: Any, batch_size: int) -> int:
    return 0


ENTRIES: list[tuple[Registry[Any], Any]] = [
    (personal_data_providers, lambda profile_ids: []),
    (personal_data_erasers, PersonalDataEraser(erase=_eraser)),
    (pending_sweepers, lambda: 0),
    (deletion_hooks, lambda identifiers: "ok"),
    (retention_purgers, RetentionPurger(purge=_purge, days_setting="TEST_RETENTION_DAYS")),
]


@pytest.mark.parametrize(("registry", "entry"), ENTRIES, ids=lambda r: getattr(r, "label", ""))
def test_each_registry_refuses_a_name_twice(registry: Registry[Any], entry: Any) -> None:
    # given a name registered once
    with registered(registry, "test.twice", entry):
        # when it is registered again, then the registry refuses, naming itself
        with pytest.raises(RegistryError, match=rf"{registry.label}: 'test.twice'"):
            registry.register("test.twice", entry)
        assert registry.names().count("test.twice") == 1
    assert "test.twice" not in registry


def test_a_name_events_registered_is_refused_to_another_app() -> None:
    # given: events registered "events" (apps/events/privacy.py)
    assert "events" in personal_data_erasers
    # then another app cannot take the name (its count would mix with events')
    with pytest.raises(RegistryError, match="'events' is registered already"):
        personal_data_erasers.register("events", PersonalDataEraser(erase=_eraser))
    assert personal_data_erasers["events"].step == "events"


def test_a_provider_cannot_take_the_name_of_a_table_of_consents_own(
    make_profile: Any,
) -> None:
    profile = make_profile(("user_id", "p-1"))
    with (
        registered(personal_data_providers, "consent", lambda ids: []),
        pytest.raises(RegistryError, match="'consent' is a table of consent's own export"),
    ):
        person_data([profile.id])


def test_export_tables_keep_their_order_and_providers_come_after(make_profile: Any) -> None:
    profile = make_profile(("user_id", "p-1"))
    with registered(personal_data_providers, "test_memberships", lambda ids: [{"n": len(ids)}]):
        data = person_data([profile.id])
    # (other apps' providers, order 0 unless they say, come after consent's too)
    assert list(data)[:5] == ["profile", "identifiers", "events", "consent", "merges"]
    assert "test_memberships" in list(data)[5:]
    assert data["test_memberships"] == [{"n": 1}]


def _started(subject: str = "user_id:ivy-1") -> Any:
    request = dsr_create(type="erasure", subject=subject)
    dsr_transition(request=request, status="verified")
    return erasure_start(request=request)


def _run_to(request_id: Any, step: str) -> None:
    """Run the erasure's steps, one at a time, until ``step`` is the next one."""
    for _ in range(2 * len(STEPS)):
        if DataSubjectRequest.objects.get(pk=request_id).work_state.get("step") == step:
            return
        assert erasure_run(request_id=request_id, max_steps=1) is False
    raise AssertionError(f"the erasure did not reach {step}")


def test_an_eraser_is_called_in_batches_until_it_returns_0_and_counted_in_the_proof(
    ivy: Profile,
) -> None:
    # given: an eraser with 7 rows of Ivy's, deleting at most 3 per call
    left = {"rows": 7}
    calls: list[tuple[tuple[Any, ...], tuple[str, ...], int]] = []

    def memberships(person: ErasedPerson, *, batch_size: int) -> int:
        calls.append((person.profile_ids, person.user_ids, batch_size))
        deleted = min(left["rows"], batch_size)
        left["rows"] -= deleted
        return deleted

    with registered(personal_data_erasers, "test_memberships", PersonalDataEraser(memberships)):
        request = _started()
        _run_to(request.id, "local")
        # when: the local step runs once, and again
        assert erasure_run(request_id=request.id, max_steps=1, batch_size=3) is False
        state = DataSubjectRequest.objects.get(pk=request.id).work_state
        # then: one batch per run of the step, checkpointed (each its own transaction)
        assert (state["step"], state["counts"]["test_memberships"]) == ("local", 3)
        # when: the erasure goes on to the end
        assert erasure_run(request_id=request.id, batch_size=3) is True
    # then: called until it returned 0, with the person and the batch size
    assert left["rows"] == 0
    assert calls == [((ivy.id,), ("ivy-1",), 3)] * 4
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["test_memberships"] == 7
    assert not Profile.objects.filter(pk=ivy.pk).exists()


def test_a_failing_eraser_fails_its_step_which_is_retried_and_the_erasure_waits_for_it(
    ivy: Profile,
) -> None:
    # given: an eraser that fails twice, then deletes its 2 rows
    failures = {"left": 2}
    left = {"rows": 2}

    def memberships(person: ErasedPerson, *, batch_size: int) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("segments table locked")
        deleted, left["rows"] = left["rows"], 0
        return deleted

    with registered(personal_data_erasers, "test_memberships", PersonalDataEraser(memberships)):
        request = _started()
        # when: the erasure runs, twice
        for _ in range(2):
            with pytest.raises(RuntimeError):
                erasure_run(request_id=request.id)
            # then: it stops at the local step, the person's profile still there
            request.refresh_from_db()
            assert request.status == "in_progress"
            assert request.work_state["step"] == "local"
            assert "test_memberships" not in request.work_state["counts"]
            assert Profile.objects.filter(pk=ivy.pk).exists()
        assert request.work_state["failures"] == 2
        failed = RequestEvent.objects.filter(request=request, action="erasure step failed")
        assert [e.note for e in failed] == [
            "step local failed (RuntimeError), 1 time(s) in a row; it will be retried",
            "step local failed (RuntimeError), 2 time(s) in a row; it will be retried",
        ]
        # when: it is retried and the eraser works
        assert erasure_run(request_id=request.id) is True
    # then: the erasure completed with it
    request.refresh_from_db()
    assert request.status == "completed"
    assert request.erasure_summary["counts"]["test_memberships"] == 2
    assert not Profile.objects.filter(pk=ivy.pk).exists()


def test_erasers_of_a_step_run_in_the_registrys_order_each_until_done(ivy: Profile) -> None:
    # given: two erasers of the local step, registered out of order
    seen: list[str] = []

    def eraser(name: str, rows: int) -> PersonalDataEraser:
        left = {"rows": rows}

        def erase(person: ErasedPerson, *, batch_size: int) -> int:
            seen.append(name)
            deleted, left["rows"] = left["rows"], 0
            return deleted

        return PersonalDataEraser(erase=erase)

    with (
        registered(personal_data_erasers, "test_b", eraser("b", 1), order=20),
        registered(personal_data_erasers, "test_a", eraser("a", 1), order=10),
    ):
        request = _started()
        assert erasure_run(request_id=request.id) is True
    # then: a until it returned 0, then b until it returned 0
    assert seen == ["a", "a", "b", "b"]
