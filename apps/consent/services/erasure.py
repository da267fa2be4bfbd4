"""Erasure (GDPR Art. 17): remove a person from every table, resumably.

The work is a sequence of steps, each in its own transaction, with a checkpoint
on the request (``work_state``): a crash or a worker restart resumes at the step
that did not finish, and each step is idempotent. Deleting events goes in batches.

1. collect: the person's profiles (the subject's and every one merged into it);
   suppression entries for their identifiers, so that ingestion drops their
   events from now on (other processes within CDP_CONSENT_CACHE_SECONDS).
2. events, in batches; 3. refused payloads that name them; 4. records: the consent
   log, admin log entries about their rows, and their names, addresses and ids in
   the free text of data-subject requests and their history; 5. local: the
   personal-data erasers other apps registered (segments...); 6. hooks: export
   destinations delete them too (failures retried with backoff);
7. identity: what arrived meanwhile (events a worker processed since, identifiers
   it attached: each is suppressed too), then profiles, identifiers, merges, review
   queues; 8. finish: pending events carrying a suppressed identifier go, and the
   proof is written.

Consent is below events (DESIGN.md), so steps 2, 3 and 5 know no table of another
app: each runs the erasers registered for it in apps/consent/registry.py
(``PersonalDataEraser.step``), one batch per transaction until every one of them
returns 0, their counts landing in the proof under their names. Events register
"events" and "ids_scrubbed" (her ids blanked on other people's events, once, in
one statement) for step 2 and "rejected_events" for step 3; segments will
register for step 5. Why erasers name their step rather than all running in
"local": the order and checkpoints stay what they were when consent erased
events itself (requests in progress carry them, ``STEPS_VERSION``), events still
go first and in batches of their own, and a new app's eraser slots in without a
new step. What steps 7 and 8 did to events is registered the same way: the
pending sweep (``pending_sweepers``, "events") and the erasers that run again in
step 7 (``meanwhile``: events processed since; every eraser of steps 2 and 5 when
profiles were merged into hers since collect), so that each step does exactly what
it did before, whoever registers.

What remains afterwards holds no personal data: the request keeps a keyed hash
of the subject and counts per table (the proof), and suppression entries keep
keyed hashes of the person's identifiers.

A step that raises is recorded on the request (its trail and progress note) and
retried by the task's retry or the stalled-erasure sweep; after
``MAX_STEP_FAILURES`` in a row the sweep leaves it to an administrator (admin:
"Resume erasure"). An eraser that raises fails its step in the same way: the
erasure does not complete without it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db import connection, transaction
from django.db.models import Q
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
from apps.consent.registry import (
    ErasedPerson,
    EraseStep,
    deletion_hooks,
    pending_sweepers,
    personal_data_erasers,
)
from apps.consent.selectors import consent_config_clear
from apps.identity.selectors import (
    ExternalIdError,
    merges_for_export,
    parse_external_id,
    person_identifier_values,
    person_related_rows,
    profile_tree_ids,
    profiles_for_export,
)
from apps.identity.services import IdentityRules, identity_rules_load, person_erase

from .dsr import RequestRefused, dsr_erase_check, dsr_progress, dsr_transition
from .export import person_profile_ids

logger = logging.getLogger(__name__)

STEPS = ("collect", "events", "rejected", "records", "local", "hooks", "identity", "finish")
# Bumped when STEPS change order: a saved state names its next step, which means
# something else in another order. Every step may safely run again.
STEPS_VERSION = 2
ERASED = "[erased]"
# Consecutive failures of a step after which the sweep stops retrying.
MAX_STEP_FAILURES = 5
# Trait values shorter than this are not scrubbed from free text ("US", "pro").
MIN_TRAIT_LENGTH = 3


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
    if state.get("steps_version") != STEPS_VERSION:
        # Saved in another order of steps (or new): start again from the first.
        state["step"] = STEPS[0]
        state["steps_version"] = STEPS_VERSION
    state.setdefault("counts", {})
    return state


def _save(request_id: uuid.UUID, state: dict[str, Any], progress: int, note: str) -> None:
    DataSubjectRequest.objects.filter(pk=request_id).update(work_state=state)
    dsr_progress(request_id=request_id, progress=progress, note=note)


def erasure_start(*, request: DataSubjectRequest, actor: Any = None) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.get(pk=request.pk)
    dsr_erase_check(request=request)
    return dsr_transition(
        request=request, status=RequestStatus.IN_PROGRESS, actor=actor, note="erasure started"
    )


# --- What identifies the person ---------------------------------------------------


def _person_values(profile_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    return person_identifier_values(profile_ids=[uuid.UUID(p) for p in profile_ids])


def _subject_key(subject: str) -> tuple[str, str] | None:
    rules = identity_rules_load()
    try:
        kind, raw = parse_external_id(subject, rules)
    except ExternalIdError:
        return None
    if kind == "id":
        return None
    value = rules.normalize(kind, raw)
    return (kind, value) if value else None


def _suppress(request: DataSubjectRequest, keys: Iterable[tuple[str, str]]) -> set[str]:
    """Suppression entries for these (type, normalized value) identifiers; returns
    their hashes."""
    entries = {(kind, keyed_hash(kind, value)) for kind, value in keys}
    SuppressionEntry.objects.bulk_create(
        [
            SuppressionEntry(identifier_type=kind, value_hash=digest, request=request)
            for kind, digest in sorted(entries)
        ],
        ignore_conflicts=True,
    )
    consent_config_clear()  # this process drops the person's events from now on
    return {digest for _, digest in entries}


def _suppress_person(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    keys = {(kind, value) for kind, value, _ in _person_values(state["profile_ids"])}
    subject = _subject_key(request.subject)
    if subject:
        keys.add(subject)
    hashes = set(state.get("suppressed", [])) | _suppress(request, keys)
    state["suppressed"] = sorted(hashes)
    state["counts"]["suppression_entries"] = len(hashes)


def _identifier_texts(state: dict[str, Any], request: DataSubjectRequest) -> list[str]:
    """Every identifier value of the person, as stored and as sent."""
    values = _person_values(state["profile_ids"])
    found = {v for _, v, _ in values} | {raw for _, _, raw in values}
    subject_key = _subject_key(request.subject)
    if subject_key:
        found.add(subject_key[1])
    if ":" in request.subject and not request.subject.startswith("erased:"):
        found.add(request.subject.split(":", 1)[1].strip())
    return sorted(v for v in found if v)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value.strip()
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


def _trait_texts(state: dict[str, Any]) -> list[str]:
    """Every text the person's profiles hold as traits (names, addresses...), also
    as merges remembered them."""
    ids = [uuid.UUID(p) for p in state["profile_ids"]]
    found: set[str] = set()
    for profile in profiles_for_export(profile_ids=ids):
        found.update(_leaves(profile["traits"]))
    for merge in merges_for_export(profile_ids=ids):
        found.update(_leaves((merge["absorbed_snapshot"] or {}).get("traits", {})))
    return sorted(t for t in found if len(t) >= MIN_TRAIT_LENGTH and not t.isdigit())


def _scrub(text: str, identifiers: list[str], traits: list[str]) -> str:
    """Identifier values go wherever they appear; trait values as whole words only
    (a first name "Ann" leaves "Annual" alone)."""
    for value in identifiers:
        text = re.sub(re.escape(value), ERASED, text, flags=re.IGNORECASE)
    for value in traits:
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", ERASED, text, flags=re.IGNORECASE)
    return text


def _mentions(field: str, values: Iterable[str]) -> Q:
    match = Q()
    for value in values:
        match |= Q(**{f"{field}__icontains": value})
    return match


# --- Steps --------------------------------------------------------------------------


def _collect(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    state["profile_ids"] = [str(p) for p in person_profile_ids(request.subject)]
    state["subject_hash"] = keyed_hash("subject", request.subject.strip().lower())
    _suppress_person(request, state)


def _raw_ids(values: list[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
    user_ids = {raw or v for k, v, raw in values if k == "user_id"}
    user_ids |= {v for k, v, _ in values if k == "user_id"}
    anon_ids = {raw or v for k, v, raw in values if k == "anonymous_id"}
    anon_ids |= {v for k, v, _ in values if k == "anonymous_id"}
    return sorted(user_ids), sorted(anon_ids)


def _person(request: DataSubjectRequest, state: dict[str, Any]) -> ErasedPerson:
    """The person as the registered erasers see her, as she is now."""
    values = _person_values(state["profile_ids"])
    user_ids, anon_ids = _raw_ids(values)
    return ErasedPerson(
        profile_ids=tuple(uuid.UUID(p) for p in state["profile_ids"]),
        identifiers=tuple(sorted({(kind, value) for kind, value, _ in values})),
        user_ids=tuple(user_ids),
        anonymous_ids=tuple(anon_ids),
        texts=tuple(_identifier_texts(state, request)),
    )


def _erasers(request: DataSubjectRequest, state: dict[str, Any], batch_size: int) -> bool:
    """One batch of the erasers registered for this step (``state["step"]``:
    events, rejected or local), in the registry's order; False while one of them
    still deletes (the step runs again, in a new transaction, for the next batch).

    Erasers the step has finished are listed in ``state["erased"]``, so that a
    one-statement eraser after them is not run again with each batch of the next.
    """
    step: EraseStep = state["step"]
    person = _person(request, state)
    counts = state["counts"]
    finished = state.setdefault("erased", [])
    for item in personal_data_erasers.items():
        eraser = item.entry
        if eraser.step != step or item.name in finished:
            continue
        n = int(eraser.erase(person, batch_size=batch_size))
        counts[item.name] = counts.get(item.name, 0) + n
        if n and eraser.batched:
            return False
        finished.append(item.name)
    del state["erased"]
    return True


def _erasers_again(
    request: DataSubjectRequest, state: dict[str, Any], batch_size: int, grown: bool
) -> None:
    """The identity step: what the person's rows became while the erasure ran.
    Erasers that say ``meanwhile`` run again until they return 0 (events a worker
    processed since joined her profile), and, if profiles were merged into hers,
    every eraser (those profiles, and the ids they bring, are new to them: a
    refused payload may name one), all in this step's transaction."""
    person = _person(request, state)
    counts = state["counts"]
    for item in personal_data_erasers.items():
        eraser = item.entry
        if not (eraser.meanwhile or grown):
            continue
        while n := int(eraser.erase(person, batch_size=batch_size)):
            counts[item.name] = counts.get(item.name, 0) + n
            if not eraser.batched:
                break
        counts.setdefault(item.name, 0)


def _admin_log_purge(state: dict[str, Any], identifiers: list[str]) -> int:
    """Admin log entries about the person's rows (profiles, identifiers, merges,
    conflicts, dedup candidates) or naming them."""
    ids = state["profile_ids"]
    about = Q(content_type__app_label="identity", content_type__model="profile", object_id__in=ids)
    related = person_related_rows(profile_ids=[uuid.UUID(p) for p in ids], values=identifiers)
    for label, pks in related.items():
        app_label, model = label.split(".")
        if pks:
            about |= Q(
                content_type__app_label=app_label, content_type__model=model, object_id__in=pks
            )
    names = [*ids, *identifiers]
    # Entries that name the person (as a whole word: a user id "42" is not in "1425").
    words = [re.compile(rf"(?<!\w){re.escape(n)}(?!\w)", re.IGNORECASE) for n in names]
    naming = [
        pk
        for pk, repr_, message in LogEntry.objects.filter(
            _mentions("object_repr", names) | _mentions("change_message", names)
        ).values_list("pk", "object_repr", "change_message")
        if any(w.search(repr_) or w.search(message) for w in words)
    ]
    return LogEntry.objects.filter(about | Q(pk__in=naming)).delete()[0]


def _records(request: DataSubjectRequest, state: dict[str, Any]) -> None:
    """Consent log, admin log entries and request history: the audit trails."""
    ids = state["profile_ids"]
    with consent_log_unlocked():
        _, per_model = ConsentRecord.objects.filter(profile_id__in=ids).delete()
    state["counts"]["consent_records"] = per_model.get("consent.ConsentRecord", 0)
    identifiers = _identifier_texts(state, request)
    state["counts"]["admin_log_entries"] = _admin_log_purge(state, identifiers)
    _requests_scrub(request, state, identifiers, _trait_texts(state))


def _subject_keys(state: dict[str, Any]) -> set[tuple[str, str]]:
    """The person as subjects name people: (type, normalized value), and profile ids."""
    keys = {(kind, value) for kind, value, _ in _person_values(state["profile_ids"])}
    keys |= {("id", p) for p in state["profile_ids"]}
    return keys


def _names_person(subject: str, keys: set[tuple[str, str]], rules: IdentityRules) -> bool:
    try:
        kind, raw = parse_external_id(subject.strip(), rules)
    except ExternalIdError:
        return False
    value = raw.strip().lower() if kind == "id" else rules.normalize(kind, raw)
    return value is not None and (kind, value) in keys


def _requests_scrub(
    request: DataSubjectRequest,
    state: dict[str, Any],
    identifiers: list[str],
    traits: list[str],
) -> None:
    """Requests about the person (this one, an earlier access request...: their
    subject names one of the person's identifiers) and their history
    (django-simple-history) keep their record without the person: subject and
    details go, ids, names and addresses leave the notes. Elsewhere, the person's
    identifier values leave any request's texts (as whole words)."""
    rules = identity_rules_load()
    keys = _subject_keys(state)
    history = DataSubjectRequest.history.model  # type: ignore[attr-defined]
    theirs = {request.pk}
    for model in (DataSubjectRequest, history):
        for pk, subject in (
            model.objects.exclude(subject__startswith="erased:")
            .values_list("id", "subject")
            .distinct()
        ):
            if _names_person(subject, keys, rules):
                theirs.add(pk)
    erased_subject = f"erased:{state['subject_hash'][:16]}"
    texts = ("extension_reason", "progress_note")
    for model in (DataSubjectRequest, history):
        for row in model.objects.filter(id__in=theirs).values("pk", *texts):
            model.objects.filter(pk=row["pk"]).update(
                subject=erased_subject,
                details="",
                **{f: _scrub(row[f] or "", identifiers, traits) for f in texts},
            )
        for f in ("details", *texts):
            for row in (
                model.objects.exclude(id__in=theirs)
                .filter(_mentions(f, identifiers))
                .values("pk", f)
            ):
                cleaned = _scrub(row[f], [], identifiers)
                if cleaned != row[f]:
                    model.objects.filter(pk=row["pk"]).update(**{f: cleaned})
    if hasattr(history, "history_change_reason"):
        for row in history.objects.filter(id__in=theirs).exclude(history_change_reason=None):
            history.objects.filter(pk=row.pk).update(
                history_change_reason=_scrub(row.history_change_reason, identifiers, traits)
            )
    for event in RequestEvent.objects.filter(
        Q(request_id__in=theirs) | _mentions("note", identifiers)
    ):
        if event.request_id in theirs:
            note = _scrub(event.note, identifiers, traits)
        else:
            note = _scrub(event.note, [], identifiers)
        if note != event.note:
            RequestEvent.objects.filter(pk=event.pk).update(note=note)


def _retry_delays() -> list[int]:
    return [int(d) for d in settings.CDP.get("ERASURE_HOOK_RETRY_DELAYS", [60, 600, 1800])]


def _hooks(request: DataSubjectRequest, state: dict[str, Any]) -> bool:
    """Call each destination's deletion hook; False while a failed one waits for
    its next attempt (``state["wait_until"]``)."""
    pairs = [(k, raw or v) for k, v, raw in _person_values(state["profile_ids"])]
    delays = _retry_delays()
    now = timezone.now()
    outcomes = {o.hook: o for o in ErasureHookOutcome.objects.filter(request=request)}
    waits: list[datetime] = []
    for item in deletion_hooks.items():
        name, hook = item.name, item.entry
        known = outcomes.get(name)
        if known is not None and known.next_attempt_at is None:
            continue  # done: deleted, nothing to delete, or failed for good
        if known is not None and known.next_attempt_at and known.next_attempt_at > now:
            waits.append(known.next_attempt_at)
            continue
        try:
            outcome = hook(pairs) if pairs else "not_applicable"
            message = ""
        except Exception as exc:  # a destination's failure must not stop erasure here
            outcome, message = "failed", f"{type(exc).__name__}"[:500]
            logger.warning("deletion hook %s failed for request %s", name, request.id)
        if outcome not in ErasureHookOutcome.Outcome.values:
            outcome = "ok"
        attempts = (known.attempts if known else 0) + 1
        retry_at = None
        if outcome == "failed" and attempts <= len(delays):
            retry_at = now + timedelta(seconds=delays[attempts - 1])
            waits.append(retry_at)
        ErasureHookOutcome.objects.update_or_create(
            request=request,
            hook=name,
            defaults={
                "outcome": outcome,
                "message": message,
                "attempts": attempts,
                "next_attempt_at": retry_at,
                "at": now,
            },
        )
    if waits:
        state["wait_until"] = min(waits).isoformat()
        return False
    state.pop("wait_until", None)
    return True


def _pending_sweep(state: dict[str, Any]) -> None:
    """Rows accepted but not processed yet that carry a suppressed identifier go
    (pending events: what each registered sweeper deletes is in its docstring),
    counted under the sweeper's name."""
    counts = state["counts"]
    for item in pending_sweepers.items():
        counts[item.name] = counts.get(item.name, 0) + int(item.entry())


def _profiles_grown(state: dict[str, Any]) -> list[str]:
    """Profiles merged into the person's since collect (a worker processed a pending
    event that merged them): they are the person's too."""
    ids = list(state["profile_ids"])
    for profile_id in list(ids):
        for p in profile_tree_ids(profile_id=uuid.UUID(profile_id)):
            if str(p) not in ids:
                ids.append(str(p))
    return ids[len(state["profile_ids"]) :]


def _identity(state: dict[str, Any], request: DataSubjectRequest, batch_size: int) -> None:
    grown = _profiles_grown(state)
    if grown:
        state["profile_ids"] = [*state["profile_ids"], *grown]
        # The trigger reads the profiles an erasure may delete statements of here.
        DataSubjectRequest.objects.filter(pk=request.pk).update(work_state=state)
        with consent_log_unlocked():
            _, per_model = ConsentRecord.objects.filter(profile_id__in=grown).delete()
        counts = state["counts"]
        counts["consent_records"] += per_model.get("consent.ConsentRecord", 0)
    # Identifiers attached since collect are suppressed too, before anything else.
    _suppress_person(request, state)
    _pending_sweep(state)
    identifiers = _identifier_texts(state, request)
    state["counts"]["admin_log_entries"] += _admin_log_purge(state, identifiers)
    # Rows written since the erasers ran (after the sweep: it waited for the
    # workers holding pending events), and the profiles merged in meanwhile.
    _erasers_again(request, state, batch_size, bool(grown))
    _suppress_person(request, state)
    counts = person_erase(
        profile_ids=[uuid.UUID(p) for p in state["profile_ids"]],
        values=_identifier_texts(state, request),
    )
    state["counts"].update(counts)


def _finish(request: DataSubjectRequest, state: dict[str, Any]) -> str:
    _pending_sweep(state)
    request.subject = f"erased:{state['subject_hash'][:16]}"
    request.details = ""
    request.subject_hash = state["subject_hash"]
    hooks = dict(ErasureHookOutcome.objects.filter(request=request).values_list("hook", "outcome"))
    failed = sorted(name for name, outcome in hooks.items() if outcome == "failed")
    request.erasure_summary = {
        "counts": state["counts"],
        "hooks": hooks,
        "hooks_failed": failed,
        "completed_at": timezone.now().isoformat(),
    }
    request.work_state = {"step": "done"}
    request.save()
    history = DataSubjectRequest.history.model  # type: ignore[attr-defined]
    history.objects.filter(id=request.id).update(subject=request.subject, details="")
    note = "erased: " + ", ".join(f"{k} {v}" for k, v in sorted(state["counts"].items()))
    if failed:
        note = (
            f"completed with failures: deletion hook(s) {', '.join(failed)} failed after "
            "every attempt; delete the person there by hand. " + note
        )
    return note


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
        elif step in ("events", "rejected", "local"):
            advance = _erasers(request, state, batch_size)
        elif step == "records":
            _records(request, state)
        elif step == "hooks":
            advance = _hooks(request, state)
        elif step == "identity":
            _identity(state, request, batch_size)
        elif step == "finish":
            note = _finish(request, state)
            dsr_transition(request=request, status=RequestStatus.COMPLETED, note=note)
            logger.info("erasure %s complete", request_id)
            return True
        state["failures"] = 0
        if advance:
            state["step"] = STEPS[STEPS.index(step) + 1]
        index = STEPS.index(state["step"])
        note = f"step {index + 1} of {len(STEPS)}: {state['step']}"
        if "wait_until" in state:
            note += f" (a deletion hook is retried at {state['wait_until'][:19]})"
        _save(request_id, state, int(100 * index / len(STEPS)), note)
    return False


def erasure_waiting_until(*, request_id: uuid.UUID) -> datetime | None:
    """When an erasure waiting for a deletion hook's next attempt may go on."""
    state = DataSubjectRequest.objects.filter(pk=request_id).values_list("work_state", flat=True)
    wait = (state.first() or {}).get("wait_until")
    return datetime.fromisoformat(wait) if wait else None


@transaction.atomic
def _failure_record(request_id: uuid.UUID, exc: Exception) -> None:
    request = DataSubjectRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None or request.status != RequestStatus.IN_PROGRESS:
        return
    state = _state(request)
    state["failures"] = failures = int(state.get("failures", 0)) + 1
    step = state["step"]
    # The exception's type only: its message may hold the person's data.
    what = f"step {step} failed ({type(exc).__name__}), {failures} time(s) in a row"
    if failures >= MAX_STEP_FAILURES:
        what += "; stopped: an administrator must look, then resume the erasure"
    else:
        what += "; it will be retried"
    DataSubjectRequest.objects.filter(pk=request_id).update(work_state=state)
    dsr_progress(request_id=request_id, progress=request.progress, note=what)
    RequestEvent.objects.create(request=request, action="erasure step failed", note=what)


def erasure_run(
    *, request_id: uuid.UUID, max_steps: int | None = None, batch_size: int = 5000
) -> bool:
    """Run steps until done, ``max_steps``, or a deletion hook waiting for its next
    attempt; True when complete. A failing step is recorded, then raises."""
    steps = 0
    while max_steps is None or steps < max_steps:
        try:
            if erasure_step(request_id=request_id, batch_size=batch_size):
                return True
        except RequestRefused:
            raise
        except Exception as exc:
            _failure_record(request_id, exc)
            raise
        steps += 1
        wait = erasure_waiting_until(request_id=request_id)
        if wait is not None and wait > timezone.now():
            return False
    return False


@transaction.atomic
def erasure_resume(*, request: DataSubjectRequest, actor: Any = None) -> DataSubjectRequest:
    """An administrator resumes an erasure the sweep stopped retrying."""
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if request.type != RequestType.ERASURE or request.status != RequestStatus.IN_PROGRESS:
        raise RequestRefused("Only an erasure in progress can be resumed.")
    state = _state(request)
    state["failures"] = 0
    DataSubjectRequest.objects.filter(pk=request.pk).update(work_state=state)
    RequestEvent.objects.create(request=request, actor=actor, action="erasure resumed")
    return request
