"""Erasure (GDPR Art. 17): remove a person from every table, resumably.

The work is a sequence of steps, each in its own transaction, with a checkpoint
on the request (``work_state``): a crash or a worker restart resumes at the step
that did not finish, and each step is idempotent. Deleting events goes in batches.

What remains afterwards holds no personal data: the request keeps a keyed hash
of the subject and counts per table (the proof), and suppression entries keep
keyed hashes of the person's identifiers so that later events carrying them are
dropped at ingestion.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone

from apps.consent.hashing import keyed_hash
from apps.consent.models import (
    ConsentRecord,
    DataSubjectRequest,
    ErasureHookOutcome,
    RequestEvent,
    RequestStatus,
    RequestType,
    SuppressionEntry,
)
from apps.consent.registry import deletion_hooks
from apps.consent.selectors import consent_config_clear

from .dsr import RequestRefused, dsr_progress, dsr_transition

logger = logging.getLogger(__name__)

STEPS = ("collect", "hooks", "events", "rejected", "records", "identity", "finish")
ERASED = "[erased]"


@contextmanager
def consent_log_unlocked() -> Iterator[None]:
    """The erasure path of the append-only trigger, for the statements run in this
    block only. The trigger also wants an erasure request in progress that names
    the profile (migration 0004): the flag alone deletes nothing."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('cdp.erasure', 'on', true)")
        yield
        # On an error the block's savepoint is rolled back, and the setting with it.
        cursor.execute("SELECT set_config('cdp.erasure', 'off', true)")


def _state(request: DataSubjectRequest) -> dict[str, Any]:
    state = dict(request.work_state or {})
    state.setdefault("step", STEPS[0])
    state.setdefault("counts", {})
    return state


def _save(request_id: uuid.UUID, state: dict[str, Any], progress: int, note: str) -> None:
    DataSubjectRequest.objects.filter(pk=request_id).update(work_state=state)
    dsr_progress(request_id=request_id, progress=progress, note=note)


def erasure_start(*, request: DataSubjectRequest, actor: Any = None) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.get(pk=request.pk)
    if request.type != RequestType.ERASURE:
        raise RequestRefused("Only an erasure request erases.")
    if request.status != RequestStatus.VERIFIED:
        raise RequestRefused("Verify the requester's identity before erasing (status: verified).")
    return dsr_transition(
        request=request, status=RequestStatus.IN_PROGRESS, actor=actor, note="erasure started"
    )


def _person_values(profile_ids: list[str]) -> list[tuple[str, str, str]]:
    from apps.identity.selectors import person_identifier_values

    return person_identifier_values(profile_ids=[uuid.UUID(p) for p in profile_ids])


def _subject_key(subject: str) -> tuple[str, str] | None:
    from apps.identity.selectors import ExternalIdError, parse_external_id
    from apps.identity.services import identity_rules_load

    try:
        kind, raw = parse_external_id(subject)
    except ExternalIdError:
        return None
    if kind == "id":
        return None
    value = identity_rules_load().normalize(kind, raw)
    return (kind, value) if value else None


def _collect(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    from .export import person_profile_ids

    ids = [str(p) for p in person_profile_ids(request.subject)]
    values = _person_values(ids)
    keys = {(kind, value) for kind, value, _ in values}
    subject = _subject_key(request.subject)
    if subject:
        keys.add(subject)
    SuppressionEntry.objects.bulk_create(
        [
            SuppressionEntry(
                identifier_type=kind, value_hash=keyed_hash(kind, value), request=request
            )
            for kind, value in sorted(keys)
        ],
        ignore_conflicts=True,
    )
    consent_config_clear()  # this process drops the person's events from now on
    state["profile_ids"] = ids
    state["subject_hash"] = keyed_hash("subject", request.subject.strip().lower())
    state["counts"]["suppression_entries"] = len(keys)


def _hooks(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    pairs = [(k, raw or v) for k, v, raw in _person_values(state["profile_ids"])]
    done = set(ErasureHookOutcome.objects.filter(request=request).values_list("hook", flat=True))
    for name, hook in sorted(deletion_hooks().items()):
        if name in done:
            continue
        try:
            outcome = hook(pairs) if pairs else "not_applicable"
            message = ""
        except Exception as exc:  # a destination's failure must not stop erasure here
            outcome, message = "failed", f"{type(exc).__name__}"[:500]
            logger.warning("deletion hook %s failed for request %s", name, request.id)
        if outcome not in ErasureHookOutcome.Outcome.values:
            outcome = "ok"
        ErasureHookOutcome.objects.create(
            request=request, hook=name, outcome=outcome, message=message
        )


def _events(request: DataSubjectRequest, state: dict[str, Any], batch_size: int) -> bool:
    from apps.events.services import events_erase

    values = _person_values(state["profile_ids"])
    user_ids = sorted(
        {raw or v for k, v, raw in values if k == "user_id"}
        | {v for k, v, _ in values if k == "user_id"}
    )
    anon_ids = sorted(
        {raw or v for k, v, raw in values if k == "anonymous_id"}
        | {v for k, v, _ in values if k == "anonymous_id"}
    )
    n = events_erase(
        profile_ids=state["profile_ids"],
        user_ids=user_ids,
        anonymous_ids=anon_ids,
        batch_size=batch_size,
    )
    state["counts"]["events"] = state["counts"].get("events", 0) + n
    return n == 0


def _scrub_values(state: dict[str, Any], request: DataSubjectRequest) -> list[str]:
    values = _person_values(state["profile_ids"])
    found = {v for _, v, _ in values} | {raw for _, _, raw in values}
    subject_key = _subject_key(request.subject)
    if subject_key:
        found.add(subject_key[1])
    if ":" in request.subject:
        found.add(request.subject.split(":", 1)[1].strip())
    return sorted(v for v in found if v)


def _rejected(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    from apps.events.services import rejected_events_erase

    state["counts"]["rejected_events"] = rejected_events_erase(values=_scrub_values(state, request))


def _records(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    """Consent log, admin log entries and request history: the audit trails."""
    ids = state["profile_ids"]
    with consent_log_unlocked():
        _, per_model = ConsentRecord.objects.filter(profile_id__in=ids).delete()
    state["counts"]["consent_records"] = per_model.get("consent.ConsentRecord", 0)
    from apps.identity.models import Profile

    state["counts"]["admin_log_entries"] = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Profile), object_id__in=ids
    ).delete()[0]
    values = _scrub_values(state, request)
    for value in values:
        for event in RequestEvent.objects.filter(note__icontains=value):
            RequestEvent.objects.filter(pk=event.pk).update(
                note=_replace_ci(event.note, value, ERASED)
            )
    # Requests about the same person (an earlier access request, say) and the
    # requests' history (django-simple-history) hold the subject: keep the records,
    # without the person.
    erased_subject = f"erased:{state['subject_hash'][:16]}"
    history = DataSubjectRequest.history.model  # type: ignore[attr-defined]
    for model in (DataSubjectRequest, history):
        for value in values:
            model.objects.filter(subject__icontains=value).update(
                subject=erased_subject, details=""
            )
            model.objects.filter(details__icontains=value).update(details="")
    history.objects.filter(id=request.id).update(subject=erased_subject, details="")


def _replace_ci(text: str, value: str, by: str) -> str:
    import re

    return re.sub(re.escape(value), by, text, flags=re.IGNORECASE)


def _identity(state: dict[str, Any], request: DataSubjectRequest) -> None:
    from apps.identity.services import person_erase

    values = _scrub_values(state, request)
    counts = person_erase(profile_ids=[uuid.UUID(p) for p in state["profile_ids"]], values=values)
    state["counts"].update(counts)


def _finish(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    request.subject = f"erased:{state['subject_hash'][:16]}"
    request.details = ""
    request.subject_hash = state["subject_hash"]
    request.erasure_summary = {
        "counts": state["counts"],
        "hooks": dict(
            ErasureHookOutcome.objects.filter(request=request).values_list("hook", "outcome")
        ),
        "completed_at": timezone.now().isoformat(),
    }
    request.work_state = {"step": "done"}
    request.save()
    history = DataSubjectRequest.history.model  # type: ignore[attr-defined]
    history.objects.filter(id=request.id).update(subject=request.subject, details="")


def erasure_step(*, request_id: uuid.UUID, batch_size: int = 5000) -> bool:
    """Run the next step of an erasure; True when the erasure is complete."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if request.status == RequestStatus.COMPLETED:
            return True
        if request.status != RequestStatus.IN_PROGRESS or request.type != RequestType.ERASURE:
            raise RequestRefused("This request is not an erasure in progress.")
        state = _state(request)
        step = state["step"]
        advance = True
        if step == "collect":
            _collect(request, state)
        elif step == "hooks":
            _hooks(request, state)
        elif step == "events":
            advance = _events(request, state, batch_size)
        elif step == "rejected":
            _rejected(request, state)
        elif step == "records":
            _records(request, state)
        elif step == "identity":
            _identity(state, request)
        elif step == "finish":
            _finish(request, state)
            dsr_transition(
                request=request,
                status=RequestStatus.COMPLETED,
                note="erased: " + ", ".join(f"{k} {v}" for k, v in sorted(state["counts"].items())),
            )
            logger.info("erasure %s complete", request_id)
            return True
        if advance:
            state["step"] = STEPS[STEPS.index(step) + 1]
        index = STEPS.index(state["step"])
        _save(
            request_id,
            state,
            int(100 * index / len(STEPS)),
            f"step {index + 1} of {len(STEPS)}: {state['step']}",
        )
    return False


def erasure_run(
    *, request_id: uuid.UUID, max_steps: int | None = None, batch_size: int = 5000
) -> bool:
    """Run steps until done (or ``max_steps``); True when complete."""
    steps = 0
    while max_steps is None or steps < max_steps:
        if erasure_step(request_id=request_id, batch_size=batch_size):
            return True
        steps += 1
    return False
